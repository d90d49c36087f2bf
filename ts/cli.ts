#!/usr/bin/env node
/** The `yolo26` command line, in the Ultralytics `yolo26 MODE key=value ...` style. */
import { parseArgs } from './cliargs.js';
import { doctor, formatDoctor } from './doctor.js';
import { Yolo26Error } from './errors.js';
import { exportModel, predict, train, val } from './index.js';
import { version } from './version.js';

const HELP = `yolo26 ${version}: Ultralytics YOLO26 on a native libtorch engine

Usage: yolo26 MODE [key=value ...] [--json]

Modes:
  train     train a model         yolo26 train model=yolo26n.yaml data=data.yaml epochs=100 imgsz=640
  val       validate a model      yolo26 val model=runs/detect/train/weights/best.pt data=data.yaml
  predict   run inference         yolo26 predict model=best.pt source=images/ save=true
  export    export a model        yolo26 export model=best.pt format=onnx
  info      model summary         yolo26 info model=yolo26s.yaml imgsz=640
  demo      train, validate and predict on a generated data set (no download)
  doctor    show what the engine runs on and what slows it down (--json for machines)
  version   print the version

Options use the Ultralytics names and defaults (imgsz, batch, epochs, workers, device, conf, ...).`;

async function main(argv: string[]): Promise<number> {
  const { mode, options, flags } = parseArgs(argv);
  switch (mode) {
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    case 'version':
    case '--version':
      console.log(version);
      return 0;
    case 'doctor': {
      const report = doctor({ workers: typeof options.workers === 'number' ? options.workers : undefined });
      console.log(flags.has('json') ? JSON.stringify(report, null, 2) : formatDoctor(report));
      return 0;
    }
    case 'train':
      await train(options as never);
      return 0;
    case 'val':
      await val(options as never);
      return 0;
    case 'predict':
      await predict(options as never);
      return 0;
    case 'export':
      await exportModel(options as never);
      return 0;
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
