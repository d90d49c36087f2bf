/** Prediction results with the shape of the official `Results` object, in plain JS arrays. */

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
  speed: { preprocess: number; inference: number; postprocess: number };
  frame?: number; // video frame index
  error?: string; // set when this item could not be read (corrupt image); then it has no boxes
  backend?: 'torch' | 'onnxruntime'; // which backend ran the forward
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

export interface PlotOptions {
  format?: 'jpg' | 'png';
  lineWidth?: number | null;
  labels?: boolean;
  conf?: boolean;
}

export class Result {
  readonly path: string;
  readonly origShape: [number, number];
  readonly names: Record<number, string>;
  /** Detections; null for classify models (their result is `probs`), as the official `Results.boxes`. */
  readonly boxes: Boxes | null;
  /** Classify models: class probabilities with top1/top5; null for the other tasks. */
  readonly probs: Probs | null;
  readonly keypoints: Keypoints | null;
  readonly speed: { preprocess: number; inference: number; postprocess: number };
  readonly frame: number | null;
  /** Which backend ran the forward: 'torch' (libtorch) or 'onnxruntime'. */
  readonly backend: 'torch' | 'onnxruntime' | null;
  private readonly plotter: ((r: Result, o: PlotOptions) => Buffer) | null;

  constructor(n: NativeResult, names: Record<number, string>, plotter: ((r: Result, o: PlotOptions) => Buffer) | null = null) {
    this.path = n.path;
    this.origShape = n.origShape;
    this.names = names;
    this.probs = n.probs ? new Probs(n.probs) : null;
    this.boxes = n.probs ? null : new Boxes(n.xyxy, n.conf, n.cls, n.origShape, n.id);
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
    for (const c of this.boxes?.cls ?? []) counts.set(c, (counts.get(c) ?? 0) + 1);
    if (counts.size === 0) return '(no detections)';
    return [...counts].sort((a, b) => a[0] - b[0]).map(([c, k]) => `${k} ${name(c)}${k > 1 ? 's' : ''}`).join(', ');
  }

  /** Annotated image (boxes, labels, confidences, skeletons; classify: the top-5 classes) encoded as JPEG or PNG. */
  plot(options: PlotOptions = {}): Buffer {
    if (!this.plotter) throw new Error('plot() needs the image: this result was not produced by predict()');
    return this.plotter(this, options);
  }

  /** One entry per detection (classify: per top-5 class), like the official `Results.summary()`. */
  toJSON() {
    if (this.probs) {
      const p = this.probs;
      return p.top5.map((c) => ({ name: this.names[c] ?? String(c), class: c, confidence: p.data[c] }));
    }
    const boxes = this.boxes!;
    return boxes.xyxy.map((b, i) => {
      const cls = boxes.cls[i];
      const entry: Record<string, unknown> = {
        name: this.names[cls] ?? String(cls),
        class: cls,
        confidence: boxes.conf[i],
        box: { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
      };
      if (boxes.id) entry.track_id = boxes.id[i];
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
