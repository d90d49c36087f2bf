#include "infer/ort_runtime.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include "util/error.h"

namespace y26 {

namespace {

// Our own minimal view of ONNX Runtime's C API (onnxruntime_c_api.h is not needed to build). OrtApi is a table of
// function pointers that only ever grows at the end, so each call we make is named by its fixed slot number.
enum Slot : size_t {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSession = 7,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kSessionGetInputCount = 30,
  kSessionGetOutputCount = 31,
  kSessionGetInputTypeInfo = 33,
  kSessionGetInputName = 36,
  kSessionGetOutputName = 37,
  kCreateTensorWithDataAsOrtValue = 49,
  kGetTensorMutableData = 51,
  kCastTypeInfoToTensorInfo = 55,
  kGetTensorElementType = 60,
  kGetDimensionsCount = 61,
  kGetDimensions = 62,
  kGetTensorTypeAndShape = 65,
  kCreateCpuMemoryInfo = 69,
  kAllocatorFree = 76,
  kGetAllocatorWithDefaultOptions = 78,
  kReleaseStatus = 93,
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseTypeInfo = 98,
  kReleaseTensorTypeAndShapeInfo = 99,
  kReleaseSessionOptions = 100,
  kAddSessionConfigEntry = 130,
};
// The C API version asked for: every slot above exists from it on (ONNX Runtime 1.11); newer libraries serve it too.
constexpr uint32_t kApiVersion = 11;
constexpr int kElemFloat = 1, kElemFloat16 = 10;  // ONNXTensorElementDataType
constexpr int kLogError = 3;                      // OrtLoggingLevel: errors only
constexpr int kGraphOptimizeAll = 99;             // GraphOptimizationLevel
constexpr int kArenaAllocator = 1, kMemTypeDefault = 0;

struct ApiBase {
  const void* const* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

using Status = void*;  // OrtStatus*: null on success

}  // namespace

struct OrtRuntime {
  std::string path;
  std::string version;
  const void* const* api = nullptr;
  void* env = nullptr;  // OrtEnv*: one per process, kept for its lifetime as the library is

  template <typename F>
  F fn(Slot s) const {
    return reinterpret_cast<F>(const_cast<void*>(api[s]));
  }
  // Fails with ONNX Runtime's message when `st` is an error (and frees it).
  void check(Status st, const std::string& what) const {
    if (!st) return;
    std::string msg = fn<const char* (*)(const void*)>(kGetErrorMessage)(st);
    fn<void (*)(void*)>(kReleaseStatus)(st);
    fail("onnxruntime: " + what + ": " + msg);
  }
  void release(Slot s, void* p) const {
    if (p) fn<void (*)(void*)>(s)(p);
  }
};

namespace {

const std::string kFix =
    "install onnxruntime-node (ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30), or set YOLO26_ORT_LIB "
    "to the path of a libonnxruntime shared library";

// Loaded libraries by path: loaded once, never unloaded (ONNX Runtime keeps threads and a global environment).
std::shared_ptr<OrtRuntime> load_runtime(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<OrtRuntime>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = loaded.find(path); it != loaded.end()) return it->second;
  if (path.empty()) fail("onnxruntime: no ONNX Runtime library was given: " + kFix);
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = dlerror();
    fail("onnxruntime: cannot load the ONNX Runtime library " + path + " (" + (why ? why : "unknown error") + "): " + kFix);
  }
  using GetBase = const ApiBase* (*)();
  auto get_base = reinterpret_cast<GetBase>(dlsym(h, "OrtGetApiBase"));
  if (!get_base) fail("onnxruntime: " + path + " has no OrtGetApiBase symbol, so it is not an ONNX Runtime library: " + kFix);
  const ApiBase* base = get_base();
  auto rt = std::make_shared<OrtRuntime>();
  rt->path = path;
  rt->version = base && base->GetVersionString ? base->GetVersionString() : "?";
  rt->api = base ? base->GetApi(kApiVersion) : nullptr;
  if (!rt->api)
    fail("onnxruntime: the ONNX Runtime library " + path + " (version " + rt->version + ") does not serve C API version " +
         std::to_string(kApiVersion) + " (ONNX Runtime 1.11 or newer is needed): " + kFix);
  rt->check(rt->fn<Status (*)(int, const char*, void**)>(kCreateEnv)(kLogError, "yolo26", &rt->env),
            "the ONNX Runtime library " + path + " could not create its environment");
  loaded[path] = rt;
  return rt;
}

std::string shape_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace

std::string find_ort_library(const std::string& root) {
  if (const char* env = std::getenv("YOLO26_ORT_LIB"); env && *env) return env;
  namespace fs = std::filesystem;
  const fs::path bin = fs::path(root) / "node_modules" / "onnxruntime-node" / "bin";
  std::error_code ec;
  for (const auto& napi : fs::directory_iterator(bin, ec))
    for (const auto& f : fs::directory_iterator(napi.path() / "linux" / "x64", ec))
      if (f.path().filename().string().rfind("libonnxruntime.so", 0) == 0) return f.path().string();
  return "";
}

std::string ort_library_version(const std::string& library) { return load_runtime(library)->version; }

OrtModel::OrtModel(const std::string& library, const std::string& model, int threads)
    : rt_(load_runtime(library)), path_(model) {
  const OrtRuntime& rt = *rt_;
  void* opts = nullptr;
  rt.check(rt.fn<Status (*)(void**)>(kCreateSessionOptions)(&opts), "creating session options");
  try {
    rt.check(rt.fn<Status (*)(void*, int)>(kSetSessionGraphOptimizationLevel)(opts, kGraphOptimizeAll), "session options");
    if (threads > 0) rt.check(rt.fn<Status (*)(void*, int)>(kSetIntraOpNumThreads)(opts, threads), "session options");
    // No busy-waiting between parallel sections: the spinning threads would take the CPU from decoding and
    // letterboxing the next images (docs/benchmarks.md), as in the options the worker runner uses.
    auto entry = rt.fn<Status (*)(void*, const char*, const char*)>(kAddSessionConfigEntry);
    rt.check(entry(opts, "session.intra_op.allow_spinning", "0"), "session options");
    rt.check(entry(opts, "session.inter_op.allow_spinning", "0"), "session options");
    rt.check(rt.fn<Status (*)(void*, const char*, void*, void**)>(kCreateSession)(rt.env, model.c_str(), opts, &session_),
             "cannot open " + model);
  } catch (...) {
    rt.release(kReleaseSessionOptions, opts);
    throw;
  }
  rt.release(kReleaseSessionOptions, opts);
  try {
    void* alloc = nullptr;
    rt.check(rt.fn<Status (*)(void**)>(kGetAllocatorWithDefaultOptions)(&alloc), "allocator");
    auto names = [&](Slot count_slot, Slot name_slot, std::vector<std::string>& out) {
      size_t n = 0;
      rt.check(rt.fn<Status (*)(const void*, size_t*)>(count_slot)(session_, &n), "reading " + model);
      for (size_t i = 0; i < n; ++i) {
        char* s = nullptr;
        rt.check(rt.fn<Status (*)(const void*, size_t, void*, char**)>(name_slot)(session_, i, alloc, &s), "reading " + model);
        out.emplace_back(s);
        rt.check(rt.fn<Status (*)(void*, void*)>(kAllocatorFree)(alloc, s), "allocator");
      }
    };
    names(kSessionGetInputCount, kSessionGetInputName, inputs_);
    names(kSessionGetOutputCount, kSessionGetOutputName, outputs_);
    if (inputs_.size() != 1)
      fail("predict(): " + model + " has " + std::to_string(inputs_.size()) + " inputs; a YOLO export has one (B,3,H,W) input");
    if (outputs_.empty()) fail("predict(): " + model + " has no outputs");
    for (auto& s : inputs_) input_ptrs_.push_back(s.c_str());
    for (auto& s : outputs_) output_ptrs_.push_back(s.c_str());

    void* type_info = nullptr;
    rt.check(rt.fn<Status (*)(const void*, size_t, void**)>(kSessionGetInputTypeInfo)(session_, 0, &type_info), "reading " + model);
    int elem = 0;
    const void* tensor_info = nullptr;
    Status st = rt.fn<Status (*)(const void*, const void**)>(kCastTypeInfoToTensorInfo)(type_info, &tensor_info);
    if (!st && tensor_info) st = rt.fn<Status (*)(const void*, int*)>(kGetTensorElementType)(tensor_info, &elem);
    rt.release(kReleaseTypeInfo, type_info);
    rt.check(st, "reading " + model);
    if (elem != kElemFloat && elem != kElemFloat16)
      fail("predict(): the input of " + model + " has element type " + std::to_string(elem) + "; predict feeds float32 or float16");
    half_input_ = elem == kElemFloat16;
    rt.check(rt.fn<Status (*)(int, int, void**)>(kCreateCpuMemoryInfo)(kArenaAllocator, kMemTypeDefault, &mem_info_), "memory info");
  } catch (...) {
    rt.release(kReleaseMemoryInfo, mem_info_);
    rt.release(kReleaseSession, session_);
    throw;
  }
}

OrtModel::~OrtModel() {
  rt_->release(kReleaseMemoryInfo, mem_info_);
  rt_->release(kReleaseSession, session_);
}

std::string OrtModel::version() const { return rt_->version; }

std::vector<torch::Tensor> OrtModel::run(const torch::Tensor& x) const {
  const OrtRuntime& rt = *rt_;
  if (x.dim() != 4) fail("onnxruntime: input of shape " + shape_str(x.sizes().vec()) + " for " + path_ + "; expected (B,3,H,W)");
  // Already float32 (float16) and contiguous from the pipeline: then this is the pipeline's buffer, not a copy.
  torch::Tensor in = x.to(torch::kCPU, half_input_ ? torch::kFloat16 : torch::kFloat32).contiguous();
  const std::vector<int64_t> dims = in.sizes().vec();
  void* input = nullptr;
  rt.check(rt.fn<Status (*)(const void*, void*, size_t, const int64_t*, size_t, int, void**)>(kCreateTensorWithDataAsOrtValue)(
               mem_info_, in.data_ptr(), in.nbytes(), dims.data(), dims.size(), half_input_ ? kElemFloat16 : kElemFloat, &input),
           "input tensor");
  std::vector<void*> raw(outputs_.size(), nullptr);
  Status st = rt.fn<Status (*)(void*, const void*, const char* const*, const void* const*, size_t, const char* const*, size_t, void**)>(
      kRun)(session_, nullptr, input_ptrs_.data(), &input, 1, output_ptrs_.data(), output_ptrs_.size(), raw.data());
  rt.release(kReleaseValue, input);
  // Owned from here on, so an error below frees every output.
  auto rtp = rt_;
  std::vector<std::shared_ptr<void>> values;
  for (void* v : raw) values.emplace_back(v, [rtp](void* p) { rtp->release(kReleaseValue, p); });
  rt.check(st, "running " + path_ + " on a batch of shape " + shape_str(dims));

  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < values.size(); ++i) {
    void* v = values[i].get();
    if (!v) fail("onnxruntime: " + path_ + " returned no value for output " + outputs_[i]);
    void* info = nullptr;
    rt.check(rt.fn<Status (*)(const void*, void**)>(kGetTensorTypeAndShape)(v, &info), "output " + outputs_[i]);
    int elem = 0;
    size_t rank = 0;
    std::vector<int64_t> shape;
    Status s2 = rt.fn<Status (*)(const void*, int*)>(kGetTensorElementType)(info, &elem);
    if (!s2) s2 = rt.fn<Status (*)(const void*, size_t*)>(kGetDimensionsCount)(info, &rank);
    if (!s2) {
      shape.resize(rank);
      s2 = rt.fn<Status (*)(const void*, int64_t*, size_t)>(kGetDimensions)(info, shape.data(), rank);
    }
    rt.release(kReleaseTensorTypeAndShapeInfo, info);
    rt.check(s2, "output " + outputs_[i]);
    void* data = nullptr;
    rt.check(rt.fn<Status (*)(void*, void**)>(kGetTensorMutableData)(v, &data), "output " + outputs_[i]);
    if (elem == kElemFloat) {
      std::shared_ptr<void> keep = values[i];  // the tensor keeps ONNX Runtime's buffer alive
      out.push_back(torch::from_blob(data, shape, [keep](void*) mutable { keep.reset(); }, torch::kFloat32));
    } else if (elem == kElemFloat16) {
      out.push_back(torch::from_blob(data, shape, torch::kFloat16).to(torch::kFloat32));
    } else {
      fail("onnxruntime: output " + outputs_[i] + " of " + path_ + " has element type " + std::to_string(elem) +
           "; predict reads float32 or float16 outputs");
    }
  }
  return out;
}

ForwardOutputsFn pad_to_static_batch(ForwardOutputsFn f, int64_t static_batch) {
  if (static_batch <= 0) return f;
  return [f = std::move(f), static_batch](const torch::Tensor& x_in) {
    const int64_t n = x_in.size(0);
    torch::Tensor x = x_in;
    if (n < static_batch)  // the last, partial batch: pad, then slice the outputs back
      x = torch::cat({x, torch::zeros({static_batch - n, x.size(1), x.size(2), x.size(3)}, x.options())});
    if (x.size(0) != static_batch)
      fail("onnxruntime: batch of " + std::to_string(x.size(0)) + " for a file made for batch " + std::to_string(static_batch));
    std::vector<torch::Tensor> out = f(x);
    if (n < static_batch)
      for (auto& t : out) t = t.narrow(0, 0, n).contiguous();
    return out;
  };
}

ForwardOutputsFn ort_model_forward(std::shared_ptr<OrtModel> model, int64_t static_batch) {
  if (!model) fail("predict: no ONNX Runtime session");
  return pad_to_static_batch([model](const torch::Tensor& x) { return model->run(x); }, static_batch);
}

}  // namespace y26
