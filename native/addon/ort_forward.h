// The ONNX Runtime backends of predict. Native (ortOpen): a session of ONNX Runtime's C API (infer/ort_runtime.h)
// that the pipeline runs on its own threads. The fallback (a worker thread of onnxruntime-node): the model forward
// as a call into JavaScript; the pipeline's C++ thread hands the letterboxed batch to a JS function through a
// thread-safe function and blocks until JS hands the output tensors back. Everything else (sources, letterbox,
// postprocess, saving) is the same pipeline as the libtorch path, so all backends give results of the same shape
// and rules.
#pragma once
#include <torch/types.h>

#include <memory>

#include "addon.h"
#include "infer/ort_runtime.h"
#include "infer/pipeline.h"

namespace y26addon {

// `run(input, dims, type, done)` is a JS function: input a Float32Array (or Uint16Array of float16 bits) in NCHW,
// dims [B,3,H,W], type 'float32'|'float16'; it must call done(error) or done(null, [{data, dims, type}, ...])
// with the session's outputs in order. The returned forward blocks the calling thread until done() runs.
// static_batch > 0: the file's fixed batch; a partial last batch is padded to it and the outputs cut back.
y26::ForwardOutputsFn ort_forward(Napi::Env env, Napi::Function run, int64_t static_batch);

// The session behind a NativeOrtSession object (ortOpen); fails when it is not one or was released.
std::shared_ptr<y26::OrtModel> unwrap_ort_session(Napi::Value v);

}  // namespace y26addon
