/** Prediction results with the shape of the official `Results` object, in plain JS arrays. */

/** What the addon hands over for one image: flat typed arrays, row-major. */
export interface NativeResult {
  path: string;
  origShape: [number, number]; // [height, width]
  xyxy: Float32Array; // N*4, original image pixels
  conf: Float32Array; // N
  cls: Float32Array; // N
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
  private readonly shape: [number, number];

  constructor(xyxy: Float32Array, conf: Float32Array, cls: Float32Array, origShape: [number, number]) {
    this.xyxy = rows(xyxy, 4);
    this.conf = Array.from(conf);
    this.cls = Array.from(cls);
    this.shape = origShape;
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
  readonly boxes: Boxes;
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
    this.boxes = new Boxes(n.xyxy, n.conf, n.cls, n.origShape);
    this.keypoints = n.keypoints && n.kptShape ? new Keypoints(n.keypoints, n.kptShape, n.origShape) : null;
    this.speed = n.speed;
    this.frame = n.frame ?? null;
    this.backend = n.backend ?? null;
    this.plotter = plotter;
  }

  /** Annotated image (boxes, labels, confidences, skeletons) encoded as JPEG or PNG. */
  plot(options: PlotOptions = {}): Buffer {
    if (!this.plotter) throw new Error('plot() needs the image: this result was not produced by predict()');
    return this.plotter(this, options);
  }

  /** One entry per detection, like the official `Results.summary()`. */
  toJSON() {
    return this.boxes.xyxy.map((b, i) => {
      const cls = this.boxes.cls[i];
      const entry: Record<string, unknown> = {
        name: this.names[cls] ?? String(cls),
        class: cls,
        confidence: this.boxes.conf[i],
        box: { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
      };
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
