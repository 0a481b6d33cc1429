/*
 * The equivalence corpus: every construct vmscope's rules support, compared with `yara -s`
 * on each input in this folder (test/rules/golden.test.ts). Regenerate the golden outputs
 * with `node scripts/yara-golden.mjs` after editing.
 */

global rule global_small_input : meta_tag {
  meta:
    description = "global rules gate every other rule"
    version = 2
    enabled = true
  condition:
    filesize < 1MB
}

private rule private_has_marker {
  strings:
    $marker = "VMSCOPE-MARKER"
  condition:
    $marker
}

rule marker_via_private_rule : tag_one tag_two {
  condition:
    private_has_marker
}

rule not_private_rule {
  condition:
    not private_has_marker
}

rule text_plain {
  strings:
    $a = "VMSCOPE-MARKER"
    $b = "never present in any input"
  condition:
    $a or $b
}

rule text_escapes {
  strings:
    $tab = "col1\tcol2"
    $quote = "say \"hi\""
    $backslash = "C:\\Windows"
    $hex_escape = "\x01\x02\x03ABC"
    $newline = "line1\nline2"
  condition:
    any of them
}

rule text_nocase {
  strings:
    $a = "MixedCase" nocase
  condition:
    $a
}

rule text_wide {
  strings:
    $a = "WideText" wide
  condition:
    $a
}

rule text_wide_ascii {
  strings:
    $a = "BothForms" wide ascii
  condition:
    #a >= 2
}

rule text_wide_nocase {
  strings:
    $a = "widecase" wide nocase
  condition:
    $a
}

rule text_fullword {
  strings:
    $a = "word" fullword
  condition:
    $a
}

rule text_fullword_wide {
  strings:
    $a = "wword" fullword wide
  condition:
    $a
}

rule text_xor_all_keys {
  strings:
    $a = "XorSecret" xor
  condition:
    $a
}

rule text_xor_single_key {
  strings:
    $a = "XorSecret" xor(0x20)
  condition:
    $a
}

rule text_xor_range {
  strings:
    $a = "XorSecret" xor(1-0x30)
  condition:
    $a
}

rule text_xor_wide {
  strings:
    $a = "XorWide" xor(0x41) wide
  condition:
    $a
}

rule text_private_string {
  strings:
    $shown = "VMSCOPE-MARKER"
    $hidden = "MixedCase" private
  condition:
    $shown and $hidden
}

rule text_anonymous_strings {
  strings:
    $ = "col1"
    $ = "col2"
  condition:
    all of them
}

rule hex_plain {
  strings:
    $a = { 56 4D 53 43 4F 50 45 }
  condition:
    $a
}

rule hex_zero_prefixed {
  strings:
    $a = { 00 00 00 00 DE AD BE EF }
  condition:
    $a
}

rule hex_wildcards {
  strings:
    $a = { DE AD ?? EF }
  condition:
    $a
}

rule hex_nibbles {
  strings:
    $a = { C? A5 ?7 }
  condition:
    $a
}

rule hex_fixed_jump {
  strings:
    $a = { CA FE [4] BA BE }
  condition:
    $a
}

rule hex_range_jump {
  strings:
    $a = { CA FE [2-6] BA BE }
  condition:
    $a
}

rule hex_chained_bounded_jump {
  strings:
    $a = { AA BB [250-300] CC DD }
  condition:
    $a
}

rule hex_chained_three_parts {
  strings:
    $a = { 11 22 [201-] 33 44 [300-] 55 66 }
  condition:
    $a
}

rule hex_open_jump {
  strings:
    $a = { 13 37 [8-] 73 31 }
  condition:
    $a
}

rule hex_unbounded_jump {
  strings:
    $a = { 13 37 [-] 42 42 }
  condition:
    $a
}

rule hex_alternation {
  strings:
    $a = { F0 0D ( 01 02 | 03 04 05 | 06 ?? ) FF }
  condition:
    $a
}

rule hex_nested_alternation {
  strings:
    $a = { AB ( CD ( 11 | 22 ) | EF ) 99 }
  condition:
    $a
}

rule hex_private_string {
  strings:
    $a = { DE AD BE EF } private
    $b = { CA FE }
  condition:
    $a and $b
}

rule hex_all_wildcards {
  strings:
    $a = { F0 0D ?? ?? ?? FF }
  condition:
    #a > 0
}

rule regex_literal {
  strings:
    $a = /VMSCOPE-[A-Z]+/
  condition:
    $a
}

rule regex_classes {
  strings:
    $digits = /id=\d{3,5}/
    $word = /\w+@\w+\.com/
    $space = /key\s+value/
    $negated = /\[[^\]]+\]/
  condition:
    any of them
}

rule regex_quantifiers {
  strings:
    $star = /ab*c/
    $plus = /x+y/
    $optional = /colou?r/
    $exact = /z{4}/
    $at_least = /q{2,}r/
    $lazy = /<.+?>/
  condition:
    any of them
}

rule regex_alternation_groups {
  strings:
    $a = /(cat|dog)s? (run|walk)/
  condition:
    $a
}

rule regex_anchors {
  strings:
    $start = /^VMS/
    $end = /END$/
  condition:
    $start or $end
}

rule regex_nocase_dotall {
  strings:
    $i = /mixedcase/i
    $s = /line1.line2/s
    $dot = /line1.line2/
  condition:
    $i or $s or $dot
}

rule regex_wide_fullword {
  strings:
    $wide = /Wide[A-Z]ext/ wide
    $full = /wor[a-z]/ fullword
  condition:
    $wide or $full
}

rule regex_word_boundary {
  strings:
    $a = /\bcat\b/
  condition:
    $a
}

rule condition_count_and_arithmetic {
  strings:
    $a = "col"
  condition:
    #a * 2 - 1 >= 3 and #a \ 2 >= 1 and #a % 2 == 0 or #a == 3
}

rule condition_offsets_lengths {
  strings:
    $a = "VMSCOPE-MARKER"
    $b = /x+y/
  condition:
    @a[1] < @a[2] and !a[1] == 14 and !b[1] >= 2 and @b > 0
}

rule condition_at_and_in {
  strings:
    $a = "VMS"
    $b = "MARKER"
  condition:
    $a at 0 and $b in (0..0x1000)
}

rule condition_filesize_units {
  condition:
    filesize > 1KB and filesize <= 64KB
}

rule condition_bitwise {
  strings:
    $a = "col"
  condition:
    (#a & 1) == 0 and (#a | 1) >= 1 and (#a ^ 3) != 3 and (#a << 2) >> 2 == #a and ~#a < 0 and -#a <= 0
}

rule condition_n_of {
  strings:
    $a1 = "col1"
    $a2 = "col2"
    $a3 = "MixedCase"
    $b = "never here"
  condition:
    2 of ($a*) and not $b
}

rule condition_all_of_them {
  strings:
    $a = "col1"
    $b = "col2"
  condition:
    all of them
}

rule condition_any_of_set {
  strings:
    $x = "WideText" wide
    $y = { 13 37 }
    $z = "never here"
  condition:
    any of ($x, $y, $z)
}

rule condition_for_any {
  strings:
    $a = "col1"
    $b = "VMSCOPE"
  condition:
    for any of ($a, $b) : ( $ at 0 )
}

rule condition_for_all {
  strings:
    $a = "col1"
    $b = "col2"
  condition:
    for all of them : ( # >= 1 and @ > 0 and ! == 4 )
}

rule condition_for_n {
  strings:
    $a = "col1"
    $b = "col2"
    $c = "never here"
  condition:
    for 2 of ($*) : ( $ in (0..filesize) )
}

rule condition_undefined_offset {
  strings:
    $a = "VMSCOPE-MARKER"
  condition:
    not (@a[100] == 0) or $a
}

rule condition_rule_reference {
  condition:
    text_plain and not hex_zero_prefixed or condition_all_of_them
}

rule condition_true_false {
  condition:
    true and not false
}

rule memory_banner {
  strings:
    $banner = "Linux version" fullword
    $gcc = /gcc-\d+ \(Debian [0-9.]+-\d+(\+deb\d+u\d+)?\)/
    $email = /[a-z-]+@[a-z.]+\.org/
  condition:
    $banner and $gcc and #email > 1
}

rule memory_zero_run {
  strings:
    $a = { 00 00 00 00 00 00 00 00 48 }
  condition:
    #a < 100
}
