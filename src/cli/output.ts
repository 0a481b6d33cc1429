import type { Writable } from 'node:stream';

/** Thrown when the reader of our stdout went away (`vmscope kallsyms DUMP | head`): the command ends quietly. */
export class OutputClosedError extends Error {
  constructor() {
    super('standard output was closed by its reader');
  }
}

const isClosedPipe = (error: unknown) =>
  (error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' ||
  (error as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_DESTROYED';

/**
 * Writes the chunks in order, waiting for the stream to drain when its buffer is full, so
 * millions of rows never pile up in memory behind a slow reader. A reader that closes the pipe
 * ends the writing with OutputClosedError (what `ls | head` does: no error, exit 0).
 */
export async function writeChunks(stream: Writable, chunks: Iterable<string>): Promise<void> {
  let closed = false;
  let wake: (() => void) | undefined;
  const onError = (error: unknown) => {
    if (!isClosedPipe(error)) throw error;
    closed = true;
    wake?.();
  };
  stream.on('error', onError);
  try {
    for (const chunk of chunks) {
      if (closed || stream.destroyed) throw new OutputClosedError();
      if (!stream.write(chunk)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          stream.once('drain', resolve);
        });
        stream.removeListener('drain', wake!);
        wake = undefined;
      }
    }
    if (closed) throw new OutputClosedError();
  } finally {
    stream.removeListener('error', onError);
  }
}
