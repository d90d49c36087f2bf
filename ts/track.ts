/**
 * track(): predict() with a ByteTrack or BoT-SORT tracker run by the native pipeline after post-processing, frame by
 * frame in stream order; every box of a tracked result gets a persistent integer id (`r.boxes.id`; OBB models
 * `r.obb.id`). Tracker: one for feeding detections from elsewhere.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NativeTracker } from './addon.js';
import { OptionError } from './errors.js';
import { native, packageRoot } from './native.js';
import { parseOptions, trackSchema, type TrackOptions } from './options.js';
import { PredictStream, toNativeSource } from './predict.js';

/** The tracker YAMLs shipped with the package (official keys and defaults). */
export const trackerConfigDir = path.join(packageRoot, 'cfg', 'trackers');

/** A tracker YAML path: a file that exists, else a name of the shipped configs (bytetrack.yaml, botsort.yaml). */
export function resolveTrackerConfig(tracker: string, caller = 'track()'): string {
  if (fs.existsSync(tracker) && fs.statSync(tracker).isFile()) return path.resolve(tracker);
  const shipped = path.join(trackerConfigDir, path.basename(tracker));
  if (path.basename(tracker) === tracker && fs.existsSync(shipped)) return shipped;
  const names = fs.existsSync(trackerConfigDir) ? fs.readdirSync(trackerConfigDir).join(', ') : 'none found';
  throw new OptionError(`${caller}: tracker '${tracker}' is not a file nor a shipped tracker config (${names}); pass one of those or a YAML path`, 'tracker');
}

function createNativeTracker(file: string): NativeTracker {
  return native().createTracker(file);
}

/** Trackers kept by persist: true, per model and tracker file (upstream keeps them on the model object). */
const persisted = new Map<string, NativeTracker>();

/**
 * Tracks objects through a video, camera, image sequence or single frames. Returns the same stream as predict()
 * (`for await`, or awaited for an array). Without persist the tracker starts fresh for this call and again at each
 * new video or image path; with `persist: true` it carries its tracks over from the previous persist call with the
 * same model and tracker (feed a camera frame by frame), and across the images of a directory.
 */
export function track(options: TrackOptions): PredictStream {
  const cfg = parseOptions('track', trackSchema, options);
  if (cfg.source === undefined || cfg.source === null) throw new OptionError("track(): option 'source' is required", 'source');
  const source = toNativeSource(cfg.source);
  const file = resolveTrackerConfig(cfg.tracker);
  const key = `${cfg.model}\u0000${file}`;
  let tracker = cfg.persist ? persisted.get(key) : undefined;
  if (!tracker) {
    tracker = createNativeTracker(file);
    if (cfg.persist) persisted.set(key, tracker);
  }
  const { tracker: _file, persist, ...predictCfg } = cfg;
  const imgszGiven = (options as { imgsz?: unknown }).imgsz !== undefined;
  return new PredictStream({ ...predictCfg, name: cfg.name ?? 'track' }, imgszGiven, source, { tracker, persist });
}

/** Detections of one frame for Tracker.update(): axis-aligned boxes, or rotated ones (cx, cy, w, h, angle in radians). */
export type TrackerDetections =
  | { xyxy: number[][]; conf: number[]; cls: number[] }
  | { xywhr: number[][]; conf: number[]; cls: number[] };

/** The confirmed tracks of one frame: id, filtered box, and the score, class and index of the detection matched. */
export interface TrackerFrame {
  id: number[];
  /** [x1, y1, x2, y2] per track (axis-aligned input). */
  xyxy?: number[][];
  /** [cx, cy, w, h, angle] per track (rotated input). */
  xywhr?: number[][];
  conf: number[];
  cls: number[];
  /** Index of the matched detection in the input of this frame. */
  index: number[];
}

/** A ByteTrack / BoT-SORT tracker fed detections directly, one frame per update() (no camera-motion compensation). */
export class Tracker {
  private readonly handle: NativeTracker;
  /** The YAML file it was configured from. */
  readonly file: string;

  constructor(tracker = 'botsort.yaml') {
    this.file = resolveTrackerConfig(tracker, 'Tracker');
    this.handle = createNativeTracker(this.file);
  }

  /** The settings read from the YAML (official keys). */
  get config(): Record<string, unknown> {
    return this.handle.config();
  }

  update(dets: TrackerDetections): TrackerFrame {
    const rotated = 'xywhr' in dets;
    const boxes = rotated ? dets.xywhr : dets.xyxy;
    const width = rotated ? 5 : 4;
    if (!Array.isArray(boxes) || !Array.isArray(dets.conf) || !Array.isArray(dets.cls))
      throw new OptionError('Tracker.update(): pass {xyxy, conf, cls} or {xywhr, conf, cls} arrays', 'detections');
    if (boxes.length !== dets.conf.length || boxes.length !== dets.cls.length || boxes.some((b) => !Array.isArray(b) || b.length !== width))
      throw new OptionError(`Tracker.update(): every detection needs ${width} box numbers, a conf and a cls (got ${boxes.length} boxes, ${dets.conf.length} conf, ${dets.cls.length} cls)`, 'detections');
    const out = this.handle.update({
      [rotated ? 'xywhr' : 'xyxy']: Float32Array.from(boxes.flat()),
      conf: Float32Array.from(dets.conf),
      cls: Float32Array.from(dets.cls),
    });
    const rows = (flat: Float32Array) => Array.from({ length: flat.length / width }, (_, i) => Array.from(flat.subarray(i * width, (i + 1) * width)));
    return {
      id: Array.from(out.id),
      ...(rotated ? { xywhr: rows(out.xywhr) } : { xyxy: rows(out.xyxy) }),
      conf: Array.from(out.conf),
      cls: Array.from(out.cls),
      index: Array.from(out.index),
    };
  }

  /** Forgets all tracks; ids start at 1 again. */
  reset(): void {
    this.handle.reset();
  }
}
