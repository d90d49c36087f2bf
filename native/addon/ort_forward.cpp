#include "ort_forward.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>

namespace y26addon {

namespace {

// One forward in flight: filled on the JS thread by done(), awaited on the pipeline thread.
struct OrtCall {
  torch::Tensor input;  // contiguous CPU float32 or float16, kept alive until JS copied it
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::string error;
  std::vector<torch::Tensor> outputs;

  void finish(std::vector<torch::Tensor> out, std::string err) {
    std::lock_guard<std::mutex> lk(mu);
    if (finished) return;
    outputs = std::move(out);
    error = std::move(err);
    finished = true;
    cv.notify_all();
  }
};

// Calls still waiting for JS. When Node tears the thread-safe function down (environment exit) queued calls are
// dropped without running, so the finalizer fails them here instead of leaving their threads blocked.
struct OrtShared {
  Napi::ThreadSafeFunction tsfn;
  std::mutex mu;
  bool closed = false;
  std::set<std::shared_ptr<OrtCall>> pending;

  ~OrtShared() {
    std::lock_guard<std::mutex> lk(mu);
    if (!closed) tsfn.Release();
  }
};

torch::Tensor tensor_from_js(const Napi::Object& o) {
  auto dims_arr = o.Get("dims").As<Napi::Array>();
  std::vector<int64_t> dims;
  for (uint32_t i = 0; i < dims_arr.Length(); ++i) dims.push_back(dims_arr.Get(i).As<Napi::Number>().Int64Value());
  std::string type = get_string(o, "type", "float32");
  auto data = o.Get("data");
  if (!data.IsTypedArray()) y26::fail("onnxruntime: output '" + get_string(o, "name") + "' holds no typed array");
  auto ta = data.As<Napi::TypedArray>();
  auto ab = ta.ArrayBuffer();
  const uint8_t* src = static_cast<const uint8_t*>(ab.Data()) + ta.ByteOffset();
  torch::ScalarType st;
  if (type == "float32") st = torch::kFloat32;
  else if (type == "float16") st = torch::kFloat16;
  else y26::fail("onnxruntime: output '" + get_string(o, "name") + "' has type " + type + "; predict reads float32 or float16 outputs");
  auto t = torch::empty(dims, torch::TensorOptions().dtype(st));
  if ((size_t)t.nbytes() != ta.ByteLength())
    y26::fail("onnxruntime: output '" + get_string(o, "name") + "' has " + std::to_string(ta.ByteLength()) + " bytes for its shape");
  if (t.nbytes()) std::memcpy(t.data_ptr(), src, t.nbytes());
  return st == torch::kFloat32 ? t : t.to(torch::kFloat32);
}

// Runs on the JS thread: hands the input to run() with a done() that completes the call.
void call_js(Napi::Env env, Napi::Function run, std::shared_ptr<OrtCall> call, std::shared_ptr<OrtShared> shared) {
  auto complete = [call, shared](std::vector<torch::Tensor> out, std::string err) {
    {
      std::lock_guard<std::mutex> lk(shared->mu);
      shared->pending.erase(call);
    }
    call->finish(std::move(out), std::move(err));
  };
  try {
    const torch::Tensor& x = call->input;
    Napi::Value arr;
    if (x.scalar_type() == torch::kFloat16) {
      auto u16 = Napi::Uint16Array::New(env, x.numel());
      std::memcpy(u16.Data(), x.data_ptr(), x.nbytes());
      arr = u16;
    } else {
      auto f32 = Napi::Float32Array::New(env, x.numel());
      std::memcpy(f32.Data(), x.data_ptr(), x.nbytes());
      arr = f32;
    }
    auto dims = Napi::Array::New(env, x.dim());
    for (int64_t i = 0; i < x.dim(); ++i) dims.Set((uint32_t)i, (double)x.size(i));
    auto done = Napi::Function::New(env, [complete](const Napi::CallbackInfo& info) {
      try {
        if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) {
          Napi::Value e = info[0];
          std::string msg = e.IsObject() && e.As<Napi::Object>().Get("message").IsString()
                                ? e.As<Napi::Object>().Get("message").As<Napi::String>().Utf8Value()
                                : e.ToString().Utf8Value();
          complete({}, "onnxruntime: " + msg);
          return;
        }
        auto outs = info[1].As<Napi::Array>();
        std::vector<torch::Tensor> v;
        for (uint32_t i = 0; i < outs.Length(); ++i) v.push_back(tensor_from_js(outs.Get(i).As<Napi::Object>()));
        complete(std::move(v), "");
      } catch (...) {
        complete({}, y26::describe_exception(std::current_exception()));
      }
    });
    run.Call({arr, dims, Napi::String::New(env, x.scalar_type() == torch::kFloat16 ? "float16" : "float32"), done});
  } catch (...) {
    complete({}, y26::describe_exception(std::current_exception()));
  }
}

}  // namespace

y26::ForwardOutputsFn ort_forward(Napi::Env env, Napi::Function run, int64_t static_batch) {
  auto shared = std::make_shared<OrtShared>();
  std::weak_ptr<OrtShared> weak = shared;
  shared->tsfn = Napi::ThreadSafeFunction::New(env, run, "yolo26-onnxruntime", 0, 1, [weak](Napi::Env) {
    auto s = weak.lock();
    if (!s) return;
    std::set<std::shared_ptr<OrtCall>> left;
    {
      std::lock_guard<std::mutex> lk(s->mu);
      s->closed = true;
      left.swap(s->pending);
    }
    for (auto& c : left) c->finish({}, "onnxruntime: Node.js is shutting down");
  });
  shared->tsfn.Unref(env);  // an idle predictor must not keep Node alive; a pending next() does
  return y26::pad_to_static_batch([shared](const torch::Tensor& x_in) {
    torch::Tensor x = x_in.contiguous();
    auto call = std::make_shared<OrtCall>();
    call->input = x;
    {
      std::lock_guard<std::mutex> lk(shared->mu);
      if (shared->closed) y26::fail("onnxruntime: Node.js is shutting down");
      shared->pending.insert(call);
    }
    auto* job = new std::shared_ptr<OrtCall>(call);
    std::weak_ptr<OrtShared> ws = shared;
    napi_status s = shared->tsfn.BlockingCall(job, [ws](Napi::Env env, Napi::Function js, std::shared_ptr<OrtCall>* j) {
      std::shared_ptr<OrtCall> c = *j;
      delete j;
      auto sh = ws.lock();
      if (!sh) return c->finish({}, "onnxruntime: the predictor was closed");
      call_js(env, js, c, sh);
    });
    if (s != napi_ok) {
      delete job;
      std::lock_guard<std::mutex> lk(shared->mu);
      shared->pending.erase(call);
      y26::fail("onnxruntime: could not reach the JavaScript thread (status " + std::to_string((int)s) + ")");
    }
    std::unique_lock<std::mutex> lk(call->mu);
    call->cv.wait(lk, [&] { return call->finished; });
    if (!call->error.empty()) y26::fail(call->error);
    std::vector<torch::Tensor> out = std::move(call->outputs);
    if (out.empty()) y26::fail("onnxruntime: the session returned no outputs");
    return out;
  }, static_batch);
}

namespace {

// NativeOrtSession: one open session; predictors share it (each holds its own reference while it runs).
class OrtSessionWrap : public Napi::ObjectWrap<OrtSessionWrap> {
 public:
  static Napi::FunctionReference ctor;
  std::shared_ptr<y26::OrtModel> model;

  static void Init(Napi::Env env) {
    auto cls = DefineClass(env, "NativeOrtSession",
                           {InstanceMethod("release", &OrtSessionWrap::Release),
                            InstanceMethod("inputNames", &OrtSessionWrap::InputNames),
                            InstanceMethod("outputNames", &OrtSessionWrap::OutputNames),
                            InstanceMethod("version", &OrtSessionWrap::Version)});
    ctor = Napi::Persistent(cls);
  }
  explicit OrtSessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OrtSessionWrap>(info) {}

  Napi::Value Release(const Napi::CallbackInfo& info) {
    model.reset();
    return info.Env().Undefined();
  }
  Napi::Value InputNames(const Napi::CallbackInfo& info) {
    return strings_to_js(info.Env(), model ? model->input_names() : std::vector<std::string>{});
  }
  Napi::Value OutputNames(const Napi::CallbackInfo& info) {
    return strings_to_js(info.Env(), model ? model->output_names() : std::vector<std::string>{});
  }
  Napi::Value Version(const Napi::CallbackInfo& info) {
    return model ? Napi::String::New(info.Env(), model->version()) : info.Env().Null();
  }
};
Napi::FunctionReference OrtSessionWrap::ctor;

// ortOpen(library, file, threads) -> Promise<NativeOrtSession>: loads the library (once) and opens the file off the
// JS thread. Rejects naming the library or the file and the fix.
Napi::Value OrtOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::string lib = info[0].ToString().Utf8Value();
    const std::string file = info[1].ToString().Utf8Value();
    const int threads = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
    return run_async(env, [lib, file, threads]() -> Finish {
      auto model = std::make_shared<y26::OrtModel>(lib, file, threads);
      return [model](Napi::Env env) -> Napi::Value {
        auto obj = OrtSessionWrap::ctor.New({});
        OrtSessionWrap::Unwrap(obj)->model = model;
        return obj;
      };
    });
  });
}

void InitOrt(Napi::Env env, Napi::Object exports) {
  OrtSessionWrap::Init(env);
  exports.Set("ortOpen", Napi::Function::New(env, OrtOpen));
}

}  // namespace

std::shared_ptr<y26::OrtModel> unwrap_ort_session(Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(OrtSessionWrap::ctor.Value()))
    y26::fail("openPredictor: onnx.session is not a NativeOrtSession");
  auto m = OrtSessionWrap::Unwrap(v.As<Napi::Object>())->model;
  if (!m) y26::fail("predict(): this ONNX Runtime session was released; open it again");
  return m;
}

Y26_ADDON_REGISTER(InitOrt);

}  // namespace y26addon
