import { connect, type Socket } from 'node:net';

/**
 * A minimal QEMU Machine Protocol client over a unix socket: just what the monitor needs
 * (pause, resume, status, dump), but robust where a watch loop needs it: every call has a
 * timeout, replies are matched by id (a reply that arrives after its timeout is dropped, never
 * handed to the next caller), and a socket that closes fails every call with QmpClosedError.
 */

/** Base of every QMP failure; `instanceof QmpError` catches them all. */
export class QmpError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No QEMU answers at the socket path (not started, already gone, wrong path). */
export class QmpConnectError extends QmpError {
  constructor(
    readonly socketPath: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot connect to QMP at ${socketPath}: ${reason}`, options);
  }
}

/** The connection closed: QEMU exited (the guest shut down or crashed) or close() was called. */
export class QmpClosedError extends QmpError {
  constructor(
    readonly socketPath: string,
    readonly command: string | undefined,
    reason: string,
  ) {
    super(`QMP connection to ${socketPath} closed${command ? ` during '${command}'` : ''}: ${reason}`);
  }
}

/** QEMU did not answer in time. The connection stays usable: a late reply is discarded. */
export class QmpTimeoutError extends QmpError {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP '${command}' got no reply within ${timeoutMs} ms`);
  }
}

/** QEMU answered with an error object. */
export class QmpCommandError extends QmpError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`QMP '${command}' failed: ${errorClass}: ${description}`);
  }
}

/** QEMU said something that is not QMP (bad JSON, no greeting). */
export class QmpProtocolError extends QmpError {}

/** A dump QEMU started but reported as failed (disk full, path not writable by QEMU...). */
export class QmpDumpError extends QmpError {}

export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp?: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  readonly version: { qemu: { major: number; minor: number; micro: number }; package: string };
  readonly capabilities: readonly string[];
}

export interface QmpConnectOptions {
  /** Connecting, greeting and capability negotiation together. Default 10 000 ms. */
  timeoutMs?: number;
  /** Default timeout of execute(). Default 30 000 ms. */
  commandTimeoutMs?: number;
}

export interface DumpOptions {
  /** Give up when the dump has not finished after this long. Default 10 min. */
  timeoutMs?: number;
  /** Give up when QEMU reports no progress for this long. Default 60 000 ms. */
  stallTimeoutMs?: number;
  /** How often query-dump is asked while a detached dump runs. Default 200 ms. */
  pollMs?: number;
}

/** The status QEMU's `query-status` returns. */
export interface QmpStatus {
  readonly running: boolean;
  readonly status: string;
}

interface PendingCall {
  readonly command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

const RECENT_EVENTS_KEPT = 100;

export class QmpClient {
  readonly greeting: QmpGreeting;
  /** The last events QEMU sent (STOP, RESUME, DUMP_COMPLETED...), oldest first. */
  readonly recentEvents: QmpEvent[] = [];
  private readonly pending = new Map<string, PendingCall>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private readonly commandTimeoutMs: number;
  private readonly closedController = new AbortController();
  private nextId = 1;
  private closedBecause: string | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
    greeting: QmpGreeting,
    commandTimeoutMs: number,
  ) {
    this.greeting = greeting;
    this.commandTimeoutMs = commandTimeoutMs;
  }

  /** Connect, read the greeting and leave capability-negotiation mode, all within `timeoutMs`. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = connect(socketPath);
    const lines = new LineReader(socket);
    let client: QmpClient | undefined;
    const timer = setTimeout(
      () => socket.destroy(new QmpConnectError(socketPath, `no greeting within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
        socket.once('error', (error) =>
          reject(error instanceof QmpError ? error : new QmpConnectError(socketPath, error.message, { cause: error })),
        );
        socket.once('close', () => reject(new QmpConnectError(socketPath, 'closed before the greeting')));
        lines.onMessage = (message) => {
          const greeting = (message as { QMP?: QmpGreeting }).QMP;
          if (greeting) resolve(greeting);
          else
            reject(
              new QmpProtocolError(
                `expected the QMP greeting from ${socketPath}, got ${JSON.stringify(message).slice(0, 200)}`,
              ),
            );
        };
        lines.onGarbage = (line) => reject(new QmpProtocolError(`not JSON from ${socketPath}: ${line.slice(0, 200)}`));
      });
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      client = new QmpClient(socket, socketPath, greeting, options.commandTimeoutMs ?? 30_000);
      client.attach(lines);
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return client;
    } catch (error) {
      socket.destroy();
      throw error instanceof QmpClosedError ? new QmpConnectError(socketPath, error.message, { cause: error }) : error;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.closedBecause !== undefined;
  }

  /** Why the connection closed, once it has. */
  get closeReason(): string | undefined {
    return this.closedBecause;
  }

  /** Aborts when the connection closes, so a waiter notices the guest going away without sending anything. */
  get closedSignal(): AbortSignal {
    return this.closedController.signal;
  }

  /** Run one command; resolves with its `return` value. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedBecause !== undefined)
      return Promise.reject(new QmpClosedError(this.socketPath, command, this.closedBecause));
    const id = `vmscope-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** Listen to events; returns the function that stops listening. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  async queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status');
  }

  /** A human monitor (HMP) command's text output, e.g. `info mtree -f`: what QMP has no structured form of. */
  async humanMonitorCommand(commandLine: string): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine });
  }

  async stop(): Promise<void> {
    await this.execute('stop');
  }

  async cont(): Promise<void> {
    await this.execute('cont');
  }

  /**
   * Write the guest's physical memory as an ELF core (`paging: false`: what vmscope reads) to
   * `path`, which QEMU itself opens, so it must be writable by the QEMU process. QEMU pauses the
   * guest for the dump and resumes it afterwards if it was running.
   *
   * Asked with `detach: true` (QEMU >= 2.6), so the monitor keeps answering and progress can be
   * watched with `query-dump`; a synchronous dump (a QEMU that refuses `detach`) blocks the
   * monitor until done, so its reply gets the whole `timeoutMs`. Both end the same way: polling
   * `query-dump` until it says completed or failed.
   */
  async dumpGuestMemory(path: string, options: DumpOptions = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 600_000;
    const stallTimeoutMs = options.stallTimeoutMs ?? 60_000;
    const pollMs = options.pollMs ?? 200;
    const startedAt = Date.now();
    let failure: string | undefined;
    const stopListening = this.onEvent((event) => {
      const result = event.data?.['result'] as { status?: string } | undefined;
      if (event.event === 'DUMP_COMPLETED' && result?.status === 'failed') {
        const reason = event.data?.['error'];
        failure =
          typeof reason === 'string' ? reason : reason === undefined ? 'no reason given' : JSON.stringify(reason);
      }
    });
    try {
      const dumpArgs = { paging: false, protocol: `file:${path}` };
      try {
        await this.execute('dump-guest-memory', { ...dumpArgs, detach: true });
      } catch (error) {
        if (!(error instanceof QmpCommandError && /detach/i.test(error.description))) throw error;
        await this.execute('dump-guest-memory', dumpArgs, { timeoutMs });
      }
      let lastCompleted = -1;
      let lastProgressAt = Date.now();
      for (;;) {
        const progress = await this.execute<{ status: string; completed: number; total: number }>('query-dump');
        if (progress.status === 'completed') return;
        if (progress.status === 'failed')
          throw new QmpDumpError(`QEMU could not dump guest memory to ${path}: ${failure ?? 'query-dump says failed'}`);
        if (progress.status === 'none')
          throw new QmpDumpError(`QEMU reports no dump after dump-guest-memory to ${path}`);
        const now = Date.now();
        if (progress.completed !== lastCompleted) {
          lastCompleted = progress.completed;
          lastProgressAt = now;
        }
        if (now - lastProgressAt > stallTimeoutMs)
          throw new QmpTimeoutError(
            `dump-guest-memory (stalled at ${progress.completed} of ${progress.total} bytes)`,
            stallTimeoutMs,
          );
        if (now - startedAt > timeoutMs) throw new QmpTimeoutError('dump-guest-memory', timeoutMs);
        await new Promise((resolve) => setTimeout(resolve, pollMs));
      }
    } finally {
      stopListening();
    }
  }

  /** Close the connection; calls still waiting fail with QmpClosedError. */
  async close(): Promise<void> {
    if (this.closedBecause !== undefined) return;
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end();
    // end() waits for QEMU to close its side; a hung QEMU must not hang us.
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    this.markClosed('closed by the client');
    await closed;
    clearTimeout(timer);
  }

  private attach(lines: LineReader): void {
    lines.onMessage = (message) => this.dispatch(message);
    lines.onGarbage = (line) => {
      this.markClosed(`QEMU sent something that is not JSON: ${line.slice(0, 200)}`);
      this.socket.destroy();
    };
    this.socket.on('error', (error) => this.markClosed(error.message));
    this.socket.on('close', () => this.markClosed('QEMU closed the socket (it exited, or dropped the connection)'));
  }

  private dispatch(message: unknown): void {
    const reply = message as {
      id?: unknown;
      return?: unknown;
      error?: { class?: string; desc?: string };
      event?: string;
    };
    if (typeof reply.event === 'string') {
      this.recentEvents.push(reply as QmpEvent);
      if (this.recentEvents.length > RECENT_EVENTS_KEPT) this.recentEvents.shift();
      for (const listener of this.eventListeners) listener(reply as QmpEvent);
      return;
    }
    // Replies without a known id (late after a timeout, or not ours) are dropped on purpose.
    const call = typeof reply.id === 'string' ? this.pending.get(reply.id) : undefined;
    if (!call) return;
    this.pending.delete(reply.id as string);
    if (reply.error)
      call.reject(
        new QmpCommandError(call.command, reply.error.class ?? 'GenericError', reply.error.desc ?? 'no description'),
      );
    else call.resolve(reply.return);
  }

  private markClosed(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    for (const call of this.pending.values()) call.reject(new QmpClosedError(this.socketPath, call.command, reason));
    this.pending.clear();
    this.closedController.abort();
  }
}

/** QMP messages are JSON objects, one per line (QEMU ends them with CRLF). */
class LineReader {
  onMessage: (message: unknown) => void = () => undefined;
  onGarbage: (line: string) => void = () => undefined;
  private buffered = '';

  constructor(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      let newline: number;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, newline).trim();
        this.buffered = this.buffered.slice(newline + 1);
        if (line === '') continue;
        let message: unknown;
        try {
          message = JSON.parse(line);
        } catch {
          this.onGarbage(line);
          continue;
        }
        this.onMessage(message);
      }
    });
  }
}
