/**
 * Option schemas for every mode, with Ultralytics' argument names and defaults (default.yaml, 8.4.x).
 * One schema per mode; shared groups are composed, never repeated.
 */
import { z } from 'zod';
import { OptionError } from './errors.js';
import type { PredictSource } from './predict.js';

/** Far above any real input size; stops a typo such as 1e9 before it reaches an allocation of exabytes. */
export const MAX_IMGSZ = 16384;
const side = z.number().int().positive().max(MAX_IMGSZ, `each size must be at most ${MAX_IMGSZ}`);
const imgsz = z.union([side, z.tuple([side, side])]);
const device = z.union([z.string(), z.number().int().nonnegative()]).transform((d) => String(d));
const nullableNumber = z.number().nullable();
const prob = z.number().min(0).max(1);

/** Options every mode accepts. */
const common = {
  model: z.string().min(1),
  device: device.default(''),
  threads: z.number().int().nonnegative().default(0),
  verbose: z.boolean().default(true),
};

const output = {
  project: z.string().nullable().default(null),
  name: z.string().nullable().default(null),
  exist_ok: z.boolean().default(false),
};

/** Augmentation hyperparameters (training only). */
const augment = {
  hsv_h: prob.default(0.015),
  hsv_s: prob.default(0.7),
  hsv_v: prob.default(0.4),
  degrees: z.number().min(-180).max(180).default(0.0),
  translate: prob.default(0.1),
  scale: z.number().min(0).default(0.5),
  shear: z.number().min(-180).max(180).default(0.0),
  perspective: z.number().min(0).max(0.001).default(0.0),
  flipud: prob.default(0.0),
  fliplr: prob.default(0.5),
  bgr: prob.default(0.0),
  mosaic: prob.default(1.0),
  mixup: prob.default(0.0),
  cutmix: prob.default(0.0),
  copy_paste: prob.default(0.0),
  copy_paste_mode: z.enum(['flip', 'mixup']).default('flip'),
  /** Classify: the policy that replaces ColorJitter; null turns it off (sent as false, so the engine's default does not apply). */
  auto_augment: z
    .enum(['randaugment', 'autoaugment', 'augmix'])
    .nullable()
    .default('randaugment')
    .transform((v) => v ?? false),
  /** Classify: RandomErasing probability. */
  erasing: prob.default(0.4),
};

export const trainSchema = z.strictObject({
  ...common,
  ...output,
  ...augment,
  model: z.string().min(1).default('yolo26n.yaml'),
  /** Required unless resuming (a resumed run takes its data from the checkpoint). */
  data: z.string().min(1).optional(),
  epochs: z.number().int().positive().default(100),
  time: nullableNumber.default(null),
  patience: z.number().int().nonnegative().default(100),
  batch: z.number().int().refine((b) => b === -1 || b > 0, 'batch must be a positive integer or -1 (auto)').default(16),
  imgsz: imgsz.default(640),
  save: z.boolean().default(true),
  save_period: z.number().int().default(-1),
  cache: z.union([z.boolean(), z.enum(['ram', 'disk'])]).default(false),
  workers: z.number().int().nonnegative().default(8),
  pretrained: z.union([z.boolean(), z.string()]).default(true),
  optimizer: z.enum(['auto', 'SGD', 'Adam', 'AdamW', 'MuSGD']).default('auto'),
  seed: z.number().int().default(0),
  deterministic: z.boolean().default(true),
  single_cls: z.boolean().default(false),
  rect: z.boolean().default(false),
  cos_lr: z.boolean().default(false),
  close_mosaic: z.number().int().nonnegative().default(10),
  resume: z.union([z.boolean(), z.string()]).default(false),
  amp: z.boolean().default(true),
  fraction: z.number().gt(0).max(1).default(1.0),
  freeze: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullable().default(null),
  /** Fine-tuning across data sets: copy the checkpoint's class-logit rows by class name (official, on by default). */
  cls_remap: z.boolean().default(true),
  /** CUDA: channels-last (NHWC) training (the CPU trains channels-last already, except classify). */
  channels_last: z.boolean().default(false),
  multi_scale: z.number().min(0).default(0.0),
  val: z.boolean().default(true),
  lr0: z.number().positive().default(0.01),
  lrf: z.number().positive().default(0.01),
  momentum: z.number().min(0).max(1).default(0.937),
  weight_decay: z.number().min(0).default(0.0005),
  warmup_epochs: z.number().min(0).default(3.0),
  warmup_momentum: z.number().min(0).max(1).default(0.8),
  warmup_bias_lr: z.number().min(0).default(0.1),
  box: z.number().min(0).default(7.5),
  cls: z.number().min(0).default(0.5),
  dfl: z.number().min(0).default(1.5),
  /** Class-imbalance weights on the classification loss: (1 / instances)^cls_pw per class, mean 1 (0 = off). */
  cls_pw: z.number().min(0).max(1).default(0.0),
  pose: z.number().min(0).default(12.0),
  kobj: z.number().min(0).default(1.0),
  rle: z.number().min(0).default(1.0),
  angle: z.number().min(0).default(1.0),
  overlap_mask: z.boolean().default(true),
  mask_ratio: z.number().int().positive().default(4),
  /** Classify: dropout before the head's linear layer (training only). */
  dropout: prob.default(0.0),
  nbs: z.number().int().positive().default(64),
  accumulate: z.number().int().positive().nullable().default(null),
  /** Ours: bf16 autocast for CPU training where the CPU has native bf16 (about 2x faster; may cost some accuracy). */
  cpu_amp: z.boolean().default(false),
  plots: z.boolean().default(true),
});

export const valSchema = z.strictObject({
  ...common,
  ...output,
  data: z.string().min(1).nullable().default(null), // null: the data the checkpoint was trained on
  imgsz: imgsz.optional(), // absent: the checkpoint's training imgsz (640 when it records none)
  batch: z.number().int().positive().default(16),
  /** null: 0.001 for the metrics and 0.25 for the confusion matrix (official); a value sets both. */
  conf: z.number().min(0).max(1).nullable().default(null),
  iou: z.number().min(0).max(1).default(0.7),
  max_det: z.number().int().positive().default(300),
  half: z.boolean().default(false),
  split: z.enum(['train', 'val', 'test']).default('val'),
  workers: z.number().int().nonnegative().default(8),
  rect: z.boolean().default(true),
  save_json: z.boolean().default(false),
  plots: z.boolean().default(true),
  end2end: z.boolean().nullable().default(null),
  single_cls: z.boolean().default(false),
  overlap_mask: z.boolean().default(true),
  mask_ratio: z.number().int().positive().default(4),
});

export const predictSchema = z.strictObject({
  ...common,
  ...output,
  source: z.custom<PredictSource>().optional(), // checked when the stream opens (toNativeSource)
  imgsz: imgsz.default(640),
  conf: z.number().min(0).max(1).default(0.25),
  iou: z.number().min(0).max(1).default(0.7),
  max_det: z.number().int().positive().default(300),
  classes: z.array(z.number().int().nonnegative()).nullable().default(null),
  agnostic_nms: z.boolean().default(false),
  batch: z.number().int().positive().default(1),
  half: z.boolean().default(false),
  vid_stride: z.number().int().positive().default(1),
  stream: z.boolean().default(false),
  save: z.boolean().default(false),
  save_txt: z.boolean().default(false),
  save_conf: z.boolean().default(false),
  save_crop: z.boolean().default(false),
  line_width: z.number().int().positive().nullable().default(null),
  show_labels: z.boolean().default(true),
  show_conf: z.boolean().default(true),
  end2end: z.boolean().nullable().default(null),
  skip_errors: z.boolean().default(false),
  backend: z.enum(['auto', 'torch', 'onnxruntime']).default('auto'),
});

export const exportSchema = z.strictObject({
  ...common,
  format: z.enum(['onnx', 'engine']).default('onnx'),
  imgsz: imgsz.default(640),
  batch: z.number().int().positive().default(1),
  dynamic: z.boolean().default(false),
  half: z.boolean().default(false),
  opset: z.number().int().positive().nullable().default(null),
  simplify: z.boolean().default(true),
  end2end: z.boolean().nullable().default(null),
  max_det: z.number().int().positive().default(300),
});

export type TrainOptions = z.input<typeof trainSchema>;
export type TrainConfig = z.output<typeof trainSchema>;
export type ValOptions = z.input<typeof valSchema>;
export type ValConfig = z.output<typeof valSchema>;
/** track(): predict's options, a tracker YAML and persist; conf defaults to 0.1 as upstream (ByteTrack uses the low scores). */
export const trackSchema = z.strictObject({
  ...predictSchema.shape,
  conf: z.number().min(0).max(1).default(0.1),
  tracker: z.string().min(1).default('botsort.yaml'),
  persist: z.boolean().default(false),
});

export type PredictOptions = Omit<z.input<typeof predictSchema>, 'source'> & { source: PredictSource };
export type TrackOptions = Omit<z.input<typeof trackSchema>, 'source'> & { source: PredictSource };
export type TrackConfig = z.output<typeof trackSchema>;
export type PredictConfig = z.output<typeof predictSchema>;
export type ExportOptions = z.input<typeof exportSchema>;
export type ExportConfig = z.output<typeof exportSchema>;

type ModeSchema = typeof trainSchema | typeof valSchema | typeof predictSchema | typeof trackSchema | typeof exportSchema;

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

/** The closest accepted option name, when one is close enough to be a typo. */
export function suggest(name: string, accepted: string[]): string | undefined {
  const lower = name.toLowerCase();
  // 'confidence' -> 'conf', 'epoch' -> 'epochs': one name abbreviates the other.
  const prefix = accepted.find((c) => c.length >= 3 && (lower.startsWith(c.toLowerCase()) || c.toLowerCase().startsWith(lower)));
  if (prefix && lower.length >= 3) return prefix;
  let best: string | undefined;
  let bestD = Infinity;
  for (const cand of accepted) {
    const dist = editDistance(name.toLowerCase(), cand.toLowerCase());
    if (dist < bestD) [best, bestD] = [cand, dist];
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return `"${v}"`;
  if (typeof v === 'number') return String(v);  // NaN and Infinity, which JSON writes as null
  if (v === undefined) return 'nothing';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/**
 * Validates `input` for `mode` and returns the options with defaults filled in.
 * Throws OptionError naming the first bad option and what is accepted.
 */
export function parseOptions<S extends ModeSchema>(mode: string, schema: S, input: unknown): z.output<S> {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new OptionError(`${mode}() takes one options object, got ${describeValue(input)}`, '');
  const result = schema.safeParse(input);
  if (result.success) return result.data as z.output<S>;
  const accepted = Object.keys(schema.shape);
  const issue = result.error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const hint = suggest(key, accepted);
    throw new OptionError(
      `${mode}(): unknown option '${key}'.${hint ? ` Did you mean '${hint}'?` : ''} ` +
        `Accepted options: ${accepted.join(', ')}`,
      key,
    );
  }
  const key = String(issue.path[0] ?? '');
  const given = (input as Record<string, unknown>)[key];
  const field = schema.shape[key as keyof typeof schema.shape] as z.ZodType | undefined;
  let expected = issue.message;
  if (issue.code === 'invalid_value' && 'values' in issue) expected = `one of ${issue.values.map((v) => describeValue(v)).join(', ')}`;
  if (typeof given === 'number' && !Number.isFinite(given)) expected = 'expected a finite number';
  // a union (imgsz: a number or [h, w]) reports only "invalid input": say which of its forms failed and why
  if (issue.code === 'invalid_union' && key === 'imgsz') expected = imgszExpectation(given);
  if (given === undefined && field && !field.safeParse(undefined).success)
    throw new OptionError(`${mode}(): option '${key}' is required`, key);
  throw new OptionError(`${mode}(): option '${key}' = ${describeValue(given)} is invalid: ${expected}`, key);
}

function imgszExpectation(given: unknown): string {
  const sides = Array.isArray(given) ? given : [given];
  const bad = sides.find((s) => !(typeof s === 'number' && Number.isInteger(s) && s > 0 && s <= MAX_IMGSZ));
  if (Array.isArray(given) && given.length !== 2) return `a size is one integer or [height, width] (got ${given.length} values)`;
  return `each size must be an integer from 1 to ${MAX_IMGSZ} (got ${describeValue(bad)})`;
}

/** Normalises imgsz to [h, w]. */
export function imgszPair(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

/**
 * The official check_imgsz: each side rounded up to a multiple of the model's largest stride (and at least `floor`);
 * `single` (train, val) takes one integer, so [h, w] becomes max(h, w). Returns the size used and the warnings to give.
 */
export function checkImgsz(
  v: number | [number, number],
  stride: number,
  options: { single?: boolean; floor?: number } = {},
): { size: [number, number]; warnings: string[] } {
  const warnings: string[] = [];
  let sides = typeof v === 'number' ? [v] : [...v];
  if (options.single && sides.length > 1) {
    const m = Math.max(...sides);
    warnings.push(`imgsz=[${sides.join(', ')}]: train and val take one integer size (square images); using imgsz=${m}`);
    sides = [m];
  }
  const s = Math.max(1, Math.round(stride));
  const rounded = sides.map((x) => Math.max(Math.ceil(x / s) * s, options.floor ?? 0));
  if (rounded.some((x, i) => x !== sides[i])) {
    const show = (a: number[]) => (a.length === 1 ? String(a[0]) : `[${a.join(', ')}]`);
    warnings.push(`imgsz=${show(sides)} must be a multiple of max stride ${s}, updating to ${show(rounded)}`);
  }
  return { size: rounded.length === 1 ? [rounded[0], rounded[0]] : [rounded[0], rounded[1]], warnings };
}
