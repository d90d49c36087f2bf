// Foundation: the package loads, the addon reports the machine, options and native errors are clear.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import * as y26 from '../dist/index.js';
import { findLibtorch, native, variantTag } from '../dist/native.js';
import { archList, doctorWarnings } from '../dist/doctor.js';
import { parseArgs, parseValue } from '../dist/cliargs.js';
import { exportSchema, parseOptions, predictSchema, trainSchema, valSchema } from '../dist/options.js';

const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'dist', 'cli.js');

test('public API exports the modes and doctor', () => {
  for (const name of ['train', 'val', 'predict', 'exportModel', 'doctor', 'version'])
    assert.ok(name in y26, `missing export ${name}`);
  assert.match(y26.version, /^\d+\.\d+\.\d+/);
});

test('CommonJS require works too', () => {
  const require = createRequire(import.meta.url);
  const m = require('../dist/index.js');
  assert.equal(typeof m.doctor, 'function');
});

test('doctor() reports libtorch, OpenCV, BLAS and threads', () => {
  const r = y26.doctor();
  assert.match(r.torch.version, /^\d+\.\d+/);
  assert.match(r.opencvVersion, /^4\./);
  assert.equal(typeof r.torch.cudaAvailable, 'boolean');
  assert.ok(r.threads.intraOp >= 1);
  assert.ok(r.cpu.physicalCores >= 1);
  assert.ok(Array.isArray(r.warnings));
  // Debian's libtorch starts with 1 thread; the addon raises it to the physical cores.
  if (!process.env.OMP_NUM_THREADS) assert.equal(r.threads.intraOp, r.cpu.physicalCores);
});

test('doctor() names the addon that loaded and the libtorch built against, loaded and found', () => {
  const r = y26.doctor();
  assert.equal(r.addon.variant, 'source build');
  assert.match(r.addon.why, /local build/);
  assert.match(r.libtorch.builtAgainst.rule, /^(LIBTORCH|Torch_DIR|python3|system)$/);
  assert.ok(r.libtorch.builtAgainst.why.length > 10);
  assert.equal(r.libtorch.loaded.version.split('.').slice(0, 2).join('.'), r.torch.version.split('.').slice(0, 2).join('.'));
  assert.ok(fs.existsSync(r.libtorch.loaded.libDir), 'the loaded libtorch folder exists');
  assert.equal(fs.realpathSync(r.libtorch.found.libDir), fs.realpathSync(r.libtorch.loaded.libDir), 'discovery finds the loaded libtorch');
});

test('libtorch discovery follows LIBTORCH, and names an empty LIBTORCH folder in one paragraph', () => {
  const found = findLibtorch();
  assert.match(found.version, /^\d+\.\d+\.\d+$/);
  assert.ok(fs.existsSync(found.cmakeDir + '/TorchConfig.cmake'));
  // LIBTORCH may point at a prefix holding the libtorch (here the same one, through its config folder)
  const viaEnv = findLibtorch({ ...process.env, LIBTORCH: found.cmakeDir });
  assert.equal(viaEnv.rule, 'LIBTORCH');
  assert.equal(viaEnv.libDir, found.libDir);
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-empty-libtorch-'));
  try {
    assert.throws(() => findLibtorch({ ...process.env, LIBTORCH: empty }), (e) => {
      assert.equal(e.code, 'YOLO26_NO_LIBTORCH');
      assert.match(e.message, new RegExp(`LIBTORCH=${empty} holds no libtorch`));
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    // the same paragraph at the first import, even with a local build present
    const r = execFileSync(process.execPath, ['-e', "import('./dist/index.js').then((m) => m.doctor()).catch((e) => console.log(e.code + ': ' + e.message))"], {
      cwd: root, env: { ...process.env, LIBTORCH: empty }, encoding: 'utf8',
    });
    assert.match(r, /^YOLO26_NO_LIBTORCH: yolo26-native: LIBTORCH=.* holds no libtorch/);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

test('prebuilt variant keys and a YOLO26_VARIANT that names no addon', () => {
  assert.match(variantTag({ version: '2.6.0', cuda: '12' }), /^glibc\.torch2\.6\.cu12$/);
  assert.match(variantTag({ version: '2.11.0', cuda: '13.0' }), /^glibc\.torch2\.11\.cu13$/);
  assert.match(variantTag({ version: '1.13.0', cuda: 'cpu' }), /^glibc\.torch1\.13\.cpu$/);
  const r = execFileSync(process.execPath, ['-e', "import('./dist/index.js').then((m) => m.doctor()).catch((e) => console.log(e.message))"], {
    cwd: root, env: { ...process.env, YOLO26_VARIANT: 'glibc.torch9.9.cu99' }, encoding: 'utf8',
  });
  assert.match(r, /YOLO26_VARIANT=glibc\.torch9\.9\.cu99 names no addon .*Unset YOLO26_VARIANT/);
  assert.deepEqual(archList('  - NVCC architecture flags: -gencode;arch=compute_80,code=sm_80;-gencode;arch=compute_90,code=sm_90\n'), ['sm_80', 'sm_90']);
  assert.deepEqual(archList('  - CPU capability usage: AVX2\n'), []);
});

test('yolo26 doctor prints text and --json parses', () => {
  const text = execFileSync(process.execPath, [cli, 'doctor'], { encoding: 'utf8' });
  assert.match(text, /libtorch\s+\d/);
  assert.match(text, /OpenCV\s+4\./);
  const json = JSON.parse(execFileSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8' }));
  assert.equal(json.packageVersion, y26.version);
  assert.ok('cudaVersion' in json.torch && 'gpus' in json.nvidia);
});

test('doctor warns about the mismatches that idle a GPU', () => {
  const base = { torchVersion: '2.5.1', opencvVersion: '4.6.0', cudaBuilt: true, cudaAvailable: true, cudaDeviceCount: 1,
    cudaVersion: '12.4', cudnnVersion: '9.1.0', cudnnAvailable: true, blas: 'OpenBLAS (x)', parallelBackend: 'OpenMP',
    intraOpThreads: 8, interOpThreads: 8, hardwareThreads: 16, physicalCores: 8, buildConfig: '' };
  const nv = { driverVersion: '470.1', driverCudaVersion: '11.4', gpus: [{ index: 0, name: 'A100', memoryMiB: 40960 }] };
  assert.ok(doctorWarnings(base, nv, null, 4).some((w) => /driver 470\.1 supports CUDA up to 11\.4/.test(w)));
  assert.ok(doctorWarnings({ ...base, cudaAvailable: false }, { ...nv, driverCudaVersion: '12.6' }, null, 4).some((w) => /no GPU is visible/.test(w)));
  assert.ok(doctorWarnings({ ...base, cudaBuilt: false }, nv, null, 4).some((w) => /CPU-only build/.test(w)));
  assert.ok(doctorWarnings(base, { ...nv, driverCudaVersion: '12.6' }, 8, 8).some((w) => /oversubscription/.test(w)));
  assert.ok(doctorWarnings({ ...base, blas: 'reference BLAS (/usr/lib/blas/libblas.so.3)' }, nv, null, 2).some((w) => /libopenblas/.test(w)));
  assert.deepEqual(doctorWarnings(base, { ...nv, driverCudaVersion: '12.6' }, null, 4), []);
  // the driver's own answer (no nvidia-smi): one line, and no second one about the hidden GPU
  const noSmi = { driverVersion: null, driverCudaVersion: null, gpus: [] };
  const old = doctorWarnings({ ...base, cudaAvailable: false, driverCudaVersion: '12.2' }, noSmi, null, 4);
  assert.deepEqual(old, ['NVIDIA driver supports CUDA up to 12.2, but libtorch was built with CUDA 12.4: update the driver or install the addon variant built for an older CUDA.']);
});

test('a misspelled option names the option and the fix', () => {
  assert.throws(() => y26.train({ data: 'data.yaml', epochz: 3 }), (e) => {
    assert.equal(e.name, 'OptionError');
    assert.equal(e.option, 'epochz');
    assert.match(e.message, /unknown option 'epochz'\. Did you mean 'epochs'\?/);
    assert.match(e.message, /imgsz/);
    return true;
  });
});

// The facade's schemas hold the defaults (they fill every option sent to C++); the core keeps its own for its C++
// callers (default.yaml's table, PredictArgs, ExportOptions). They must agree, except where the facade's form
// differs on purpose.
test('schema defaults agree with the defaults of the core', () => {
  const core = native().coreDefaults();
  assert.equal(core.train.workers, 8);
  const differ = {
    device: "'' (auto) in the facade, null in default.yaml",
    accumulate: 'null in the facade, 0 in the core: both mean nbs / batch',
    imgsz: 'val: absent means the checkpoint training size',
    rect: "val: true, as upstream's model.val() sets it",
    opset: 'null in the facade: the engine default',
    end2end: "export: null in the facade: the checkpoint's",
  };
  const same = (a, b) => (typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) < 1e-6 : JSON.stringify(a) === JSON.stringify(b));
  let compared = 0;
  const modes = [
    ['train', trainSchema, core.train, { data: 'd.yaml' }],
    ['val', valSchema, core.train, {}],
    ['predict', predictSchema, core.predict, {}],
    ['export', exportSchema, core.export, {}],
  ];
  for (const [mode, schema, table, extra] of modes) {
    const cfg = parseOptions(mode, schema, { model: 'x.pt', ...extra });
    const given = mode === 'predict' || mode === 'export' ? { ...cfg, imgsz: [cfg.imgsz, cfg.imgsz] } : cfg;
    for (const [key, value] of Object.entries(given)) {
      if (!(key in table) || key in differ || key === 'model' || key === 'data' || value === undefined) continue;
      assert.ok(same(value, table[key]), `${mode}: ${key} is ${JSON.stringify(value)} in the schema, ${JSON.stringify(table[key])} in the core`);
      compared++;
    }
  }
  assert.ok(compared > 100, `compared ${compared}`);
});

test('classify training options: auto_augment (null turns it off), erasing and dropout', () => {
  const d = parseOptions('train', trainSchema, { data: 'd' });
  assert.equal(d.auto_augment, 'randaugment');
  assert.equal(d.erasing, 0.4);
  assert.equal(d.dropout, 0);
  const o = parseOptions('train', trainSchema, { data: 'd', auto_augment: null, erasing: 0, dropout: 0.2 });
  assert.equal(o.auto_augment, false); // reaches the engine as "off", not dropped as unset
  assert.equal(o.dropout, 0.2);
  assert.equal(parseOptions('train', trainSchema, { data: 'd', auto_augment: 'augmix' }).auto_augment, 'augmix');
  assert.throws(() => y26.train({ data: 'd', auto_augment: 'trivialaugment' }),
    /option 'auto_augment' = "trivialaugment" is invalid: one of "randaugment", "autoaugment", "augmix"/);
  assert.throws(() => y26.train({ data: 'd', erasing: 1.5 }), /option 'erasing' = 1.5 is invalid/);
});

test('a wrong option type names the option and what is accepted', () => {
  assert.throws(() => y26.train({ data: 'd.yaml', epochs: 'ten' }), /option 'epochs' = "ten" is invalid: .*expected number/);
  assert.throws(() => y26.train({ data: 'd.yaml', optimizer: 'Lion' }), /option 'optimizer' = "Lion" is invalid: one of "auto", "SGD"/);
  assert.throws(() => y26.predict({ model: 'm.pt', conf: 2 }), /option 'conf' = 2 is invalid/);
  assert.throws(() => y26.train({ epochs: 3 }), /option 'data' is required/);
  assert.throws(() => y26.val('model.pt'), /takes one options object/);
});

test('native errors become catchable JS errors, sync and async', async () => {
  const addon = native();
  assert.deepEqual(addon.debugMatmul([2, 3], [3, 4]), [2, 4]);
  assert.throws(() => addon.debugMatmul([2, 3], [4, 5]), (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /libtorch: .*shapes cannot be multiplied \(2x3 and 4x5\)/);
    assert.doesNotMatch(e.message, /frame #0/);
    return true;
  });
  await assert.rejects(addon.debugMatmul([2, 3], [4, 5], true), /shapes cannot be multiplied/);
  assert.throws(() => addon.resolveDevice('7'), /CUDA/);
});

test('threads can be set explicitly', () => {
  const addon = native();
  assert.equal(addon.setThreads(1), 1);
  assert.equal(addon.systemInfo().intraOpThreads, 1);
  addon.setThreads(0);
});

test('CLI key=value parsing follows the Ultralytics conventions', () => {
  assert.equal(parseValue('3'), 3);
  assert.equal(parseValue('0.25'), 0.25);
  assert.equal(parseValue('True'), true);
  assert.equal(parseValue('None'), null);
  assert.deepEqual(parseValue('[0,2]'), [0, 2]);
  assert.equal(parseValue('data.yaml'), 'data.yaml');
  const a = parseArgs(['train', 'epochs=3', 'imgsz=320', '--json']);
  assert.equal(a.mode, 'train');
  assert.deepEqual(a.options, { epochs: 3, imgsz: 320 });
  assert.ok(a.flags.has('json'));
  assert.throws(() => parseArgs(['train', 'epochs']), /'epochs' is missing '='/);
});

test('CLI reports a bad option with a clear message and exit code 1', () => {
  let err;
  try {
    execFileSync(process.execPath, [cli, 'train', 'data=x.yaml', 'epochz=3'], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'expected a failure');
  assert.equal(err.status, 1);
  assert.match(err.stderr, /unknown option 'epochz'\. Did you mean 'epochs'\?/);
});

test('the npm pack tarball installs and imports in a fresh project', { timeout: 300000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'y26-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp], { cwd: root, encoding: 'utf8' });
    const tgz = path.join(tmp, out.trim().split('\n').pop());
    const proj = path.join(tmp, 'proj');
    fs.mkdirSync(proj);
    fs.writeFileSync(path.join(proj, 'package.json'), '{"name":"consumer","version":"1.0.0","type":"module"}');
    // --ignore-scripts skips the source build; the addon built here stands in for it (same machine).
    execFileSync('npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', tgz], { cwd: proj, stdio: 'pipe' });
    const pkgDir = path.join(proj, 'node_modules', 'yolo26-native');
    for (const f of ['CMakeLists.txt', 'native/core/pch.h', 'native/addon/pch.h', 'dist/index.js', 'dist/index.d.ts', 'scripts/find-libtorch.sh', 'scripts/install.mjs'])
      assert.ok(fs.existsSync(path.join(pkgDir, f)), `tarball lacks ${f}`);
    for (const f of ['test', 'ts', 'native/tests', 'native/bench']) assert.ok(!fs.existsSync(path.join(pkgDir, f)), `tarball ships ${f}`);
    fs.mkdirSync(path.join(pkgDir, 'build', 'Release'), { recursive: true });
    fs.copyFileSync(path.join(root, 'build', 'Release', 'yolo26_native.node'), path.join(pkgDir, 'build', 'Release', 'yolo26_native.node'));
    const v = execFileSync(process.execPath, ['-e', "import('yolo26-native').then(m => console.log(m.doctor().torch.version))"], { cwd: proj, encoding: 'utf8' });
    assert.match(v.trim(), /^\d+\.\d+/);
    const bin = execFileSync(path.join(proj, 'node_modules', '.bin', 'yolo26'), ['version'], { cwd: proj, encoding: 'utf8' });
    assert.equal(bin.trim(), y26.version);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('loading the addon shortens the OpenMP spin wait unless the user chose a policy', () => {
  const script = "import('./dist/native.js').then((m) => { m.native(); console.log(String(process.env.GOMP_SPINCOUNT)); })";
  const run = (extra) => {
    const env = { ...process.env, ...extra };
    for (const k of ['GOMP_SPINCOUNT', 'OMP_WAIT_POLICY']) if (!(k in extra)) delete env[k];
    return execFileSync(process.execPath, ['-e', script], { cwd: new URL('..', import.meta.url), env }).toString().trim();
  };
  assert.equal(run({}), '1000');
  assert.equal(run({ GOMP_SPINCOUNT: '5' }), '5');
  assert.equal(run({ OMP_WAIT_POLICY: 'active' }), 'undefined');
});
