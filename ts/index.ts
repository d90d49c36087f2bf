/**
 * yolo26-native: train and run Ultralytics YOLO26 models from Node.js on a libtorch engine.
 * The public API; every heavy step runs in the native addon, off the event loop.
 */
export { exportModel } from './export.js';
export type { ExportResult } from './export.js';

export { train, val, demo, Run } from './train.js';
export type { BatchEvent, EpochEndEvent, EpochStartEvent, CheckpointEvent, LogEvent, RunEvents, RunEventName, RunListener, RunResult } from './train.js';

export { predict, PredictStream } from './predict.js';
export type { PredictSource, PixelSource } from './predict.js';
export { track, Tracker } from './track.js';
export type { TrackerDetections, TrackerFrame } from './track.js';
export { Result, Boxes, Keypoints, Probs, Masks, OBB } from './results.js';
export type { Backend, OrtRunnerKind, PlotOptions, ResultJSON } from './results.js';
export { Model, loadModel, modelInfo } from './model.js';
export type { ForwardOutput, BranchOutput, TensorData, ModelSummary } from './model.js';

export { doctor, formatDoctor } from './doctor.js';
export type { DoctorReport, GpuInfo } from './doctor.js';
export { Yolo26Error, OptionError } from './errors.js';
export { version } from './version.js';
export type { ExportOptions, PredictOptions, TrackOptions, TrainOptions, ValOptions, TrainConfig, ValConfig, PredictConfig, ExportConfig } from './options.js';
