/**
 * yolo26-native: train and run Ultralytics YOLO26 models from Node.js on a libtorch engine.
 * The public API; every heavy step runs in the native addon, off the event loop.
 */
import { Yolo26Error } from './errors.js';
import { exportSchema, parseOptions, predictSchema, trainSchema, valSchema } from './options.js';
import type { ExportOptions, PredictOptions, TrainOptions, ValOptions } from './options.js';

export { doctor, formatDoctor } from './doctor.js';
export type { DoctorReport, GpuInfo } from './doctor.js';
export { Yolo26Error, OptionError } from './errors.js';
export { version } from './version.js';
export type { ExportOptions, PredictOptions, TrainOptions, ValOptions, TrainConfig, ValConfig, PredictConfig, ExportConfig } from './options.js';

function pending(mode: string, issue: number): never {
  throw new Yolo26Error(`${mode}() is not available in this build yet (tracked as issue #${issue})`, 'YOLO26_UNAVAILABLE');
}

export function train(options: TrainOptions) {
  parseOptions('train', trainSchema, options);
  return pending('train', 6);
}

export function val(options: ValOptions) {
  parseOptions('val', valSchema, options);
  return pending('val', 6);
}

export function predict(options: PredictOptions) {
  parseOptions('predict', predictSchema, options);
  return pending('predict', 4);
}

export function exportModel(options: ExportOptions) {
  parseOptions('exportModel', exportSchema, options);
  return pending('exportModel', 7);
}
