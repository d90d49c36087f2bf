/** exportModel(): ONNX written by the engine; TensorRT engines through ONNX Runtime's TensorRT provider. */
import { execFileSync } from 'node:child_process';
import { Yolo26Error, OptionError } from './errors.js';
import { native } from './native.js';
import { exportSchema, imgszPair, parseOptions, type ExportOptions } from './options.js';

/** Whether the TensorRT runtime library is installed (ONNX Runtime's TensorRT provider needs it). */
function hasTensorRT(): boolean {
  try {
    return /libnvinfer\.so/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return false;
  }
}

export interface ExportResult {
  format: 'onnx' | 'engine';
  path: string;
}

export async function exportModel(options: ExportOptions & { out?: string }): Promise<ExportResult> {
  const { out, ...rest } = options;
  const cfg = parseOptions('exportModel', exportSchema, rest);
  if (cfg.format === 'engine') {
    if (!hasTensorRT())
      throw new Yolo26Error(
        "exportModel(): format 'engine' needs NVIDIA TensorRT, which this machine lacks (no libnvinfer.so in the linker cache). " +
          "Install TensorRT (e.g. the 'tensorrt' packages from NVIDIA's CUDA repository) and reinstall onnxruntime-node with its GPU providers " +
          '(ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node), or export format=onnx.',
        'YOLO26_NO_TENSORRT',
      );
    if (cfg.device === '' || cfg.device === 'cpu')
      throw new OptionError("exportModel(): format 'engine' builds for a GPU: pass device=0", 'device');
  }
  const [h, w] = imgszPair(cfg.imgsz);
  const write = native().exportOnnx as (o: object) => Promise<string>;
  const onnx = await write({
    model: cfg.model,
    out: cfg.format === 'onnx' ? out ?? '' : '',
    imgszH: h,
    imgszW: w,
    batch: cfg.batch,
    dynamic: cfg.dynamic,
    half: cfg.half,
    opset: cfg.opset ?? 17,
    simplify: cfg.simplify,
    end2end: cfg.end2end ?? true,
    maxDet: cfg.max_det,
  });
  if (cfg.format === 'onnx') return { format: 'onnx', path: onnx };
  return buildTensorRTEngine(onnx, cfg.half, out);
}

/** Builds and caches a TensorRT engine by opening the ONNX file with ONNX Runtime's TensorRT provider. */
async function buildTensorRTEngine(onnx: string, half: boolean, out?: string): Promise<ExportResult> {
  const ort = (await import('onnxruntime-node')) as typeof import('onnxruntime-node');
  const cacheDir = out ?? onnx.replace(/\.onnx$/, '_engine');
  await ort.InferenceSession.create(onnx, {
    executionProviders: [
      { name: 'tensorrt', trtFp16Enable: half, trtEngineCacheEnable: true, trtEngineCachePath: cacheDir } as never,
    ],
  });
  return { format: 'engine', path: cacheDir };
}
