/**
 * Multi-GPU training on one machine: one worker process per GPU, started with the torchrun variables (RANK,
 * WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) as the official DDP launcher does. The engine in
 * each worker joins the c10d process group; rank 0's events reach the caller; stop() reaches every rank; a rank that
 * fails or dies ends the others (the engine notices within seconds, and the launcher kills what is left after a grace
 * period); workers exit when this process goes away (their IPC channel closes).
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { NativeEvent } from './addon.js';

/** Messages between the launcher and a worker (ts/ddp_worker.ts). */
export type ToWorker = { type: 'start'; args: object } | { type: 'stop' };
export type FromWorker = { type: 'event'; event: NativeEvent };

/** Seconds the other ranks get to end on their own after one failed, before they are killed. */
const GRACE_S = 60;

/**
 * The CUDA indices of a multi-GPU device string ('0,1', 'cuda:0,1'), or null for one device. Inside a rank (WORLD_SIZE
 * already set, as under torchrun) there is nothing to launch: the engine picks LOCAL_RANK's entry itself.
 */
export function gpusToLaunch(device: unknown, env: NodeJS.ProcessEnv = process.env): string[] | null {
  if (typeof device !== 'string' || Number(env.WORLD_SIZE ?? 1) > 1) return null;
  const ids = device.replace(/\s+/g, '').replace(/^cuda:/i, '').split(',');
  return ids.length > 1 && ids.every((i) => /^\d+$/.test(i)) ? ids : null;
}

/** A TCP port free on this machine now (the kernel's pick). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Starts `ranks` workers running the engine's training with `args` (the same on every rank: the engine takes its
 * share of `device` from LOCAL_RANK), and reports as one run through `onEvent`: rank 0's events, the other ranks'
 * warnings (prefixed with the rank), and one final event once every worker has exited.
 */
export function launchRanks(ranks: number, args: object, onEvent: (e: NativeEvent) => void): { stop(): void } {
  const children: ChildProcess[] = [];
  const finals = new Map<number, NativeEvent>();
  const exits = new Map<number, string>();
  let stopped = false;
  let ended = false;
  let grace: NodeJS.Timeout | undefined;
  let firstFailure: string | undefined;

  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  const onExit = () => killAll();
  process.once('exit', onExit);

  const finish = () => {
    if (ended || exits.size < ranks) return;
    ended = true;
    clearTimeout(grace);
    process.removeListener('exit', onExit);
    const main = finals.get(0);
    const failures: string[] = [];
    for (let r = 0; r < ranks; ++r) {
      const f = finals.get(r);
      if (f?.error) failures.push(`rank ${r}: ${f.error}`);
      else if (!f || exits.get(r) !== 'exited with code 0') failures.push(`rank ${r} ${exits.get(r)}`);
    }
    if (!failures.length && main && !main.error) onEvent(main);
    else {
      const lead = firstFailure ? `${firstFailure}. ` : '';
      onEvent({ type: 'final', num: {}, str: {}, error: `distributed training failed (${ranks} ranks): ${lead}${failures.join('; ')}` });
    }
  };

  const failed = (why: string) => {
    if (!firstFailure) firstFailure = why;
    if (!grace) grace = setTimeout(killAll, GRACE_S * 1000);
  };

  void (async () => {
    let port: number;
    try {
      port = Number(process.env.MASTER_PORT) || (await freePort());
    } catch (err) {
      ended = true;
      process.removeListener('exit', onExit);
      onEvent({ type: 'final', num: {}, str: {}, error: `distributed training: no free port for the rendezvous: ${String(err)}` });
      return;
    }
    const worker = fileURLToPath(new URL('./ddp_worker.js', import.meta.url));
    for (let r = 0; r < ranks; ++r) {
      const env = {
        ...process.env,
        RANK: String(r),
        WORLD_SIZE: String(ranks),
        LOCAL_RANK: String(r),
        LOCAL_WORLD_SIZE: String(ranks),
        MASTER_ADDR: process.env.MASTER_ADDR || '127.0.0.1',
        MASTER_PORT: String(port),
      };
      const child = fork(worker, [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      child.on('message', (m: FromWorker) => {
        if (m?.type !== 'event') return;
        const e = m.event;
        if (e.type === 'final') {
          finals.set(r, e);
          if (e.error) failed(`rank ${r} failed first: ${e.error}`);
        } else if (r === 0) onEvent(e);
        else if (e.type === 'log') onEvent({ ...e, str: { ...e.str, text: `rank ${r}: ${e.str.text ?? ''}` } });
      });
      child.on('error', (err) => failed(`rank ${r} could not start: ${err.message}`));
      child.on('exit', (code, signal) => {
        exits.set(r, describeExit(code, signal));
        if (code !== 0 && !finals.get(r)) failed(`rank ${r} ${describeExit(code, signal)}`);
        finish();
      });
      child.send({ type: 'start', args } satisfies ToWorker);
      if (stopped) child.send({ type: 'stop' } satisfies ToWorker);
    }
  })();

  return {
    stop() {
      stopped = true;
      for (const c of children) if (c.connected) c.send({ type: 'stop' } satisfies ToWorker);
    },
  };
}
