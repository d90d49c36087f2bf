// doctor() facts, thread control, and a deliberate failure used to test error propagation.
#include <dlfcn.h>

#include <mutex>

#include "addon.h"
#include "util/system.h"


namespace y26addon {

// The CUDA version the installed NVIDIA driver supports ("12.4"), asked of the driver library itself (loaded at
// run time, so CPU builds and machines without a driver need nothing); "" without a driver.
static std::string driver_cuda_version() {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!lib) return "";
  using GetVersion = int (*)(int*);
  auto get = reinterpret_cast<GetVersion>(dlsym(lib, "cuDriverGetVersion"));
  int v = 0;
  std::string out;
  if (get && get(&v) == 0 && v > 0) out = std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
  dlclose(lib);
  return out;
}

static Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto s = y26::system_info();
    auto o = Napi::Object::New(env);
    o.Set("torchVersion", s.torch_version);
    o.Set("opencvVersion", s.opencv_version);
    o.Set("cudaBuilt", s.cuda_built);
    o.Set("cudaAvailable", s.cuda_available);
    o.Set("cudaDeviceCount", s.cuda_device_count);
    o.Set("cudaVersion", s.cuda_version);
    o.Set("cudnnVersion", s.cudnn_version);
    o.Set("cudnnAvailable", s.cudnn_available);
    o.Set("blas", s.blas);
    o.Set("parallelBackend", s.parallel_backend);
    o.Set("intraOpThreads", s.intra_op_threads);
    o.Set("interOpThreads", s.inter_op_threads);
    o.Set("hardwareThreads", s.hardware_threads);
    o.Set("physicalCores", s.physical_cores);
    o.Set("cpuBf16", s.cpu_bf16);
    o.Set("buildConfig", s.build_config);
    auto built = Napi::Object::New(env);
    built.Set("libDir", YOLO26_BUILT_TORCH_DIR);
    built.Set("rule", YOLO26_BUILT_TORCH_RULE);
    built.Set("why", YOLO26_BUILT_TORCH_WHY);
    built.Set("cuda", YOLO26_BUILT_TORCH_CUDA);
    o.Set("builtAgainst", built);
    o.Set("driverCudaVersion", driver_cuda_version());
    return o;
  });
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    int threads = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    int workers = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    return Napi::Number::New(env, y26::configure_threads(threads, workers));
  });
}

static Napi::Value ResolveDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    return Napi::String::New(env, y26::resolve_device(info[0].ToString().Utf8Value()));
  });
}

// Multiplies two zero matrices of the given shapes; a shape mismatch raises c10::Error inside
// libtorch. Used by the tests to prove native errors become JS errors (sync and async).
static Napi::Value DebugMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto dims = [](Napi::Value v) {
    std::vector<int64_t> d;
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) d.push_back(a.Get(i).As<Napi::Number>().Int64Value());
    return d;
  };
  auto a = dims(info[0]);
  auto b = dims(info[1]);
  bool async = info.Length() > 2 && info[2].ToBoolean().Value();
  auto work = [a, b]() {
    auto shape = y26::debug_matmul_shape(a, b);
    return Finish([shape](Napi::Env env) -> Napi::Value {
      auto arr = Napi::Array::New(env, shape.size());
      for (size_t i = 0; i < shape.size(); ++i) arr.Set(i, Napi::Number::New(env, (double)shape[i]));
      return arr;
    });
  };
  if (async) return run_async(env, work);
  return guard(env, [&]() -> Napi::Value { return work()(env); });
}

static void InitSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("systemInfo", Napi::Function::New(env, SystemInfo));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("resolveDevice", Napi::Function::New(env, ResolveDevice));
  exports.Set("debugMatmul", Napi::Function::New(env, DebugMatmul));
}
Y26_ADDON_REGISTER(InitSystem);

}  // namespace y26addon
