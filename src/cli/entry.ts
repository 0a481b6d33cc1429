import { recordPhase, reportPhases } from '../util/phases.js';
import { main } from './main.js';

// Everything before this line is Node's start and the bundle's load.
recordPhase('start', 0, performance.now());

// A reader that closes our output (`vmscope kallsyms DUMP | head -1`) ends the command quietly
// with exit 0, as `ls | head` does: whichever writer hit the closed pipe (a table, --help, a
// warning), the answer it was writing is no longer wanted.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    reportPhases();
  },
  (error: unknown) => {
    process.stderr.write(
      `vmscope: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 70;
  },
);
