#!/usr/bin/env node
// npm's install step. A prebuilt that matches the libtorch found (or an existing local build) loads: done,
// nothing compiles. Otherwise build from source with cmake-js, after checking, with one clear message each, that
// a libtorch, cmake and a C++ compiler are there. `npm install --build-from-source` (or
// YOLO26_BUILD_FROM_SOURCE=1) skips the prebuilt.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const fromSource = !!process.env.YOLO26_BUILD_FROM_SOURCE || process.env.npm_config_build_from_source === 'true';
const say = (msg) => console.error(`yolo26-native: ${msg}`);

if (!fromSource && fs.existsSync(path.join(root, 'dist', 'native.js'))) {
  const { native, addonInfo } = await import(path.join(root, 'dist', 'native.js'));
  try {
    native();
    const info = addonInfo();
    say(`using ${info.variant === 'source build' ? 'the local build' : `the prebuilt ${info.variant}`} (${info.why})`);
    process.exit(0);
  } catch (err) {
    if (err.code === 'YOLO26_NO_LIBTORCH') {
      console.error(err.message);
      process.exit(1);
    }
    say(`no prebuilt loads here, building from source. (${err.message.split('. ')[0].replace(/^yolo26-native: /, '')})`);
  }
}

// Same discovery as CMake: fail here with its advice instead of inside a CMake trace.
const found = spawnSync('sh', [path.join(root, 'scripts', 'find-libtorch.sh')], { encoding: 'utf8' });
if (found.status !== 0) {
  console.error(found.stderr.trim());
  process.exit(1);
}
const missing = [];
for (const [tool, args] of [['cmake', ['--version']], ['c++', ['--version']]]) {
  try {
    execFileSync(tool, args, { stdio: 'ignore' });
  } catch {
    missing.push(tool);
  }
}
if (missing.length) {
  say(
    `building from source needs ${missing.join(' and ')}, not found. Debian/Ubuntu: sudo apt-get install build-essential cmake ` +
      'libopencv-dev libturbojpeg0-dev libyaml-cpp-dev, then npm rebuild yolo26-native.',
  );
  process.exit(1);
}
const cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
const start = Date.now();
const build = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  say(
    'the source build failed (see above). It needs OpenCV, libturbojpeg and yaml-cpp development files besides libtorch ' +
      '(Debian/Ubuntu: sudo apt-get install libopencv-dev libturbojpeg0-dev libyaml-cpp-dev); then npm rebuild yolo26-native.',
  );
  process.exit(1);
}
say(`built from source in ${Math.round((Date.now() - start) / 1000)} s`);
