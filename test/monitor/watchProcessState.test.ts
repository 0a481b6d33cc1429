import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadPolicy } from '../../src/monitor/policy.js';
import type { Snapshot, SnapshotSource } from '../../src/monitor/sources/source.js';
import { watch, type WatchAlert } from '../../src/monitor/watch.js';
import { fixturePath, truth } from '../support/fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vmscope-watch-state-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Hands out the given dumps in order, calling `before(index)` as each is asked for; pauses are counted, as a QMP source would do them. */
class ListSource implements SnapshotSource {
  pauses = 0;
  constructor(
    private readonly snapshots: ReadonlyArray<{ path: string; capturedAt: Date }>,
    private readonly before: (index: number) => void,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<Snapshot> {
    let index = 0;
    return {
      next: (): Promise<IteratorResult<Snapshot>> => {
        if (index >= this.snapshots.length) return Promise.resolve({ done: true, value: undefined });
        this.before(index);
        const { path, capturedAt } = this.snapshots[index++]!;
        return Promise.resolve({
          done: false,
          value: { path, receivedAt: new Date(), capturedAt, release: () => Promise.resolve() },
        });
      },
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  pauseGuest(): Promise<void> {
    this.pauses += 1;
    return Promise.resolve();
  }
}

describe('watch applies the network, location and process-state rules, with their actions', () => {
  const modern = fixturePath('linux61-modern', 'elf');
  const backdoor = (truth('linux61-modern').sockets as Array<{ pid: number; comm: string; local_port: number }>).find(
    (socket) => socket.local_port === 4444,
  )!;
  const hostMetadata = join(work, 'host.json');
  const execReceived = join(work, 'exec-received.ndjson');
  const recorder = join(work, 'record-stdin.mjs');
  const alerts: WatchAlert[] = [];
  let source: ListSource;

  beforeAll(async () => {
    writeFileSync(
      recorder,
      `import { appendFileSync } from 'node:fs';\nconst chunks = [];\nprocess.stdin.on('data', (chunk) => chunks.push(chunk));\nprocess.stdin.on('end', () => appendFileSync(process.argv[2], Buffer.concat(chunks)));\n`,
    );
    const policyFile = join(work, 'policy.yaml');
    writeFileSync(
      policyFile,
      stringify({
        version: 1,
        rules: [
          {
            id: 'ports',
            severity: 'high',
            action: 'exec',
            command: [process.execPath, recorder, execReceived],
            listening_ports: { allow: [{ port: 8080 }, { port: 8443 }, { port: 5353 }, { port: 5354 }] },
          },
          { id: 'where', severity: 'critical', action: 'pause', geo_fence: { allow: [{ region: 'eu-central' }] } },
          { id: 'injected', severity: 'critical', no_injected_code: true },
          { id: 'clock', severity: 'high', max_clock_skew: '300s' },
        ],
      }),
    );
    // The host's capture time as the source reports it: the truth's for the first, an hour later for the second.
    const captured = Date.parse((truth('linux61-modern').capture as { captured_at_utc: string }).captured_at_utc);
    const snapshots = [
      { path: modern, capturedAt: new Date(captured) },
      { path: modern, capturedAt: new Date(captured + 3_600_000) },
    ];
    source = new ListSource(snapshots, (index) => {
      // The guest migrates between the two snapshots: the file is read anew for each.
      writeFileSync(hostMetadata, JSON.stringify({ region: index === 0 ? 'eu-central' : 'us-east' }));
    });
    for await (const alert of watch({
      source,
      policy: loadPolicy(policyFile),
      hostMetadataFile: hostMetadata,
      contextOptions: { cacheDir: join(work, 'profiles') },
    }))
      alerts.push(alert);
  }, 300_000);

  it('the first snapshot: 4444 and the injected regions are violations, the exec action gets the alert; the host is where allowed', () => {
    const first = alerts.filter((alert) => alert.type === 'violation' && alert.rule !== 'where');
    expect(
      first.filter((alert) => alert.rule === 'ports').map(({ kind, pid, comm, name }) => ({ kind, pid, comm, name })),
    ).toEqual([{ kind: 'unexpected_listener', pid: backdoor.pid, comm: backdoor.comm, name: 'tcp/4444' }]);
    expect(first.filter((alert) => alert.rule === 'injected').map((alert) => alert.comm)).toEqual([
      'lab_injected',
      'lab_injected',
    ]);
    const received = readFileSync(execReceived, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as WatchAlert);
    expect(received.map((alert) => [alert.rule, alert.name])).toEqual([['ports', 'tcp/4444']]);
  });

  it('the second snapshot: the migrated host violates the geo fence once and the guest is paused, the clock an hour off is flagged; nothing else repeats', () => {
    const violations = alerts.filter((alert) => alert.type === 'violation');
    expect(violations.filter((alert) => alert.rule === 'where').map((alert) => alert.kind)).toEqual([
      'outside_geo_fence',
    ]);
    expect(source.pauses).toBe(1);
    // The source's capture time is what the guest clock is judged against: right on the first, an hour off on the second.
    const clock = violations.filter((alert) => alert.rule === 'clock');
    expect(clock.map((alert) => alert.kind)).toEqual(['clock_skew']);
    expect(clock[0]!.detail).toMatch(/ 3\d{3} s behind, more than the 300 s allowed/);
    // Alerted with the second snapshot's: after its geo-fence violation (rules alert in policy order).
    expect(violations.indexOf(clock[0]!)).toBeGreaterThan(violations.findIndex((alert) => alert.rule === 'where'));
    // Persisting violations (4444, the injected code) are not alerted again; the same dump twice has no change.
    expect(violations).toHaveLength(5);
    expect(alerts.filter((alert) => alert.type === 'change')).toEqual([]);
    expect(alerts.filter((alert) => alert.type === 'error')).toEqual([]);
  });
});
