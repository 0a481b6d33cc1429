import wabt from 'wabt';
import { appendCustomSection } from '../../src/plugins/wasmBinary.js';
import { MANIFEST_SECTION } from '../../src/plugins/manifest.js';

const wabtModule = await wabt();

/** The manifest of a test plugin: `data` rows in the columns given, unless overridden. */
export function testManifest(name: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    interface: 1,
    name,
    version: '0.0.1',
    description: `test plugin ${name}`,
    columns: [
      { key: 'what', kind: 'text', title: 'What' },
      { key: 'a', kind: 'int', title: 'A' },
      { key: 'b', kind: 'int', title: 'B' },
    ],
    ...overrides,
  };
}

/**
 * Helpers every test module gets, after its own imports: $write(ptr, len) to stdout, and
 * $row(ptr, len, a, b) printing {"what":"…","a":A,"b":B}. Scratch memory: 0..16 for the
 * iovec and count, 64..128 for digits, 200.. for the row's fixed text; a module's data from 1024.
 */
const PRELUDE_IMPORTS = `(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))`;
const PRELUDE = `
  (data (i32.const 200) "{\\"what\\":\\"")
  (data (i32.const 220) "\\",\\"a\\":")
  (data (i32.const 240) ",\\"b\\":")
  (data (i32.const 260) "}\\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $int (param $value i32) (local $at i32)
    (local.set $at (i32.const 128))
    (loop $digits
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $value) (i32.const 10))))
      (local.set $value (i32.div_u (local.get $value) (i32.const 10)))
      (br_if $digits (local.get $value)))
    (call $write (local.get $at) (i32.sub (i32.const 128) (local.get $at))))
  (func $row (param $ptr i32) (param $len i32) (param $a i32) (param $b i32)
    (call $write (i32.const 200) (i32.const 9))
    (call $write (local.get $ptr) (local.get $len))
    (call $write (i32.const 220) (i32.const 6))
    (call $int (local.get $a))
    (call $write (i32.const 240) (i32.const 5))
    (call $int (local.get $b))
    (call $write (i32.const 260) (i32.const 2)))`;

/** A plugin from WAT: `imports` first, then `body` (which defines $_start's work); memory of `pages` (max optional); no manifest section when null. */
export function watPlugin(
  manifest: Record<string, unknown> | null,
  parts: { imports?: string; body: string; memory?: string },
): Uint8Array<ArrayBuffer> {
  const source = `(module
    ${parts.imports ?? ''}
    ${PRELUDE_IMPORTS}
    (memory (export "memory") ${parts.memory ?? '2'})
    ${PRELUDE}
    ${parts.body})`;
  const parsed = wabtModule.parseWat(`${String(manifest?.['name'] ?? 'module')}.wat`, source);
  try {
    const { buffer } = parsed.toBinary({});
    if (manifest === null) return new Uint8Array(buffer);
    return appendCustomSection(buffer, MANIFEST_SECTION, new TextEncoder().encode(JSON.stringify(manifest)));
  } finally {
    parsed.destroy();
  }
}
