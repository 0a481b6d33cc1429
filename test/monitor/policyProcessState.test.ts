import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DumpContext } from '../../src/analyses/context.js';
import { evaluatePolicy, parsePolicy, PolicyError, type Violation } from '../../src/monitor/policy.js';
import type { SnapshotSummary } from '../../src/monitor/snapshot.js';
import { summarizeSnapshot } from '../../src/monitor/summarize.js';
import { fixturePath, truth } from '../support/fixtures.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'vmscope-policy-state-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const HEADER = 'version: 1\nrules:\n';
const policy = (body: string) => parsePolicy(HEADER + body, 'policy.yaml', { baseDir: work });
const judge = (body: string, summary: SnapshotSummary): Violation[] => evaluatePolicy(policy(body), summary);

const modern = truth('linux61-modern') as unknown as {
  sockets: Array<{ pid: number; comm: string; state: string; local_port: number; proto: string }>;
  capture: { captured_at_utc: string };
  injected: Array<{ pid: number }>;
  fileless: Array<{ pid: number; comm: string }>;
  environ: Record<string, string[]>;
};

/** HH:MM of a UTC instant `hours` after `base`, wrapped into the day. */
function utcClock(base: Date, hours: number): string {
  const minutes = (((base.getUTCHours() * 60 + base.getUTCMinutes() + hours * 60) % 1440) + 1440) % 1440;
  return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}

describe('policy rules on network and process state, judged on linux61-modern', () => {
  let context: DumpContext;
  let summary: SnapshotSummary;
  const cacheDir = join(work, 'profiles');
  beforeAll(async () => {
    context = new DumpContext(fixturePath('linux61-modern', 'elf'), { cacheDir });
    summary = await summarizeSnapshot(context);
  });
  afterAll(() => context.close());

  it("the summary holds the guest's clock, near the host's capture time in the truth", () => {
    expect(summary.capturedAtSource).toBe('guest-clock');
    const captured = Date.parse(modern.capture.captured_at_utc);
    expect(Math.abs(summary.guestClock!.getTime() - captured)).toBeLessThan(5 * 60_000);
  });

  it('listening_ports allowing 8080, 8443, 5353/udp and 5354/udp flags exactly port 4444', () => {
    const violations = judge(
      `  - id: ports
    severity: high
    listening_ports:
      allow: [{ port: 8080 }, { port: 8443 }, { port: 5353, proto: udp }, { port: 5354, proto: udp }]
`,
      summary,
    );
    const backdoor = modern.sockets.find((socket) => socket.local_port === 4444)!;
    expect(violations.map(({ kind, pid, comm, name }) => ({ kind, pid, comm, name }))).toEqual([
      { kind: 'unexpected_listener', pid: backdoor.pid, comm: backdoor.comm, name: 'tcp/4444' },
    ]);
    expect(violations[0]!.detail).toMatch(/listens on tcp 0\.0\.0\.0:4444/);
    // The proto matters: 5353 allowed for tcp only leaves the UDP listener flagged.
    const tcpOnly = judge(
      `  - id: ports
    severity: high
    listening_ports: { allow: [{ port: 8080 }, { port: 8443 }, { port: 4444 }, { port: 5353, proto: tcp }, { port: 5354 }] }
`,
      summary,
    );
    expect(tcpOnly.map((violation) => violation.name)).toEqual(['udp/5353']);
  });

  it('network_fence: outside the windows flags the lab_beacon ↔ lab_http connection at both ends; inside, nothing', () => {
    const at = summary.capturedAt;
    const fence = (from: string, to: string) => `  - id: office-hours
    severity: high
    action: exec
    command: [/bin/true]
    network_fence:
      timezone: UTC
      windows: [{ from: "${from}", to: "${to}" }]
`;
    const established = modern.sockets.filter((socket) => socket.state === 'ESTABLISHED');
    expect(established.map((socket) => socket.comm).sort()).toEqual(['lab_beacon', 'lab_http']);
    const outside = judge(fence(utcClock(at, 3), utcClock(at, 5)), summary);
    expect(outside.map(({ kind, pid, comm }) => ({ kind, pid, comm })).sort((a, b) => a.pid! - b.pid!)).toEqual(
      established
        .map(({ pid, comm }) => ({ kind: 'connection_outside_fence', pid, comm }))
        .sort((a, b) => a.pid - b.pid),
    );
    for (const violation of outside) {
      expect(violation.action).toBe('exec');
      expect(violation.detail).toMatch(/127\.0\.0\.1:\d+ ↔ 127\.0\.0\.1:\d+/);
    }
    expect(judge(fence(utcClock(at, -2), utcClock(at, 2)), summary)).toEqual([]);
    // A process matcher narrows the fence to that process's end.
    const beaconOnly = judge(
      `  - id: beacon
    severity: high
    network_fence: { process: { name: lab_beacon }, timezone: UTC, windows: [{ from: "${utcClock(at, 3)}", to: "${utcClock(at, 5)}" }] }
`,
      summary,
    );
    expect(beaconOnly.map((violation) => violation.comm)).toEqual(['lab_beacon']);
  });

  it('geo_fence: matching host metadata passes, a migrated host is flagged, missing metadata fails closed', async () => {
    const rule = `  - id: where
    severity: critical
    geo_fence:
      allow: [{ region: eu-central }, { postal_code: "10115", timezone: Europe/Berlin }]
`;
    const metadata = join(work, 'host.json');
    writeFileSync(metadata, JSON.stringify({ region: 'eu-central', postal_code: '60311', timezone: 'Europe/Berlin' }));
    expect(judge(rule, await summarizeSnapshot(context, { hostMetadataFile: metadata }))).toEqual([]);
    writeFileSync(metadata, JSON.stringify({ region: 'us-east', postal_code: '10115', timezone: 'Europe/Berlin' }));
    expect(judge(rule, await summarizeSnapshot(context, { hostMetadataFile: metadata }))).toEqual([]);
    // Re-read for every summary: the guest migrated.
    writeFileSync(metadata, JSON.stringify({ region: 'us-east', postal_code: '10001', timezone: 'America/New_York' }));
    const moved = judge(rule, await summarizeSnapshot(context, { hostMetadataFile: metadata }));
    expect(moved.map(({ kind, detail }) => ({ kind, detail }))).toEqual([
      { kind: 'outside_geo_fence', detail: expect.stringContaining('region us-east') },
    ]);
    const none = judge(rule, summary);
    expect(none.map((violation) => violation.kind)).toEqual(['unknown_location']);
    const unreadable = judge(rule, await summarizeSnapshot(context, { hostMetadataFile: join(work, 'missing.json') }));
    expect(unreadable.map((violation) => violation.kind)).toEqual(['unknown_location']);
    expect(unreadable[0]!.detail).toMatch(/cannot read host metadata/);
  });

  it('max_clock_skew: a host capture time 1 hour off is flagged, one a minute off is not', async () => {
    const rule = '  - { id: clock, severity: high, max_clock_skew: 300s }\n';
    const guest = summary.guestClock!;
    const hourOff = await summarizeSnapshot(context, { hostCapturedAt: new Date(guest.getTime() + 3_600_000) });
    const violations = judge(rule, hourOff);
    expect(violations.map((violation) => violation.kind)).toEqual(['clock_skew']);
    expect(violations[0]!.detail).toMatch(/3600 s behind, more than the 300 s allowed/);
    const minuteOff = await summarizeSnapshot(context, { hostCapturedAt: new Date(guest.getTime() - 60_000) });
    expect(judge(rule, minuteOff)).toEqual([]);
    expect(judge('  - { id: clock, severity: high, max_clock_skew: 1h }\n', hourOff)).toEqual([]);
  });

  it('no_injected_code, no_fileless_processes and forbidden_environment flag exactly the lab processes', () => {
    const kindsAndPids = (body: string) => judge(body, summary).map(({ kind, pid }) => `${kind} ${pid}`);
    expect(kindsAndPids('  - { id: i, severity: critical, no_injected_code: true }\n')).toEqual(
      modern.injected.map(({ pid }) => `injected_code ${pid}`),
    );
    expect(kindsAndPids('  - { id: f, severity: critical, no_fileless_processes: true }\n')).toEqual(
      modern.fileless.map(({ pid }) => `fileless_process ${pid}`),
    );
    const preloaded = Object.entries(modern.environ)
      .filter(([, environ]) => environ.some((variable) => variable.startsWith('LD_PRELOAD=')))
      .map(([pid]) => `forbidden_environment ${pid}`);
    expect(preloaded.length).toBeGreaterThan(0);
    expect(kindsAndPids('  - { id: e, severity: high, forbidden_environment: [{ name: LD_PRELOAD }] }\n')).toEqual(
      preloaded,
    );
    expect(
      kindsAndPids(
        '  - { id: e, severity: high, forbidden_environment: [{ name: LD_PRELOAD, value_regex: "^$no-such" }] }\n',
      ),
    ).toEqual([]);
  });

  it('policy check --host-metadata through the CLI bundle: the geo fence judges the file given', () => {
    const policyFile = join(work, 'geo.yaml');
    writeFileSync(
      policyFile,
      `${HEADER}  - { id: where, severity: critical, geo_fence: { allow: [{ region: eu-central }] } }\n`,
    );
    const metadata = join(work, 'cli-host.json');
    writeFileSync(metadata, JSON.stringify({ region: 'ap-south' }));
    const result = spawnSync(
      process.execPath,
      [
        join(repoRoot, 'bin/vmscope.js'),
        'policy',
        'check',
        '--policy',
        policyFile,
        '--host-metadata',
        metadata,
        fixturePath('linux61-modern', 'elf'),
        '--json',
      ],
      { encoding: 'utf8', env: { ...process.env, VMSCOPE_CACHE_DIR: cacheDir } },
    );
    expect(result.status).toBe(1);
    expect((JSON.parse(result.stdout) as Violation[]).map((violation) => violation.kind)).toEqual([
      'outside_geo_fence',
    ]);
  });
});

describe('malformed new rules: one error each, at its line and column', () => {
  const cases: Array<{ what: string; body: string; at: string; message: RegExp }> = [
    {
      what: 'unknown key in a port entry',
      body: '  - id: p\n    severity: high\n    listening_ports:\n      allow:\n        - port: 53\n          prot: udp\n',
      at: 'prot',
      message: /unknown key "prot" \(expected one of: port, proto\)/,
    },
    {
      what: 'bad port',
      body: '  - id: p\n    severity: high\n    listening_ports:\n      allow:\n        - port: 70000\n',
      at: '70000',
      message: /a port is from 1 to 65535/,
    },
    {
      what: 'bad window',
      body: '  - id: n\n    severity: high\n    network_fence:\n      timezone: UTC\n      windows:\n        - from: "8:61"\n          to: "17:00"\n',
      at: '"8:61"',
      message: /invalid time "8:61"/,
    },
    {
      what: 'bad time zone',
      body: '  - id: n\n    severity: high\n    network_fence:\n      timezone: Mars/Olympus\n      windows: [{ from: "09:00", to: "17:00" }]\n',
      at: 'Mars/Olympus',
      message: /unknown time zone "Mars\/Olympus"/,
    },
    {
      what: 'bad time zone in a geo fence',
      body: '  - id: g\n    severity: high\n    geo_fence:\n      allow:\n        - timezone: Europe/Atlantis\n',
      at: 'Europe/Atlantis',
      message: /unknown time zone/,
    },
    {
      what: 'unknown key in a geo fence',
      body: '  - id: g\n    severity: high\n    geo_fence:\n      allow:\n        - postcode: "10115"\n',
      at: 'postcode',
      message: /unknown key "postcode" \(expected one of: region, postal_code, timezone\)/,
    },
    {
      what: 'bad clock skew',
      body: '  - id: c\n    severity: high\n    max_clock_skew: 5 parsecs\n',
      at: '5 parsecs',
      message: /invalid clock skew "5 parsecs"/,
    },
    {
      what: 'no_injected_code: false',
      body: '  - id: i\n    severity: high\n    no_injected_code: false\n',
      at: 'false',
      message: /no_injected_code can only be true/,
    },
    {
      what: 'bad value regex',
      body: '  - id: e\n    severity: high\n    forbidden_environment:\n      - name: LD_PRELOAD\n        value_regex: "("\n',
      at: '"("',
      message: /invalid regex/,
    },
  ];
  for (const { what, body, at, message } of cases) {
    it(what, () => {
      const text = HEADER + body;
      const lines = text.split('\n');
      const line = lines.findIndex((candidate) => candidate.includes(at)) + 1;
      const column = lines[line - 1]!.indexOf(at) + 1;
      let error: unknown;
      try {
        parsePolicy(text, 'policy.yaml', { baseDir: work });
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(PolicyError);
      const policyError = error as PolicyError;
      expect(policyError.problems).toHaveLength(1);
      expect(policyError.message).toMatch(message);
      expect(policyError.message.startsWith(`policy.yaml:${line}:${column}: `)).toBe(true);
    });
  }
});
