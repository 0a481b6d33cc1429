/**
 * Declarative policy: what a guest may run and what must hold in its kernel, written as a YAML
 * (or JSON) file and judged against a SnapshotSummary — never against a dump, so a watch loop can
 * judge every snapshot it keeps.
 *
 * ```yaml
 * version: 1                         # required; the only version there is
 * rules:                             # at least one
 *   - id: known-processes            # required, unique in the file; violations carry it
 *     severity: high                 # info | low | medium | high | critical
 *     action: alert                  # alert (default) | pause | exec (then `command: [argv...]`)
 *     description: free text         # optional, for the reader
 *     allowed_processes:             # exactly ONE check per rule, one of:
 *       - name: sshd                 #   a process matcher: `name` (exact comm) or `regex` (on comm),
 *       - regex: "^lab_worker_"      #   optionally `argv` (regex on argv joined with spaces)
 *         argv: "--queue jobs\\."
 *         max_count: 3
 *
 *   - { id: r2, severity: low, required_processes: [{ name: init, min_count: 1 }] }
 *   - { id: r3, severity: high, forbidden_processes: [{ regex: "^nc$" }, { name: sh, argv: "-i" }] }
 *   - { id: r4, severity: high, allowed_modules: [e1000, { regex: "^nf_" }] }
 *   - { id: r5, severity: critical, no_hidden_processes: true }
 *   - { id: r6, severity: critical, no_hidden_modules: true }
 *   - { id: r7, severity: critical, syscall_table_intact: true }
 *   - { id: r8, severity: high, signatures: { rules_file: rules/eicar.yar } }   # relative to this file
 *   - { id: r10, severity: critical, no_kernel_hooks: true }
 *   - { id: r11, severity: critical, no_privilege_escalation: true }
 *   - id: r12
 *     severity: high
 *     allowed_bpf_programs:          # a program matcher: `name` or `regex`, `type`, `helpers`
 *       - { type: socket_filter, helpers: [] }          # socket filters calling no helper
 *       - { regex: "^tracer_", helpers: [map_lookup_elem, trace_printk] }
 *   - id: r9
 *     severity: medium
 *     time_fence:
 *       process: { name: backup }    # or `module: name`
 *       timezone: Europe/Berlin      # IANA name, required (no silent UTC)
 *       windows:
 *         - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00" }
 *         - { days: [sat], from: "22:00", to: "02:00" }   # crosses midnight: Sat 22:00 to Sun 02:00
 *   - id: r10
 *     severity: high
 *     listening_ports:               # every other listening (TCP) or bound (UDP) port is a violation
 *       allow: [{ port: 8080 }, { port: 8443, proto: tcp }, { port: 5353, proto: udp }]
 *   - id: r11
 *     severity: high
 *     network_fence:                 # established connections only inside the windows
 *       process: { regex: "^lab_" }  # optional: only these processes' connections
 *       timezone: Europe/Berlin
 *       windows: [{ days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00" }]
 *   - { id: r12, severity: critical, geo_fence: { allow: [{ region: eu-central-1 }, { postal_code: "10115", timezone: Europe/Berlin }] } }
 *   - { id: r13, severity: high, max_clock_skew: 300s }          # or 5m, 1h, or a number of seconds
 *   - { id: r14, severity: critical, no_injected_code: true }
 *   - { id: r15, severity: critical, no_fileless_processes: true }
 *   - { id: r16, severity: high, forbidden_environment: [{ name: LD_PRELOAD }, { name: PATH, value_regex: "^/tmp" }] }
 * ```
 *
 * Semantics, and why:
 * - Names compare exactly with `comm` (what task_struct holds: at most 15 bytes, so a long
 *   executable name is cut). Regexes are the rules' dialect (rules/searchRegex.ts: run in time linear
 *   in the guest's text, which an attacker writes), unanchored (write `^…$`), compiled
 *   at load so a bad one is an error with its line, not a silent non-match at 3 a.m.
 * - `argv` matches the cmdline joined with single spaces. A process whose argv is unreadable
 *   (null) never matches a matcher that has `argv`: an allow list then flags it (fail closed), a
 *   forbid list does not (it cannot prove the argv).
 * - Process checks judge the processes on the kernel's task list only. A process hidden from the
 *   list is judged by `no_hidden_processes` alone (and hidden modules by `no_hidden_modules`
 *   alone), so a hidden process is reported once, as hidden, not again as "not allowed".
 * - `allowed_processes`: every user process must match some entry; kernel threads are exempt
 *   (no policy can list every kworker). `max_count` bounds how many user processes match that
 *   entry (each entry is counted on its own; a process matching two entries counts for both).
 * - `required_processes` and `forbidden_processes` look at every listed process, kernel threads
 *   included (a forbidden name disguised as a kernel thread is still forbidden).
 * - `signatures`: the rules file is parsed and compiled at load (errors point into it); a hit
 *   belongs to this policy rule when its signature rule is defined in that file. Hits of one
 *   signature rule in one process are one violation. When the summary was taken without rules
 *   the check is not silently passed: it yields one `not_evaluated` violation.
 * - `time_fence`: the subject may be present only inside a window, judged at the summary's
 *   capture time in `timezone`, to the minute. Windows are [from, to): `to: "24:00"` means end
 *   of day; `from` later than `to` crosses midnight and belongs to the day it starts on (listed
 *   in `days`); `from` equal to `to` is refused as ambiguous. `days` defaults to every day.
 * - `listening_ports`: a TCP socket in LISTEN or a UDP socket bound to a port and connected to
 *   none (UNCONN), held by any process (hidden ones included) or by none, is a violation naming
 *   pid, comm, proto and port unless an entry allows its port (and proto: `tcp` covers tcp and
 *   tcp6, `udp` udp and udp6; none: both). Ports are 1-65535.
 * - `network_fence`: an ESTABLISHED socket at the capture time (the guest's clock, as
 *   time_fence) outside every window is a violation. One per socket: a connection between two
 *   processes of the guest (loopback) is reported at BOTH ends, each naming its own process.
 * - `geo_fence`: the host metadata (`--host-metadata FILE` of `policy check` and `watch`: JSON
 *   with region, postal_code, timezone, re-read for every snapshot so a migration is seen) must
 *   match one entry, every key the entry gives being equal. No metadata (none given, or
 *   unreadable) is a violation: the fence fails closed.
 * - `max_clock_skew`: the guest's clock against the host's capture time: the source's (a QMP
 *   source's: when it asked QEMU for the dump), else the dump file's modification time (set
 *   by whoever wrote the dump). An unreadable guest clock is a violation too: a time fence
 *   cannot trust it.
 * - `no_injected_code`: executable memory backed by no file in a user process (malfind's
 *   anonymous executable regions; the vDSO excluded), one violation per region.
 * - `no_fileless_processes`: a process whose executable is a memfd, a pseudo file or deleted.
 * - `forbidden_environment`: a process whose environment holds the variable (exact name), with a
 *   value matching `value_regex` when given.
 * - `no_kernel_hooks`: each ftrace, kprobe, netfilter, inline, IDT or /proc hook `check` reports
 *   is one violation of that kind (ftrace_hook, ...), named by what was hooked. A kernel that
 *   runs an in-tree module's netfilter hooks is judged by what `check` says of them.
 * - `no_privilege_escalation`: each user process holding the kernel's or another process's
 *   credentials (`check`'s cred_escalation) is one violation.
 * - `allowed_bpf_programs`: every loaded eBPF program must match some entry; an entry matches
 *   on every part it has (name exact or regex, type, and helpers: each helper the program calls
 *   must be listed, so `helpers: []` allows only programs calling none).
 * - Actions are carried on each violation; `policy check` only reports them — running `exec`
 *   commands or pausing a guest is the watch loop's job.
 *
 * Every problem in a policy file is one PolicyError naming `file:line:column`, the path to the
 * offending node (`rules[2].allowed_processes[0].regex`) and what is wrong.
 *
 * policy/model.ts holds the policy as the program sees it, policy/schema.ts the zod schema,
 * policy/load.ts the YAML reading that locates each problem, policy/evaluate.ts the judging.
 */
export * from './policy/model.js';
export { loadPolicy, parsePolicy, policyPluginNames, policyRulesFiles, type ParseOptions } from './policy/load.js';
export * from './policy/evaluate.js';
