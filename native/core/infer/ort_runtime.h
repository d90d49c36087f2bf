// ONNX Runtime inside the predict pipeline: its C API, from a shared library found at run time (the one the
// onnxruntime-node package ships), so the forward runs on the pipeline's own thread over the pipeline's own input
// buffer, with no copy and no hop through JavaScript. Nothing here needs ONNX Runtime at build time.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "infer/pipeline.h"

namespace y26 {

struct OrtRuntime;  // the loaded library and its API table (ort_runtime.cpp)

// One inference session of an .onnx file. run() may be called from several threads at once (ONNX Runtime's Run is
// thread-safe); the object must outlive every forward made from it.
class OrtModel {
 public:
  // Loads `library` (libonnxruntime.so.*; loaded once per process, never unloaded) and opens `model` on the CPU.
  // threads > 0: ONNX Runtime's intra-op threads (else its default, one per physical core). Throws y26::Error naming
  // the library or the file and the fix.
  OrtModel(const std::string& library, const std::string& model, int threads = 0);
  ~OrtModel();
  OrtModel(const OrtModel&) = delete;
  OrtModel& operator=(const OrtModel&) = delete;

  // x: (B,3,H,W) float32 or float16 on the CPU, converted to the file's input type when it differs. Returns every
  // output in the file's order as float32 tensors (float32 outputs share ONNX Runtime's buffer, without a copy).
  std::vector<torch::Tensor> run(const torch::Tensor& x) const;

  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }
  bool half_input() const { return half_input_; }
  std::string version() const;  // the library's version string, e.g. "1.30.0"

 private:
  std::shared_ptr<OrtRuntime> rt_;
  void* session_ = nullptr;   // OrtSession*
  void* mem_info_ = nullptr;  // OrtMemoryInfo* (CPU)
  std::vector<std::string> inputs_, outputs_;
  std::vector<const char*> input_ptrs_, output_ptrs_;
  bool half_input_ = false;
  std::string path_;
};

// $YOLO26_ORT_LIB, else the libonnxruntime.so* that onnxruntime-node ships under <root>/node_modules; "" when neither
// exists. For programs run from a checkout (benchmarks, tests): the addon gets its path from the TypeScript side.
std::string find_ort_library(const std::string& root);

// The version string of the ONNX Runtime library at `library` (loads it); throws y26::Error as OrtModel does.
std::string ort_library_version(const std::string& library);

// The forward of a file made for a fixed batch: a partial last batch is padded with zeros to `static_batch` and
// the outputs cut back. static_batch <= 0: `f` itself.
ForwardOutputsFn pad_to_static_batch(ForwardOutputsFn f, int64_t static_batch);

// The pipeline forward of an OrtModel (see pad_to_static_batch).
ForwardOutputsFn ort_model_forward(std::shared_ptr<OrtModel> model, int64_t static_batch = 0);

}  // namespace y26
