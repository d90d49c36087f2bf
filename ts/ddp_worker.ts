/**
 * One rank of a launched multi-GPU run (ts/launch.ts): runs the engine's training with the torchrun variables the
 * launcher set, sends its events back over IPC and stops when asked. Ctrl-C reaches the whole process group: the
 * launcher decides (it stops every rank together), so the rank ignores SIGINT; it exits when the launcher goes away.
 */
import { native } from './native.js';
import type { NativeEvent } from './addon.js';
import type { FromWorker, ToWorker } from './launch.js';

let handle: { stop(): void } | null = null;
let stopAsked = false;

/** Sends the final event, then exits with its outcome (the engine thread has ended). */
function end(event: NativeEvent): void {
  const code = event.error ? 1 : 0;
  process.removeAllListeners('disconnect');
  if (process.send) process.send({ type: 'event', event } satisfies FromWorker, () => process.exit(code));
  else process.exit(code);
}

process.on('SIGINT', () => undefined);
process.on('disconnect', () => process.exit(1));
process.on('message', (m: ToWorker) => {
  if (m.type === 'stop') {
    stopAsked = true;
    handle?.stop();
    return;
  }
  if (m.type !== 'start' || handle) return;
  try {
    handle = native().startTraining(m.args, (event) => {
      if (event.type === 'final') end(event);
      else process.send?.({ type: 'event', event } satisfies FromWorker);
    });
    if (stopAsked) handle.stop();
  } catch (err) {
    end({ type: 'final', num: {}, str: {}, error: err instanceof Error ? err.message : String(err) });
  }
});
