// predict() end to end: reference results, sources, corrupt inputs, backpressure and saving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { predict } from '../dist/index.js';
import { native } from '../dist/native.js';
import { trainedImgsz } from '../dist/predict.js';
import { fixture } from './helpers.mjs';

const model = fixture('det/yolo26n-shapes.pt');
// predict() on a .pt runs ONNX Runtime on the CPU through a cached export: keep that cache out of ~/.cache
process.env.YOLO26_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-pred-cache-'));
test.after(() => fs.rmSync(process.env.YOLO26_CACHE_DIR, { recursive: true, force: true }));

function metaResults(image, imgsz, conf) {
  const meta = JSON.parse(fs.readFileSync(fixture(`det/shapes_outputs/${image}/imgsz${imgsz}/meta.json`), 'utf8'));
  return meta.predict_results_original_coords[`conf_${conf}`];
}

function assertSameDetections(r, want, label) {
  assert.equal(r.boxes.length, want.conf.length, `${label}: count`);
  for (let i = 0; i < want.conf.length; i++) {
    assert.ok(Math.abs(r.boxes.conf[i] - want.conf[i]) <= 1e-5, `${label}: conf ${i} ${r.boxes.conf[i]} vs ${want.conf[i]}`);
    assert.equal(r.boxes.cls[i], want.cls[i], `${label}: cls ${i}`);
    for (let k = 0; k < 4; k++)
      assert.ok(Math.abs(r.boxes.xyxy[i][k] - want.xyxy[i][k]) <= 2e-3, `${label}: box ${i}.${k} ${r.boxes.xyxy[i][k]} vs ${want.xyxy[i][k]}`);
  }
}

test('square image at 320 and 640 gives the official predict() results on both backends', async () => {
  for (const [imgsz, backend] of [[320, 'torch'], [640, 'torch'], [320, 'onnxruntime'], [640, 'onnxruntime']]) {
    const [r] = await predict({ model, source: fixture('images/val/s11_val_0000.png'), imgsz, conf: 0.25, backend });
    assert.equal(r.backend, backend);
    assert.deepEqual(r.origShape, [320, 320]);
    assertSameDetections(r, metaResults('s11_val_0000', imgsz, '0.25'), `s11_val_0000@${imgsz} ${backend}`);
    assert.deepEqual(r.names, { 0: 'rectangle', 1: 'ellipse', 2: 'triangle' });
    assert.ok(r.speed.inference > 0);
    assert.equal(r.boxes.xywh.length, r.boxes.length);
    const j = r.toJSON();
    assert.equal(j.length, r.boxes.length);
  }
});

test('non-square image (rect letterbox) at conf 0.001 matches the reference boxes on both backends', async () => {
  for (const backend of ['torch', 'onnxruntime']) {
    const [r] = await predict({ model, source: fixture('images/extra/wide_480x300.png'), imgsz: 640, conf: 0.001, backend });
    assert.deepEqual(r.origShape, [300, 480]);
    const want = metaResults('wide_480x300', 640, '0.001');
    assert.ok(Math.abs(r.boxes.length - want.conf.length) <= 2, `count ${r.boxes.length} vs ${want.conf.length}`);
    const n = Math.min(20, want.conf.length);
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(r.boxes.conf[i] - want.conf[i]) <= 1e-5, `conf ${i}`);
      for (let k = 0; k < 4; k++) assert.ok(Math.abs(r.boxes.xyxy[i][k] - want.xyxy[i][k]) <= 2e-3, `box ${i}.${k}`);
    }
    const n01 = r.boxes.xyxyn.flat();
    assert.ok(n01.every((v) => v >= 0 && v <= 1));
  }
});

test('Buffer and raw-pixel sources give the same results as the file', async () => {
  const file = fixture('images/val/s11_val_0000.png');
  const [a] = await predict({ model, source: file, imgsz: 320 });
  const [b] = await predict({ model, source: fs.readFileSync(file), imgsz: 320 });
  assert.deepEqual(b.boxes.xyxy, a.boxes.xyxy);
  assert.deepEqual(b.boxes.cls, a.boxes.cls);
  // checked when the stream is made (test/hostile.test.mjs has the other raw-pixel cases)
  assert.throws(() => predict({ model, source: { data: new Uint8Array(10), width: 8, height: 8, channels: 3 }, imgsz: 64 }), /must match exactly/);
});

test('a directory with a corrupt image: good results first, then an error naming the file; skip_errors skips', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-pred-'));
  try {
    fs.copyFileSync(fixture('images/val/s11_val_0000.png'), path.join(dir, 'a.png'));
    fs.copyFileSync(fixture('images/val/s11_val_0001.png'), path.join(dir, 'c.png'));
    fs.writeFileSync(path.join(dir, 'b.jpg'), Buffer.from('definitely not a jpeg'));
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const r of predict({ model, source: dir, imgsz: 320 })) seen.push(path.basename(r.path));
      })(),
      (e) => /b\.jpg/.test(e.message) && /skip_errors/.test(e.message),
    );
    assert.deepEqual(seen, ['a.png', 'c.png']);
    const warnings = [];
    const onWarn = (w) => warnings.push(w.message);
    process.on('warning', onWarn);
    const all = await predict({ model, source: dir, imgsz: 320, skip_errors: true });
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarn);
    assert.equal(all.length, 2);
    assert.ok(warnings.some((w) => w.includes('b.jpg')), `warnings: ${warnings}`);
    await assert.rejects(predict({ model, source: path.join(dir, 'nope'), imgsz: 320 }).toArray(), /nope/);
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    await assert.rejects(predict({ model, source: empty, imgsz: 320 }).toArray(), /empty/);
    await assert.rejects(predict({ model: path.join(dir, 'a.png'), source: dir }).toArray(), /a\.png/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('save, save_txt and plot() write real files', async () => {
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-runs-'));
  try {
    const stream = predict({ model, source: fixture('images/val/s11_val_0000.png'), imgsz: 320, save: true, save_txt: true, save_conf: true, project, name: 'p' });
    const results = await stream.toArray();
    assert.equal(stream.saveDir, path.join(project, 'detect', 'p'));
    assert.ok(fs.existsSync(path.join(stream.saveDir, 's11_val_0000.png')) || fs.existsSync(path.join(stream.saveDir, 's11_val_0000.jpg')));
    const txt = fs.readFileSync(path.join(stream.saveDir, 'labels', 's11_val_0000.txt'), 'utf8').trim().split('\n');
    assert.equal(txt.length, results[0].boxes.length);
    assert.equal(txt[0].split(' ').length, 6);
    const again = predict({ model, source: fixture('images/val/s11_val_0000.png'), imgsz: 320, save: true, project, name: 'p' });
    await again.toArray();
    assert.equal(again.saveDir, path.join(project, 'detect', 'p2'));
    const jpg = results[0].plot();
    assert.equal(jpg[0], 0xff);
    assert.equal(jpg[1], 0xd8);
    const png = results[0].plot({ format: 'png' });
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    // line_width, the official name, changes the drawing; the older camelCase spelling means the same
    assert.ok(results[0].boxes.length > 0);
    const thin = results[0].plot({ format: 'png', line_width: 1 });
    const thick = results[0].plot({ format: 'png', line_width: 6 });
    assert.notDeepEqual(thin, thick);
    assert.deepEqual(results[0].plot({ format: 'png', lineWidth: 6 }), thick);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('a 1000-image stream consumed slowly keeps memory flat (backpressure)', { timeout: 600000 }, async () => {
  const jpg = fs.readFileSync(fixture('images/jpeg_originals/s11_val_0000.jpg'));
  const source = Array.from({ length: 1000 }, () => jpg);
  let n = 0;
  let rssAt100 = 0;
  for await (const r of predict({ model: 'yolo26n.yaml', source, imgsz: 64, conf: 0.5 })) {
    n++;
    assert.deepEqual(r.origShape, [320, 320]);
    if (n === 100) rssAt100 = process.memoryUsage().rss;
    if (n % 100 === 0) await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(n, 1000);
  const growth = (process.memoryUsage().rss - rssAt100) / 1048576;
  assert.ok(growth < 150, `resident memory grew ${growth.toFixed(0)} MiB over 900 images`);
});

test('bad predict options are clear errors', () => {
  assert.throws(() => predict({ model, source: 'x.png', confidence: 0.3 }), /unknown option 'confidence'\. Did you mean 'conf'\?/);
  assert.throws(() => predict({ model }), /source/);
  assert.throws(() => predict({ model, source: 'rtsp://cam/stream' }), /network URL/);
});

test('yolo26 predict on a directory shows a progress bar and saves results', { timeout: 300000 }, async () => {
  const { execFileSync } = await import('node:child_process');
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-cli-'));
  try {
    const dir = path.join(project, 'imgs');
    fs.mkdirSync(dir);
    for (const f of ['s11_val_0000.png', 's11_val_0001.png', 's11_val_0002.png'])
      fs.copyFileSync(fixture(`images/val/${f}`), path.join(dir, f));
    const cli = path.join(import.meta.dirname, '..', 'dist', 'cli.js');
    const res = execFileSync(process.execPath, [cli, 'predict', `model=${model}`, `source=${dir}`, 'imgsz=320', `project=${project}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(res, /Results saved to .*detect\/predict/);
    assert.match(res, /3 images in/);
    assert.equal(fs.readdirSync(path.join(project, 'detect', 'predict')).filter((f) => f.endsWith('.png') || f.endsWith('.jpg')).length, 3);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('the trained imgsz of a checkpoint is read once per version of the file; a rewritten file is read again', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-imgsz-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'model.pt');
  fs.copyFileSync(model, file);
  const addon = native();
  const read = addon.checkpointImgsz;
  let reads = 0;
  addon.checkpointImgsz = (f) => (reads++, read.call(addon, f));
  t.after(() => { addon.checkpointImgsz = read; });
  assert.deepEqual(trainedImgsz(file), [320, 320]);
  assert.deepEqual(trainedImgsz(file), [320, 320]);
  assert.equal(reads, 1, 'an unchanged file is not loaded again');
  // the same path and inode, other content: a checkpoint without train_args records no size
  const other = fixture('det/yolo26n-coco-random.pt');
  const want = read.call(addon, other);
  assert.notDeepEqual(want, [320, 320]);
  fs.writeFileSync(file, fs.readFileSync(other));
  assert.deepEqual(trainedImgsz(file), want);
  assert.equal(reads, 2);
  // replaced by a new file with the first content
  fs.rmSync(file);
  fs.copyFileSync(model, file);
  assert.deepEqual(trainedImgsz(file), [320, 320]);
  assert.equal(reads, 3);
  assert.equal(trainedImgsz(path.join(dir, 'missing.pt')), null);
  assert.equal(trainedImgsz(fixture('images/val/s11_val_0000.png')), null);
});
