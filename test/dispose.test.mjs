// dispose(): models, predict streams and runs free their native memory on demand (and through Symbol.dispose /
// Symbol.asyncDispose), and RSS stays flat over load/predict/dispose cycles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadModel, predict, train } from '../dist/index.js';
import { fixture, root } from './helpers.mjs';

const pt = fixture('det/yolo26n-shapes.pt');
const image = fixture('images/val/s11_val_0000.png');
process.env.YOLO26_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-dispose-cache-'));
test.after(() => fs.rmSync(process.env.YOLO26_CACHE_DIR, { recursive: true, force: true }));

test('a disposed model is freed and says so when used; dispose is idempotent and Symbol.dispose calls it', async () => {
  const m = await loadModel(pt);
  assert.equal(m.info(64).nc, 3);
  m[Symbol.dispose]();
  m.dispose();
  assert.throws(() => m.info(64), /this model was disposed: load it again/);
  await assert.rejects(async () => m.forward({ data: new Float32Array(3 * 32 * 32), shape: [1, 3, 32, 32] }), /disposed/);
  const n = await loadModel(pt);
  await n[Symbol.asyncDispose]();
  assert.throws(() => n.fuse(), /disposed/);
});

test('a disposed stream stops and frees its pipeline; using it again is a clear error', async () => {
  for (const backend of ['torch', 'onnxruntime']) {
    const s = predict({ model: pt, source: [image, image, image], imgsz: 64, backend });
    const seen = [];
    for await (const r of s) {
      seen.push(r);
      await s[Symbol.asyncDispose]();
    }
    assert.equal(seen.length, 1, `${backend}: no results after dispose`);
    assert.throws(() => s[Symbol.asyncIterator](), /already being read|disposed/);
    const unused = predict({ model: pt, source: image, imgsz: 64, backend });
    unused.dispose();
    await assert.rejects(unused.toArray(), /disposed/);
  }
});

test('await using a run: dispose stops it after the current batch, last.pt saved, and waits for the end', { timeout: 120000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-dispose-run-'));
  try {
    for (const sub of ['images/val', 'labels/val']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    for (const n of ['s11_val_0000', 's11_val_0001', 's11_val_0002', 's11_val_0003']) {
      fs.copyFileSync(fixture(`images/val/${n}.png`), path.join(dir, 'images/val', `${n}.png`));
      fs.copyFileSync(fixture(`labels/val/${n}.txt`), path.join(dir, 'labels/val', `${n}.txt`));
    }
    const data = path.join(dir, 'data.yaml');
    fs.writeFileSync(data, `path: ${dir}\ntrain: images/val\nval: images/val\nnames: [rectangle, ellipse, triangle]\n`);
    const run = train({ model: 'yolo26n.yaml', data, epochs: 50, imgsz: 64, batch: 2, workers: 0, project: dir, plots: false, verbose: false });
    const t0 = Date.now();
    await new Promise((resolve) => run.once('batch', resolve));
    await run[Symbol.asyncDispose]();
    const r = await run;
    assert.ok(r.epochsCompleted <= 1, `stopped in the first epoch (${r.epochsCompleted})`);
    assert.ok(fs.existsSync(r.last), 'last.pt saved');
    assert.ok(Date.now() - t0 < 60000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const RSS_BOUND_MB = 50;

test('RSS stays flat over load/predict/dispose cycles', { timeout: 300000 }, () => {
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(root, 'scripts', 'rss-cycles.mjs'), '25', 'dispose', 'torch'], { encoding: 'utf8', timeout: 240000 });
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(r.stdout.trim().split('\n').pop());
  // after 5 warm-up cycles, 20 more load/predict/dispose cycles, V8's garbage collected each cycle (what is left is
  // native): a leak of one model (~10 MB) per cycle would add 200 MB; about 5 MB was measured
  assert.ok(m.rssEndMb - m.rssStartMb < RSS_BOUND_MB, `RSS grew ${(m.rssEndMb - m.rssStartMb).toFixed(0)} MB (${JSON.stringify(m)})`);
});
