/**
 * The native addon's exports as the facade calls them (native/addon/*.cpp), typed once here so no call site casts.
 * Options cross into C++ under the official (default.yaml) names, filled by the mode's zod schema (options.ts).
 */
import type { ForwardOutput, ModelSummary } from './model.js';
import type { NativeResult } from './results.js';

export interface NativeSystemInfo {
  torchVersion: string;
  opencvVersion: string;
  cudaBuilt: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudaVersion: string;
  cudnnVersion: string;
  cudnnAvailable: boolean;
  blas: string;
  parallelBackend: string;
  intraOpThreads: number;
  interOpThreads: number;
  hardwareThreads: number;
  physicalCores: number;
  /** Native bf16 arithmetic on the CPU: `cpu_amp: true` training can use it. */
  cpuBf16: boolean;
  buildConfig: string;
  /** The libtorch the addon was compiled against, and the discovery rule that chose it. */
  builtAgainst: { libDir: string; rule: string; why: string; cuda: string };
  /** The CUDA version the NVIDIA driver supports (cuDriverGetVersion), "" without a driver. */
  driverCudaVersion: string;
}

/** A loaded model (loadModel). */
export interface NativeModel {
  info(imgsz: number): Omit<ModelSummary, 'gflops' | 'text'>;
  summary(imgsz: number): { gflops: number; text: string };
  fuse(): void;
  forward(data: Float32Array, shape: number[], raw: boolean): Promise<ForwardOutput>;
  save(path: string): Promise<string>;
  dispose(): void;
}

/** What a predictor reads (predict.ts toNativeSource). */
export type NativeSource =
  | { kind: 'paths'; specs: string[] }
  | { kind: 'encoded'; buffers: Uint8Array[] }
  | { kind: 'pixels'; images: Array<{ data: Uint8Array; width: number; height: number; channels: number; order: string }> }
  | { kind: 'camera'; index: number };

/** A predictor's result: NativeResult plus the original image it keeps for plot(). */
export type NativeStreamResult = NativeResult & { image?: unknown };

/** An open prediction stream (openPredictor). */
export interface NativePredictor {
  next(): Promise<NativeStreamResult | null>;
  close(): void;
  saveDir(): string | null;
  warnings(): string[];
  names(): string[];
}

/**
 * ONNX Runtime for openPredictor: the file, and either a session of ONNX Runtime's C API that the pipeline runs on
 * its own threads (ortOpen), or the function that runs one batch in JavaScript (ort_forward.h).
 */
export type NativeOnnxRunner =
  | { path: string; session: NativeOrtSession }
  | { path: string; run: (data: Float32Array | Uint16Array, dims: number[], type: 'float32' | 'float16', done: NativeOrtDone) => void };

/** A session opened by ortOpen; release() drops this handle (running predictors keep theirs). */
export interface NativeOrtSession {
  release(): void;
  inputNames(): string[];
  outputNames(): string[];
  /** The ONNX Runtime library's version, null once released. */
  version(): string | null;
}

/** How the runner answers one batch: an error, or the outputs by name. */
export type NativeOrtDone = (err: unknown, outputs?: Array<{ name: string; data: unknown; dims: readonly number[]; type: string }>) => void;

/** A tracker from createTracker(yamlPath). */
export interface NativeTracker {
  update(d: Record<string, Float32Array>): Record<string, Float32Array>;
  reset(): void;
  config(): Record<string, unknown>;
}

/** One event of a training, validation or demo run: numbers and strings keyed by the engine's names. */
export interface NativeEvent {
  type: string;
  num: Record<string, number>;
  str: Record<string, string>;
  error?: string;
  result?: Record<string, number | string>;
}

/** startTraining / startValidation / startDemo: runs off the JS thread, reporting through onEvent. */
export type NativeRunStarter = (args: object, onEvent: (e: NativeEvent) => void) => { stop(): void };

/** exportOnnx's options: the export schema's, under their official names (null: onnx_export.h's default). */
export interface NativeExportArgs {
  model: string;
  /** Output file; '' writes beside the checkpoint. */
  out: string;
  imgsz: [number, number];
  batch: number;
  dynamic: boolean;
  half: boolean;
  opset: number | null;
  simplify: boolean;
  end2end: boolean | null;
  max_det: number;
}

/** What an exported file brings to predict (onnxInfo). */
export interface NativeOnnxInfo {
  task: string;
  names: string[];
  /** null when the input size is dynamic. */
  imgsz: [number, number] | null;
  /** 0 when the batch is dynamic. */
  batch: number;
  half: boolean;
  end2end: boolean;
  stride: number;
}

export type NativeDefault = string | number | boolean | null | number[];

export interface NativeAddon {
  systemInfo(): NativeSystemInfo;
  setThreads(threads: number, loaderWorkers?: number): number;
  resolveDevice(device: string): string;
  setModelsDir(dir: string): void;
  debugMatmul(a: number[], b: number[], async?: boolean): number[] | Promise<number[]>;
  loadModel(path: string, device: string, nc?: number): Promise<NativeModel>;
  /** Test support: BatchNorm statistics from a batch, so a random-weight model gives input-dependent outputs. */
  calibrateBatchNorm(model: NativeModel, data: Float32Array, shape: number[]): void;
  checkpointImgsz(file: string): [number, number] | null;
  openPredictor(model: NativeModel | null, source: NativeSource, args: object, onnx?: NativeOnnxRunner): NativePredictor;
  onnxInfo(file: string): NativeOnnxInfo;
  /** Opens an .onnx file with the ONNX Runtime shared library at `library` (loaded once per process). */
  ortOpen(library: string, file: string, threads: number): Promise<NativeOrtSession>;
  plotResult(image: unknown, result: NativeResult, names: string[], options: { format: string; lineWidth: number; labels: boolean; conf: boolean }): Buffer;
  countSource(specs: string[], vidStride: number): number;
  createTracker(yamlPath: string): NativeTracker;
  exportOnnx(args: NativeExportArgs): Promise<string>;
  /** The defaults the core applies to options a C++ caller leaves out; the schemas in options.ts must agree. */
  coreDefaults(): Record<'train' | 'predict' | 'export', Record<string, NativeDefault>>;
  startTraining: NativeRunStarter;
  startValidation: NativeRunStarter;
  startDemo: NativeRunStarter;
}
