// Times our predict() from Node (a .pt checkpoint, batch 1, the backend the auto rule picks) over a folder of
// images after a two-image warm-up, then, in the same process, ONNX Runtime's bare forward of the same checkpoint's
// export (same session options, a pre-built 1x3xSxS input): the pipeline overhead is their ratio. The two alternate
// for a few rounds (this machine's load drifts within a run) and each reports its median round. One round of the
// worker runner (YOLO26_ORT_RUNNER=worker: onnxruntime-node in a worker thread, the fallback) is reported too.
// JSON last.
//   node scripts/compare/ours_predict.mjs MODEL.pt FOLDER [imgsz=640] [rounds=3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportModel, predict } from '../../dist/index.js';

const [model, folder, imgszArg, roundsArg] = process.argv.slice(2);
if (!model || !folder) {
  console.error('usage: node scripts/compare/ours_predict.mjs MODEL.pt FOLDER [imgsz=640] [rounds=3]');
  process.exit(2);
}
const imgsz = Number(imgszArg ?? 640);
const rounds = Number(roundsArg ?? 3);
const files = fs.readdirSync(folder).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => path.join(folder, f));
const base = { model, imgsz, batch: 1, conf: 0.25 };
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function ours() {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const stream = predict({ ...base, source: folder });
  const res = await stream;
  const cpu = process.cpuUsage(c0);
  const mean = (k) => res.reduce((a, r) => a + r.speed[k], 0) / res.length;
  return {
    runner: stream.ortRunner,
    ms: (performance.now() - t0) / res.length,
    cpu: (cpu.user + cpu.system) / 1000 / res.length,
    images: res.length,
    detections: res.reduce((a, r) => a + r.boxes.length, 0),
    preprocess: mean('preprocess'),
    inference: mean('inference'),
    postprocess: mean('postprocess'),
  };
}

const warm = predict({ ...base, source: files.slice(0, 2) });
await warm;

// The bare forward: the same export the predictor runs (dynamic shape), opened as ts/onnx.ts opens it.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-compare-predict-'));
const mine = [];
const bare = [];
let worker = null;
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
  const bareRound = async () => {
    const t1 = performance.now();
    const c1 = process.cpuUsage();
    for (let i = 0; i < files.length; ++i) await session.run(feeds);
    const cpu = process.cpuUsage(c1);
    return { ms: (performance.now() - t1) / files.length, cpu: (cpu.user + cpu.system) / 1000 / files.length };
  };
  for (let r = 0; r < rounds; ++r) {
    mine.push(await ours());
    bare.push(await bareRound());
  }
  const before = process.env.YOLO26_ORT_RUNNER;
  process.env.YOLO26_ORT_RUNNER = 'worker';
  try {
    await predict({ ...base, source: files.slice(0, 2) });
    worker = await ours();
  } finally {
    if (before === undefined) delete process.env.YOLO26_ORT_RUNNER;
    else process.env.YOLO26_ORT_RUNNER = before;
  }
  await session.release();
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
const m = mine.find((r) => r.ms === median(mine.map((x) => x.ms)));
const bareMs = median(bare.map((b) => b.ms));
console.log(
  `ours (${warm.backend}, ${m.runner ?? 'libtorch'} runner) ${m.ms.toFixed(1)} ms/img [rounds ${mine.map((r) => r.ms.toFixed(1)).join(', ')}], ` +
    `bare ONNX Runtime forward ${bareMs.toFixed(1)} ms [${bare.map((b) => b.ms.toFixed(1)).join(', ')}]: ${(m.ms / bareMs).toFixed(3)}x; ` +
    `worker runner ${worker.ms.toFixed(1)} ms/img`,
);
console.log(
  JSON.stringify({
    backend: warm.backend,
    runner: m.runner,
    ms_per_image: m.ms,
    cpu_ms_per_image: m.cpu,
    images: m.images,
    detections: m.detections,
    preprocess_ms: m.preprocess,
    inference_ms: m.inference,
    postprocess_ms: m.postprocess,
    bare_forward_ms: bareMs,
    bare_cpu_ms: median(bare.map((b) => b.cpu)),
    ours_over_bare: m.ms / bareMs,
    rounds_ms: mine.map((r) => r.ms),
    bare_rounds_ms: bare.map((b) => b.ms),
    worker_runner_ms_per_image: worker.ms,
    worker_runner_cpu_ms_per_image: worker.cpu,
  }),
);
