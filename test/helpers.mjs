// Test helpers: fixture lookup (test/fixtures), a .npy reader, and random-weight task models.
import fs from 'node:fs';
import path from 'node:path';

export const root = path.resolve(import.meta.dirname, '..');

/** A file under test/fixtures; every file a test reads lives there, so a clone anywhere passes. */
export function fixture(rel) {
  const p = path.join(root, 'test', 'fixtures', rel);
  if (!fs.existsSync(p)) throw new Error(`missing fixture test/fixtures/${rel}`);
  return p;
}

const DTYPES = { '<f4': Float32Array, '<f8': Float64Array, '<i8': BigInt64Array, '|u1': Uint8Array, '<i4': Int32Array };

export function readNpy(file) {
  const buf = fs.readFileSync(file);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const off = major === 1 ? 10 : 12;
  const header = buf.subarray(off, off + hlen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter((s) => s.trim()).map(Number);
  const Ctor = DTYPES[descr];
  if (!Ctor) throw new Error(`unsupported npy dtype ${descr}`);
  const start = off + hlen;
  const bytes = buf.subarray(start);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return { dtype: descr, shape, data: new Ctor(copy.buffer, 0, bytes.length / Ctor.BYTES_PER_ELEMENT) };
}

/** The model input for a stored uint8 image tensor: float32(u8) / 255. */
export function inputFromU8(npy) {
  const f = new Float32Array(npy.data.length);
  for (let i = 0; i < f.length; i++) f[i] = npy.data[i] / 255;
  return { data: f, shape: npy.shape };
}

/** Largest violation of |a-b| <= atol + rtol*|b| (<= 0 means within tolerance), and the max abs diff. */
export function closeness(a, b, atol, rtol) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let worst = -Infinity;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    maxDiff = Math.max(maxDiff, d);
    worst = Math.max(worst, d - (atol + rtol * Math.abs(b[i])));
  }
  return { worst, maxDiff };
}

/**
 * A random-weight checkpoint of one of our task YAMLs (nc 3) saved to `dir`, and with `onnx` its dynamic ONNX export.
 * A fresh random model outputs its head bias for every input (activations shrink layer by layer), so BatchNorm is
 * first calibrated on noise images.
 */
export async function randomTaskModel(yaml, dir, name, { onnx = false } = {}) {
  const { Model, exportModel } = await import('../dist/index.js');
  const { native } = await import('../dist/native.js');
  const pt = path.join(dir, `${name}.pt`);
  const m = await Model.load(yaml, { nc: 3 });
  const shape = [4, 3, 96, 96];
  const x = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let seed = 12345;
  for (let i = 0; i < x.length; i++) x[i] = (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  native().calibrateBatchNorm(m.handle, x, shape);
  await m.save(pt);
  if (!onnx) return { pt };
  const out = path.join(dir, `${name}.onnx`);
  const { path: file } = await exportModel({ model: pt, format: 'onnx', dynamic: true, imgsz: 320, out });
  return { pt, onnx: file };
}
