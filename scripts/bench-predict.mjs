// predict() through both backends in one run: node scripts/bench-predict.mjs [model.pt] [imgsz=640] [images=20] [threads=0]
// Times ms per image for the libtorch path and the ONNX Runtime path (same checkpoint, batch 1, the whole
// predict() pipeline: decode, letterbox, forward, postprocess), the one-off export to ONNX, and which backend
// the auto rule picks. threads 0 = each runtime's default. The last line is one JSON object.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportModel, predict } from '../dist/index.js';

const root = path.resolve(import.meta.dirname, '..');
const fixture = (rel) => path.join(root, 'test', 'fixtures', rel);
const model = process.argv[2] || fixture('det/yolo26n-coco-random.pt');
const imgsz = Number(process.argv[3] ?? 640);
const count = Number(process.argv[4] ?? 20);
const threads = Number(process.argv[5] ?? 0);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-bench-predict-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache'); // a cold cache: the first ONNX Runtime call exports

// square 320x320 images: letterboxed to imgsz x imgsz
const images = Array.from({ length: count }, (_, i) => fixture(`images/val/s11_val_000${i % 2}.png`));
const base = { model, imgsz, batch: 1, conf: 0.25, threads };

async function timed(backend) {
  const t0 = performance.now();
  const warm = predict({ ...base, source: images.slice(0, 2), backend });
  await warm; // loads the model / opens the session (and exports, for ONNX Runtime on a .pt)
  const firstMs = performance.now() - t0;
  const t1 = performance.now();
  const c1 = process.cpuUsage();
  const res = await predict({ ...base, source: images, backend });
  const wall = (performance.now() - t1) / images.length;
  const cpu = process.cpuUsage(c1);
  const mean = (k) => res.reduce((a, r) => a + r.speed[k], 0) / res.length;
  return { backend: warm.backend, msPerImage: wall, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / images.length, inferenceMs: mean('inference'), preprocessMs: mean('preprocess'), postprocessMs: mean('postprocess'), firstCallMs: firstMs, detections: res.reduce((a, r) => a + r.boxes.length, 0) };
}

const t0 = performance.now();
const ex = await exportModel({ model, format: 'onnx', dynamic: true, out: path.join(tmp, 'export.onnx') });
const exportMs = performance.now() - t0;
fs.rmSync(ex.path);

const torch = await timed('torch');
const ort = await timed('onnxruntime');
const auto = predict({ ...base, source: images.slice(0, 1) });
await auto;
for (const r of [torch, ort])
  console.log(
    `${r.backend.padEnd(11)} ${imgsz}x${imgsz} batch 1: ${r.msPerImage.toFixed(1)} ms/image through predict() ` +
      `(CPU ${r.cpuMsPerImage.toFixed(1)} ms; inference ${r.inferenceMs.toFixed(1)}, preprocess ${r.preprocessMs.toFixed(2)}, postprocess ${r.postprocessMs.toFixed(2)} ms), ` +
      `first call ${r.firstCallMs.toFixed(0)} ms, ${r.detections} detections over ${count} images`,
  );
console.log(`export to ONNX (dynamic): ${exportMs.toFixed(0)} ms; ONNX Runtime / libtorch speed-up ${(torch.msPerImage / ort.msPerImage).toFixed(2)}x`);
console.log(`auto chose ${auto.backend}: ${auto.backendReason}`);
fs.rmSync(tmp, { recursive: true, force: true });
console.log(
  JSON.stringify({
    model: path.basename(model),
    imgsz,
    batch: 1,
    images: count,
    threads,
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
    torch,
    onnxruntime: ort,
    exportMs,
    speedup: torch.msPerImage / ort.msPerImage,
    auto: auto.backend,
    autoReason: auto.backendReason,
  }),
);
