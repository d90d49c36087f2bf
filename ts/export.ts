/** exportModel(): ONNX written by the engine; TensorRT engines through ONNX Runtime's TensorRT provider. */
import { execFileSync } from 'node:child_process';
import type { NativeExportArgs } from './addon.js';
import { Yolo26Error, OptionError } from './errors.js';
import { native } from './native.js';
import { loadOrt } from './onnx.js';
import { exportSchema, imgszPair, parseOptions, type ExportConfig, type ExportOptions } from './options.js';

/** Whether the TensorRT runtime library is installed (ONNX Runtime's TensorRT provider needs it). */
function hasTensorRT(): boolean {
  try {
    return /libnvinfer\.so/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return false;
  }
}

/** exportOnnx's arguments: the parsed options under their official names; `out` '' writes beside the checkpoint. */
export function nativeExportArgs(cfg: ExportConfig, out: string, end2end: boolean | null = cfg.end2end): NativeExportArgs {
  const { model, batch, dynamic, half, opset, simplify, max_det } = cfg;
  return { model, out, imgsz: imgszPair(cfg.imgsz), batch, dynamic, half, opset, simplify, end2end, max_det };
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
  const onnx = await native().exportOnnx(nativeExportArgs(cfg, cfg.format === 'onnx' ? out ?? '' : ''));
  if (cfg.format === 'onnx') return { format: 'onnx', path: onnx };
  return buildTensorRTEngine(onnx, cfg.half, out);
}

/** Builds and caches a TensorRT engine by opening the ONNX file with ONNX Runtime's TensorRT provider. */
async function buildTensorRTEngine(onnx: string, half: boolean, out?: string): Promise<ExportResult> {
  const ort = await loadOrt('exportModel()');  // install advice, not a bare "module not found", when it is missing
  const cacheDir = out ?? onnx.replace(/\.onnx$/, '_engine');
  await ort.InferenceSession.create(onnx, {
    executionProviders: [
      { name: 'tensorrt', trtFp16Enable: half, trtEngineCacheEnable: true, trtEngineCachePath: cacheDir } as never,
    ],
  });
  return { format: 'engine', path: cacheDir };
}
