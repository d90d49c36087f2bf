// predict() for segment and OBB models through the public API, on both backends: a random-weight model from our
// YAMLs is saved as a checkpoint and exported to ONNX; every result is checked for shape and consistency (masks in
// their boxes, outlines on the masks, corners around the centre), OBB results of ONNX Runtime against the libtorch
// forward's, then plot(), toJSON() and save_txt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { predict, Masks, OBB } from '../dist/index.js';
import { fixture, randomTaskModel } from './helpers.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-tasks-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache');
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const images = [fixture('images/val/s11_val_0000.png'), fixture('images/extra/wide_480x300.png')];
// A calibrated random model's scores saturate (many ties at 1.0), so which tied rows make the top max_det would
// differ between backends: at imgsz 64 every (anchor, class) row fits in max_det 300, and both give the same set.
const opts = { source: images, imgsz: 64, conf: 1e-6 };

const taskModel = (yaml, name) => randomTaskModel(yaml, tmp, name, { onnx: true });

/** |a - b| within atol + rtol * |b|: random weights give boxes far outside the image, where float32 differs more. */
const near = (a, b, atol) => Math.abs(a - b) <= atol + 2e-4 * Math.abs(b);

/** Index in `a` of the partner of b's row i: same class, conf within 1e-4, `close(j)` (rows near-tied in score may swap). */
function partner(a, b, i, close) {
  for (let j = 0; j < a.conf.length; j++)
    if (a.cls[j] === b.cls[i] && Math.abs(a.conf[j] - b.conf[i]) <= 1e-4 && close(j)) return j;
  return -1;
}

test('segment: masks at the original size with outlines from ONNX Runtime and libtorch; plot, toJSON, save_txt', { timeout: 300000 }, async () => {
  // Most instances of a random segment model have empty masks (dropped, as upstream): draw models until one keeps
  // instances on every image.
  let pt, onnx, ref;
  for (let tries = 0; tries < 6; tries++) {
    ({ pt, onnx } = await taskModel('yolo26n-seg.yaml', `seg${tries}`));
    ref = await predict({ ...opts, model: pt, backend: 'torch' });
    if (ref.every((r) => r.masks.length > 0)) break;
  }
  const got = await predict({ ...opts, model: onnx });
  assert.equal(got.length, images.length);
  for (let n = 0; n < images.length; n++) {
    const [a, b] = [got[n], ref[n]];
    assert.equal(a.backend, 'onnxruntime');
    assert.equal(b.backend, 'torch');
    for (const r of [a, b]) {
      const [h, w] = r.origShape;
      assert.ok(r.masks instanceof Masks && r.boxes && !r.obb, 'segment results have boxes and masks');
      assert.ok(r.masks.data instanceof Uint8Array);
      assert.deepEqual(r.masks.shape, [r.boxes.length, h, w]);
      assert.equal(r.masks.data.length, r.boxes.length * h * w);
      assert.equal(r.masks.xy.length, r.boxes.length);
      for (let i = 0; i < r.masks.length; i++) {
        const m = r.masks.mask(i);
        // Every mask pixel lies in its box, give or take the crop at the prototypes' 4x coarser grid and the
        // bilinear upsampling (up to 6 input pixels, scaled to the original).
        const [x1, y1, x2, y2] = r.boxes.xyxy[i];
        const slack = (6 * Math.max(w, h)) / 64 + 1;
        for (let p = 0; p < m.length; p++)
          if (m[p]) {
            const [x, y] = [p % w, Math.floor(p / w)];
            assert.ok(x >= x1 - slack && x <= x2 + slack && y >= y1 - slack && y <= y2 + slack, `mask ${i} pixel (${x},${y}) outside [${r.boxes.xyxy[i]}]`);
          }
        // The outline's points are mask pixels (a mask emptied by the resize to the original has none); xyn divides
        // by the image size.
        assert.equal(r.masks.xy[i].length > 0, m.some((v) => v === 1), `outline of mask ${i}`);
        if (r.masks.xy[i].length === 0) continue;
        for (const [x, y] of r.masks.xy[i]) assert.equal(m[y * w + x], 1, `outline point (${x},${y}) of mask ${i} in ${w}x${h}, shape ${r.masks.shape}`);
        assert.deepEqual(r.masks.xyn[i][0], [r.masks.xy[i][0][0] / w, r.masks.xy[i][0][1] / h]);
      }
    }
    assert.ok(b.masks.length > 0, `${images[n]}: no segment detections at conf 1e-6`);
  }

  const r = ref[1];
  const json = r.toJSON();
  assert.equal(json.length, r.boxes.length);
  assert.deepEqual(json[0].segments.x, r.masks.xy[0].map((p) => p[0]));
  assert.deepEqual(Object.keys(json[0].box), ['x1', 'y1', 'x2', 'y2']);
  const png = r.plot({ format: 'png' });
  assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);

  // save_txt: one line per instance, "cls x y x y ...", polygon normalised.
  const project = path.join(tmp, 'runs');
  const saved = predict({ ...opts, source: images[1], model: pt, backend: 'torch', save_txt: true, project, name: 'seg' });
  const [s] = await saved;
  const xyn = s.masks.xyn;
  const polys = xyn.filter((p) => p.length >= 3);
  const file = path.join(saved.saveDir, 'labels', 'wide_480x300.txt');
  assert.equal(fs.existsSync(file), polys.length > 0, 'a label file exactly when there are outlines');
  if (polys.length === 0) return;
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  assert.equal(lines.length, polys.length);
  const first = lines[0].split(' ').map(Number);
  assert.equal(first.length, 1 + 2 * polys[0].length);
  assert.equal(first[0], s.boxes.cls[xyn.indexOf(polys[0])]);
  for (let k = 0; k < polys[0].length; k++) {
    assert.ok(Math.abs(first[1 + 2 * k] - polys[0][k][0]) < 1e-5);
    assert.ok(Math.abs(first[2 + 2 * k] - polys[0][k][1]) < 1e-5);
  }
});

test('obb: rotated boxes (xywhr, corners, normalised corners), the same on ONNX Runtime and libtorch; plot, toJSON, save_txt', { timeout: 300000 }, async () => {
  const { pt, onnx } = await taskModel('yolo26n-obb.yaml', 'obb');
  // Calibrated random weights make large logits, so a few rows' features differ past float32 rounding between the
  // runtimes: nearly all rows must have their partner.
  let compared = 0;
  let matched = 0;
  const unmatched = [];
  const ref = await predict({ ...opts, model: pt, backend: 'torch' });
  const got = await predict({ ...opts, model: onnx });
  for (let n = 0; n < images.length; n++) {
    const [a, b] = [got[n], ref[n]];
    for (const r of [a, b]) {
      const [h, w] = r.origShape;
      assert.ok(r.obb instanceof OBB && r.boxes === null && r.masks === null, 'OBB results have obb, not boxes');
      assert.equal(r.obb.xywhr.length, r.obb.length);
      assert.equal(r.obb.conf.length, r.obb.length);
      for (let i = 0; i < r.obb.length; i++) {
        const [cx, cy, bw, bh] = r.obb.xywhr[i];
        const c = r.obb.xyxyxyxy[i];
        assert.equal(c.length, 4);
        // Corners: centred on (cx, cy), sides of length w and h.
        const mean = [0, 1].map((k) => c.reduce((s, p) => s + p[k], 0) / 4);
        assert.ok(near(mean[0], cx, 1e-3) && near(mean[1], cy, 1e-3), `centre of box ${i}`);
        // (a random model's width or height may be negative: the side is its absolute value)
        assert.ok(near(Math.hypot(c[0][0] - c[3][0], c[0][1] - c[3][1]), Math.abs(bw), 1e-3), `width of box ${i}`);
        assert.ok(near(Math.hypot(c[0][0] - c[1][0], c[0][1] - c[1][1]), Math.abs(bh), 1e-3), `height of box ${i}`);
        assert.deepEqual(r.obb.xyxyxyxyn[i][2], [c[2][0] / w, c[2][1] / h]);
        const [x1, y1, x2, y2] = r.obb.xyxy[i];
        assert.ok(x1 <= cx && cx <= x2 && y1 <= cy && cy <= y2);
      }
    }
    assert.ok(b.obb.length > 0, `${images[n]}: no OBB detections at conf 1e-6`);
    assert.equal(a.obb.length, b.obb.length, `${images[n]}: count`);
    for (let i = 0; i < b.obb.length; i++) {
      // Random weights also give rows thousands of pixels wide (exp of large logits), where float32 rounding differs
      // more between the runtimes: those are left out.
      const [cx, cy, bw, bh, ang] = b.obb.xywhr[i];
      const big = 4 * Math.max(...b.origShape);
      if (![cx, cy, bw, bh].every((v) => Math.abs(v) <= big) || Math.abs(ang) > 2 * Math.PI) continue;
      compared++;
      const j = partner(a.obb, b.obb, i, (j) => a.obb.xywhr[j].every((v, k) => near(v, b.obb.xywhr[i][k], k === 4 ? 1e-3 : 0.05)));
      if (j >= 0) matched++;
      else unmatched.push(`${path.basename(images[n])} row ${i} [${b.obb.xywhr[i]}]`);
    }
  }
  assert.ok(compared >= 1, 'no row of ordinary size to compare');
  assert.ok(matched >= 0.9 * compared, `${compared - matched} of ${compared} libtorch rows have no ONNX Runtime partner: ${unmatched.join('; ')}`);
  const r = ref[1];
  const json = r.toJSON();
  assert.deepEqual(Object.keys(json[0].box), ['x1', 'y1', 'x2', 'y2', 'x3', 'y3', 'x4', 'y4']);
  assert.equal(json[0].box.x3, r.obb.xyxyxyxy[0][2][0]);
  assert.ok(r.verbose().length > 0 && r.verbose() !== '(no detections)');
  const jpg = r.plot();
  assert.deepEqual([...jpg.subarray(0, 2)], [0xff, 0xd8]);

  const saved = predict({ ...opts, source: images[1], model: pt, backend: 'torch', save_txt: true, save_conf: true, project: path.join(tmp, 'runs'), name: 'obb' });
  const [s] = await saved;
  const lines = fs.readFileSync(path.join(saved.saveDir, 'labels', 'wide_480x300.txt'), 'utf8').trim().split('\n');
  assert.equal(lines.length, s.obb.length);
  const v = lines[0].split(' ').map(Number);
  assert.equal(v.length, 1 + 8 + 1);
  assert.equal(v[0], s.obb.cls[0]);
  s.obb.xyxyxyxyn[0].flat().forEach((x, k) => assert.ok(Math.abs(v[1 + k] - x) < 1e-4, `corner value ${k}: ${v[1 + k]} vs ${x}`));
  assert.ok(Math.abs(v[9] - s.obb.conf[0]) < 1e-5);
});
