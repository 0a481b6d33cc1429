import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/** QMP without QEMU, for tests of what a client does with QEMU's answers (and its silences). */
const GREETING = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'fake' }, capabilities: ['oob'] },
};

export interface Command {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

/** A scripted QMP server on a temp unix socket: `answer` decides what each command gets. */
export class FakeQmp {
  readonly socketPath: string;
  readonly received: Command[] = [];
  private readonly server: Server;
  private readonly clients = new Set<Socket>();

  constructor(dir: string, answer: (command: Command, socket: Socket, send: (message: unknown) => void) => void) {
    this.socketPath = join(dir, `fake-${Math.random().toString(36).slice(2)}.sock`);
    this.server = createServer((socket) => {
      this.clients.add(socket);
      socket.on('close', () => this.clients.delete(socket));
      socket.on('error', () => undefined);
      const send = (message: unknown): void => void socket.write(JSON.stringify(message) + '\r\n');
      send(GREETING);
      let buffered = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const command = JSON.parse(buffered.slice(0, newline)) as Command;
          buffered = buffered.slice(newline + 1);
          this.received.push(command);
          if (command.execute === 'qmp_capabilities') send({ return: {}, id: command.id });
          else answer(command, socket, send);
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socketPath, resolve));
  }

  async close(): Promise<void> {
    for (const socket of this.clients) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
