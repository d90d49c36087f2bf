// train() and val() through the public API: events, outputs on disk, stop/resume, reference metrics,
// and clear errors for bad datasets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { train, val, demo, loadModel, exportModel, predict } from '../dist/index.js';
import { fixture } from './helpers.mjs';

const data = fixture('metrics/data.yaml');
// predict() on a checkpoint may export it for ONNX Runtime: keep that cache out of ~/.cache
process.env.YOLO26_CACHE_DIR ??= fs.mkdtempSync(path.join(os.tmpdir(), 'y26-train-cache-'));
test.after(() => fs.rmSync(process.env.YOLO26_CACHE_DIR, { recursive: true, force: true }));
const tiny = { data, imgsz: 64, batch: 4, workers: 1, mosaic: 0.5, plots: false, val: true };

function tmpProject() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'y26-train-'));
}

test('a short training run streams events and writes weights, args.yaml and results.csv', { timeout: 600000 }, async () => {
  const project = tmpProject();
  try {
    const run = train({ ...tiny, model: 'yolo26n.yaml', epochs: 2, project, name: 'exp' });
    const seen = [];
    const batches = [];
    run.on('epoch_start', () => seen.push('epoch_start'));
    run.on('batch', (b) => batches.push(b));
    run.on('epoch_end', (e) => seen.push(['epoch_end', e]));
    run.on('checkpoint', () => seen.push('checkpoint'));
    const r = await run;
    assert.equal(r.saveDir, path.join(project, 'exp'));
    assert.equal(seen[0], 'epoch_start');
    const ends = seen.filter((s) => Array.isArray(s));
    assert.equal(ends.length, 2);
    assert.ok('metrics/mAP50-95(B)' in ends[1][1].metrics, JSON.stringify(ends[1][1]));
    assert.ok(batches.length >= 2);
    const b = batches[0];
    assert.ok(b.imagesPerSecond > 0 && b.dataWaitFraction >= 0 && b.dataWaitFraction <= 1, JSON.stringify(b));
    assert.ok(Number.isFinite(b.losses.box_loss), JSON.stringify(b));
    for (const f of ['weights/last.pt', 'weights/best.pt', 'args.yaml', 'results.csv'])
      assert.ok(fs.existsSync(path.join(r.saveDir, f)), `missing ${f}`);
    const csv = fs.readFileSync(path.join(r.saveDir, 'results.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 3, csv.join('\n'));
    assert.match(csv[0], /metrics\/mAP50-95\(B\)/);
    const m = await loadModel(path.join(r.saveDir, 'weights', 'best.pt'));
    assert.equal(m.info().nc, 3);
    assert.equal(m.info().names[1], 'ellipse');
    // The trained checkpoint runs through predict() and exports to ONNX.
    const [p] = await predict({ model: path.join(r.saveDir, 'weights', 'last.pt'), source: fixture('images/val/s11_val_0000.png'), imgsz: 64, conf: 0.001 });
    assert.ok(p.boxes.length > 0);
    const onnx = await exportModel({ model: path.join(r.saveDir, 'weights', 'best.pt'), imgsz: 64 });
    assert.ok(fs.statSync(onnx.path).size > 1e6);
    // As upstream, val() of a checkpoint defaults to the data and imgsz it was trained with.
    const best = path.join(r.saveDir, 'weights', 'best.pt');
    const byDefault = await val({ model: best, plots: false });
    assert.equal(byDefault.metrics.imgsz, 64);
    assert.equal(byDefault.data, data);
    const explicit = await val({ model: best, data, imgsz: 64, plots: false });
    assert.equal(byDefault.metrics['metrics/mAP50-95(B)'], explicit.metrics['metrics/mAP50-95(B)']);
    assert.equal((await val({ model: best, data, imgsz: 96, plots: false })).metrics.imgsz, 96);
    const stream = predict({ model: best, source: fixture('images/val/s11_val_0000.png') });
    await stream;
    assert.deepEqual(stream.imgsz, [64, 64]);
    const sized = predict({ model: best, source: fixture('images/val/s11_val_0000.png'), imgsz: 96 });
    await sized;
    assert.deepEqual(sized.imgsz, [96, 96]);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('stop() ends after the current batch with last.pt saved, and resume finishes the run', { timeout: 600000 }, async () => {
  const project = tmpProject();
  try {
    const run = train({ ...tiny, model: 'yolo26n.yaml', epochs: 3, project, name: 'r' });
    run.once('batch', () => run.stop());
    const first = await run;
    const last = path.join(project, 'r', 'weights', 'last.pt');
    assert.ok(fs.existsSync(last));
    assert.ok((first.epochsCompleted ?? 0) < 3);
    const resumed = await train({ ...tiny, model: last, epochs: 3, resume: true, project, name: 'r' });
    assert.equal(resumed.epochsCompleted, 3);
    // The interrupted epoch has no validation row; the resumed ones do, up to the last epoch.
    const csv = fs.readFileSync(path.join(project, 'r', 'results.csv'), 'utf8').trim().split('\n');
    assert.ok(csv.length >= 2);
    assert.equal(csv.at(-1).split(',')[0], '3');
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('a run killed with SIGKILL mid-epoch resumes from last.pt and finishes; best.pt and last.pt load', { timeout: 600000 }, async () => {
  const project = tmpProject();
  try {
    // The child kills itself with SIGKILL while the native thread is inside epoch 2 (after its first batch).
    const child = `
      import { train } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const run = train(${JSON.stringify({ ...tiny, model: 'yolo26n.yaml', epochs: 3, project, name: 'k' })});
      run.on('batch', (b) => { if (b.epoch === 2) process.kill(process.pid, 'SIGKILL'); });
      await run;`;
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8', timeout: 300000 });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const last = path.join(project, 'k', 'weights', 'last.pt');
    assert.ok(fs.existsSync(last), 'last.pt of epoch 1 survives the kill');
    const resumed = await train({ resume: last });
    assert.equal(resumed.epochsCompleted, 3);
    assert.equal(resumed.saveDir, path.join(project, 'k'));
    for (const w of ['best.pt', 'last.pt']) {
      const m = await loadModel(path.join(project, 'k', 'weights', w));
      assert.equal(m.info().nc, 3);
    }
    const csv = fs.readFileSync(path.join(project, 'k', 'results.csv'), 'utf8').trim().split('\n');
    assert.deepEqual(csv.slice(1).map((l) => l.split(',')[0]), ['1', '2', '3']);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('val() on the reference set reproduces the official mAP', { timeout: 300000 }, async () => {
  const r = await val({ model: fixture('det/yolo26n-shapes.pt'), data, imgsz: 320, batch: 8, plots: false });
  assert.ok(Math.abs(r.metrics['metrics/mAP50-95(B)'] - 0.326037) <= 1e-4, JSON.stringify(r.metrics));
  assert.ok(Math.abs(r.metrics['metrics/mAP50(B)'] - 0.590933) <= 1e-4, JSON.stringify(r.metrics));
});

test('bad datasets give errors naming the file and the fix, without crashing', { timeout: 300000 }, async () => {
  const dir = tmpProject();
  try {
    const missing = path.join(dir, 'missing.yaml');
    fs.writeFileSync(missing, `train: ${path.join(dir, 'nowhere')}\nval: ${path.join(dir, 'nowhere')}\nnames: [a]\n`);
    await assert.rejects(train({ ...tiny, data: missing, epochs: 1, project: dir }), /nowhere/);
    const img = path.join(dir, 'ds', 'images');
    const lbl = path.join(dir, 'ds', 'labels');
    fs.mkdirSync(img, { recursive: true });
    fs.mkdirSync(lbl, { recursive: true });
    fs.copyFileSync(fixture('images/val/s11_val_0000.png'), path.join(img, 'x.png'));
    fs.writeFileSync(path.join(lbl, 'x.txt'), '0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n');
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, `path: ${path.join(dir, 'ds')}\ntrain: images\nval: images\nnames: [a, b]\n`);
    await assert.rejects(train({ ...tiny, data: bad, epochs: 1, project: dir }), /x\.txt.*2|class/);
    const mismatch = path.join(dir, 'mismatch.yaml');
    fs.writeFileSync(mismatch, `path: ${path.join(dir, 'ds')}\ntrain: images\nval: images\nnc: 3\nnames: [a, b]\n`);
    await assert.rejects(train({ ...tiny, data: mismatch, epochs: 1, project: dir }), /nc|names/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI train with resume= and no data= resumes (data comes from the checkpoint) instead of running the demo', async () => {
  const { spawnSync } = await import('node:child_process');
  const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'cli.js');
  const missing = path.join(os.tmpdir(), 'y26-no-such-run', 'weights', 'last.pt');
  const r = spawnSync(process.execPath, [cli, 'train', `resume=${missing}`], { encoding: 'utf8', timeout: 60000 });
  assert.notEqual(r.status, 0);
  assert.doesNotMatch(r.stderr, /built-in demo/);
  assert.match(r.stderr, /resume: .*last\.pt does not exist/);
  assert.throws(() => train({ model: 'yolo26n.yaml' }), /option 'data' is required/);
});

test('demo() generates its data set, trains, reports best.pt metrics and saves annotated predictions', { timeout: 300000 }, async () => {
  const project = tmpProject();
  try {
    const r = await demo({ dir: path.join(project, 'shapes'), images: 16, val_images: 8, predict_images: 3, epochs: 1, project, plots: false });
    assert.ok(fs.existsSync(r.data), 'data.yaml written');
    assert.ok(fs.existsSync(r.best), 'best.pt written');
    const m = r.metrics['metrics/mAP50-95(B)'];
    assert.ok(Number.isFinite(m) && m >= 0 && m <= 1, `mAP50-95 ${m}`);
    assert.ok(Number.isFinite(r.metrics.fitness));
    const saved = fs.readdirSync(r.predictDir).filter((f) => f.endsWith('.jpg'));
    assert.equal(saved.length, 3);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});
