// RSS over load/predict cycles: node scripts/rss-cycles.mjs [cycles=200] [mode=dispose|gc-only] [backend=torch|onnxruntime]
// Each cycle loads the model (loadModel) and predicts one image at imgsz 64 through a predict stream, then either
// disposes both (mode dispose) or drops them for the garbage collector (gc-only). Prints RSS every 20 cycles and,
// last, one JSON line {cycles, mode, backend, rssStartMb, rssEndMb, rssMaxMb}. Under node --expose-gc, V8's garbage
// is collected every cycle, so the RSS left is native memory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, predict } from '../dist/index.js';

const root = path.resolve(import.meta.dirname, '..');
const fixture = (rel) =>
  [path.join(root, 'test', 'fixtures', rel), path.join(root, '..', 'shared', 'fixtures', rel), path.join(root, '..', '..', 'shared', 'fixtures', rel)].find((p) =>
    fs.existsSync(p),
  ) ?? rel;
const cycles = Number(process.argv[2] ?? 200);
const mode = process.argv[3] ?? 'dispose';
const backend = process.argv[4] ?? 'torch';
const model = fixture('det/yolo26n-shapes.pt');
const image = fs.readFileSync(fixture('images/val/s11_val_0000.png'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-rss-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache');

const mb = () => process.memoryUsage().rss / 2 ** 20;
let start = 0;
let max = 0;
for (let i = 1; i <= cycles; i++) {
  const m = await loadModel(model);
  const s = predict({ model, source: image, imgsz: 64, backend, verbose: false });
  const r = await s;
  if (r.length !== 1) throw new Error(`cycle ${i}: ${r.length} results`);
  if (mode === 'dispose') {
    s.dispose();
    m.dispose();
  }
  globalThis.gc?.();  // with --expose-gc: V8 garbage out of the way, what is left is native
  if (i === 5) start = mb();  // after warm-up: allocator pools and the ONNX Runtime session exist
  max = Math.max(max, mb());
  if (i % 20 === 0) console.log(`cycle ${i}: rss ${mb().toFixed(0)} MB`);
}
fs.rmSync(tmp, { recursive: true, force: true });
console.log(JSON.stringify({ cycles, mode, backend, rssStartMb: +start.toFixed(1), rssEndMb: +mb().toFixed(1), rssMaxMb: +max.toFixed(1) }));
