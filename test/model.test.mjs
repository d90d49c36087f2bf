// The model family through the public low-level API: official checkpoints load and match the
// reference outputs; info, fuse and bad inputs behave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadModel, modelInfo } from '../dist/index.js';
import { closeness, fixture, inputFromU8, readNpy, root } from './helpers.mjs';

const shapesDir = 'det/shapes_outputs/wide_480x300/imgsz320';

function assertRawClose(got, rel, label) {
  const want = readNpy(fixture(rel));
  assert.deepEqual(got.shape, want.shape, `${label} shape`);
  const { worst, maxDiff } = closeness(got.data, want.data, 1e-4, 1e-4);
  assert.ok(worst <= 0, `${label}: max |diff| ${maxDiff}`);
}

/** e2e rows compared as the fixtures README says: score column sorted, boxes by row within 2e-3 px. */
function assertE2eClose(got, rel, label) {
  const want = readNpy(fixture(rel));
  assert.deepEqual(got.shape, want.shape, `${label} shape`);
  const n = want.shape[1];
  const scores = (d) => Array.from({ length: n }, (_, i) => d[i * 6 + 4]).sort((a, b) => b - a);
  const sg = scores(got.data);
  const sw = scores(want.data);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(sg[i] - sw[i]) <= 1e-5, `${label}: score ${i} ${sg[i]} vs ${sw[i]}`);
  // rows with clearly separated scores must agree on box and class
  for (let i = 0; i < Math.min(n, 20); i++) {
    for (let k = 0; k < 4; k++) assert.ok(Math.abs(got.data[i * 6 + k] - want.data[i * 6 + k]) <= 2e-3 + 1e-5 * Math.abs(want.data[i * 6 + k]), `${label}: row ${i} col ${k}`);
    assert.equal(got.data[i * 6 + 5], want.data[i * 6 + 5], `${label}: row ${i} class`);
  }
}

test('official trained checkpoint: raw head outputs and end2end match the reference, unfused and fused', async () => {
  const m = await loadModel(fixture('det/yolo26n-shapes.pt'));
  const info = m.info(320);
  assert.equal(info.task, 'detect');
  assert.equal(info.nc, 3);
  assert.equal(info.parameters, 2504970);
  assert.deepEqual(info.stride, [8, 16, 32]);
  const x = inputFromU8(readNpy(fixture(`${shapesDir}/input_u8.npy`)));
  const out = await m.forward(x, { raw: true });
  assertRawClose(out.one2one.boxes, `${shapesDir}/one2one_boxes_ltrb.npy`, 'o2o boxes');
  assertRawClose(out.one2one.scores, `${shapesDir}/one2one_scores_logits.npy`, 'o2o scores');
  assertRawClose(out.one2many.boxes, `${shapesDir}/one2many_boxes_ltrb.npy`, 'o2m boxes');
  assertRawClose(out.one2many.scores, `${shapesDir}/one2many_scores_logits.npy`, 'o2m scores');
  assertE2eClose(out.end2end, `${shapesDir}/end2end_unfused.npy`, 'e2e unfused');
  m.fuse();
  assert.equal(m.info(320).parameters, 2375421);
  const fused = await m.forward(x);
  assert.equal(fused.one2many, undefined);
  assertE2eClose(fused.end2end, `${shapesDir}/end2end_fused.npy`, 'e2e fused');
});

test('pose checkpoint: (1,300,57) end2end and raw keypoints match', async () => {
  const dir = 'pose/outputs/wide_480x300/imgsz640';
  const m = await loadModel(fixture('pose/yolo26n-pose-random.pt'));
  assert.equal(m.info().task, 'pose');
  assert.deepEqual(m.info().kptShape, [17, 3]);
  const x = inputFromU8(readNpy(fixture('det/shapes_outputs/wide_480x300/imgsz640/input_u8.npy')));
  const out = await m.forward(x, { raw: true });
  assert.deepEqual(out.end2end.shape, [1, 300, 57]);
  assertRawClose(out.one2one.kpts, `${dir}/one2one_kpts_raw.npy`, 'o2o kpts');
  assertRawClose(out.one2one.scores, `${dir}/one2one_scores_logits.npy`, 'o2o scores');
});

test('modelInfo and `yolo26 info` give the official parameter counts', async () => {
  const s = await modelInfo({ model: 'yolo26s.yaml' });
  assert.equal(s.parameters, 10009784);
  assert.equal(s.task, 'detect');
  assert.ok(s.gflops > 20 && s.gflops < 26, `gflops ${s.gflops}`);
  const text = execFileSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'info', 'model=yolo26s.yaml'], { encoding: 'utf8' });
  assert.match(text.replace(/,/g, ''), /10009784 parameters/);
});

test('bad model files fail with clear errors naming the file', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-model-'));
  try {
    await assert.rejects(loadModel(path.join(tmp, 'missing.pt')), /missing\.pt' not found/);
    const truncated = path.join(tmp, 'truncated.pt');
    fs.writeFileSync(truncated, fs.readFileSync(fixture('det/yolo26n-shapes.pt')).subarray(0, 100000));
    await assert.rejects(loadModel(truncated), (e) => e instanceof Error && e.message.includes('truncated.pt'));
    const junk = path.join(tmp, 'junk.pt');
    fs.writeFileSync(junk, 'this is not a checkpoint');
    await assert.rejects(loadModel(junk), (e) => e instanceof Error && e.message.includes('junk.pt'));
    await assert.rejects(loadModel('yolo26q.yaml'), /yolo26q/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('forward() rejects a badly shaped input with a clear error', async () => {
  const m = await loadModel('yolo26n.yaml');
  assert.throws(() => m.forward({ data: new Float32Array(10), shape: [1, 3, 64, 64] }), /shape/);
});
