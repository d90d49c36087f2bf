// The command line as the official entrypoint: [TASK] MODE key=value, bare booleans, upstream value parsing,
// cfg= files, help in every mode without work, unknown flags, and progress bars with rate and ETA (one line per bar
// when the output is not a terminal).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MODES, parseArgs, parseValue } from '../dist/cliargs.js';
import { ProgressBar, formatDuration } from '../dist/progress.js';
import { fixture, root } from './helpers.mjs';

const cli = path.join(root, 'dist', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-cli-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const run = (args, cwd = tmp) => spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 120000 });

test('values are parsed as upstream: numbers, booleans and None in any case, lists, strings', () => {
  assert.equal(parseValue('3'), 3);
  assert.equal(parseValue('-1.5e-3'), -1.5e-3);
  assert.equal(parseValue('TRUE'), true);
  assert.equal(parseValue('false'), false);
  assert.equal(parseValue('None'), null);
  assert.equal(parseValue('null'), null);
  assert.deepEqual(parseValue('[0, 2]'), [0, 2]);
  assert.deepEqual(parseValue('640,480'), [640, 480]);
  assert.deepEqual(parseValue("['a', 'b']"), ['a', 'b']);
  assert.equal(parseValue("'my run'"), 'my run');
  assert.equal(parseValue('data.yaml'), 'data.yaml');
});

test('[TASK] MODE in any order, bare booleans, string options keep numeric text, single values fill lists', () => {
  const a = parseArgs(['detect', 'predict', 'model=m.pt', 'source=img.png', 'save', '--save_txt', 'name=123', 'project=007', 'classes=0', 'imgsz=320', 'conf=.5']);
  assert.equal(a.mode, 'predict');
  assert.equal(a.task, 'detect');
  assert.deepEqual(a.options, { model: 'm.pt', source: 'img.png', save: true, save_txt: true, name: '123', project: '007', classes: [0], imgsz: 320, conf: 0.5 });
  const b = parseArgs(['epochs=3', 'train', 'segment', 'device=0', '--json']);
  assert.equal(b.mode, 'train');
  assert.equal(b.options.model, 'yolo26n-seg.yaml', 'a TASK picks the model YAML to train');
  assert.equal(b.options.device, 0, 'device accepts numbers');
  assert.ok(b.flags.has('json'));
  const c = parseArgs(['model=m.pt', 'source=x.png']);
  assert.equal(c.mode, 'predict', 'no MODE: predict, as upstream');
  assert.match(c.notes.join('\n'), /no mode given/);
});

test('mistakes are errors naming the argument: bare non-boolean, unknown bare word, unknown --flag, bad task/mode', () => {
  assert.throws(() => parseArgs(['train', 'epochs']), /'epochs' is missing '=' and a value \(example: epochs=100\)/);
  assert.throws(() => parseArgs(['predict', 'sav']), /unknown argument 'sav': did you mean 'save'\?/);
  assert.throws(() => parseArgs(['train', '--foo']), /unknown flag '--foo'/);
  assert.throws(() => parseArgs(['train', 'epochs=']), /no value after '='/);
  assert.throws(() => parseArgs(['train', 'task=segmnt']), /unknown task 'segmnt'/);
  assert.throws(() => parseArgs(['mode=trian']), /unknown mode 'trian'/);
});

test('cfg=custom.yaml replaces the arguments before it, later ones override it; keys of other modes are ignored', () => {
  const cfg = path.join(tmp, 'custom.yaml');
  fs.writeFileSync(cfg, 'epochs: 7\nimgsz: 320\nname: 123\nconf: 0.4\n');
  const a = parseArgs(['train', 'batch=4', `cfg=${cfg}`, 'imgsz=160']);
  assert.deepEqual(a.options, { epochs: 7, imgsz: 160, name: '123' });
  assert.match(a.notes.join('\n'), /train does not use conf/);
  fs.writeFileSync(path.join(tmp, 'bad.yaml'), '- a\n- b\n');
  assert.throws(() => parseArgs(['train', `cfg=${path.join(tmp, 'bad.yaml')}`]), /must be a map/);
  assert.throws(() => parseArgs(['train', 'cfg=missing.yaml']), /cfg=missing\.yaml: cannot read/);
});

test('help, -h and --help print help in every mode, fast, and start nothing', () => {
  const words = ['help', '-h', '--help'];
  for (const [i, mode] of MODES.entries()) {
    for (const h of mode === 'train' ? words : [words[i % 3]]) {
      const t0 = Date.now();
      const r = run([mode, h, 'data=missing.yaml', 'cfg=missing.yaml']);
      assert.equal(r.status, 0, `${mode} ${h}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: yolo26 \[TASK\] MODE/);
      if (['train', 'val', 'predict', 'export'].includes(mode)) assert.match(r.stdout, new RegExp(`Options for ${mode}`));
      if (mode === 'train' && h === '--help') {
        assert.ok(Date.now() - t0 < 5000, `train --help took ${Date.now() - t0} ms`);
        assert.match(r.stdout, /epochs\s+100/);
      }
    }
  }
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f === 'runs'), [], 'help created a run folder');
});

test('an unknown --flag exits with code 2 before any work', () => {
  const r = run(['train', 'data=x.yaml', '--epochz']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown flag '--epochz': did you mean 'epochs'\?/);
});

test('yolo26 detect predict model=... source=... save name=123 saves to runs/detect/123', { timeout: 300000 }, () => {
  const model = fixture('det/yolo26n-shapes.pt');
  const r = run(['detect', 'predict', `model=${model}`, `source=${fixture('images/val/s11_val_0000.png')}`, 'save', 'name=123', 'imgsz=320', 'backend=torch']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Results saved to .*detect[/\\]123/);
  assert.deepEqual(fs.readdirSync(path.join(tmp, 'runs', 'detect', '123')), ['s11_val_0000.png']);
});

test('progress bars: one line per bar when not a terminal; \\r redraws on a terminal; rate and ETA', () => {
  let t = 0;
  const clock = () => t;
  const piped = [];
  const bar = new ProgressBar(10, 'Epoch 1/3', { isTTY: false, write: (s) => piped.push(s) }, clock);
  for (let i = 1; i <= 10; i++) {
    t = i * 500;
    bar.update(i, `loss ${i}`);
  }
  bar.finish();
  bar.finish();
  assert.equal(piped.length, 1, piped.join(''));
  assert.match(piped[0], /^Epoch 1\/3 100% ━+ 10\/10 2\.0it\/s 0:05<0:00 loss 10\n$/);

  t = 0;
  const tty = [];
  const live = new ProgressBar(10, 'predict', { isTTY: true, write: (s) => tty.push(s) }, clock);
  t = 2000;
  live.update(4);
  t = 2050;
  live.update(5); // within 100 ms of the last draw: skipped
  t = 2200;
  live.update(6);
  live.finish();
  assert.equal(tty.length, 3);
  assert.ok(tty.every((s) => s.startsWith('\r')));
  assert.match(tty[0], /4\/10 2\.0it\/s 0:02<0:03/);
  assert.ok(tty[2].endsWith('\n') && !tty[1].endsWith('\n'));
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(NaN), '?');
});

test('a CLI training piped to a file prints one line per epoch bar', { timeout: 600000 }, () => {
  const r = run(['demo', `dir=${path.join(tmp, 'shapes')}`, 'images=8', 'val_images=4', 'predict_images=1', 'epochs=2', 'size=64', 'batch=4', 'plots=false', `project=${tmp}`]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout + r.stderr;
  assert.ok(!out.includes('\r'), 'carriage returns in piped output');
  for (const e of ['Epoch 1/2', 'Epoch 2/2']) {
    const lines = out.split('\n').filter((l) => l.startsWith(e));
    assert.equal(lines.length, 1, `${e}: ${lines.join(' | ')}`);
    assert.match(lines[0], /100% .* \d+\/\d+ [\d.]+it\/s \d+:\d\d<0:00/);
  }
});
