/** predict(): a stream of results from any source, pulled from the native pipeline with backpressure. */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { NativePredictor, NativeSource, NativeStreamResult } from './addon.js';
import { Yolo26Error, OptionError } from './errors.js';
import { Model } from './model.js';
import { native } from './native.js';
import { chooseBackend, exportForOrt, loadOrt, nativeOrtPlanned, ortRunner, ortSession } from './onnx.js';
import { fileIdentity, notAFile } from './files.js';
import { Logger } from './log.js';
import { checkImgsz, parseOptions, predictSchema, imgszPair, type PredictConfig, type PredictOptions } from './options.js';
import { Result, type Backend, type NativeResult, type OrtRunnerKind, type PlotOptions } from './results.js';

/**
 * Raw pixels as a source: interleaved rows, RGB(A) unless `order: 'bgr'`, exactly width x height x channels values.
 * 8-bit data as Uint8Array/Uint8ClampedArray/Buffer; a Float32Array needs `scale`: the value of full intensity,
 * 1 (values 0..1) or 255 (values 0..255).
 */
export interface PixelSource {
  data: Uint8Array | Uint8ClampedArray | Buffer | Float32Array;
  width: number;
  height: number;
  channels?: 1 | 3 | 4;
  order?: 'rgb' | 'bgr';
  scale?: 1 | 255;
}

export type PredictSource = string | number | string[] | Buffer | Uint8Array | PixelSource | Array<Buffer | Uint8Array>;

function isPixels(s: unknown): s is PixelSource {
  return typeof s === 'object' && s !== null && 'data' in s && 'width' in s && 'height' in s;
}

type NativePixels = Extract<NativeSource, { kind: 'pixels' }>['images'][number];

/** Checks a raw-pixel source and converts it to the addon's 8-bit form; every misfit is an error naming the fix. */
function pixelImage(src: PixelSource): NativePixels {
  const bad = (why: string) => new OptionError(`predict(): raw pixel source: ${why}`, 'source');
  const { data, width, height } = src;
  for (const [k, v] of [['width', width], ['height', height]] as const)
    if (!Number.isInteger(v) || v <= 0 || v > 1 << 16) throw bad(`${k} must be a positive integer up to 65536 (got ${String(v)})`);
  const is8bit = data instanceof Uint8Array || data instanceof Uint8ClampedArray;
  const isFloat = data instanceof Float32Array;
  if (!is8bit && !isFloat) {
    const type = (data as object | null)?.constructor?.name ?? typeof data;
    throw bad(`data is a ${type}: pass 8-bit values (Uint8Array, Uint8ClampedArray or Buffer), or a Float32Array with scale: 1 (values 0..1) or 255 (values 0..255)`);
  }
  if (isFloat && src.scale !== 1 && src.scale !== 255)
    throw bad(`data is a Float32Array: say its range with scale: 1 (values 0..1) or scale: 255 (values 0..255)${src.scale === undefined ? '' : ` (got scale ${String(src.scale)})`}`);
  if (is8bit && src.scale !== undefined && src.scale !== 255) throw bad(`scale ${String(src.scale)} does not fit 8-bit data (0..255): leave scale out`);
  const area = width * height;
  const channels = src.channels ?? data.length / area;
  if (src.channels !== undefined && ![1, 3, 4].includes(src.channels)) throw bad(`channels must be 1, 3 or 4 (got ${String(src.channels)})`);
  if (![1, 3, 4].includes(channels))
    throw bad(`${data.length} values do not make ${width}x${height} pixels of 1, 3 or 4 channels: check width, height and data`);
  if (data.length !== area * channels)
    throw bad(`${data.length} values, but width x height x channels = ${width}x${height}x${channels} = ${area * channels}: the length must match exactly`);
  const order = src.order ?? 'rgb';
  if (order !== 'rgb' && order !== 'bgr') throw bad(`order must be 'rgb' or 'bgr' (got ${describe(order)})`);
  let bytes: Uint8Array;
  if (isFloat) {
    const f = data as Float32Array;
    const scale = src.scale as number;
    bytes = new Uint8Array(f.length);
    for (let i = 0; i < f.length; i++) {
      const v = f[i];
      // a little slack for rounding; anything beyond is data in another range than the one named
      if (!(v >= -0.01 * scale && v <= 1.01 * scale))
        throw bad(`value ${v} at index ${i} is outside 0..${scale} (scale ${scale}): ${scale === 1 && v > 1 ? 'pass scale: 255 for 0..255 data' : 'fix the data'}`);
      bytes[i] = Math.min(255, Math.max(0, Math.round((v * 255) / scale)));
    }
  } else {
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return { data: bytes, width, height, channels, order };
}

function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : String(v);
}

/** Classifies a user source (the official rules: '0' is a camera, strings are paths, globs or lists). */
export function toNativeSource(source: unknown): NativeSource {
  if (typeof source === 'number') return { kind: 'camera', index: source };
  if (typeof source === 'string') {
    if (/^\d+$/.test(source)) return { kind: 'camera', index: Number(source) };
    if (/^(rtsp|rtmp|https?):\/\//i.test(source))
      throw new OptionError(`predict(): source '${source}' is a network URL; this package never downloads: pass a local file`, 'source');
    return { kind: 'paths', specs: [source] };
  }
  if (source instanceof Uint8Array) {
    if (source.byteLength === 0) throw new OptionError('predict(): the source Buffer is empty (0 bytes): pass the bytes of an encoded image', 'source');
    return { kind: 'encoded', buffers: [source] };
  }
  if (ArrayBuffer.isView(source))
    throw new OptionError(
      `predict(): source is a ${source.constructor.name}: pass an encoded image as a Buffer/Uint8Array, or raw pixels as {data, width, height, channels}`,
      'source',
    );
  if (isPixels(source)) return { kind: 'pixels', images: [pixelImage(source)] };
  if (Array.isArray(source) && source.length > 0) {
    if (source.every((s) => typeof s === 'string')) return { kind: 'paths', specs: source as string[] };
    if (source.every((s) => s instanceof Uint8Array)) return { kind: 'encoded', buffers: source as Uint8Array[] };
  }
  throw new OptionError(
    'predict(): option \'source\' must be a path, directory, glob, .txt list, array of paths, camera index, ' +
      'an encoded image (Buffer/Uint8Array), an array of those, or raw pixels {data, width, height, channels}',
    'source',
  );
}

/** plot() for one result: the addon draws on the original image it kept for that result. */
function plotter(r: NativeStreamResult, names: string[]) {
  return (_res: Result, o: PlotOptions): Buffer => {
    return native().plotResult(r.image, r, names, { format: o.format ?? 'jpg', lineWidth: o.line_width ?? o.lineWidth ?? 0, labels: o.labels ?? true, conf: o.conf ?? true });
  };
}

/**
 * The size read last from each checkpoint, under the identity of the file it came from: reading it loads the whole
 * checkpoint, which costs more than a small predict() itself. A file replaced or rewritten (another inode, size or
 * mtime) is read again.
 */
const trainedImgszCache = new Map<string, { key: string; imgsz: [number, number] | null }>();

/** As upstream: without an imgsz option a checkpoint predicts at the size it was trained at (null: none recorded). */
export function trainedImgsz(model: string): [number, number] | null {
  if (!/\.pt$/i.test(model)) return null;
  let key: string;
  try {
    key = fileIdentity(model);
  } catch {
    return null;  // no such file: the loader names it
  }
  const file = path.resolve(model);
  const hit = trainedImgszCache.get(file);
  if (hit?.key === key) return hit.imgsz;
  const imgsz = native().checkpointImgsz(model);
  trainedImgszCache.set(file, { key, imgsz });
  return imgsz;
}

/** Lists at most this many failed inputs in the error; the rest are counted. */
const LISTED_FAILURES = 10;

/**
 * Results of one predict() call. Iterate it once with `for await` (results as they come), or await it for the array
 * (the results are kept, so awaiting again, or iterating afterwards, gives the same results without a second run).
 * Emits `log` events ({level, text}): warnings such as skipped inputs and a rounded imgsz. `dispose()` (or `using`)
 * stops the stream and frees its native pipeline at once; the stream also frees it when it ends in any way.
 */
export class PredictStream extends EventEmitter implements AsyncIterable<Result>, PromiseLike<Result[]> {
  private readonly cfg: PredictConfig;
  /** Where save/save_txt wrote, once the stream has started (null when nothing is saved). */
  saveDir: string | null = null;
  /** The backend that runs this stream, once it has started: see `backend` in the predict options. */
  backend: Backend | null = null;
  /** Why that backend was chosen (the auto rule, or the option). */
  backendReason = '';
  /**
   * How ONNX Runtime runs, once started: 'native' (its C API inside the native pipeline) or 'worker'
   * (ONNX Runtime's Node package in a worker thread: CUDA, or when its library cannot be loaded natively); null on libtorch.
   */
  ortRunner: OrtRunnerKind | null = null;
  /** The cached ONNX export ONNX Runtime runs when the model is a checkpoint. */
  onnxFile: string | null = null;
  /** The inference size [h, w] once started: the option, else the checkpoint's training imgsz, else 640 (rounded up to the stride). */
  imgsz: [number, number] | null = null;
  /** Every warning of this stream so far (the `log` events show at most a few of each kind). */
  readonly warnings: string[] = [];
  private readonly imgszGiven: boolean;
  private readonly log: Logger;
  private started = false;
  private disposed = false;
  private all: Promise<Result[]> | null = null;
  private release: (() => void) | null = null;

  private readonly source: NativeSource;
  /** Extra options for the native predictor (track() adds its tracker). */
  private readonly extra: Record<string, unknown>;

  constructor(
    cfg: PredictConfig,
    imgszGiven = false,
    source: NativeSource = toNativeSource(cfg.source),
    extra: Record<string, unknown> = {},
  ) {
    super();
    this.cfg = cfg;
    this.source = source;
    this.imgszGiven = imgszGiven;
    this.log = new Logger(this, cfg.verbose);
    this.extra = extra;
  }

  [Symbol.asyncIterator](): AsyncIterator<Result> {
    if (this.all) return replay(this.all);
    return this.start();
  }

  /** The one run of this stream; a second reader gets an error naming what to do instead. */
  private start(): AsyncGenerator<Result> {
    if (this.disposed) throw new Yolo26Error('predict(): this stream was disposed; call predict() again', 'YOLO26_DISPOSED');
    if (this.started)
      throw new Yolo26Error(
        'predict(): this stream is already being read by a for await loop (a stream runs once): await the stream instead to keep every result, or call predict() again',
        'YOLO26_STREAM_CONSUMED',
      );
    this.started = true;
    return this.run();
  }

  private warn(text: string, kind?: string): void {
    this.warnings.push(text);
    this.log.warn(text, kind);
  }

  private async *run(): AsyncGenerator<Result> {
    const cfg = this.cfg;
    const src = this.source;
    checkModelFile(cfg.model);  // before anything opens it: a FIFO would block the event loop
    // As upstream's exporter on the CPU: float16 is a GPU option (this libtorch has no CPU float16 convolutions), so
    // the CPU runs float32, with a warning. An .onnx file fixes its own input type.
    let half = cfg.half;
    if (half && !/\.onnx$/i.test(cfg.model) && (cfg.device === '' || native().resolveDevice(cfg.device) === 'cpu')) {
      this.warn("predict(): half=true needs a CUDA device (float16 on the CPU is not supported here); running float32 on the CPU");
      half = false;
    }
    const choice = chooseBackend(cfg.model, cfg.device, half, cfg.backend);
    this.backend = choice.backend;
    this.backendReason = choice.reason;
    if (cfg.threads > 0) native().setThreads(cfg.threads);
    const open = native().openPredictor;
    const trained = this.imgszGiven ? null : trainedImgsz(cfg.model);
    const asked = this.imgszGiven ? imgszPair(cfg.imgsz) : (trained ?? [640, 640]);
    // As upstream's predictor: each side rounded up to the model's largest stride, with a warning naming the size used.
    const sized = (stride: number): [number, number] => {
      const { size, warnings } = checkImgsz(asked[0] === asked[1] ? asked[0] : asked, stride);
      for (const w of warnings) this.warn(`predict(): ${w}`);
      this.imgsz = size;
      return size;
    };
    // The engine's predict args under their official names; the rules (end2end, fuse, ONNX files) are the core's.
    const args = (size: [number, number]) => ({
      imgsz: this.imgszGiven || trained ? size : undefined,
      batch: cfg.batch,
      conf: cfg.conf,
      iou: cfg.iou,
      max_det: cfg.max_det,
      classes: cfg.classes,
      agnostic_nms: cfg.agnostic_nms,
      half,
      end2end: cfg.end2end,
      vid_stride: cfg.vid_stride,
      skip_errors: cfg.skip_errors,
      save: cfg.save,
      save_txt: cfg.save_txt,
      save_conf: cfg.save_conf,
      save_crop: cfg.save_crop,
      project: cfg.project,
      name: cfg.name,
      exist_ok: cfg.exist_ok,
      line_width: cfg.line_width,
      show_labels: cfg.show_labels,
      show_conf: cfg.show_conf,
      ...this.extra,
    });
    let p: NativePredictor;
    let model: Model | null = null;
    try {
      if (choice.backend === 'onnxruntime') {
        if (!nativeOrtPlanned(cfg.device)) await loadOrt(); // a missing package is an error before any export
        let file = cfg.model;
        if (!/\.onnx$/i.test(file)) {
          const end2end = async () => {
            const m = await Model.load(cfg.model);
            try {
              return m.info(asked[0]).end2end;
            } finally {
              m.dispose();
            }
          };
          const ex = await exportForOrt(cfg.model, { end2end: cfg.end2end, half, maxDet: cfg.max_det }, end2end);
          file = ex.path;
          this.onnxFile = file;
        }
        if (!fs.existsSync(file)) throw new Yolo26Error(`predict(): model file ${file} does not exist`, 'YOLO26_BAD_MODEL');
        const info = native().onnxInfo(file);
        // A fixed-size file runs its own size; the core warns when the imgsz asked for differs.
        const size = info.imgsz ? asked : sized(info.stride);
        if (info.imgsz) this.imgsz = info.imgsz;
        const session = await ortSession(file, cfg.device, cfg.threads);
        this.ortRunner = session.kind;
        if (session.kind === 'worker' && session.fallback) this.warn(session.fallback);
        p = open(null, src, args(size), session.kind === 'native' ? { path: file, session: session.handle } : { path: file, run: ortRunner(session) });
      } else {
        model = await Model.load(cfg.model, { device: cfg.device || 'cpu' });
        // upstream's PyTorch backend takes max(model stride, 32): a classify model (stride 1) rounds to 32 too
        const size = sized(Math.max(32, ...model.info(asked[0]).stride));
        p = open(model.handle, src, args(size));
      }
    } catch (e) {
      model?.dispose();
      throw e;
    }
    this.release = () => {
      this.release = null;
      p.close();
      model?.dispose();
    };
    const planWarnings = p.warnings().length; // options the model overrides; skipped inputs follow at the end
    for (const w of p.warnings()) this.warn(w);
    const names = p.names();
    this.saveDir = p.saveDir();
    const failed: NativeResult[] = [];
    let good = 0;
    try {
      for (;;) {
        if (this.disposed) break;
        const r = await p.next();
        if (!r || this.disposed) break;
        if (r.error) {
          failed.push(r);
          continue;
        }
        good++;
        yield new Result({ ...r, backend: choice.backend }, Object.fromEntries(names.map((n, i) => [i, n])), r.image ? plotter(r, names) : null);
      }
      for (const w of p.warnings().slice(planWarnings)) this.warn(`predict(): ${w}`, 'skipped');
      this.log.summarize(() => 'inputs skipped (stream.warnings lists them all)');
    } finally {
      this.release?.();
    }
    if (failed.length > 0 && !this.disposed) {
      const listed = failed.slice(0, LISTED_FAILURES).map((f) => `${f.path} (${f.error})`);
      if (failed.length > LISTED_FAILURES) listed.push(`... and ${failed.length - LISTED_FAILURES} more`);
      throw new Yolo26Error(
        `predict(): ${failed.length} input(s) could not be read: ${listed.join('; ')}. ` +
          `Results for the ${good} readable input(s) were produced first. Pass skip_errors: true to skip unreadable inputs with a warning.`,
        'YOLO26_BAD_INPUT',
      );
    }
  }

  /** Collects every result (what `stream: false` means in the official API); the same array on every call. */
  toArray(): Promise<Result[]> {
    this.all ??= (async () => {
      const out: Result[] = [];
      for await (const r of this.start()) out.push(r);
      return out;
    })();
    return this.all;
  }

  then<A = Result[], B = never>(onOk?: ((v: Result[]) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.toArray().then(onOk, onErr);
  }

  /** Stops the stream and frees its native pipeline (threads, open files, the model it loaded) now. */
  dispose(): void {
    this.disposed = true;
    this.release?.();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

async function* replay(all: Promise<Result[]>): AsyncGenerator<Result> {
  yield* await all;
}

/** A model path that is a directory or a device is named as such (the engine would say "not found", or block on a FIFO). */
function checkModelFile(file: string): void {
  const what = notAFile(file);
  if (what) throw new OptionError(`predict(): model ${file} is ${what}, not a file: pass a .pt checkpoint, an .onnx file or a model YAML`, 'model');
}

export function predict(options: PredictOptions): PredictStream {
  const cfg = parseOptions('predict', predictSchema, options);
  if (cfg.source === undefined || cfg.source === null) throw new OptionError("predict(): option 'source' is required", 'source');
  return new PredictStream(cfg, (options as { imgsz?: unknown }).imgsz !== undefined, toNativeSource(cfg.source));
}
