/** train() and val(): long native runs with live events, as an EventEmitter that is also a promise. */
import { EventEmitter } from 'node:events';
import type { NativeEvent, NativeRunStarter } from './addon.js';
import { OptionError, Yolo26Error } from './errors.js';
import { native } from './native.js';
import { notAFile } from './files.js';
import { Logger, type LogEvent } from './log.js';
import { gpusToLaunch, launchRanks } from './launch.js';
/** `log`: a line the trainer or validator prints (headers, validation tables, notices) or a warning. */
export type { LogEvent };
import { checkImgsz, parseOptions, trainSchema, valSchema, type TrainOptions, type ValOptions } from './options.js';

export interface BatchEvent {
  epoch: number;
  epochs: number;
  iteration: number;
  batches: number;
  losses: Record<string, number>;
  lr: number;
  imagesPerSecond: number;
  dataWaitFraction: number;
  instances?: number;
  size?: number;
  gpuMemGb?: number;
  gpuUtil?: number;
}

export interface EpochEndEvent {
  epoch: number;
  epochs: number;
  losses: Record<string, number>;
  metrics: Record<string, number>;
  fitness?: number;
  lr: Record<string, number>;
  epochTime?: number;
  imagesPerSecond?: number;
  dataWaitFraction?: number;
  bestFitness?: number;
}

/** `epoch_start`: an epoch begins; `lossNames` lists the task's loss keys in the official order. */
export interface EpochStartEvent {
  epoch: number;
  epochs: number;
  batches: number;
  lossNames: string[];
}

/** `checkpoint`: a weights file was written (`kind`: 'last', 'best' or 'period'). */
export interface CheckpointEvent {
  epoch: number;
  path: string;
  kind: string;
}

/** Every event a Run emits, and its payload: what `run.on(name, listener)` accepts. */
export interface RunEvents {
  epoch_start: EpochStartEvent;
  batch: BatchEvent;
  epoch_end: EpochEndEvent;
  checkpoint: CheckpointEvent;
  log: LogEvent;
  done: RunResult;
  error: Yolo26Error;
}

export type RunEventName = keyof RunEvents;
export type RunListener<E extends RunEventName> = (event: RunEvents[E]) => void;

export interface RunResult {
  metrics: Record<string, number>;
  saveDir: string;
  best?: string;
  last?: string;
  epochsCompleted?: number;
  /** demo only: the generated data.yaml and the folder of annotated held-out images. */
  data?: string;
  predictDir?: string;
}

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Groups the engine's flat names: *_loss -> losses, metrics/* -> metrics, lr/* -> lr, the rest camelCased. */
export function shapeEvent(e: NativeEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const losses: Record<string, number> = {};
  const metrics: Record<string, number> = {};
  const lr: Record<string, number> = {};
  for (const [k, v] of Object.entries(e.num)) {
    if (k.startsWith('metrics/') || k === 'fitness') metrics[k] = v;
    if (k.startsWith('lr/')) lr[k.slice(3)] = v;
    // "<name>_loss" keys, and classify's single "loss" (train/loss, val/loss)
    else if (/(^|\/)([a-z]+_)?loss$/.test(k)) losses[k] = v;
    else if (!k.startsWith('metrics/')) out[camel(k)] = v;
  }
  for (const [k, v] of Object.entries(e.str)) out[camel(k)] = v;
  // epoch_start: the task's loss keys in official order (the engine's numbers arrive sorted by name).
  if (typeof e.str.loss_names === 'string') out.lossNames = e.str.loss_names.split(',').filter(Boolean);
  if (Object.keys(losses).length) out.losses = losses;
  if (Object.keys(metrics).length) out.metrics = metrics;
  if (Object.keys(lr).length) out.lr = e.type === 'batch' && 'pg0' in lr ? lr.pg0 : lr;
  return out;
}

/**
 * "box 1.234 pose 0.567 ..." for a progress bar: losses in `order` (epoch_start's lossNames) first, then any others
 * in their own order; "_loss" is dropped from the names.
 */
export function formatLosses(losses: Record<string, number>, order: readonly string[] = []): string {
  const keys = [...order.filter((k) => k in losses), ...Object.keys(losses).filter((k) => !order.includes(k))];
  return keys.map((k) => `${k.replace(/_loss$/, '')} ${losses[k].toFixed(3)}`).join(' ');
}

function finalResult(r: Record<string, number | string>): RunResult {
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) if (typeof v === 'number' && k !== 'epochs_completed') metrics[k] = v;
  return {
    metrics,
    data: r.data ? String(r.data) : undefined,
    predictDir: r.predict_dir ? String(r.predict_dir) : undefined,
    saveDir: String(r.save_dir ?? ''),
    best: r.best ? String(r.best) : undefined,
    last: r.last ? String(r.last) : undefined,
    epochsCompleted: typeof r.epochs_completed === 'number' ? r.epochs_completed : undefined,
  };
}

/** The level of an engine log line: warnings say so in the event, or (older lines) in their first word. */
function logEvent(e: NativeEvent): LogEvent {
  const text = e.str.text ?? '';
  const warning = e.str.level === 'warning' || /^WARNING\b/.test(text);
  return { level: warning ? 'warning' : 'info', text: warning ? text.replace(/^WARNING:?\s*/, '') : text };
}

/**
 * A running job. Events: `epoch_start`, `batch`, `epoch_end`, `checkpoint`, `log` ({level: 'info' | 'warning', text}),
 * `done`, `error`. Without a `log` listener, warnings go to process.emitWarning unless `verbose: false`.
 * Await it (or call `.then`) for the final result; `stop()` ends after the current batch with last.pt saved;
 * `dispose()` (or `using` / `await using`) stops it too, and the async form waits for the end.
 */
export interface Run {
  on<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  once<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  off<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  addListener<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  removeListener<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  prependListener<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  prependOnceListener<E extends RunEventName>(event: E, listener: RunListener<E>): this;
  emit<E extends RunEventName>(event: E, payload: RunEvents[E]): boolean;
}
export class Run extends EventEmitter implements PromiseLike<RunResult> {
  private readonly promise: Promise<RunResult>;
  private handle: { stop(): void } | null = null;
  private readonly log: Logger;

  /** `warnings`: what the option checks found, delivered as `log` events before the engine starts. */
  constructor(start: NativeRunStarter, args: object, warnings: string[] = []) {
    super();
    this.log = new Logger(this, (args as { verbose?: boolean }).verbose !== false);
    this.promise = new Promise<RunResult>((resolve, reject) => {
      const onEvent = (e: NativeEvent) => {
        if (e.type === 'log') {
          const l = logEvent(e);
          this.log.emit(l.level, l.text);
          return;
        }
        if (e.type === 'final') {
          if (e.error) {
            const err = new Yolo26Error(e.error, 'YOLO26_RUN_FAILED');
            if (this.listenerCount('error') > 0) this.emit('error', err);
            reject(err);
          } else {
            const res = finalResult(e.result ?? {});
            this.emit('done', res);
            resolve(res);
          }
          return;
        }
        this.emit(e.type as RunEventName, shapeEvent(e) as never);  // the engine's names are RunEvents' keys
      };
      // Start on the next tick so listeners attached right after train() see every event.
      setImmediate(() => {
        for (const w of warnings) this.log.emit('warning', w);
        try {
          this.handle = start(args, onEvent);
        } catch (err) {
          reject(err);
        }
      });
    });
    // An unobserved failure must not crash the process: it stays available through then()/catch().
    this.promise.catch(() => undefined);
  }

  stop(): void {
    if (this.handle) this.handle.stop();
    else setImmediate(() => this.handle?.stop());
  }

  /** Stops the run (last.pt is saved); the native thread ends after the current batch and frees its memory. */
  dispose(): void {
    this.stop();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** Stops the run and waits until it has ended (its outcome, error or not, stays available through then()). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    await this.promise.catch(() => undefined);
  }

  then<A = RunResult, B = never>(onOk?: ((v: RunResult) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.promise.then(onOk, onErr);
  }
  catch<B = never>(onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<RunResult | B> {
    return this.promise.catch(onErr);
  }
}

/** Unset options (null, empty device) are left out so the engine's defaults table applies. */
function engineArgs(cfg: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(cfg).filter(([k, v]) => v !== null && v !== undefined && !(k === 'device' && v === '')));
}

/** Model and data paths that exist but are no files (a directory as model=, a device, a FIFO) fail here, by name. */
function checkPaths(mode: string, cfg: { model?: string; data?: string | null }): void {
  const model = cfg.model ? notAFile(cfg.model) : null;
  if (model) throw new OptionError(`${mode}(): model ${cfg.model} is ${model}, not a file: pass a .pt checkpoint or a model YAML`, 'model');
  const data = cfg.data ? notAFile(cfg.data) : null;
  if (data && data !== 'a directory')  // a folder is a classify data set
    throw new OptionError(`${mode}(): data ${cfg.data} is ${data}: pass a data.yaml (or a folder of class folders for classify)`, 'data');
}

/** Train and val take one square size, a multiple of the largest stride (32), as upstream's check_imgsz. */
function squareImgsz(mode: string, imgsz: number | [number, number]): { imgsz: number; warnings: string[] } {
  const { size, warnings } = checkImgsz(imgsz, 32, { single: true, floor: 32 });
  return { imgsz: size[0], warnings: warnings.map((w) => `${mode}(): ${w}`) };
}

export function train(options: TrainOptions): Run {
  const cfg = parseOptions('train', trainSchema, options);
  if (cfg.data === undefined && cfg.resume === false)
    throw new OptionError("train(): option 'data' is required (a data.yaml, or a folder for classify models)", 'data');
  checkPaths('train', cfg);
  const { imgsz, warnings } = squareImgsz('train', cfg.imgsz);
  const args = engineArgs({ ...cfg, imgsz });
  // Several GPUs: one worker process per GPU (ts/launch.ts). YOLO26_CPU_RANKS=N launches N CPU ranks the same way
  // (Gloo), which is how the launcher is tested on machines without GPUs.
  const gpus = gpusToLaunch(cfg.device);
  const cpuRanks = Number(process.env.YOLO26_CPU_RANKS ?? 0);
  const ranks = gpus ? gpus.length : cfg.device === 'cpu' && cpuRanks > 1 && !process.env.WORLD_SIZE ? cpuRanks : 0;
  if (ranks > 1) return new Run(((a: object, onEvent: (e: NativeEvent) => void) => launchRanks(ranks, a, onEvent)), args, warnings);
  return new Run(native().startTraining, args, warnings);
}

export function val(options: ValOptions): Run {
  const cfg = parseOptions('val', valSchema, options);
  checkPaths('val', cfg);
  const sq = cfg.imgsz === undefined ? null : squareImgsz('val', cfg.imgsz);
  return new Run(native().startValidation, engineArgs({ ...cfg, imgsz: sq?.imgsz }), sq?.warnings);
}

/**
 * The built-in default job: generates a small synthetic shapes data set (no download), trains yolo26n on
 * it, validates, and predicts on held-out images saving annotated copies. Options: any train() option,
 * plus images / val_images / predict_images / size for the generated set.
 */
export function demo(options: Record<string, unknown> = {}): Run {
  return new Run(native().startDemo, engineArgs(options));
}
