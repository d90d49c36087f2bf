// predict() on the ONNX Runtime backend: exported files give the .pt path's detections (dynamic and static
// exports), a checkpoint runs on ONNX Runtime through a cached export, the auto rule is reported, bad files fail
// with the file named, and a freshly trained model round-trips through export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import { exportModel, predict, train } from '../dist/index.js';
import { ORT_INSTALL_COMMAND, ORT_INSTALL_HINT } from '../dist/onnx.js';
import { fixture, root } from './helpers.mjs';

const pt = fixture('det/yolo26n-shapes.pt');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-ort-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache');
const images = [fixture('images/val/s11_val_0000.png'), fixture('images/val/s11_val_0001.png'), fixture('images/extra/wide_480x300.png')];

/**
 * Same detections: count, and every reference row has its own partner (same class, conf within 1e-5, box within
 * 2e-3 px) among the nearby rows, so rows with near-tied scores may swap places between the backends.
 */
function assertSame(a, b, label) {
  assert.equal(a.path, b.path, `${label}: path`);
  assert.deepEqual(a.origShape, b.origShape, `${label}: shape`);
  assert.equal(a.boxes.length, b.boxes.length, `${label}: count ${a.boxes.length} vs ${b.boxes.length}`);
  const n = b.boxes.length;
  const used = new Set();
  let worst = 0;
  for (let i = 0; i < n; i++) {
    let match = -1;
    for (let j = Math.max(0, i - 20); j < Math.min(n, i + 21) && match < 0; j++) {
      if (used.has(j) || a.boxes.cls[j] !== b.boxes.cls[i] || Math.abs(a.boxes.conf[j] - b.boxes.conf[i]) > 1e-5) continue;
      if ([0, 1, 2, 3].every((k) => Math.abs(a.boxes.xyxy[j][k] - b.boxes.xyxy[i][k]) <= 2e-3)) match = j;
    }
    assert.ok(match >= 0, `${label}: row ${i} cls ${b.boxes.cls[i]} conf ${b.boxes.conf[i]} [${b.boxes.xyxy[i]}] has no partner`);
    used.add(match);
    for (let k = 0; k < 4; k++) worst = Math.max(worst, Math.abs(a.boxes.xyxy[match][k] - b.boxes.xyxy[i][k]));
  }
  return worst;
}

function metaResults(image, imgsz, conf) {
  const meta = JSON.parse(fs.readFileSync(fixture(`det/shapes_outputs/${image}/imgsz${imgsz}/meta.json`), 'utf8'));
  return meta.predict_results_original_coords[`conf_${conf}`];
}

test('a dynamic .onnx export gives the .pt detections on the fixture images (square and rect letterbox)', async () => {
  const { path: onnx } = await exportModel({ model: pt, format: 'onnx', dynamic: true, imgsz: 320, out: path.join(tmp, 'dyn.onnx') });
  for (const imgsz of [320, 640]) {
    const ref = await predict({ model: pt, source: images, imgsz, conf: 0.05, backend: 'torch' });
    const stream = predict({ model: onnx, source: images, imgsz, conf: 0.05 });
    const got = await stream;
    assert.equal(stream.backend, 'onnxruntime');
    assert.equal(got.length, 3);
    let n = 0;
    for (let i = 0; i < 3; i++) {
      assert.equal(ref[i].backend, 'torch');
      assert.equal(got[i].backend, 'onnxruntime');
      const worst = assertSame(got[i], ref[i], `${path.basename(images[i])}@${imgsz}`);
      n += got[i].boxes.length;
      if (i === 0) console.log(`onnx vs pt @${imgsz}: ${got[i].boxes.length} boxes, max diff ${worst.toExponential(2)} px`);
    }
    assert.ok(n >= 3, 'too few detections to compare');
    assert.deepEqual(got[0].names, { 0: 'rectangle', 1: 'ellipse', 2: 'triangle' });
  }
});

test('a static 320 export with batch 2 matches the official predict results on a square image; partial batches pad', async () => {
  const { path: onnx } = await exportModel({ model: pt, format: 'onnx', imgsz: 320, batch: 2, out: path.join(tmp, 's320b2.onnx') });
  // three images through a batch-2 file: the last batch holds one image
  const got = await predict({ model: onnx, source: [images[0], images[1], images[0]], conf: 0.25 });
  assert.equal(got.length, 3);
  const want = metaResults('s11_val_0000', 320, '0.25');
  for (const r of [got[0], got[2]]) {
    assert.equal(r.boxes.length, want.conf.length);
    for (let i = 0; i < want.conf.length; i++) {
      assert.ok(Math.abs(r.boxes.conf[i] - want.conf[i]) <= 1e-5, `conf ${i}`);
      assert.equal(r.boxes.cls[i], want.cls[i]);
      for (let k = 0; k < 4; k++) assert.ok(Math.abs(r.boxes.xyxy[i][k] - want.xyxy[i][k]) <= 2e-3, `box ${i}.${k}`);
    }
  }
  // a static file runs its own size: imgsz given explicitly is ignored with a warning
  const warnings = [];
  const onWarn = (w) => warnings.push(w.message);
  process.on('warning', onWarn);
  try {
    const [r] = await predict({ model: onnx, source: images[0], imgsz: 640, conf: 0.25 });
    assertSame(r, got[0], 'imgsz ignored');
    await new Promise((res) => setImmediate(res));
  } finally {
    process.off('warning', onWarn);
  }
  assert.ok(warnings.some((w) => /fixed input of 320x320/.test(w)), warnings.join('\n'));
});

test("backend 'onnxruntime' on a .pt exports once to the cache and matches the torch backend; auto picks it on the CPU", async () => {
  const s1 = predict({ model: pt, source: images, imgsz: 320, conf: 0.05, backend: 'onnxruntime' });
  const a = await s1;
  assert.equal(s1.backend, 'onnxruntime');
  assert.ok(s1.onnxFile && s1.onnxFile.startsWith(process.env.YOLO26_CACHE_DIR), String(s1.onnxFile));
  const mtime = fs.statSync(s1.onnxFile).mtimeMs;
  const ref = await predict({ model: pt, source: images, imgsz: 320, conf: 0.05, backend: 'torch' });
  for (let i = 0; i < 3; i++) assertSame(a[i], ref[i], `cached export ${i}`);
  // auto on the CPU: ONNX Runtime, reusing the same cached file
  const s2 = predict({ model: pt, source: images[0], imgsz: 320, conf: 0.05 });
  const [b] = await s2;
  assert.equal(s2.backend, 'onnxruntime');
  assert.match(s2.backendReason, /CPU/);
  assert.equal(s2.onnxFile, s1.onnxFile);
  assert.equal(fs.statSync(s2.onnxFile).mtimeMs, mtime);
  assert.equal(b.backend, 'onnxruntime');
  assertSame(b, ref[0], 'auto');
  assert.deepEqual(fs.readdirSync(process.env.YOLO26_CACHE_DIR).filter((f) => f.includes('.tmp')), []);
  // the rule's other branches
  const y = predict({ model: 'yolo26n.yaml', source: images[0], imgsz: 64 });
  await y;
  assert.equal(y.backend, 'torch');
  await assert.rejects(predict({ model: path.join(tmp, 'dyn.onnx'), source: images[0], backend: 'torch' }).toArray(), /backend 'torch' cannot run/);
});

/** Runs `fn` with environment variables set (undefined: unset), restoring them afterwards. */
async function withEnv(vars, fn) {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (kv) => {
    for (const [k, v] of Object.entries(kv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(vars);
  try {
    return await fn();
  } finally {
    set(before);
  }
}

test('the native runner (ONNX Runtime C API in the pipeline) gives the worker runner\'s results exactly; a library that does not load is named and the worker takes over', async () => {
  const { path: onnx } = await exportModel({ model: pt, format: 'onnx', dynamic: true, imgsz: 320, out: path.join(tmp, 'runners.onnx') });
  const opts = { model: onnx, source: images, imgsz: 320, conf: 0.05 };
  const run = async (vars) =>
    withEnv({ YOLO26_ORT_RUNNER: undefined, YOLO26_ORT_LIB: undefined, ...vars }, async () => {
      const s = predict(opts);
      return { s, res: await s };
    });
  const nat = await run({});
  assert.equal(nat.s.ortRunner, 'native');
  const wrk = await run({ YOLO26_ORT_RUNNER: 'worker' });
  assert.equal(wrk.s.ortRunner, 'worker');
  let n = 0;
  for (let i = 0; i < images.length; i++) {
    const [a, b] = [nat.res[i].boxes, wrk.res[i].boxes];
    assert.deepEqual(Array.from(a.conf), Array.from(b.conf), `conf ${i}`);
    assert.deepEqual(Array.from(a.cls), Array.from(b.cls), `cls ${i}`);
    assert.deepEqual(a.xyxy, b.xyxy, `boxes ${i}`);
    n += a.length;
  }
  assert.ok(n >= 3, 'too few detections to compare');

  const lib = path.join(tmp, 'no-such-dir', 'libonnxruntime.so.1');
  const fallback = await run({ YOLO26_ORT_LIB: lib });
  assert.equal(fallback.s.ortRunner, 'worker');
  assert.ok(fallback.s.warnings.some((w) => w.includes(`cannot load the ONNX Runtime library ${lib}`) && /YOLO26_ORT_LIB/.test(w)), fallback.s.warnings.join('\n'));
  for (let i = 0; i < images.length; i++) assert.deepEqual(fallback.res[i].boxes.xyxy, nat.res[i].boxes.xyxy, `fallback ${i}`);
  // forced native: the same message as an error instead of the fallback
  await assert.rejects(run({ YOLO26_ORT_LIB: lib, YOLO26_ORT_RUNNER: 'native' }), (e) => e.message.includes(`cannot load the ONNX Runtime library ${lib}`));
  // a file that is not an ONNX Runtime library
  await assert.rejects(run({ YOLO26_ORT_LIB: onnx, YOLO26_ORT_RUNNER: 'native' }), (e) => e.message.includes(onnx) && /ONNX Runtime library/.test(e.message));
});

/** A minimal valid ONNX file (one Identity node) without any metadata, encoded by hand. */
function bareOnnx() {
  const varint = (n) => {
    const out = [];
    while (n > 127) { out.push((n & 127) | 128); n >>>= 7; }
    out.push(n);
    return out;
  };
  const field = (no, payload) => (typeof payload === 'number' ? [...varint(no << 3), ...varint(payload)] : [...varint((no << 3) | 2), ...varint(payload.length), ...payload]);
  const str = (s) => [...Buffer.from(s)];
  const dims = (...ds) => ds.flatMap((d) => field(1, field(1, d)));
  const vi = (name, shape) => [...field(1, str(name)), ...field(2, field(1, [...field(1, 1), ...field(2, dims(...shape))]))];
  const node = [...field(1, str('images')), ...field(2, str('output0')), ...field(3, str('id')), ...field(4, str('Identity'))];
  const graph = [...field(1, node), ...field(2, str('g')), ...field(11, vi('images', [1, 3, 64, 64])), ...field(12, vi('output0', [1, 3, 4096]))];
  return Buffer.from([...field(1, 8), ...field(8, field(2, 17)), ...field(7, graph)]);
}

test('files that are not YOLO ONNX exports fail with the file named', async () => {
  const bare = path.join(tmp, 'bare.onnx');
  fs.writeFileSync(bare, bareOnnx());
  await assert.rejects(predict({ model: bare, source: images[0] }).toArray(), (e) => e.message.includes(bare) && /no YOLO metadata/.test(e.message));
  const junk = path.join(tmp, 'junk.onnx');
  fs.writeFileSync(junk, 'not a protobuf at all');
  await assert.rejects(predict({ model: junk, source: images[0] }).toArray(), (e) => e.message.includes('junk.onnx'));
  await assert.rejects(predict({ model: path.join(tmp, 'missing.onnx'), source: images[0] }).toArray(), /missing\.onnx/);
  // end2end cannot be changed after export
  await assert.rejects(predict({ model: path.join(tmp, 'dyn.onnx'), source: images[0], end2end: false }).toArray(), /exported with end2end=true/);
});

test('round trip: train a tiny model, export it, predict on the ONNX file gives the .pt detections', { timeout: 600000 }, async () => {
  const project = path.join(tmp, 'runs');
  const r = await train({ data: fixture('metrics/data.yaml'), model: 'yolo26n.yaml', epochs: 1, imgsz: 64, batch: 4, workers: 1, plots: false, val: false, project, name: 'rt' });
  const best = fs.existsSync(path.join(r.saveDir, 'weights', 'best.pt')) ? path.join(r.saveDir, 'weights', 'best.pt') : path.join(r.saveDir, 'weights', 'last.pt');
  const { path: onnx } = await exportModel({ model: best, format: 'onnx', dynamic: true, imgsz: 64, out: path.join(tmp, 'trained.onnx') });
  const ref = await predict({ model: best, source: images, imgsz: 64, conf: 0.001, backend: 'torch' });
  const got = await predict({ model: onnx, source: images, imgsz: 64, conf: 0.001 });
  let n = 0;
  for (let i = 0; i < images.length; i++) {
    assertSame(got[i], ref[i], `trained ${i}`);
    n += got[i].boxes.length;
  }
  assert.ok(n > 0, 'the trained model gave no detections at conf 0.001');
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('the onnxruntime-node install advice switches off its GPU download, in the error, the set-up and the docs', () => {
  assert.match(ORT_INSTALL_COMMAND, /^ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1\.30$/);
  assert.ok(ORT_INSTALL_HINT.includes(ORT_INSTALL_COMMAND));
  // The error a user sees when the package does not load: a child where importing onnxruntime-node fails.
  const hooks = 'export async function resolve(s, c, next) { if (s === "onnxruntime-node") { const e = new Error("Cannot find package onnxruntime-node"); e.code = "ERR_MODULE_NOT_FOUND"; throw e; } return next(s, c); }';
  const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));`;
  const script = "import('./dist/onnx.js').then((m) => m.loadOrt()).then(() => console.log('loaded'), (e) => console.log(e.code + ' ' + e.message))";
  const out = execFileSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, '-e', script], { cwd: root, encoding: 'utf8' });
  assert.match(out, /^YOLO26_NO_ONNXRUNTIME /);
  assert.ok(out.includes(ORT_INSTALL_COMMAND), out);
  // What this repository runs and documents carries the same setting.
  assert.match(fs.readFileSync(path.join(root, 'scripts/setup.sh'), 'utf8'), /ONNXRUNTIME_NODE_INSTALL=skip npm ci /);
  assert.match(fs.readFileSync(path.join(root, 'scripts/test-install.sh'), 'utf8'), /ONNXRUNTIME_NODE_INSTALL=skip npm_i --save-optional onnxruntime-node@1\.30/);
  assert.ok(fs.readFileSync(path.join(root, 'README.md'), 'utf8').includes(ORT_INSTALL_COMMAND));
});
