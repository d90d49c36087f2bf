// The ONNX Runtime backend of predict: the model forward as a call into JavaScript. The pipeline's C++ thread
// hands the letterboxed batch to a JS function (onnxruntime-node's session.run) through a thread-safe function
// and blocks until JS hands the output tensors back. Everything else (sources, letterbox, postprocess, saving)
// is the same pipeline as the libtorch path, so both backends give results of the same shape and rules.
#pragma once
#include <torch/types.h>

#include <memory>

#include "addon.h"
#include "export/onnx_export.h"
#include "infer/pipeline.h"

namespace y26addon {

struct OnnxModelSpec {
  bool half = false;          // the input is float16
  int64_t batch = 0;          // static batch of the file (0 when symbolic): partial batches are padded to it
};

// `run(input, dims, type, done)` is a JS function: input a Float32Array (or Uint16Array of float16 bits) in NCHW,
// dims [B,3,H,W], type 'float32'|'float16'; it must call done(error) or done(null, [{data, dims, type}, ...])
// with the session's outputs in order. The returned forward blocks the calling thread until done() runs.
y26::ForwardOutputsFn ort_forward(Napi::Env env, Napi::Function run, const OnnxModelSpec& spec);

// Pipeline settings from an exported file's metadata (ours or the official exporter's): task, names, kpt shape,
// stride, end2end (from the metadata, else from output0's shape) and, for a static input, the exact input size.
// Fails naming the file when the metadata a predictor needs is missing.
struct OnnxPipelineSpec {
  y26::PipelineOptions po;
  OnnxModelSpec model;
  std::vector<std::string> names;
  bool dynamic = false;  // height/width symbolic: letterbox like the .pt path (minimal rect padding)
};
OnnxPipelineSpec onnx_pipeline_spec(const y26::OnnxMetadata& md, const std::string& path);

}  // namespace y26addon
