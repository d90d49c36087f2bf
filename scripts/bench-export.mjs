// ONNX Runtime vs libtorch forward for one model: node scripts/bench-export.mjs [model.pt] [imgsz=640] [iters=20] [threads=2]
// Exports with build-core/bench_export, times ORT (intra-op threads as given, batch 1, end2end output) and the
// libtorch fused forward of the same checkpoint (bench_export --time-torch, same threads).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';

const root = path.resolve(import.meta.dirname, '..');
const model = process.argv[2] ?? path.join(root, 'test', 'fixtures', 'det', 'yolo26n-coco-random.pt');
const imgsz = Number(process.argv[3] ?? 640);
const iters = Number(process.argv[4] ?? 20);
const threads = Number(process.argv[5] ?? 2);
const exe = path.join(root, 'build-core', 'bench_export');
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'y26-bench-')), 'model.onnx');
console.log(execFileSync(exe, ['--model', model, '--imgsz', String(imgsz), '--out', out]).toString().trim());

const session = await ort.InferenceSession.create(out, { intraOpNumThreads: threads, interOpNumThreads: 1 });
const x = new ort.Tensor('float32', Float32Array.from({ length: 3 * imgsz * imgsz }, () => Math.random()), [1, 3, imgsz, imgsz]);
for (let i = 0; i < 3; i++) await session.run({ images: x });
const times = [];
const cpu0 = process.cpuUsage();
for (let i = 0; i < iters; i++) {
  const t0 = process.hrtime.bigint();
  await session.run({ images: x });
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const cpu = process.cpuUsage(cpu0);
const cpuMs = (cpu.user + cpu.system) / 1000 / iters;
const mean = times.reduce((a, b) => a + b, 0) / times.length;
console.log(`onnxruntime-node ${ort.env.versions.node} CPU, ${threads} threads, 1x3x${imgsz}x${imgsz}: mean ${mean.toFixed(2)} ms, best ${Math.min(...times).toFixed(2)} ms, CPU ${cpuMs.toFixed(2)} ms per run over ${iters}`);
console.log(execFileSync(exe, ['--model', model, '--imgsz', String(imgsz), '--time-torch', String(iters), '--threads', String(threads)]).toString().trim());
fs.rmSync(path.dirname(out), { recursive: true, force: true });
