import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/image/open.js';
import { QmpClient, QmpClosedError, QmpCommandError, QmpConnectError, QmpTimeoutError } from '../../src/monitor/qmp.js';
import { GuestGoneError, QmpSource, type Snapshot, type SourceProblem } from '../../src/monitor/sources/index.js';
import { FakeQmp, type Command } from '../support/fakeQmp.js';
import { bootGuest, qemuUnavailableReason, type LiveGuest } from '../support/liveGuest.js';

describe('QmpClient against a fake QMP server', () => {
  let dir: string;
  const servers: FakeQmp[] = [];
  const clients: QmpClient[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmscope-qmp-unit-'));
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function serve(answer: ConstructorParameters<typeof FakeQmp>[1]): Promise<FakeQmp> {
    const server = new FakeQmp(dir, answer);
    servers.push(server);
    await server.listen();
    return server;
  }
  async function connect(server: FakeQmp, options?: Parameters<typeof QmpClient.connect>[1]): Promise<QmpClient> {
    const client = await QmpClient.connect(server.socketPath, options);
    clients.push(client);
    return client;
  }

  it('reads the greeting and negotiates capabilities before any command', async () => {
    const server = await serve((command, _socket, send) =>
      send({ return: { status: 'running', running: true }, id: command.id }),
    );
    const client = await connect(server);
    expect(client.greeting.version.qemu.major).toBe(7);
    expect(server.received[0]?.execute).toBe('qmp_capabilities');
    expect(await client.queryStatus()).toEqual({ status: 'running', running: true });
  });

  it('matches replies to calls by id, whatever order they come in, and records events', async () => {
    const held: Command[] = [];
    const server = await serve((command, _socket, send) => {
      held.push(command);
      if (held.length < 2) return;
      // Answer the second call first, with an event in between.
      send({ return: `answer to ${String(held[1]!.arguments?.['n'])}`, id: held[1]!.id });
      send({ event: 'STOP', timestamp: { seconds: 1, microseconds: 0 } });
      send({ return: `answer to ${String(held[0]!.arguments?.['n'])}`, id: held[0]!.id });
    });
    const client = await connect(server);
    const events: string[] = [];
    client.onEvent((event) => events.push(event.event));
    const [first, second] = await Promise.all([client.execute('echo', { n: 1 }), client.execute('echo', { n: 2 })]);
    expect(first).toBe('answer to 1');
    expect(second).toBe('answer to 2');
    expect(events).toEqual(['STOP']);
    expect(client.recentEvents.map((event) => event.event)).toEqual(['STOP']);
    expect(new Set(server.received.map((command) => command.id)).size).toBe(server.received.length);
  });

  it('turns a QMP error reply into QmpCommandError', async () => {
    const server = await serve((command, _socket, send) =>
      send({ error: { class: 'CommandNotFound', desc: 'The command nope has not been found' }, id: command.id }),
    );
    const client = await connect(server);
    const error = await client.execute('nope').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpCommandError);
    expect((error as QmpCommandError).errorClass).toBe('CommandNotFound');
  });

  it('fails a call in flight with QmpClosedError when the socket closes, and every later call too', async () => {
    const server = await serve((_command, socket) => socket.destroy());
    const client = await connect(server);
    const error = await client.execute('query-status').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpClosedError);
    expect((error as Error).message).toMatch(/closed during 'query-status'/);
    expect(client.closed).toBe(true);
    await expect(client.stop()).rejects.toBeInstanceOf(QmpClosedError);
  });

  it('times a call out with QmpTimeoutError, drops the late reply and keeps working', async () => {
    let calls = 0;
    const server = await serve((command, _socket, send) => {
      calls++;
      // The first call is answered only after its timeout; the second at once.
      if (calls === 1) setTimeout(() => send({ return: 'late', id: command.id }), 300);
      else send({ return: 'prompt', id: command.id });
    });
    const client = await connect(server);
    const error = await client.execute('slow', undefined, { timeoutMs: 100 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QmpTimeoutError);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await client.execute('fast')).toBe('prompt');
  });

  it('fails connect with QmpConnectError when nothing listens, or no greeting comes', async () => {
    await expect(QmpClient.connect(join(dir, 'nobody.sock'))).rejects.toBeInstanceOf(QmpConnectError);
    const silent = createServer(() => undefined);
    const silentPath = join(dir, 'silent.sock');
    await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
    try {
      await expect(QmpClient.connect(silentPath, { timeoutMs: 200 })).rejects.toThrow(/no greeting within 200 ms/);
    } finally {
      silent.close();
    }
  });

  it('waits for a detached dump through query-dump and reports a failed one', async () => {
    let polls = 0;
    let fail = false;
    const server = await serve((command, _socket, send) => {
      if (command.execute === 'dump-guest-memory') {
        expect(command.arguments).toMatchObject({ paging: false, detach: true });
        send({ return: {}, id: command.id });
      } else if (command.execute === 'query-dump') {
        polls++;
        if (polls < 3) send({ return: { status: 'active', completed: polls, total: 3 }, id: command.id });
        else if (fail) {
          send({
            event: 'DUMP_COMPLETED',
            data: { result: { status: 'failed', completed: 2, total: 3 }, error: 'No space left on device' },
          });
          send({ return: { status: 'failed', completed: 2, total: 3 }, id: command.id });
        } else send({ return: { status: 'completed', completed: 3, total: 3 }, id: command.id });
      }
    });
    const client = await connect(server);
    await client.dumpGuestMemory('/nowhere.elf', { pollMs: 10 });
    expect(polls).toBe(3);
    polls = 0;
    fail = true;
    await expect(client.dumpGuestMemory('/nowhere.elf', { pollMs: 10 })).rejects.toThrow(/No space left on device/);
  });

  it('QmpSource ends with GuestGoneError when QEMU goes away, and skips dumps over budget', async () => {
    const server = await serve((command, socket, send) => {
      if (command.execute === 'query-memory-size-summary')
        send({ return: { 'base-memory': 512 << 20 }, id: command.id });
      else socket.destroy(); // QEMU dies as the dump starts
    });
    const problems: SourceProblem[] = [];
    const overBudget = new QmpSource(server.socketPath, {
      tempDir: dir,
      diskBudgetBytes: 100 << 20,
      intervalMs: 50,
      onProblem: (problem) => problems.push(problem),
    });
    const iterator = overBudget[Symbol.asyncIterator]();
    const stopper = setTimeout(() => void overBudget.close(), 200);
    expect((await iterator.next()).done).toBe(true);
    clearTimeout(stopper);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]).toMatchObject({ kind: 'dump-skipped' });
    expect(problems[0]!.message).toMatch(/budget/);

    const dying = new QmpSource(server.socketPath, { tempDir: dir, onProblem: (problem) => problems.push(problem) });
    const error = await dying[Symbol.asyncIterator]()
      .next()
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GuestGoneError);
    expect((error as Error).message).toMatch(/went away/);

    const nobody = new QmpSource(join(dir, 'nobody.sock'));
    await expect(nobody[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(GuestGoneError);
  });
});

describe('QmpSource against a fake QEMU that writes dump files', () => {
  let dir: string;
  let server: FakeQmp | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmscope-qmp-source-'));
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Answers like QEMU: the dump file appears `dumpMs` after dump-guest-memory, then query-dump says completed. */
  async function fakeQemu(dumpMs: number): Promise<FakeQmp> {
    let doneAt = 0;
    server = new FakeQmp(dir, (command, _socket, send) => {
      if (command.execute === 'query-memory-size-summary') send({ return: { 'base-memory': 1 << 20 }, id: command.id });
      else if (command.execute === 'dump-guest-memory') {
        const path = String(command.arguments?.['protocol']).replace(/^file:/, '');
        doneAt = Date.now() + dumpMs;
        setTimeout(() => writeFileSync(path, Buffer.alloc(4096)), dumpMs);
        send({ return: {}, id: command.id });
      } else if (command.execute === 'query-dump') {
        send({
          return: { status: Date.now() >= doneAt + 20 ? 'completed' : 'active', completed: 0, total: 4096 },
          id: command.id,
        });
      }
    });
    await server.listen();
    return server;
  }

  it('yields a dump in a private folder, deletes it on release, and removes the folder on close', async () => {
    const qemu = await fakeQemu(50);
    const source = new QmpSource(qemu.socketPath, { tempDir: dir, minFreeBytes: 0, dump: { pollMs: 10 } });
    const iterator = source[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    const snapshot = first.value as Snapshot;
    expect(dirname(dirname(snapshot.path))).toBe(dir);
    expect(statSync(snapshot.path).size).toBe(4096);
    expect(source.outstandingBytes).toBe(4096);
    await snapshot.release();
    expect(existsSync(snapshot.path)).toBe(false);
    expect(source.outstandingBytes).toBe(0);
    await source.close();
    expect(existsSync(dirname(snapshot.path))).toBe(false);
  });

  it('on abort during a dump, waits for it, deletes the file and ends without an error', async () => {
    const qemu = await fakeQemu(300);
    const controller = new AbortController();
    const problems: SourceProblem[] = [];
    const source = new QmpSource(qemu.socketPath, {
      tempDir: dir,
      minFreeBytes: 0,
      signal: controller.signal,
      dump: { pollMs: 10 },
      onProblem: (problem) => problems.push(problem),
    });
    setTimeout(() => controller.abort(), 100);
    const yielded: string[] = [];
    for await (const snapshot of source) yielded.push(snapshot.path);
    expect(yielded).toEqual([]);
    expect(problems).toEqual([]);
    expect(readdirSync(dir).filter((name) => name.startsWith('vmscope-qmp-'))).toEqual([]);
  });

  it('notices the guest going away while waiting for the next interval', async () => {
    const qemu = await fakeQemu(10);
    const source = new QmpSource(qemu.socketPath, {
      tempDir: dir,
      minFreeBytes: 0,
      intervalMs: 60_000,
      dump: { pollMs: 10 },
    });
    const iterator = source[Symbol.asyncIterator]();
    const first = await iterator.next();
    await (first.value as Snapshot).release();
    const startedAt = Date.now();
    setTimeout(() => void qemu.close(), 100);
    await expect(iterator.next()).rejects.toBeInstanceOf(GuestGoneError);
    expect(Date.now() - startedAt).toBeLessThan(5000);
  });
});

const unavailable = qemuUnavailableReason();
if (unavailable) console.warn(`skipping the live QEMU tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('QmpSource on a live guest (QEMU TCG)', () => {
  let dir: string;
  let guest: LiveGuest | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmscope-live-'));
  });
  afterAll(async () => {
    await guest?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'boots the rootkit guest, snapshots it, releases the dump, pauses it, and ends with GuestGoneError when QEMU dies',
    { timeout: 300_000 },
    async () => {
      guest = await bootGuest({ mode: 'rootkit', tmpDir: dir });
      console.log(`live guest: boot to LAB:READY took ${guest.bootMs} ms`);

      const problems: SourceProblem[] = [];
      const source = new QmpSource(guest.qmpSocket, {
        tempDir: dir,
        intervalMs: 60_000,
        onProblem: (problem) => problems.push(problem),
      });
      const startedAt = Date.now();
      let snapshotPath: string | undefined;
      for await (const snapshot of source) {
        console.log(
          `live guest: one dump-guest-memory took ${Date.now() - startedAt} ms (${statSync(snapshot.path).size} bytes)`,
        );
        snapshotPath = snapshot.path;
        const image = openImage(snapshot.path);
        try {
          expect(image.format).toBe('elf');
          expect(image.totalBytes).toBeGreaterThanOrEqual(500 << 20);
          expect(image.cpus.length).toBe(2);
        } finally {
          image.close();
        }
        await snapshot.release();
        expect(existsSync(snapshot.path)).toBe(false);
        break; // leaving the loop closes the source and its QMP connection
      }
      expect(snapshotPath).toBeDefined();
      expect(problems).toEqual([]);

      // QEMU serves one QMP client at a time: the source's connection is closed, a new one gets in.
      const client = await QmpClient.connect(guest.qmpSocket);
      try {
        expect((await client.queryStatus()).running).toBe(true);
        await client.stop();
        expect(await client.queryStatus()).toMatchObject({ running: false, status: 'paused' });
      } finally {
        await client.close();
      }

      // A paused guest dumps too (and stays paused); then QEMU dies while the source waits for its next interval.
      const watched = new QmpSource(guest.qmpSocket, { tempDir: dir, intervalMs: 60_000 });
      const iterator = watched[Symbol.asyncIterator]();
      const paused = await iterator.next();
      expect(paused.done).toBe(false);
      await (paused.value as Snapshot).release();
      expect((await watched.client!.queryStatus()).status).toBe('paused');
      setTimeout(() => void guest!.kill(), 200);
      const gone = await iterator.next().catch((caught: unknown) => caught);
      expect(gone).toBeInstanceOf(GuestGoneError);
      console.log(`live guest: after kill, the source ended with: ${(gone as Error).message}`);
    },
  );
});
