// The public declarations as a consumer sees them (strict, skipLibCheck off): a typed Run (event names and payloads
// checked), every event type exported, a typed predict source, and no optional dependency's types reachable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { root } from './helpers.mjs';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compile = (config) => spawnSync(process.execPath, [tsc, '-p', path.join(root, 'test', 'types', config)], { encoding: 'utf8', cwd: root });

test('a consumer using events, results and sources compiles against dist/index.d.ts', () => {
  const r = compile('tsconfig.json');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('a misspelt event name and a payload field that does not exist fail to compile', () => {
  const r = compile('tsconfig.misspelt.json');
  assert.notEqual(r.status, 0);
  assert.match(r.stdout, /misspelt_event\.ts\(5,\d+\): error TS2345: Argument of type '"epoch_ennd"'/);
  assert.match(r.stdout, /misspelt_event\.ts\(6,\d+\): error TS2339: Property 'mAP' does not exist on type 'EpochEndEvent'/);
});

test("no declaration reachable from dist/index.d.ts refers to onnxruntime-node", () => {
  const dist = path.join(root, 'dist');
  const seen = new Set();
  const walk = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(!/onnxruntime-node/.test(text), `${path.basename(file)} refers to onnxruntime-node`);
    for (const m of text.matchAll(/from '(\.\/[^']+)\.js'|import\('(\.\/[^']+)\.js'\)/g)) walk(path.join(dist, `${m[1] ?? m[2]}.d.ts`));
  };
  walk(path.join(dist, 'index.d.ts'));
  assert.ok(seen.size >= 8, [...seen].join(', '));
});
