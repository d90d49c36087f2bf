/** Prediction results with the shape of the official `Results` object, in plain JS arrays. */

/** The engine that ran a forward: libtorch, or ONNX Runtime (an optional dependency). */
export type Backend = 'torch' | 'onnxruntime';
/** How ONNX Runtime runs a stream: its C API inside the native pipeline, or ONNX Runtime's Node package in a worker thread. */
export type OrtRunnerKind = 'native' | 'worker';

/** What the addon hands over for one image: flat typed arrays, row-major. */
export interface NativeResult {
  path: string;
  origShape: [number, number]; // [height, width]
  xyxy: Float32Array; // N*4, original image pixels
  conf: Float32Array; // N
  cls: Float32Array; // N
  id?: Float32Array; // N track ids when the result was tracked
  probs?: Float32Array; // classify: nc class probabilities (then there are no boxes)
  keypoints?: Float32Array; // N*K*3 (x, y, visibility) in original pixels
  kptShape?: [number, number];
  masks?: Uint8Array; // segment: N*H*W 0/1 at the original image size
  maskShape?: [number, number, number]; // [N, H, W]
  segments?: Float32Array[]; // segment: per instance its outline, x y pairs in original pixels
  xywhr?: Float32Array; // obb: N*5 centre x, y, width, height, angle (radians) in original pixels
  speed: { preprocess: number; inference: number; postprocess: number };
  frame?: number; // video frame index
  error?: string; // set when this item could not be read (corrupt image); then it has no boxes
  backend?: Backend; // which backend ran the forward
}

function rows(flat: Float32Array, width: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + width <= flat.length; i += width) out.push(Array.from(flat.subarray(i, i + width)));
  return out;
}

export class Boxes {
  /** [x1, y1, x2, y2] per box, original image pixels. */
  readonly xyxy: number[][];
  readonly conf: number[];
  readonly cls: number[];
  /** Track id per box (track()); null when the result is not tracked, as upstream's `boxes.id`. */
  readonly id: number[] | null;
  private readonly shape: [number, number];

  constructor(xyxy: Float32Array, conf: Float32Array, cls: Float32Array, origShape: [number, number], id?: Float32Array) {
    this.xyxy = rows(xyxy, 4);
    this.conf = Array.from(conf);
    this.cls = Array.from(cls);
    this.id = id ? Array.from(id) : null;
    this.shape = origShape;
  }
  /** Whether the boxes carry track ids. */
  get isTrack(): boolean {
    return this.id !== null;
  }

  get length(): number {
    return this.conf.length;
  }
  /** [x_center, y_center, width, height] per box. */
  get xywh(): number[][] {
    return this.xyxy.map(([x1, y1, x2, y2]) => [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]);
  }
  /** xyxy divided by the image width and height. */
  get xyxyn(): number[][] {
    const [h, w] = this.shape;
    return this.xyxy.map(([x1, y1, x2, y2]) => [x1 / w, y1 / h, x2 / w, y2 / h]);
  }
  get xywhn(): number[][] {
    const [h, w] = this.shape;
    return this.xywh.map(([x, y, bw, bh]) => [x / w, y / h, bw / w, bh / h]);
  }
}

export class Keypoints {
  /** [x, y] per keypoint per instance, original pixels. */
  readonly xy: number[][][];
  /** Visibility confidence per keypoint per instance. */
  readonly conf: number[][];
  private readonly shape: [number, number];

  constructor(flat: Float32Array, kptShape: [number, number], origShape: [number, number]) {
    const [k, dims] = kptShape;
    this.xy = [];
    this.conf = [];
    for (let i = 0; i + k * dims <= flat.length; i += k * dims) {
      const pts: number[][] = [];
      const cf: number[] = [];
      for (let j = 0; j < k; j++) {
        pts.push([flat[i + j * dims], flat[i + j * dims + 1]]);
        cf.push(dims > 2 ? flat[i + j * dims + 2] : 1);
      }
      this.xy.push(pts);
      this.conf.push(cf);
    }
    this.shape = origShape;
  }
  get xyn(): number[][][] {
    const [h, w] = this.shape;
    return this.xy.map((pts) => pts.map(([x, y]) => [x / w, y / h]));
  }
}

/** Instance masks, as the official `Masks` (at the original image size, as its `retina_masks=True`). */
export class Masks {
  /** 0/1 per pixel, row-major (n, h, w): instance i is `data.subarray(i * h * w, (i + 1) * h * w)`. */
  readonly data: Uint8Array;
  /** [n, h, w]: instances, original image height and width. */
  readonly shape: [number, number, number];
  /** Each instance's outline as [x, y] points in original pixels (pieces of one mask joined into one polygon). */
  readonly xy: number[][][];

  constructor(data: Uint8Array, shape: [number, number, number], segments: Float32Array[]) {
    this.data = data;
    this.shape = shape;
    this.xy = segments.map((s) => rows(s, 2));
  }

  get length(): number {
    return this.shape[0];
  }
  /** The outlines normalised by the image width and height. */
  get xyn(): number[][][] {
    const [, h, w] = this.shape;
    return this.xy.map((pts) => pts.map(([x, y]) => [x / w, y / h]));
  }
  /** Instance i's (h, w) mask, a view into `data`. */
  mask(i: number): Uint8Array {
    const [, h, w] = this.shape;
    return this.data.subarray(i * h * w, (i + 1) * h * w);
  }
}

/** Oriented boxes, as the official `OBB`. */
export class OBB {
  /** [x_center, y_center, width, height, angle] per box, original pixels, angle in radians. */
  readonly xywhr: number[][];
  readonly conf: number[];
  readonly cls: number[];
  /** Track id per box (track()); null when the result is not tracked, as upstream's `obb.id`. */
  readonly id: number[] | null;
  private readonly shape: [number, number];

  constructor(xywhr: Float32Array, conf: Float32Array, cls: Float32Array, origShape: [number, number], id?: Float32Array) {
    this.xywhr = rows(xywhr, 5);
    this.conf = Array.from(conf);
    this.cls = Array.from(cls);
    this.id = id ? Array.from(id) : null;
    this.shape = origShape;
  }
  /** Whether the boxes carry track ids. */
  get isTrack(): boolean {
    return this.id !== null;
  }

  get length(): number {
    return this.conf.length;
  }
  /** The four corners [[x, y] x 4] per box: centre +- w/2 along the angle +- h/2 across it, the official order. */
  get xyxyxyxy(): number[][][] {
    return this.xywhr.map(([cx, cy, w, h, r]) => {
      const [c, s] = [Math.cos(r), Math.sin(r)];
      const [ax, ay, bx, by] = [(w / 2) * c, (w / 2) * s, (-h / 2) * s, (h / 2) * c];
      return [
        [cx + ax + bx, cy + ay + by],
        [cx + ax - bx, cy + ay - by],
        [cx - ax - bx, cy - ay - by],
        [cx - ax + bx, cy - ay + by],
      ];
    });
  }
  /** The corners normalised by the image width and height. */
  get xyxyxyxyn(): number[][][] {
    const [h, w] = this.shape;
    return this.xyxyxyxy.map((pts) => pts.map(([x, y]) => [x / w, y / h]));
  }
  /** The axis-aligned box enclosing each rotated box [x1, y1, x2, y2] (not clipped to the image). */
  get xyxy(): number[][] {
    return this.xyxyxyxy.map((pts) => {
      const xs = pts.map((p) => p[0]);
      const ys = pts.map((p) => p[1]);
      return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    });
  }
}

/** Classification probabilities, as the official `Probs`: top-1 and top-5 classes and their confidences. */
export class Probs {
  /** Probability of every class (softmax over the model's classes). */
  readonly data: number[];
  /** Index of the most probable class. */
  readonly top1: number;
  /** Indices of the (up to) five most probable classes, most probable first. */
  readonly top5: number[];

  constructor(probs: Float32Array) {
    this.data = Array.from(probs);
    const order = this.data.map((_, i) => i).sort((a, b) => this.data[b] - this.data[a] || a - b);
    this.top5 = order.slice(0, 5);
    this.top1 = order.length > 0 ? order[0] : -1;
  }
  /** Confidence of the top-1 class. */
  get top1conf(): number {
    return this.data[this.top1];
  }
  /** Confidences of the top-5 classes, in top5 order. */
  get top5conf(): number[] {
    return this.top5.map((i) => this.data[i]);
  }
}

/** Options of `Result.plot()`, under the official `Results.plot()` names. */
export interface PlotOptions {
  format?: 'jpg' | 'png';
  /** Box line width in pixels; null or 0 scales it with the image, as upstream. */
  line_width?: number | null;
  /** @deprecated the official name is `line_width`. */
  lineWidth?: number | null;
  labels?: boolean;
  conf?: boolean;
}

export class Result {
  readonly path: string;
  readonly origShape: [number, number];
  readonly names: Record<number, string>;
  /** Detections; null for classify (`probs`) and OBB (`obb`) models, as the official `Results.boxes`. */
  readonly boxes: Boxes | null;
  /** Segment models: the instance masks and their outlines; null for the other tasks. */
  readonly masks: Masks | null;
  /** OBB models: the rotated boxes; null for the other tasks. */
  readonly obb: OBB | null;
  /** Classify models: class probabilities with top1/top5; null for the other tasks. */
  readonly probs: Probs | null;
  readonly keypoints: Keypoints | null;
  readonly speed: { preprocess: number; inference: number; postprocess: number };
  readonly frame: number | null;
  /** Which backend ran the forward: 'torch' (libtorch) or 'onnxruntime'. */
  readonly backend: Backend | null;
  private readonly plotter: ((r: Result, o: PlotOptions) => Buffer) | null;

  constructor(n: NativeResult, names: Record<number, string>, plotter: ((r: Result, o: PlotOptions) => Buffer) | null = null) {
    this.path = n.path;
    this.origShape = n.origShape;
    this.names = names;
    this.probs = n.probs ? new Probs(n.probs) : null;
    this.obb = n.xywhr ? new OBB(n.xywhr, n.conf, n.cls, n.origShape, n.id) : null;
    this.boxes = n.probs || n.xywhr ? null : new Boxes(n.xyxy, n.conf, n.cls, n.origShape, n.id);
    this.masks = n.masks && n.maskShape ? new Masks(n.masks, n.maskShape, n.segments ?? []) : null;
    this.keypoints = n.keypoints && n.kptShape ? new Keypoints(n.keypoints, n.kptShape, n.origShape) : null;
    this.speed = n.speed;
    this.frame = n.frame ?? null;
    this.backend = n.backend ?? null;
    this.plotter = plotter;
  }

  /** The official one-line description: "2 rectangles, 1 ellipse" or, for classify, "cat 0.91, dog 0.05, ...". */
  verbose(): string {
    const name = (c: number) => this.names[c] ?? String(c);
    if (this.probs) return this.probs.top5.map((c) => `${name(c)} ${this.probs!.data[c].toFixed(2)}`).join(', ');
    const counts = new Map<number, number>();
    for (const c of (this.obb ?? this.boxes)?.cls ?? []) counts.set(c, (counts.get(c) ?? 0) + 1);
    if (counts.size === 0) return '(no detections)';
    return [...counts].sort((a, b) => a[0] - b[0]).map(([c, k]) => `${k} ${name(c)}${k > 1 ? 's' : ''}`).join(', ');
  }

  /** Annotated image (boxes or rotated boxes, labels, confidences, masks, skeletons; classify: the top-5 classes), JPEG or PNG. */
  plot(options: PlotOptions = {}): Buffer {
    if (!this.plotter) throw new Error('plot() needs the image: this result was not produced by predict()');
    return this.plotter(this, options);
  }

  /**
   * One entry per detection (classify: per top-5 class), like the official `Results.summary()`: `box` is x1..y2, or
   * the four corners x1..y4 for OBB; `segments` the mask outline; `keypoints` x, y and visibility; all in pixels.
   */
  toJSON(): ResultJSON[] {
    if (this.probs) {
      const p = this.probs;
      return p.top5.map((c) => ({ name: this.names[c] ?? String(c), class: c, confidence: p.data[c] }));
    }
    const corners = this.obb ? this.obb.xyxyxyxy : this.boxes!.xyxy.map(([x1, y1, x2, y2]) => [[x1, y1], [x2, y2]]);
    const { cls, conf, id } = this.obb ?? this.boxes!;
    return corners.map((pts, i) => {
      const entry: ResultJSON = { name: this.names[cls[i]] ?? String(cls[i]), class: cls[i], confidence: conf[i], box: {} };
      pts.forEach(([x, y], j) => Object.assign(entry.box!, { [`x${j + 1}`]: x, [`y${j + 1}`]: y }));
      if (this.masks) entry.segments = { x: this.masks.xy[i].map((p) => p[0]), y: this.masks.xy[i].map((p) => p[1]) };
      if (id) entry.track_id = id[i];
      if (this.keypoints)
        entry.keypoints = {
          x: this.keypoints.xy[i].map((p) => p[0]),
          y: this.keypoints.xy[i].map((p) => p[1]),
          visible: this.keypoints.conf[i],
        };
      return entry;
    });
  }
}

/** One entry of `Result.toJSON()`. */
export interface ResultJSON {
  name: string;
  class: number;
  confidence: number;
  /** x1, y1, x2, y2 (OBB: x1..x4, y1..y4, the corners). */
  box?: Record<string, number>;
  segments?: { x: number[]; y: number[] };
  /** track(): the box's track id, as upstream's `track_id`. */
  track_id?: number;
  keypoints?: { x: number[]; y: number[]; visible: number[] };
}
