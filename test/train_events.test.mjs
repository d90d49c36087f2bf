// The TS facade groups the engine's event numbers by name, whatever the task's loss names are
// (detect box/cls/dfl; segment + seg/sem; pose + pose/kobj/rle; obb + angle), and orders them for the progress bar
// by epoch_start's loss_names. Needs no native addon.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { formatLosses, shapeEvent } from '../dist/train.js';

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

test('epoch_start carries the task loss order; the progress bar shows losses in it, not alphabetically', () => {
  const start = shapeEvent({
    type: 'epoch_start',
    num: { epoch: 1, epochs: 3, batches: 4 },
    str: { loss_names: 'box_loss,pose_loss,kobj_loss,cls_loss,dfl_loss,rle_loss' },
  });
  assert.deepEqual(start.lossNames, ['box_loss', 'pose_loss', 'kobj_loss', 'cls_loss', 'dfl_loss', 'rle_loss']);
  assert.equal(start.batches, 4);
  // A batch event's numbers arrive sorted by name (the engine's std::map).
  const batch = { type: 'batch', num: {}, str: {} };
  for (const [i, n] of ['box', 'cls', 'dfl', 'kobj', 'pose', 'rle'].entries()) batch.num[`${n}_loss`] = i + 1;
  const b = shapeEvent(batch);
  assert.equal(formatLosses(b.losses, start.lossNames), 'box 1.000 pose 5.000 kobj 4.000 cls 2.000 dfl 3.000 rle 6.000');
  // Other tasks' official orders; keys missing from the order (older engines) follow in their own order.
  const seg = { box_loss: 1, cls_loss: 2, dfl_loss: 3, seg_loss: 4, sem_loss: 5 };
  assert.equal(
    formatLosses(seg, ['box_loss', 'seg_loss', 'cls_loss', 'dfl_loss', 'sem_loss']),
    'box 1.000 seg 4.000 cls 2.000 dfl 3.000 sem 5.000',
  );
  assert.equal(formatLosses({ angle_loss: 4, box_loss: 1, cls_loss: 2, dfl_loss: 3 }, ['box_loss', 'cls_loss']),
    'box 1.000 cls 2.000 angle 4.000 dfl 3.000');
  assert.equal(formatLosses({ box_loss: 1 }), 'box 1.000');
});

test('classify events: the single "loss" item (train/loss, val/loss) is grouped with the losses', () => {
  const b = shapeEvent({ type: 'batch', num: { epoch: 1, loss: 1.25, lr: 0.01 }, str: { loss_names: 'loss' } });
  assert.deepEqual(b.losses, { loss: 1.25 });
  assert.deepEqual(b.lossNames, ['loss']);
  assert.equal(formatLosses(b.losses, b.lossNames), 'loss 1.250');
  const e = shapeEvent({
    type: 'epoch_end',
    num: { epoch: 1, 'train/loss': 1, 'val/loss': 2, 'metrics/accuracy_top1': 0.5, fitness: 0.75 },
    str: {},
  });
  assert.deepEqual(e.losses, { 'train/loss': 1, 'val/loss': 2 });
  assert.equal(e.metrics['metrics/accuracy_top1'], 0.5);
});
