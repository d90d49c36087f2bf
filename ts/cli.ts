#!/usr/bin/env node
/** The `yolo26` command line, in the Ultralytics `yolo26 MODE key=value ...` style. */
import { optionsHelp, parseArgs, TASKS, type ParsedArgs } from './cliargs.js';
import { doctor, formatDoctor } from './doctor.js';
import { OptionError, Yolo26Error } from './errors.js';
import { demo, exportModel, predict, track, train, val, modelInfo } from './index.js';
import { native } from './native.js';
import { ProgressBar } from './progress.js';
import { formatLosses, type Run } from './train.js';
import type { LogEvent } from './log.js';
import { version } from './version.js';

const HELP = `yolo26 ${version}: Ultralytics YOLO26 on a native libtorch engine

Usage: yolo26 [TASK] MODE [key=value ...] [--json]

Tasks (optional; picks the model YAML to train when no model= is given): ${TASKS.join(', ')}

Modes:
  train     train a model         yolo26 train model=yolo26n.yaml data=data.yaml epochs=100 imgsz=640
  val       validate a model      yolo26 val model=runs/detect/train/weights/best.pt data=data.yaml
  predict   run inference         yolo26 predict model=best.pt source=images/ save
  track     track objects         yolo26 track model=best.pt source=video.mp4 tracker=bytetrack.yaml
  export    export a model        yolo26 export model=best.pt format=onnx
  info      model summary         yolo26 info model=yolo26s.yaml imgsz=640
  demo      train, validate and predict on a generated data set (no download)
  doctor    show what the engine runs on and what slows it down (--json for machines)
  version   print the version

Options use the Ultralytics names and defaults (imgsz, batch, epochs, workers, device, conf, ...): key=value,
a bare key sets a boolean option to true, cfg=custom.yaml loads overrides from a file.
Values: numbers, true/false, None, [lists]; anything else is a string.
'yolo26 MODE --help' lists the options of a mode with their defaults.`;

/** Engine and option warnings on stderr (upstream's WARNING lines), other log lines on stdout. */
function printLog(e: LogEvent): void {
  if (e.level === 'warning') console.error(`WARNING: ${e.text}`);
  else console.log(e.text);
}

/** `yolo26 predict` / `yolo26 track`: official-style per-image lines, then speed and where results went. CLI saves by default. */
async function runPredict(options: Record<string, unknown>, run: typeof predict | typeof track = predict): Promise<number> {
  const stream = run({ save: true, ...options } as never);
  stream.on('log', printLog);
  // A bar for directories, globs, lists and videos: the total comes from expanding the source up front.
  let bar: ProgressBar | null = null;
  if (typeof options.source === 'string' && !/^\d+$/.test(options.source)) {
    const total = native().countSource([options.source], typeof options.vid_stride === 'number' ? options.vid_stride : 1);
    if (total > 1) bar = new ProgressBar(total, 'predict');
  }
  let n = 0;
  const total = { preprocess: 0, inference: 0, postprocess: 0 };
  const started = Date.now();
  for await (const r of stream) {
    n++;
    total.preprocess += r.speed.preprocess;
    total.inference += r.speed.inference;
    total.postprocess += r.speed.postprocess;
    const where = r.frame !== null ? `${r.path} frame ${r.frame}` : r.path;
    if (bar) bar.update(n, `${r.verbose()}`);
    else if (options.verbose !== false)
      console.log(`${n} ${where}: ${r.origShape[0]}x${r.origShape[1]} ${r.verbose()}, ${r.speed.inference.toFixed(1)}ms`);
  }
  bar?.finish();
  const secs = (Date.now() - started) / 1000;
  if (n > 0)
    console.log(
      `Speed: ${(total.preprocess / n).toFixed(1)}ms preprocess, ${(total.inference / n).toFixed(1)}ms inference, ` +
        `${(total.postprocess / n).toFixed(1)}ms postprocess per image; ${n} images in ${secs.toFixed(1)}s (${(n / secs).toFixed(1)} img/s)`,
    );
  if (stream.saveDir) console.log(`Results saved to ${stream.saveDir}`);
  return 0;
}

/** Official-style epoch bars with images/s and data-wait added; val tables come through 'log' events. */
function attachProgress(run: Run): void {
  let bar: ProgressBar | null = null;
  let lossOrder: string[] = [];
  run.on('epoch_start', (e) => {
    bar = new ProgressBar(e.batches ?? 0, `Epoch ${e.epoch}/${e.epochs}`);
    lossOrder = e.lossNames ?? lossOrder;
  });
  run.on('batch', (e) => {
    const losses = formatLosses(e.losses ?? {}, lossOrder);
    bar?.update(e.iteration, `${losses} | ${e.imagesPerSecond.toFixed(1)} img/s | data-wait ${(100 * e.dataWaitFraction).toFixed(0)}%`);
  });
  run.on('epoch_end', () => {
    bar?.finish();
    bar = null;
  });
  run.on('log', printLog);
  run.on('checkpoint', (e) => process.stderr.write(`saved ${e.path}\n`));
}

async function runTrain(options: Record<string, unknown>): Promise<number> {
  const run = train(options as never);
  attachProgress(run);
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    console.error('\nyolo26: stopping after this batch (last.pt will be saved); press Ctrl-C again to abort');
    run.stop();
    process.once('SIGINT', () => process.exit(130));
  });
  const r = await run;
  console.log(`Results saved to ${r.saveDir}`);
  return interrupted ? 130 : 0;  // what a shell expects of a run stopped by Ctrl-C, last.pt saved or not
}

async function runDemo(options: Record<string, unknown>): Promise<number> {
  const run = demo(options);
  attachProgress(run);
  const r = await run;
  const m = r.metrics;
  console.log(
    `Demo finished: mAP50 ${(m['metrics/mAP50(B)'] ?? 0).toFixed(3)}, mAP50-95 ${(m['metrics/mAP50-95(B)'] ?? 0).toFixed(3)} ` +
      `on the generated validation set; ${m.detections ?? 0} objects found on held-out images.`,
  );
  console.log(`Data: ${r.data}\nWeights: ${r.best}\nAnnotated predictions: ${r.predictDir}`);
  return 0;
}

async function runVal(options: Record<string, unknown>): Promise<number> {
  const run = val(options as never);
  attachProgress(run);
  const r = await run;
  if (r.saveDir) console.log(`Results saved to ${r.saveDir}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let parsed: ParsedArgs;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof OptionError)) throw e;
    console.error(`yolo26: ${e.message}`);
    return 2; // a usage error: nothing was started
  }
  const { mode, options, flags, help, notes } = parsed;
  if (help || mode === 'help') {
    const modeHelp = optionsHelp(mode);
    console.log(modeHelp ? `${HELP}\n\n${modeHelp}` : HELP);
    return 0;
  }
  for (const n of notes) console.error(`yolo26: ${n}`);
  if (flags.has('version')) {
    console.log(version);
    return 0;
  }
  switch (mode) {
    case 'version':
      console.log(version);
      return 0;
    case 'doctor': {
      const report = doctor({ workers: typeof options.workers === 'number' ? options.workers : undefined });
      console.log(flags.has('json') ? JSON.stringify(report, null, 2) : formatDoctor(report));
      return 0;
    }
    case 'demo':
      return runDemo(options);
    case 'train':
      // resume= takes the data from the checkpoint's train_args
      if (options.data === undefined && (options.resume === undefined || options.resume === false)) {
        // the demo's generated set has detection labels only
        if (parsed.task && parsed.task !== 'detect') throw new OptionError(`train: a ${parsed.task} model needs data=... (a data.yaml with ${parsed.task} labels)`, 'data');
        console.error('yolo26: no data= given: running the built-in demo (synthetic shapes, yolo26n)');
        return runDemo(options);
      }
      return runTrain(options);
    case 'val':
      return runVal(options);
    case 'predict':
      return runPredict(options);
    case 'track':
      return runPredict(options, track);
    case 'info': {
      if (typeof options.model !== 'string') throw new Error("info needs model=..., e.g. 'yolo26 info model=yolo26s.yaml'");
      const s = await modelInfo({ model: options.model, imgsz: typeof options.imgsz === 'number' ? options.imgsz : 640 });
      console.log(flags.has('json') ? JSON.stringify({ ...s, text: undefined }, null, 2) : s.text);
      return 0;
    }
    case 'export': {
      const r = await exportModel(options as never);
      console.log(`Exported ${r.format}: ${r.path}`);
      return 0;
    }
    default:
      console.error(`yolo26: unknown mode '${mode}'. Run 'yolo26 help' for the list of modes.`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof Yolo26Error || err instanceof Error) console.error(`yolo26: ${err.message}`);
    else console.error('yolo26: unexpected error', err);
    process.exit(1);
  },
);
