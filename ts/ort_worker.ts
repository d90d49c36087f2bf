/**
 * Worker thread that owns one ONNX Runtime session, so that inference never blocks the Node event loop
 * (onnxruntime-node's run() computes on the calling thread). Protocol: workerData {file, options}; posts
 * {kind: 'ready', inputNames, outputNames} or {kind: 'init-error', message}; answers each
 * {id, type, data, dims} with {kind: 'result', id, outputs} or {kind: 'error', id, message}.
 */
import { parentPort, workerData } from 'node:worker_threads';

type Ort = typeof import('onnxruntime-node');
const port = parentPort!;
const { file, options } = workerData as { file: string; options: import('onnxruntime-node').InferenceSession.SessionOptions };

try {
  const m = await import('onnxruntime-node');
  const ort = ((m as { default?: Ort }).default ?? m) as Ort;
  const session = await ort.InferenceSession.create(file, options);
  const input = session.inputNames[0];
  port.on('message', (msg: { id: number; type: 'float32' | 'float16'; data: Float32Array | Uint16Array; dims: number[] }) => {
    let feeds;
    try {
      feeds = { [input]: new ort.Tensor(msg.type, msg.data, msg.dims) };
    } catch (e) {
      port.postMessage({ kind: 'error', id: msg.id, message: e instanceof Error ? e.message : String(e) });
      return;
    }
    session.run(feeds).then(
      (res) => {
        const outputs = session.outputNames.map((n) => ({ name: n, data: res[n].data, dims: res[n].dims, type: res[n].type }));
        port.postMessage({ kind: 'result', id: msg.id, outputs });
        for (const n of session.outputNames) res[n].dispose?.();
      },
      (e: unknown) => port.postMessage({ kind: 'error', id: msg.id, message: e instanceof Error ? e.message : String(e) }),
    );
  });
  port.postMessage({ kind: 'ready', inputNames: session.inputNames, outputNames: session.outputNames });
} catch (e) {
  port.postMessage({ kind: 'init-error', message: e instanceof Error ? e.message : String(e) });
}
