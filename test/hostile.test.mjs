// Careless and hostile inputs: images, buffers, raw pixels, labels, YAML, options, checkpoints (malicious pickles, zip
// traversal) and ONNX files. Each case ends in one of three outcomes: a clear error naming the thing, a skip with a
// warning, or a result; and the process exits by itself (the predict cases run in child processes under a limit).
// Every hostile file is small and made here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';

import { loadModel, predict, train, val } from '../dist/index.js';
import { fixture, readNpy, root } from './helpers.mjs';

const pt = fixture('det/yolo26n-shapes.pt');
const image = fixture('images/val/s11_val_0000.png');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-hostile-'));
process.env.YOLO26_CACHE_DIR = path.join(tmp, 'cache');  // children inherit it: one cached export for all
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const at = (...p) => path.join(tmp, ...p);
function write(rel, data) {
  fs.mkdirSync(path.dirname(at(rel)), { recursive: true });
  fs.writeFileSync(at(rel), data);
  return at(rel);
}

/**
 * Runs `body` (the body of an async function; `Y` is the package, `pt`, `image` and `tmp` are set) in
 * `node --input-type=module -e`, without process.exit: the child must end by itself within `limitMs`.
 * Resolves to {exited, ms, out}: out is 'OK <json>' or 'ERR <message>'.
 */
function child(body, limitMs = 30000) {
  const script = `
    const Y = await import(${JSON.stringify(pathToFileURL(path.join(root, 'dist', 'index.js')).href)});
    const pt = ${JSON.stringify(pt)}, image = ${JSON.stringify(image)}, tmp = ${JSON.stringify(tmp)};
    try {
      const r = await (async () => { ${body} })();
      console.log('OK ' + JSON.stringify(r ?? null));
    } catch (e) {
      console.log('ERR ' + e.message);
    }`;
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), limitMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exited: signal === null, code, ms: Date.now() - t0, out: out.trim().split('\n').filter((l) => /^(OK|ERR) /.test(l)).pop() ?? '', err });
    });
  });
}

/** Runs the cases a few at a time (each child loads libtorch and ONNX Runtime) and checks each outcome. */
async function expectChildren(cases) {
  const all = Object.entries(cases);
  for (let i = 0; i < all.length; i += 3) {
    const batch = all.slice(i, i + 3);
    const got = await Promise.all(batch.map(([, c]) => child(c.body)));
    batch.forEach(([name, c], k) => {
      const g = got[k];
      assert.ok(g.exited, `${name}: the process did not exit by itself within the limit (${g.ms} ms); out: ${g.out}; stderr: ${g.err.slice(-500)}`);
      assert.match(g.out, c.want, `${name}: outcome (stderr: ${g.err.slice(-500)})`);
    });
  }
}

test('setup: the cached ONNX export the children share', async () => {
  const r = await predict({ model: pt, source: image, imgsz: 320 });
  assert.equal(r.length, 1);
});

test('predict that ends in any way lets the process exit: errors before inference, skips, break, return(), abandoned', { timeout: 240000 }, async () => {
  write('bad/a.jpg', 'not an image');
  write('bad/b.png', '');
  write('zero.jpg', '');
  write('afile', 'a file where a folder is expected');
  fs.mkdirSync(at('three'));
  for (const f of ['a.png', 'b.png', 'c.png']) fs.copyFileSync(image, at('three', f));
  const fifo = at('pipe.jpg');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  await expectChildren({
    'missing file': { body: `return (await Y.predict({ model: pt, source: tmp + '/nope.jpg' })).length`, want: /^ERR .*nope\.jpg.*does not exist/ },
    'zero-byte image': { body: `return (await Y.predict({ model: pt, source: tmp + '/zero.jpg' })).length`, want: /^ERR .*zero\.jpg.*cannot be decoded/ },
    'garbage Buffer': { body: `return (await Y.predict({ model: pt, source: Buffer.from('garbage bytes') })).length`, want: /^ERR .*memory:0.*cannot be decoded/ },
    'camera 99': { body: `return (await Y.predict({ model: pt, source: 99 })).length`, want: /^ERR .*camera 99/ },
    'skip_errors, every input bad': {
      body: `const s = Y.predict({ model: pt, source: tmp + '/bad', skip_errors: true, verbose: false }); const r = await s; return [r.length, s.warnings.length]`,
      want: /^OK \[0,2\]$/,
    },
    'unwritable project with save': { body: `return (await Y.predict({ model: pt, source: image, save: true, project: tmp + '/afile/runs' })).length`, want: /^ERR .*afile/ },
    'a FIFO as the source': { body: `return (await Y.predict({ model: pt, source: tmp + '/pipe.jpg' })).length`, want: /^ERR .*pipe\.jpg is a FIFO/ },
    'break after the first result': { body: `let n = 0; for await (const r of Y.predict({ model: pt, source: tmp + '/three', imgsz: 320 })) { n++; break; } return n`, want: /^OK 1$/ },
    'return() on the iterator': {
      body: `const it = Y.predict({ model: pt, source: tmp + '/three', imgsz: 320 })[Symbol.asyncIterator](); await it.next(); await it.return(); return 'closed'`,
      want: /^OK "closed"$/,
    },
    'abandoned iterator': { body: `const it = Y.predict({ model: pt, source: tmp + '/three', imgsz: 320 })[Symbol.asyncIterator](); return (await it.next()).done`, want: /^OK false$/ },
    'abandoned iterator, libtorch': {
      body: `const it = Y.predict({ model: pt, source: tmp + '/three', imgsz: 320, backend: 'torch' })[Symbol.asyncIterator](); return (await it.next()).done`,
      want: /^OK false$/,
    },
    'dispose() mid-stream': {
      body: `const s = Y.predict({ model: pt, source: tmp + '/three', imgsz: 320 }); let n = 0; for await (const r of s) { n++; s.dispose(); } return n`,
      want: /^OK 1$/,
    },
  });
});

test('a stream awaited twice runs once; a second for-await is a clear error', async () => {
  const s = predict({ model: pt, source: [image, image], imgsz: 320 });
  const a = await s;
  const b = await s;
  assert.equal(a, b, 'the same array');
  assert.equal(a.length, 2);
  const again = [];
  for await (const r of s) again.push(r);
  assert.equal(again[0], a[0], 'iterating after await replays the kept results');
  const t = predict({ model: pt, source: image, imgsz: 320 });
  for await (const r of t) assert.ok(r);
  await assert.rejects(t.toArray(), /already being read/);
  await assert.rejects(t[Symbol.asyncIterator]().next(), /already being read/);
});

/** The 320x320 fixture as interleaved RGB bytes (its stored model input is CHW). */
function rgbPixels() {
  const x = readNpy(fixture('det/shapes_outputs/s11_val_0000/imgsz320/input_u8.npy'));
  const [, c, h, w] = x.shape;
  const out = new Uint8Array(h * w * c);
  for (let k = 0; k < c; k++) for (let i = 0; i < h * w; i++) out[i * c + k] = x.data[k * h * w + i];
  return { data: out, width: w, height: h };
}

test('raw pixels: 8-bit and Float32 with a scale give the file results; other arrays and sizes are clear errors', async () => {
  const [want] = await predict({ model: pt, source: image, imgsz: 320 });
  assert.ok(want.boxes.length > 0);
  const px = rgbPixels();
  const f01 = Float32Array.from(px.data, (v) => v / 255);
  const f255 = Float32Array.from(px.data);
  for (const [label, source] of [
    ['Uint8Array', { ...px, channels: 3 }],
    ['Buffer, channels inferred', { ...px, data: Buffer.from(px.data) }],
    ['Float32Array 0..1', { ...px, data: f01, scale: 1 }],
    ['Float32Array 0..255', { ...px, data: f255, scale: 255 }],
  ]) {
    const [r] = await predict({ model: pt, source, imgsz: 320 });
    assert.equal(r.boxes.length, want.boxes.length, `${label}: box count`);
    assert.deepEqual(r.boxes.cls, want.boxes.cls, `${label}: classes`);
  }
  const bad = (source, re) => assert.throws(() => predict({ model: pt, source }), re);
  bad({ ...px, data: f01 }, /Float32Array: say its range with scale: 1 .* or scale: 255/);
  bad({ ...px, data: f255, scale: 1 }, /outside 0\.\.1 .*pass scale: 255/);
  bad({ ...px, data: new Uint16Array(px.data.length) }, /data is a Uint16Array: pass 8-bit values/);
  bad({ ...px, data: new Float64Array(px.data.length) }, /Float64Array/);
  bad({ ...px, width: 319.5 }, /width must be a positive integer/);
  bad({ ...px, height: -3 }, /height must be a positive integer/);
  bad({ ...px, data: new Uint8Array(px.data.length + 7), channels: 3 }, /the length must match exactly/);
  bad({ ...px, data: new Uint8Array(px.data.length + 7) }, /do not make 320x320 pixels/);
  bad({ ...px, channels: 2 }, /channels must be 1, 3 or 4/);
  bad({ ...px, order: 'gbr' }, /order must be 'rgb' or 'bgr'/);
  bad(new Uint8Array(0), /empty \(0 bytes\)/);
  bad(new Float32Array(12), /source is a Float32Array/);
});

test('options: NaN, Infinity, absurd and malformed sizes, directories and devices as models are named', async () => {
  assert.throws(() => train({ data: 'x.yaml', lr0: NaN }), /option 'lr0' = NaN is invalid: expected a finite number/);
  assert.throws(() => train({ data: 'x.yaml', momentum: Infinity }), /option 'momentum' = Infinity is invalid/);
  assert.throws(() => predict({ model: pt, source: image, imgsz: 1e9 }), /option 'imgsz' = 1000000000 is invalid: each size must be at most 16384/);
  assert.throws(() => predict({ model: pt, source: image, imgsz: [320, 320, 3] }), /imgsz.*one integer or \[height, width\]/);
  assert.throws(() => train({ data: 'x.yaml', model: tmp }), /model .* is a directory, not a file/);
  assert.throws(() => train({ data: 'x.yaml', model: '/dev/null' }), /is a character device/);
  await assert.rejects(loadModel(tmp), /is a directory/);
  await assert.rejects(predict({ model: tmp, source: image }).toArray(), /is a directory/);
  await assert.rejects(predict({ model: '/dev/zero', source: image, backend: 'torch' }).toArray(), /character device/);
  await assert.rejects(predict({ model: '/dev/zero', source: image }).toArray(), /character device/);
  const fifoModel = at('fifo-model.pt');
  assert.equal(spawnSync('mkfifo', [fifoModel]).status, 0);
  await assert.rejects(predict({ model: fifoModel, source: image }).toArray(), /fifo-model\.pt is a FIFO \(named pipe\), not a file/);
  await assert.rejects(loadModel(fifoModel), /is a FIFO/);
  // train imgsz: a list becomes its largest side, then a multiple of 32, each with a warning; the run then fails on
  // the missing data, naming it
  const run = train({ model: 'yolo26n.yaml', data: at('missing.yaml'), imgsz: [161, 96], verbose: false });
  const logs = [];
  run.on('log', (e) => logs.push(e));
  await assert.rejects(run, /missing\.yaml/);
  const warnings = logs.filter((e) => e.level === 'warning').map((e) => e.text);
  assert.ok(warnings.some((w) => /imgsz=\[161, 96\]: train and val take one integer size.*using imgsz=161/.test(w)), warnings.join('\n'));
  assert.ok(warnings.some((w) => /imgsz=161 must be a multiple of max stride 32, updating to 192/.test(w)), warnings.join('\n'));
});

test('predict: imgsz rounds up to the stride and half on the CPU runs float32, each with a warning', async () => {
  const s = predict({ model: pt, source: image, imgsz: 100, half: true, verbose: false });
  const logs = [];
  s.on('log', (e) => logs.push(e.text));
  const r = await s;
  assert.equal(r.length, 1);
  assert.deepEqual(s.imgsz, [128, 128]);
  assert.ok(logs.some((t) => /imgsz=100 must be a multiple of max stride 32, updating to 128/.test(t)), logs.join('\n'));
  assert.ok(logs.some((t) => /half=true needs a CUDA device.*float32/.test(t)), logs.join('\n'));
  assert.deepEqual(s.warnings, logs);
});

test('labels: each skipped image is warned with its reason (BOM, class out of range); an unwritable cache is warned', async () => {
  const names = ['s11_val_0000', 's11_val_0001', 's11_val_0002'];
  fs.mkdirSync(at('ds/images/val'), { recursive: true });
  for (const n of names) fs.copyFileSync(fixture(`images/val/${n}.png`), at('ds/images/val', `${n}.png`));
  const good = fs.readFileSync(fixture('labels/val/s11_val_0000.txt'), 'utf8');
  write('ds/labels/val/s11_val_0000.txt', good);
  write('ds/labels/val/s11_val_0001.txt', '\ufeff' + good);
  write('ds/labels/val/s11_val_0002.txt', '7 0.5 0.5 0.2 0.2\n');
  fs.mkdirSync(at('ds/labels/val.y26cache'), { recursive: true });  // a folder where the cache file goes: not writable
  const data = write('ds/data.yaml', `path: ${at('ds')}\ntrain: images/val\nval: images/val\nnames: [rectangle, ellipse, triangle]\n`);
  const run = val({ model: pt, data, imgsz: 64, batch: 2, workers: 0, plots: false, project: at('runs'), verbose: false });
  const warnings = [];
  run.on('log', (e) => e.level === 'warning' && warnings.push(e.text));
  await run;
  const all = warnings.join('\n');
  assert.match(all, /s11_val_0001\.txt:1: the file starts with a UTF-8 byte-order mark \(BOM/);
  assert.match(all, /s11_val_0002\.txt:1: class 7 is outside \[0, 3\)/);
  assert.match(all, /cannot write the label cache .*val\.y26cache/);
});

test('YAML: empty, wrong types and alias bombs are errors naming the file', async () => {
  const cases = {
    'empty.yaml': '',
    'names.yaml': `path: ${tmp}\ntrain: ds/images/val\nval: ds/images/val\nnames: 7\n`,
    'bomb.yaml': `a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\nnames: *d\ntrain: x\nval: x\n`,
    'tabs.yaml': 'train:\t[\n',
  };
  for (const [name, text] of Object.entries(cases)) {
    const file = write(`yaml/${name}`, text);
    await assert.rejects(val({ model: pt, data: file, imgsz: 64, plots: false, project: at('runs') }), (e) => e.message.includes(name), name);
  }
});

/** A zip of stored entries, as torch.save writes (enough for hostile checkpoints). */
function zip(entries) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (b) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const locals = [];
  const central = [];
  let offset = 0;
  for (const [name, data] of Object.entries(entries)) {
    const n = Buffer.from(name);
    const d = Buffer.from(data);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt32LE(crc32(d), 14);
    h.writeUInt32LE(d.length, 18);
    h.writeUInt32LE(d.length, 22);
    h.writeUInt16LE(n.length, 26);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt32LE(crc32(d), 16);
    c.writeUInt32LE(d.length, 20);
    c.writeUInt32LE(d.length, 24);
    c.writeUInt16LE(n.length, 28);
    c.writeUInt32LE(offset, 42);
    locals.push(h, n, d);
    central.push(c, n);
    offset += 30 + n.length + d.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(central.length / 2, 8);
  end.writeUInt16LE(central.length / 2, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** A protocol-2 pickle that calls module.fn(arg) when a Python unpickler loads it. */
function callPickle(mod, fn, arg) {
  const a = Buffer.from(arg);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(a.length);
  return Buffer.concat([Buffer.from([0x80, 2]), Buffer.from(`c${mod}\n${fn}\n`), Buffer.from('X'), len, a, Buffer.from([0x85]), Buffer.from('R.')]);
}

test('checkpoints: malicious pickles, zip traversal, truncation and zip bombs are refused by name; nothing runs or is written', async () => {
  const marker = at('pwned');
  const files = {
    'system.pt': zip({ 'archive/data.pkl': callPickle('os', 'system', `touch ${marker}`), 'archive/version': '3\n' }),
    'eval.pt': zip({ 'archive/data.pkl': callPickle('builtins', 'eval', `open(${JSON.stringify(marker)}, 'w')`), 'archive/version': '3\n' }),
    'traversal.pt': zip({ '../../../../pwned': 'x', 'archive/../../pwned': 'x', [`${marker}`]: 'x' }),
    'truncated.pt': fs.readFileSync(pt).subarray(0, 4096),
    'empty.pt': '',
    'text.pt': 'model: yolo26n.yaml\n',
    'bomb.pt': zip({ 'archive/data.pkl': zlib.deflateRawSync(Buffer.alloc(1 << 20)), 'archive/version': '3\n' }),
  };
  for (const [name, bytes] of Object.entries(files)) {
    const file = write(`ck/${name}`, bytes);
    await assert.rejects(loadModel(file), (e) => e.message.includes(name), `${name}: the error names the file`);
    await assert.rejects(predict({ model: file, source: image, backend: 'torch' }).toArray(), (e) => e.message.includes(name), `${name}: predict names it`);
  }
  assert.ok(!fs.existsSync(marker), 'no payload ran and no entry was written');
});

test('ONNX files: garbage, empty and a checkpoint renamed .onnx are errors naming the file', async () => {
  for (const [name, bytes] of Object.entries({ 'garbage.onnx': 'not a protobuf at all \x00\xff', 'empty.onnx': '', 'renamed.onnx': fs.readFileSync(pt).subarray(0, 65536) })) {
    const file = write(`onnx/${name}`, bytes);
    await assert.rejects(predict({ model: file, source: image }).toArray(), (e) => e.message.includes(name), name);
  }
});

test('Ctrl-C during CLI training: last.pt saved, exit status 130', { timeout: 120000 }, async () => {
  fs.mkdirSync(at('cli/images/val'), { recursive: true });
  fs.mkdirSync(at('cli/labels/val'), { recursive: true });
  for (const n of ['s11_val_0000', 's11_val_0001', 's11_val_0002', 's11_val_0003']) {
    fs.copyFileSync(fixture(`images/val/${n}.png`), at('cli/images/val', `${n}.png`));
    fs.copyFileSync(fixture(`labels/val/${n}.txt`), at('cli/labels/val', `${n}.txt`));
  }
  const data = write('cli/data.yaml', `path: ${at('cli')}\ntrain: images/val\nval: images/val\nnames: [rectangle, ellipse, triangle]\n`);
  const args = ['train', `data=${data}`, 'model=yolo26n.yaml', 'epochs=50', 'imgsz=64', 'batch=2', 'workers=0', 'plots=false', `project=${at('cli/runs')}`];
  const p = spawn(process.execPath, [path.join(root, 'dist', 'cli.js'), ...args], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const status = await new Promise((resolve) => {
    const onData = (d) => {
      out += d;
      if (/Epoch 1\/50/.test(out) && !p.killed) p.kill('SIGINT');  // the first batch is running
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('close', (code, signal) => resolve({ code, signal }));
  });
  assert.deepEqual(status, { code: 130, signal: null }, out.slice(-800));
  assert.match(out, /stopping after this batch/);
  const saved = fs.readdirSync(at('cli/runs'), { recursive: true }).filter((f) => f.endsWith('last.pt'));
  assert.equal(saved.length, 1, out.slice(-800));
});
