/** predict(): a stream of results from any source, pulled from the native pipeline with backpressure. */
import fs from 'node:fs';
import { Yolo26Error, OptionError } from './errors.js';
import { Model } from './model.js';
import { native } from './native.js';
import { chooseBackend, exportForOrt, loadOrt, ortRunner, ortSession } from './onnx.js';
import { parseOptions, predictSchema, imgszPair, type PredictConfig, type PredictOptions } from './options.js';
import { Result, type Backend, type NativeResult, type PlotOptions } from './results.js';

/** Raw pixels as a source: interleaved uint8 rows, RGB(A) unless `order: 'bgr'`. */
export interface PixelSource {
  data: Uint8Array | Uint8ClampedArray | Buffer;
  width: number;
  height: number;
  channels?: 1 | 3 | 4;
  order?: 'rgb' | 'bgr';
}

export type PredictSource = string | number | string[] | Buffer | Uint8Array | PixelSource | Array<Buffer | Uint8Array>;

/** The source in the form the addon takes. */
type NativeSource =
  | { kind: 'paths'; specs: string[] }
  | { kind: 'encoded'; buffers: Uint8Array[] }
  | { kind: 'pixels'; images: Array<{ data: Uint8Array; width: number; height: number; channels: number; order: string }> }
  | { kind: 'camera'; index: number };

interface NativePredictor {
  next(): Promise<(NativeResult & { image?: unknown }) | null>;
  close(): void;
  saveDir(): string | null;
  warnings(): string[];
  names(): string[];
}

function isPixels(s: unknown): s is PixelSource {
  return typeof s === 'object' && s !== null && 'data' in s && 'width' in s && 'height' in s;
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
  if (source instanceof Uint8Array) return { kind: 'encoded', buffers: [source] };
  if (isPixels(source)) {
    const channels = source.channels ?? Math.round(source.data.length / (source.width * source.height));
    return {
      kind: 'pixels',
      images: [{ data: new Uint8Array(source.data.buffer, source.data.byteOffset, source.data.byteLength), width: source.width, height: source.height, channels, order: source.order ?? 'rgb' }],
    };
  }
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
function plotter(r: NativeResult & { image?: unknown }, names: string[]) {
  return (_res: Result, o: PlotOptions): Buffer => {
    const plot = native().plotResult as (img: unknown, r: NativeResult, names: string[], o: object) => Buffer;
    return plot(r.image, r, names, { format: o.format ?? 'jpg', lineWidth: o.lineWidth ?? 0, labels: o.labels ?? true, conf: o.conf ?? true });
  };
}

/** As upstream: without an imgsz option a checkpoint predicts at the size it was trained at (null: none recorded). */
function trainedImgsz(model: string): [number, number] | null {
  if (/\.pt$/i.test(model) && fs.existsSync(model)) return (native().checkpointImgsz as (f: string) => [number, number] | null)(model);
  return null;
}

/** Results of one predict() call: iterate with `for await`, or await it for an array. */
export class PredictStream implements AsyncIterable<Result>, PromiseLike<Result[]> {
  private readonly cfg: PredictConfig;
  /** Where save/save_txt wrote, once the stream has started (null when nothing is saved). */
  saveDir: string | null = null;
  /** The backend that runs this stream, once it has started: see `backend` in the predict options. */
  backend: Backend | null = null;
  /** Why that backend was chosen (the auto rule, or the option). */
  backendReason = '';
  /** The cached ONNX export ONNX Runtime runs when the model is a checkpoint. */
  onnxFile: string | null = null;
  /** The inference size [h, w] once started: the option, else the checkpoint's training imgsz, else 640. */
  imgsz: [number, number] | null = null;
  private readonly imgszGiven: boolean;

  constructor(cfg: PredictConfig, imgszGiven = false) {
    this.cfg = cfg;
    this.imgszGiven = imgszGiven;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Result> {
    const cfg = this.cfg;
    const src = toNativeSource(cfg.source);
    const choice = chooseBackend(cfg.model, cfg.device, cfg.half, cfg.backend);
    this.backend = choice.backend;
    this.backendReason = choice.reason;
    if (cfg.threads > 0) native().setThreads(cfg.threads);
    const open = native().openPredictor as (m: unknown, s: NativeSource, args: object, onnx?: object) => NativePredictor;
    const imgsz = this.imgszGiven ? imgszPair(cfg.imgsz) : trainedImgsz(cfg.model);
    const [h, w] = imgsz ?? [640, 640];
    this.imgsz = [h, w];
    // The engine's predict args under their official names; the rules (end2end, fuse, ONNX files) are the core's.
    const args = {
      imgsz: imgsz ?? undefined,
      batch: cfg.batch,
      conf: cfg.conf,
      iou: cfg.iou,
      max_det: cfg.max_det,
      classes: cfg.classes,
      agnostic_nms: cfg.agnostic_nms,
      half: cfg.half,
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
    };
    let p: NativePredictor;
    if (choice.backend === 'onnxruntime') {
      await loadOrt();  // a missing package is an error before any export
      let file = cfg.model;
      if (!/\.onnx$/i.test(file)) {
        const ex = await exportForOrt(cfg.model, { end2end: cfg.end2end, half: cfg.half, maxDet: cfg.max_det }, async () => (await Model.load(cfg.model)).info(h).end2end);
        file = ex.path;
        this.onnxFile = file;
      }
      if (!fs.existsSync(file)) throw new Yolo26Error(`predict(): model file ${file} does not exist`, 'YOLO26_BAD_MODEL');
      const session = await ortSession(file, cfg.device, cfg.threads);
      p = open(null, src, args, { path: file, run: ortRunner(session) });
    } else {
      const model = await Model.load(cfg.model, { device: cfg.device || 'cpu' });
      p = open(model.handle, src, args);
    }
    const planWarnings = p.warnings().length;  // options the model overrides; skipped inputs follow at the end
    for (const w of p.warnings()) process.emitWarning(w, 'Yolo26Warning');
    const names = p.names();
    this.saveDir = p.saveDir();
    const failed: NativeResult[] = [];
    let good = 0;
    try {
      for (;;) {
        const r = await p.next();
        if (!r) break;
        if (r.error) {
          failed.push(r);
          continue;
        }
        good++;
        yield new Result({ ...r, backend: choice.backend }, Object.fromEntries(names.map((n, i) => [i, n])), r.image ? plotter(r, names) : null);
      }
      for (const w of p.warnings().slice(planWarnings)) process.emitWarning(w, 'Yolo26Warning');
    } finally {
      p.close();
    }
    if (failed.length > 0)
      throw new Yolo26Error(
        `predict(): ${failed.length} input(s) could not be read: ${failed.map((f) => `${f.path} (${f.error})`).join('; ')}. ` +
          `Results for the ${good} readable input(s) were produced first. Pass skip_errors: true to skip unreadable inputs with a warning.`,
        'YOLO26_BAD_INPUT',
      );
  }

  /** Collects every result (what `stream: false` means in the official API). */
  async toArray(): Promise<Result[]> {
    const out: Result[] = [];
    for await (const r of this) out.push(r);
    return out;
  }

  then<A = Result[], B = never>(onOk?: ((v: Result[]) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.toArray().then(onOk, onErr);
  }
}

export function predict(options: PredictOptions): PredictStream {
  const cfg = parseOptions('predict', predictSchema, options);
  if (cfg.source === undefined || cfg.source === null) throw new OptionError("predict(): option 'source' is required", 'source');
  toNativeSource(cfg.source);
  return new PredictStream(cfg, (options as { imgsz?: unknown }).imgsz !== undefined);
}
