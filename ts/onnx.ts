/**
 * The ONNX Runtime backend of predict(): which backend runs (the auto rule), the optional onnxruntime-node
 * package, sessions, and the cached export of a checkpoint for ONNX Runtime.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { NativeOnnxRunner, NativeOrtSession } from './addon.js';
import { Yolo26Error } from './errors.js';
import { nativeExportArgs } from './export.js';
import { fileIdentity } from './files.js';
import { native } from './native.js';
import { exportSchema, parseOptions } from './options.js';
import { version } from './version.js';

import type { Backend, OrtRunnerKind } from './results.js';
type Ort = typeof import('onnxruntime-node');

/**
 * The documented way to add onnxruntime-node. Its install script downloads the CUDA/TensorRT providers from NuGet on
 * Linux x64, which fails offline; ONNXRUNTIME_NODE_INSTALL=skip stops that. The environment variable, unlike the
 * npm config form (--onnxruntime-node-install=skip or .npmrc), draws no "unknown config" warning from npm 11.
 */
export const ORT_INSTALL_COMMAND = 'ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30';

/** The advice printed where onnxruntime-node is missing or does not load. */
export const ORT_INSTALL_HINT =
  `install it with \`${ORT_INSTALL_COMMAND}\` (CPU; the variable stops its install script downloading the ` +
  "CUDA/TensorRT providers), or pass backend: 'torch'";

/** Whether onnxruntime-node can be found, without loading it. */
export function ortInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

let ortModule: Promise<Ort> | null = null;
/** Loads onnxruntime-node once; `caller` names the API in the error when it is missing. */
export function loadOrt(caller = 'predict()'): Promise<Ort> {
  ortModule ??= import('onnxruntime-node').then(
    (m) => ((m as { default?: Ort }).default ?? m) as Ort,
    (e: unknown) => {
      ortModule = null;
      throw new Yolo26Error(
        `${caller}: the ONNX Runtime backend needs the optional package onnxruntime-node, which could not be loaded ` +
          `(${e instanceof Error ? e.message.split('\n')[0] : String(e)}): ${ORT_INSTALL_HINT}`,
        'YOLO26_NO_ONNXRUNTIME',
      );
    },
  );
  return ortModule;
}

export interface BackendChoice {
  backend: Backend;
  /** Why: the rule that picked it (shown by the benchmark and in stream.backendReason). */
  reason: string;
}

/**
 * The auto rule. `.onnx` files run on ONNX Runtime (libtorch cannot read them). A `.pt` checkpoint on the CPU runs
 * on ONNX Runtime when onnxruntime-node is installed (exported once to a cached ONNX file: about 2x faster per image
 * than libtorch's CPU forward, see docs/benchmarks.md), unless half is asked for; everything else (CUDA devices,
 * model YAMLs, whose weights are fresh random ones on every load, half) runs on libtorch.
 * `backend: 'torch' | 'onnxruntime'` overrides the rule.
 */
export function chooseBackend(model: string, device: string, half: boolean, requested: 'auto' | Backend): BackendChoice {
  const isOnnx = /\.onnx$/i.test(model);
  if (requested === 'torch') {
    if (isOnnx) throw new Yolo26Error(`predict(): backend 'torch' cannot run ${model}: pass the .pt checkpoint, or backend 'onnxruntime'`, 'YOLO26_BAD_OPTION');
    return { backend: 'torch', reason: "backend: 'torch' was asked for" };
  }
  if (requested === 'onnxruntime') return { backend: 'onnxruntime', reason: "backend: 'onnxruntime' was asked for" };
  if (isOnnx) return { backend: 'onnxruntime', reason: 'an .onnx model runs on ONNX Runtime' };
  if (!/\.pt$/i.test(model)) return { backend: 'torch', reason: 'a model YAML (fresh weights on each load) runs on libtorch' };
  const dev = device === '' ? 'cpu' : native().resolveDevice(device);
  if (dev !== 'cpu') return { backend: 'torch', reason: `device ${dev} runs on libtorch` };
  if (half) return { backend: 'torch', reason: 'half on the CPU runs on libtorch' };
  if (!ortInstalled()) return { backend: 'torch', reason: 'onnxruntime-node is not installed' };
  return { backend: 'onnxruntime', reason: 'a .pt checkpoint on the CPU runs faster on ONNX Runtime (cached ONNX export)' };
}

/** Where exported checkpoints are cached: $YOLO26_CACHE_DIR, else $XDG_CACHE_HOME/yolo26-native/onnx, else ~/.cache/... */
export function onnxCacheDir(): string {
  if (process.env.YOLO26_CACHE_DIR) return process.env.YOLO26_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'yolo26-native', 'onnx');
}

export interface CachedExport {
  path: string;
  /** false when this call wrote the file. */
  cached: boolean;
  ms: number;
}

/**
 * The ONNX file of a checkpoint for ONNX Runtime: a dynamic-shape export (so letterboxing is the same rect
 * padding as the libtorch path and both give the same detections), keyed by the checkpoint's content, the
 * export settings and this package's version, written under a temporary name and renamed into place so that
 * concurrent processes never read a partial file.
 */
export async function exportForOrt(
  checkpoint: string,
  opts: { end2end: boolean | null; half: boolean; maxDet: number },
  checkpointEnd2end: () => Promise<boolean>,
): Promise<CachedExport> {
  const t0 = performance.now();
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(checkpoint);
  } catch (e) {
    throw new Yolo26Error(`predict(): cannot read the model ${checkpoint}: ${(e as Error).message}`, 'YOLO26_BAD_MODEL');
  }
  const key = createHash('sha256')
    .update(bytes)
    .update(JSON.stringify({ v: version, dynamic: true, ...opts }))
    .digest('hex')
    .slice(0, 20);
  const dir = onnxCacheDir();
  const file = path.join(dir, `${path.basename(checkpoint).replace(/\.pt$/i, '')}-${key}.onnx`);
  if (fs.existsSync(file)) return { path: file, cached: true, ms: performance.now() - t0 };
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp.onnx`;
  try {
    // end2end null: as the checkpoint has it (the key says 'null', so the cache hit needs no model load)
    const end2end = opts.end2end ?? (await checkpointEnd2end());
    const cfg = parseOptions('predict', exportSchema, { model: checkpoint, dynamic: true, half: opts.half, max_det: opts.maxDet });
    await native().exportOnnx(nativeExportArgs(cfg, tmp, end2end));
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  pruneCache(dir, file);
  return { path: file, cached: false, ms: performance.now() - t0 };
}

/** Keeps the cache to the most recently written CACHE_FILES exports (each training run's checkpoint adds one). */
const CACHE_FILES = 16;
function pruneCache(dir: string, keep: string): void {
  try {
    const files = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.onnx') && !f.endsWith('.tmp.onnx'))
      .map((f) => path.join(dir, f))
      .filter((f) => f !== keep)
      .map((f) => ({ f, t: fs.statSync(f).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { f } of files.slice(CACHE_FILES - 1)) fs.rmSync(f, { force: true });
  } catch {
    // another process pruned at the same time: nothing to do
  }
}

/** Execution providers for a predict device: the CPU, or CUDA (needs the GPU build of onnxruntime-node). */
function providers(device: string): Array<string | { name: string; deviceId?: number }> {
  if (device === '' || device === 'cpu') return ['cpu'];
  const m = /^(?:cuda:?)?(\d+)$/.exec(device) ?? (device === 'cuda' ? ['', '0'] : null);
  if (!m) throw new Yolo26Error(`predict(): device '${device}' is not one ONNX Runtime runs on here: use 'cpu' or a CUDA index`, 'YOLO26_BAD_OPTION');
  return [{ name: 'cuda', deviceId: Number(m[1]) }, 'cpu'];
}

/**
 * The parent's Node options minus those that only make sense for the main script: a worker started under
 * `node --input-type=module -e ...` inherits --input-type and fails to load its own file.
 */
export function workerExecArgv(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--input-type' || a === '-e' || a === '--eval' || a === '-p' || a === '--print') i++;  // and its value
    else if (!/^--(input-type|eval|print)=/.test(a) && a !== '-i' && a !== '--interactive') out.push(a);
  }
  return out;
}

/**
 * The ONNX Runtime shared library the native runner loads: $YOLO26_ORT_LIB, else the one onnxruntime-node ships
 * (bin/napi-v<N>/<platform>/<arch>/libonnxruntime.so.*); null when there is none.
 */
export function ortLibrary(): string | null {
  if (process.env.YOLO26_ORT_LIB) return process.env.YOLO26_ORT_LIB;
  if (process.platform === 'win32') return null;  // the native runner loads it with dlopen
  let main: string;
  try {
    main = createRequire(import.meta.url).resolve('onnxruntime-node');
  } catch {
    return null;
  }
  const pkg = path.resolve(path.dirname(main), '..');  // <pkg>/dist/index.js
  const name = process.platform === 'darwin' ? /^libonnxruntime(\.\d+)*\.dylib$/ : /^libonnxruntime\.so(\.\d+)*$/;
  try {
    const napi = fs.readdirSync(path.join(pkg, 'bin')).filter((d) => /^napi-v\d+$/.test(d));
    napi.sort((a, b) => Number(b.slice(6)) - Number(a.slice(6)));
    for (const v of napi) {
      const dir = path.join(pkg, 'bin', v, process.platform, process.arch);
      const lib = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => name.test(f)) : undefined;
      if (lib) return path.join(dir, lib);
    }
  } catch {
    // a package without bin/: no library to load
  }
  return null;
}

/**
 * Which runner predict() uses for ONNX Runtime on the CPU: 'native' runs the C API inside the native pipeline (the
 * forward overlaps decoding and letterboxing on native threads, no copy per image); 'worker' runs onnxruntime-node
 * in a worker thread (CUDA devices, and the fallback when the library cannot be loaded natively).
 * YOLO26_ORT_RUNNER=worker|native forces one (native then fails instead of falling back).
 */
function wantedRunner(device: string): { kind: OrtRunnerKind; forced: boolean } {
  const env = process.env.YOLO26_ORT_RUNNER;
  if (env === 'worker' || env === 'native') return { kind: env, forced: true };
  if (env) throw new Yolo26Error(`YOLO26_ORT_RUNNER='${env}' is not a runner: use 'native' or 'worker', or unset it`, 'YOLO26_BAD_OPTION');
  return { kind: device === '' || device === 'cpu' ? 'native' : 'worker', forced: false };
}

/** Whether predict() can skip loading onnxruntime-node's JavaScript (the native runner needs only its library). */
export function nativeOrtPlanned(device: string): boolean {
  const w = wantedRunner(device);
  return w.kind === 'native' && ortLibrary() !== null;
}

/** An ONNX Runtime session for predict(): native (ortOpen) or in a worker thread. */
export type OrtSession = NativeSession | WorkerSession;

/** A session of ONNX Runtime's C API, run by the native pipeline itself. */
export interface NativeSession {
  readonly kind: 'native';
  readonly handle: NativeOrtSession;
  readonly library: string;
  release(): void;
}

/** An ONNX Runtime session living in a worker thread (ort_worker.ts): run() leaves the event loop free. */
export interface WorkerSession {
  readonly kind: 'worker';
  /** Why the native runner was not used, when it was wanted (a warning for the stream). */
  readonly fallback?: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(type: 'float32' | 'float16', data: Float32Array | Uint16Array, dims: number[]): Promise<OrtOutput[]>;
  release(): void;
}
type OrtOutput = { name: string; data: unknown; dims: readonly number[]; type: string };

function openWorkerSession(file: string, options: import('onnxruntime-node').InferenceSession.SessionOptions): Promise<WorkerSession> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./ort_worker.js', import.meta.url), { workerData: { file, options }, execArgv: workerExecArgv() });
    const pending = new Map<number, { ok: (o: OrtOutput[]) => void; fail: (e: Error) => void }>();
    let next = 0;
    let ready = false;
    const failAll = (e: Error) => {
      for (const p of pending.values()) p.fail(e);
      pending.clear();
    };
    worker.on('message', (m: { kind: string; id?: number; message?: string; outputs?: OrtOutput[]; inputNames?: string[]; outputNames?: string[] }) => {
      if (m.kind === 'ready') {
        ready = true;
        // An idle cached session must not keep the process alive. Only now: Node ignores an unref() made before the
        // worker is online, which kept every process whose predict ended before its first inference from exiting.
        worker.unref();
        resolve({
          kind: 'worker',
          inputNames: m.inputNames!,
          outputNames: m.outputNames!,
          run(type, data, dims) {
            return new Promise((ok, fail) => {
              const id = next++;
              pending.set(id, { ok, fail });
              if (pending.size === 1) worker.ref();  // busy: keep the process alive until the answer
              worker.postMessage({ id, type, data, dims });
            });
          },
          release: () => void worker.terminate(),
        });
      } else if (m.kind === 'init-error') {
        reject(new Error(m.message));
        void worker.terminate();
      } else {
        const p = pending.get(m.id!);
        pending.delete(m.id!);
        if (pending.size === 0) worker.unref();
        if (m.kind === 'result') p?.ok(m.outputs!);
        else p?.fail(new Error(m.message));
      }
    });
    worker.on('error', (e) => (ready ? failAll(e) : reject(e)));
    worker.on('exit', () => failAll(new Error('the ONNX Runtime worker thread ended')));
  });
}

const sessions = new Map<string, Promise<OrtSession>>();
const MAX_SESSIONS = 4;

/**
 * An ONNX Runtime session for a file, reused across predict() calls while the file is unchanged: the native runner
 * when it is wanted and its library loads, else a worker session (carrying why the native one was not used).
 */
export async function ortSession(file: string, device: string, threads: number): Promise<OrtSession> {
  const want = wantedRunner(device);
  const key = JSON.stringify([fileIdentity(file), device, threads, want, process.env.YOLO26_ORT_LIB ?? '']);
  let s = sessions.get(key);
  if (!s) {
    s = (want.kind === 'native' ? openNative(file, threads, want.forced) : openWorker(file, device, threads)).catch((e: unknown) => {
      sessions.delete(key);
      throw e;
    });
    sessions.set(key, s);
    while (sessions.size > MAX_SESSIONS) {
      const [oldKey, old] = sessions.entries().next().value as [string, Promise<OrtSession>];
      sessions.delete(oldKey);
      old.then((x) => x.release(), () => undefined);
    }
  }
  return s;
}

async function openNative(file: string, threads: number, forced: boolean): Promise<OrtSession> {
  const library = ortLibrary();
  let why: string;
  if (library === null) {
    why = `no ONNX Runtime library to load natively (onnxruntime-node not found and YOLO26_ORT_LIB unset): ${ORT_INSTALL_HINT}`;
  } else {
    try {
      const handle = await native().ortOpen(library, file, threads);
      return { kind: 'native', handle, library, release: () => handle.release() };
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // Only a library that does not load is a reason for the worker; a file it rejects would fail there too.
      if (!/ONNX Runtime library/.test(msg)) throw new Yolo26Error(`predict(): ONNX Runtime could not open ${file}: ${msg}`, 'YOLO26_BAD_MODEL');
      why = msg;
    }
  }
  if (forced) throw new Yolo26Error(`predict(): YOLO26_ORT_RUNNER=native, but ${why}`, 'YOLO26_NO_ONNXRUNTIME');
  const w = await openWorker(file, '', threads);
  return { ...w, fallback: `predict(): running ONNX Runtime in a worker thread (slower): ${why}` };
}

async function openWorker(file: string, device: string, threads: number): Promise<WorkerSession> {
  await loadOrt();  // a clear error here when the package is missing
  const options: import('onnxruntime-node').InferenceSession.SessionOptions = {
    executionProviders: providers(device) as never,
    graphOptimizationLevel: 'all',
    // No busy-waiting between parallel sections: on a loaded machine the spinning threads doubled the CPU time
    // per image (docs/benchmarks.md).
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
  if (threads > 0) options.intraOpNumThreads = threads;
  return openWorkerSession(file, options).catch((e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    const gpu = device !== '' && device !== 'cpu'
      ? ' For CUDA, install the GPU providers: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node (needs CUDA 12 and cuDNN 9).'
      : '';
    throw new Yolo26Error(`predict(): ONNX Runtime could not open ${file}: ${msg}.${gpu}`, 'YOLO26_BAD_MODEL');
  });
}

/** The function the native pipeline calls for each batch (see native/addon/ort_forward.h). */
export function ortRunner(session: WorkerSession): Extract<NativeOnnxRunner, { run: unknown }>['run'] {
  return (data, dims, type, done) => {
    session.run(type, data, dims).then(
      (outputs) => done(null, outputs),
      (e: unknown) => done(e),
    );
  };
}
