/** The low-level model API: load a checkpoint or model YAML, inspect it, run raw forwards. */
import type { NativeModel } from './addon.js';
import { OptionError } from './errors.js';
import { notAFile } from './files.js';
import { native } from './native.js';

export interface TensorData {
  data: Float32Array;
  shape: number[];
}

export interface BranchOutput {
  boxes: TensorData; // (B,4,A) raw l,t,r,b distances in stride units
  scores: TensorData; // (B,nc,A) raw logits
  kpts?: TensorData; // pose: (B,K*3,A) raw
}

export interface ForwardOutput {
  one2many?: BranchOutput; // absent after fuse() and for classify models
  one2one: BranchOutput; // absent for classify models
  end2end: TensorData; // (B,300,6) detect, (B,300,57) pose; empty for classify models
  probs?: TensorData; // classify: (B,nc) softmax probabilities
  logits?: TensorData; // classify: (B,nc) raw logits
}

export interface ModelSummary {
  task: string;
  nc: number;
  names: Record<number, string>;
  kptShape: [number, number] | null;
  stride: number[];
  end2end: boolean;
  imgsz: number | null;
  layers: number;
  parameters: number;
  gradients: number;
  gflops: number;
  fused: boolean;
  source: string;
  text: string;
}

export class Model {
  /** @internal */
  readonly handle: NativeModel;

  private constructor(handle: NativeModel) {
    this.handle = handle;
  }

  /**
   * Loads an official or own `.pt` checkpoint, or builds a model from a YAML (`yolo26n.yaml`, a path);
   * `nc` sets the class count of a YAML model.
   */
  static async load(pathOrYaml: string, options: { device?: string; nc?: number } = {}): Promise<Model> {
    const what = notAFile(pathOrYaml);
    if (what) throw new OptionError(`loadModel(): model ${pathOrYaml} is ${what}, not a file: pass a .pt checkpoint or a model YAML`, 'model');
    return new Model(await native().loadModel(pathOrYaml, options.device ?? 'cpu', options.nc));
  }

  /** Writes the weights as a `.pt` checkpoint (as the official `model.save()`); the model must not be fused. */
  save(path: string): Promise<string> {
    return this.handle.save(path);
  }

  /** The model's summary; `gflops` and `text` (a forward pass at imgsz, on this thread) are computed when read. */
  info(imgsz = 640): ModelSummary {
    let cost: { gflops: number; text: string } | undefined;
    const summary = () => (cost ??= this.handle.summary(imgsz));
    return Object.defineProperties(this.handle.info(imgsz), {
      gflops: { get: () => summary().gflops, enumerable: true },
      text: { get: () => summary().text, enumerable: true },
    }) as ModelSummary;
  }

  /** Folds BatchNorm into the convolutions and drops the one-to-many branch, as the official fuse(). */
  fuse(): this {
    this.handle.fuse();
    return this;
  }

  /**
   * Frees the model's native memory now (once no running predict stream uses it); later calls on it are errors.
   * Models not disposed are freed when garbage-collected (V8 is told their native size, so that comes soon enough).
   */
  dispose(): void {
    this.handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  /** Runs the network on a float32 NCHW batch (values 0..1). `raw` adds both branches' raw head outputs. */
  forward(input: TensorData, options: { raw?: boolean } = {}): Promise<ForwardOutput> {
    const n = input.shape.reduce((a, b) => a * b, 1);
    if (input.shape.length !== 4 || input.shape[1] !== 3 || n !== input.data.length)
      throw new Error(`forward(): input must be {data, shape:[B,3,H,W]} with B*3*H*W values; got shape [${input.shape}] and ${input.data.length} values`);
    return this.handle.forward(input.data, input.shape, options.raw ?? true);
  }
}

export const loadModel = (pathOrYaml: string, options?: { device?: string; nc?: number }) => Model.load(pathOrYaml, options);

/** Layers, parameters and GFLOPs of a model or checkpoint (what `yolo26 info` prints). */
export async function modelInfo(options: { model: string; imgsz?: number }): Promise<ModelSummary> {
  const m = await Model.load(options.model);
  try {
    const s = m.info(options.imgsz ?? 640);
    void s.gflops; // computed lazily from the model: read it before the model is freed
    return s;
  } finally {
    m.dispose();
  }
}
