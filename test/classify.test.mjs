// Classify models end to end from Node: predict on the libtorch and ONNX Runtime backends (Result.probs with
// top1/top5, no boxes, plot, save/save_txt under runs/classify), the ONNX export, and val on a folder data set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { exportModel, loadModel, predict, val } from '../dist/index.js';
import { native } from '../dist/native.js';
import { fixture } from './helpers.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-cls-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache');
const images = [fixture('images/val/s11_val_0000.png'), fixture('images/extra/wide_480x300.png')];
const NAMES = ['0', '1', '2', '3', '4'];
const IMGSZ = 64; // a multiple of 32: predict (.pt), val and ORT all run this size, unrounded

/**
 * A random yolo26n-cls with 5 classes, saved as a checkpoint (the same weights for every backend). A fresh random
 * model's outputs are its head bias for every input (activations shrink layer by layer), so BatchNorm is first
 * calibrated on a batch of noise images: then the outputs depend on the image.
 */
let ptPromise = null;
function checkpoint() {
  ptPromise ??= (async () => {
    const m = await loadModel('yolo26n-cls.yaml', { nc: NAMES.length });
    assert.equal(m.info().task, 'classify');
    const n = 8;
    const x = new Float32Array(n * 3 * IMGSZ * IMGSZ);
    for (let i = 0; i < n; i++) {
      const px = pixels(100 + i, IMGSZ).data;
      for (let j = 0; j < px.length; j++) x[i * px.length + j] = px[j] / 255;
    }
    native().calibrateBatchNorm(m.handle, x, [n, 3, IMGSZ, IMGSZ]);
    return m.save(path.join(tmp, 'cls.pt'));
  })();
  return ptPromise;
}

/** Deterministic random RGB pixels, so the "preprocessed input" is the image itself (size = imgsz). */
function pixels(seed, size) {
  const data = new Uint8Array(size * size * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = (s >>> 16) & 255;
  }
  return { data, width: size, height: size, channels: 3 };
}

const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

test('predict (libtorch): probs sum to 1, top1 is the argmax of the forward, top5 sorted, no boxes', async () => {
  const pt = await checkpoint();
  const m = (await loadModel(pt)).fuse(); // predict runs the fused model; unfused BN differs in the last bits
  const seen = [];
  for (const seed of [1, 2]) {
    const px = pixels(seed, IMGSZ);
    const [r] = await predict({ model: pt, source: px, imgsz: IMGSZ, backend: 'torch' });
    assert.equal(r.boxes, null);
    assert.ok(r.probs);
    assert.equal(r.probs.data.length, NAMES.length);
    const sum = r.probs.data.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, `sum ${sum}`);
    // The same input through the model: NCHW float / 255 of the raw RGB pixels (resize and crop are identities).
    const x = new Float32Array(3 * IMGSZ * IMGSZ);
    for (let i = 0; i < IMGSZ * IMGSZ; i++) for (let c = 0; c < 3; c++) x[c * IMGSZ * IMGSZ + i] = px.data[i * 3 + c] / 255;
    const out = await m.forward({ data: x, shape: [1, 3, IMGSZ, IMGSZ] });
    assert.deepEqual(out.probs.shape, [1, NAMES.length]);
    const want = Array.from(out.probs.data);
    assert.equal(r.probs.top1, argmax(want));
    for (let k = 0; k < want.length; k++) {
      assert.ok(Math.abs(r.probs.data[k] - want[k]) < 1e-5, `prob ${k}: ${r.probs.data[k]} vs forward ${want[k]}`);
    }
    assert.equal(r.probs.top5.length, 5);
    for (let k = 1; k < 5; k++) assert.ok(r.probs.top5conf[k - 1] >= r.probs.top5conf[k]);
    assert.equal(r.probs.top1conf, Math.max(...r.probs.data));
    assert.equal(r.verbose(), r.probs.top5.map((c) => `${c} ${r.probs.data[c].toFixed(2)}`).join(', '));
    assert.deepEqual(r.toJSON().map((e) => e.class), r.probs.top5);
    seen.push(r.probs.data);
  }
  const spread = Math.max(...seen[0].map((v, k) => Math.abs(v - seen[1][k])));
  assert.ok(spread > 1e-3, `the calibrated model gives (nearly) the same probs for different images: ${spread}`);
});

test('predict (libtorch) saves runs/classify/predict with images and top-5 "conf name" labels; plot() draws', async () => {
  const pt = await checkpoint();
  const project = path.join(tmp, 'runs');
  const stream = predict({ model: pt, source: images, imgsz: IMGSZ, backend: 'torch', save: true, save_txt: true, project });
  const got = await stream;
  assert.equal(stream.saveDir, path.join(project, 'classify', 'predict'));
  assert.equal(got.length, 2);
  for (const r of got) {
    const stem = path.basename(r.path, path.extname(r.path));
    const lines = fs.readFileSync(path.join(stream.saveDir, 'labels', `${stem}.txt`), 'utf8').trim().split('\n');
    assert.deepEqual(lines, r.probs.top5.map((c) => `${r.probs.data[c].toFixed(2)} ${NAMES[c]}`));
    assert.ok(fs.statSync(path.join(stream.saveDir, path.basename(r.path))).size > 1000);
    const jpg = r.plot();
    assert.equal(jpg[0], 0xff);
    assert.equal(jpg[1], 0xd8);
  }
});

test('ONNX export of a classify checkpoint: (B, nc) output, metadata; ORT predict gives the .pt top5 and probs', async () => {
  const pt = await checkpoint();
  const { path: onnx } = await exportModel({ model: pt, format: 'onnx', imgsz: IMGSZ, dynamic: true, out: path.join(tmp, 'cls.onnx') });
  const ref = await predict({ model: pt, source: images, imgsz: IMGSZ, backend: 'torch' });
  const stream = predict({ model: onnx, source: images, imgsz: IMGSZ });
  const got = await stream;
  assert.equal(stream.backend, 'onnxruntime');
  let worst = 0;
  for (let i = 0; i < images.length; i++) {
    assert.equal(got[i].backend, 'onnxruntime');
    assert.equal(got[i].boxes, null);
    assert.deepEqual(got[i].probs.top5, ref[i].probs.top5);
    for (let k = 0; k < NAMES.length; k++) worst = Math.max(worst, Math.abs(got[i].probs.data[k] - ref[i].probs.data[k]));
  }
  console.log(`classify onnx vs pt: max prob diff ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `max prob diff ${worst}`);
  assert.deepEqual(got[0].names, Object.fromEntries(NAMES.map((n, i) => [i, n])));
  // a static batch-2 file with an odd count pads the last batch; auto on the .pt runs ORT through the cache
  const { path: fixed } = await exportModel({ model: pt, format: 'onnx', imgsz: IMGSZ, batch: 2, out: path.join(tmp, 'cls_b2.onnx') });
  const three = await predict({ model: fixed, source: [images[0], images[1], images[0]] });
  assert.deepEqual(three.map((r) => r.probs.top5), [ref[0].probs.top5, ref[1].probs.top5, ref[0].probs.top5]);
  const auto = predict({ model: pt, source: images[1], imgsz: IMGSZ });
  const [a] = await auto;
  assert.equal(auto.backend, 'onnxruntime');
  assert.deepEqual(a.probs.top5, ref[1].probs.top5);
});

/** root/{train,val}/c0..c4/*.png from the fixture images (labels are arbitrary: the model is random). */
function folderDataset() {
  const root = path.join(tmp, 'clsdata');
  const pngs = [...Array(8).keys()].map((i) => fixture(`images/val/s11_val_000${i}.png`)).concat(fixture('images/extra/wide_480x300.png'));
  const val = [];
  pngs.forEach((src, i) => {
    const cls = `c${i % NAMES.length}`;
    for (const split of ['train', 'val']) fs.mkdirSync(path.join(root, split, cls), { recursive: true });
    const dst = path.join(root, 'val', cls, path.basename(src));
    fs.copyFileSync(src, dst);
    val.push({ file: dst, label: i % NAMES.length });
  });
  return { root, val };
}

test('val on a folder data set: top-1/top-5 accuracy equal predict() on the same images; clear errors', async () => {
  const pt = await checkpoint();
  const { root, val: items } = folderDataset();
  const r = await val({ model: pt, data: root, imgsz: IMGSZ, batch: 4, workers: 2 });
  const top1 = r.metrics['metrics/accuracy_top1'];
  const top5 = r.metrics['metrics/accuracy_top5'];
  assert.equal(r.metrics.images, items.length);
  // The same images through predict(): the accuracy the validator must report.
  const preds = await predict({ model: pt, source: items.map((v) => v.file), imgsz: IMGSZ, backend: 'torch' });
  const byPath = new Map(preds.map((p) => [p.path, p.probs]));
  // A random model's probabilities are close: where the top two differ by under 1e-5, batch-size rounding in the
  // forward (val batch 4, predict batch 1) may pick either, so such an image counts as a hit or a miss.
  let ok1 = 0;
  let ties = 0;
  let ok5 = 0;
  for (const { file, label } of items) {
    const p = byPath.get(file);
    const sorted = [...p.data].sort((a, b) => b - a);
    if (sorted[0] - sorted[1] < 1e-5 && (p.top1 === label || p.data[label] === sorted[1])) ties += 1;
    else ok1 += p.top1 === label ? 1 : 0;
    ok5 += p.top5.includes(label) ? 1 : 0;
  }
  const n1 = Math.round(top1 * items.length);
  console.log(`classify val: top1 ${n1}/${items.length}, predict ${ok1} (+${ties} near ties)`);
  assert.ok(Math.abs(top1 - n1 / items.length) < 1e-9 && n1 >= ok1 && n1 <= ok1 + ties, `top1 ${top1} vs ${ok1}(+${ties} ties)/${items.length}`);
  assert.ok(Math.abs(top5 - ok5 / items.length) < 1e-9, `top5 ${top5} vs ${ok5}/${items.length}`);
  assert.equal(top5, 1); // five classes: every label is in the top 5
  assert.ok(Math.abs(r.metrics.fitness - (top1 + top5) / 2) < 1e-12);
  // errors: a missing split, a folder for a detect model, a file for a classify model
  const noVal = path.join(tmp, 'noval');
  fs.mkdirSync(path.join(noVal, 'train', 'c0'), { recursive: true });
  await assert.rejects(val({ model: pt, data: noVal, imgsz: IMGSZ }), /no 'val' split folder .*val\/, validation\/, valid\/ or test\/.*holds train\//);
  await assert.rejects(val({ model: fixture('det/yolo26n-shapes.pt'), data: root, imgsz: 64 }), /is a folder \(a classification data set\)/);
  await assert.rejects(val({ model: pt, data: fixture('metrics/data.yaml'), imgsz: IMGSZ }), /classification data sets are a folder/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
