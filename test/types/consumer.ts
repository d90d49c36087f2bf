// A consumer of the package's public declarations: must compile under strict with skipLibCheck off.
import {
  predict,
  train,
  type Backend,
  type BatchEvent,
  type CheckpointEvent,
  type EpochEndEvent,
  type EpochStartEvent,
  type LogEvent,
  type Masks,
  type OBB,
  type PredictSource,
  type Result,
  type ResultJSON,
  type Run,
  type RunResult,
} from 'yolo26-native';

export function watch(run: Run): Promise<RunResult> {
  run.on('epoch_start', (e: EpochStartEvent) => console.log(e.lossNames.join(','), e.batches));
  run.on('batch', (e: BatchEvent) => console.log(e.iteration, e.losses.box_loss, e.imagesPerSecond));
  run.on('epoch_end', (e) => console.log(e.metrics['metrics/mAP50(B)'], (e satisfies EpochEndEvent).epoch));
  run.on('checkpoint', (e: CheckpointEvent) => console.log(e.path, e.kind));
  run.once('log', (e: LogEvent) => console.log(e.text));
  run.on('done', (r) => console.log(r.saveDir));
  run.on('error', (err) => console.log(err.code));
  return Promise.resolve(run);
}

export async function use(): Promise<void> {
  watch(train({ model: 'yolo26n.yaml', data: 'data.yaml', epochs: 1 }));
  const source: PredictSource = ['a.jpg', 'b.jpg'];
  const stream = predict({ model: 'yolo26n-seg.pt', source, conf: 0.1 });
  const backend: Backend | null = stream.backend;
  for await (const r of stream) {
    const masks: Masks | null = r.masks;
    const obb: OBB | null = r.obb;
    const shape: [number, number, number] | undefined = masks?.shape;
    const corners: number[][][] | undefined = obb?.xyxyxyxyn;
    const trackIds: number[] | null | undefined = obb ? obb.id : r.boxes?.id;
    const json: ResultJSON[] = r.toJSON();
    const first: Result = r;
    console.log(backend, shape, corners, trackIds, json[0]?.segments?.x, first.boxes?.xyxy, masks?.data.byteLength);
  }
}
