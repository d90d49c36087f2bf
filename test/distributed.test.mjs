// Distributed training through the CLI and the public API, with Gloo CPU ranks on 127.0.0.1: two ranks started with
// the torchrun variables, the package's launcher (YOLO26_CPU_RANKS) with stop(), and a rank killed mid-run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { train, loadModel } from '../dist/index.js';
import { fixture, root } from './helpers.mjs';

const data = fixture('metrics/data.yaml');
const cli = path.join(root, 'dist', 'cli.js');
const tiny = ['model=yolo26n.yaml', `data=${data}`, 'imgsz=64', 'batch=4', 'workers=1', 'threads=1', 'plots=false', 'val=false', 'device=cpu'];

function tmpProject() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'y26-dist-'));
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `yolo26 train` as rank `rank` of `world`; resolves with {code, signal, out} when it exits. */
function startRank(rank, world, port, args) {
  const env = { ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank),
    LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), YOLO26_DIST_TIMEOUT: '60' };
  delete env.YOLO26_CPU_RANKS;
  const child = spawn(process.execPath, [cli, 'train', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  child.done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })));
  child.output = () => out;
  return child;
}

const workersAlive = () => {
  try {
    return execFileSync('pgrep', ['-f', path.join(root, 'dist', 'ddp_worker.js')], { encoding: 'utf8' }).trim();
  } catch {
    return '';  // pgrep exits 1 when nothing matches
  }
};

test('two ranks started with the torchrun variables finish one run: one folder, by rank 0; weights load', { timeout: 600000 }, async () => {
  const project = tmpProject();
  try {
    const port = await freePort();
    const args = [...tiny, 'epochs=1', `project=${project}`, 'name=exp'];
    const ranks = [startRank(0, 2, port, args), startRank(1, 2, port, args)];
    const [r0, r1] = await Promise.all(ranks.map((r) => r.done));
    assert.equal(r0.code, 0, r0.out);
    assert.equal(r1.code, 0, r1.out);
    assert.deepEqual(fs.readdirSync(project), ['exp']);
    assert.match(r1.out, new RegExp(`Results saved to ${path.join(project, 'exp')}`));
    for (const f of ['results.csv', 'args.yaml', 'weights/last.pt', 'weights/best.pt'])
      assert.ok(fs.existsSync(path.join(project, 'exp', f)), `missing ${f}`);
    for (const w of ['best.pt', 'last.pt']) {
      const m = await loadModel(path.join(project, 'exp', 'weights', w));
      assert.equal(m.info().nc, 3);
    }
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('the launcher runs ranks as one run: rank 0 events, stop() ends every rank, no worker left', { timeout: 600000 }, async () => {
  const project = tmpProject();
  process.env.YOLO26_CPU_RANKS = '2';
  try {
    const run = train({ model: 'yolo26n.yaml', data, imgsz: 64, batch: 4, workers: 1, threads: 1, plots: false,
      val: false, device: 'cpu', epochs: 30, project, name: 'exp' });
    const batches = [];
    run.on('batch', (b) => {
      batches.push(b);
      if (batches.length === 2) run.stop();
    });
    const r = await run;
    assert.equal(r.saveDir, path.join(project, 'exp'));
    assert.ok(batches.length >= 2 && batches.length < 6, `${batches.length} batches`);
    assert.equal(batches[0].batches, 2);  // 8 images over 2 ranks of 2: 2 batches each
    assert.ok(fs.existsSync(path.join(r.saveDir, 'weights', 'last.pt')));
    assert.equal(workersAlive(), '');
  } finally {
    delete process.env.YOLO26_CPU_RANKS;
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('kill -9 of one rank mid-run: the other exits non-zero naming it, well within 120 s', { timeout: 600000 }, async () => {
  const project = tmpProject();
  try {
    const port = await freePort();
    const args = [...tiny, 'epochs=200', `project=${project}`, 'name=exp'];
    const r0 = startRank(0, 2, port, args);
    const r1 = startRank(1, 2, port, args);
    const t0 = Date.now();
    while (!fs.existsSync(path.join(project, 'exp', 'args.yaml')) && Date.now() - t0 < 300000)
      await new Promise((res) => setTimeout(res, 200));
    await new Promise((res) => setTimeout(res, 3000));  // into the batches
    r1.kill('SIGKILL');
    const killed = Date.now();
    const res = await r0.done;
    const took = (Date.now() - killed) / 1000;
    assert.notEqual(res.code, 0, res.out);
    assert.ok(took < 120, `rank 0 took ${took} s`);
    assert.match(res.out, /rank 1 stopped/);
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('the launcher: a worker killed mid-run fails the run naming it, and the other worker is gone', { timeout: 600000 }, async () => {
  const project = tmpProject();
  process.env.YOLO26_CPU_RANKS = '2';
  try {
    const run = train({ model: 'yolo26n.yaml', data, imgsz: 64, batch: 4, workers: 1, threads: 1, plots: false,
      val: false, device: 'cpu', epochs: 200, project, name: 'exp' });
    let killed = '';
    run.on('batch', () => {
      const pids = workersAlive().split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
      if (!killed && pids.length === 2) {
        killed = String(pids[1]);  // forked second: rank 1
        process.kill(pids[1], 'SIGKILL');
      }
    });
    await assert.rejects(run, (err) => {
      assert.match(err.message, /rank 1 was killed by SIGKILL/);
      assert.match(err.message, /rank 0: .*rank 1 stopped/);
      return true;
    });
    assert.ok(killed);
    assert.equal(workersAlive(), '');
  } finally {
    delete process.env.YOLO26_CPU_RANKS;
    fs.rmSync(project, { recursive: true, force: true });
  }
});
