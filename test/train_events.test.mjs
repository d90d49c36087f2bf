// The TS facade groups the engine's event numbers by name, whatever the task's loss names are
// (detect box/cls/dfl; segment + seg/sem; pose + pose/kobj/rle; obb + angle). Needs no native addon.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { shapeEvent } from '../dist/train.js';

test('batch and epoch_end events group every task loss name, metrics and lr', () => {
  const names = ['box', 'seg', 'pose', 'kobj', 'cls', 'dfl', 'rle', 'sem', 'angle'];
  const batch = { type: 'batch', num: { epoch: 1, iteration: 2, lr: 0.01, images_per_second: 3 }, str: {} };
  for (const [i, n] of names.entries()) batch.num[`${n}_loss`] = i + 0.5;
  const b = shapeEvent(batch);
  assert.deepEqual(Object.keys(b.losses).sort(), names.map((n) => `${n}_loss`).sort());
  assert.equal(b.losses.rle_loss, 6.5);
  assert.equal(b.imagesPerSecond, 3);
  assert.equal(b.lr, 0.01);

  const end = {
    type: 'epoch_end',
    num: {
      epoch: 1,
      'train/pose_loss': 1,
      'val/angle_loss': 2,
      'metrics/mAP50-95(P)': 0.25,
      'metrics/mAP50(M)': 0.5,
      fitness: 0.75,
      'lr/pg0': 0.001,
    },
    str: {},
  };
  const e = shapeEvent(end);
  assert.deepEqual(e.losses, { 'train/pose_loss': 1, 'val/angle_loss': 2 });
  assert.deepEqual(e.metrics, { 'metrics/mAP50-95(P)': 0.25, 'metrics/mAP50(M)': 0.5, fitness: 0.75 });
  assert.deepEqual(e.lr, { pg0: 0.001 });
  assert.equal(e.fitness, 0.75);
});
