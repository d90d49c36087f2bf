// Times our predict() from Node (a .pt checkpoint, batch 1, the backend the auto rule picks) over a folder of
// images after a two-image warm-up, then, in the same process, ONNX Runtime's bare forward of the same checkpoint's
// export (same session options, a pre-built 1x3xSxS input): the pipeline overhead is their ratio. JSON last.
//   node scripts/compare/ours_predict.mjs MODEL.pt FOLDER [imgsz=640]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportModel, predict } from '../../dist/index.js';

const [model, folder, imgszArg] = process.argv.slice(2);
if (!model || !folder) {
  console.error('usage: node scripts/compare/ours_predict.mjs MODEL.pt FOLDER [imgsz=640]');
  process.exit(2);
}
const imgsz = Number(imgszArg ?? 640);
const files = fs.readdirSync(folder).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => path.join(folder, f));
const base = { model, imgsz, batch: 1, conf: 0.25 };

const warm = predict({ ...base, source: files.slice(0, 2) });
await warm;
const t0 = performance.now();
const c0 = process.cpuUsage();
const res = await predict({ ...base, source: folder });
const ms = (performance.now() - t0) / res.length;
const cpu = process.cpuUsage(c0);
const mean = (k) => res.reduce((a, r) => a + r.speed[k], 0) / res.length;

// The bare forward: the same export the predictor runs (dynamic shape), opened as ts/onnx.ts opens it.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-compare-predict-'));
let bare = null;
try {
  const ort = (await import('onnxruntime-node')).default;
  const ex = await exportModel({ model, format: 'onnx', dynamic: true, out: path.join(tmp, 'model.onnx') });
  const session = await ort.InferenceSession.create(ex.path, {
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  const input = new ort.Tensor('float32', new Float32Array(3 * imgsz * imgsz).fill(0.5), [1, 3, imgsz, imgsz]);
  const feeds = { [session.inputNames[0]]: input };
  for (let i = 0; i < 3; ++i) await session.run(feeds);
  const n = files.length;
  const t1 = performance.now();
  for (let i = 0; i < n; ++i) await session.run(feeds);
  bare = (performance.now() - t1) / n;
  await session.release();
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(
  JSON.stringify({
    backend: warm.backend,
    ms_per_image: ms,
    cpu_ms_per_image: (cpu.user + cpu.system) / 1000 / res.length,
    images: res.length,
    detections: res.reduce((a, r) => a + r.boxes.length, 0),
    preprocess_ms: mean('preprocess'),
    inference_ms: mean('inference'),
    postprocess_ms: mean('postprocess'),
    bare_forward_ms: bare,
  }),
);
