// loadModel(): a YoloModel behind a JS object with info(), fuse() and an async forward().
#include <mutex>

#include "addon_model.h"
#include "io/checkpoint.h"
#include "addon_tensor.h"
#include "util/system.h"

namespace y26addon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference ctor;

  // Takes the model and tells V8 its native size, so that undisposed models are collected sooner.
  void adopt(Napi::Env env, std::shared_ptr<ModelHolder> h) {
    int64_t bytes = 0;
    for (const auto& t : h->loaded.model->parameters()) bytes += (int64_t)t.nbytes();
    for (const auto& t : h->loaded.model->buffers()) bytes += (int64_t)t.nbytes();
    held_ = std::move(h);
    external_ = bytes;
    Napi::MemoryManagement::AdjustExternalMemory(env, external_);
  }
  // The model, or a clear error once dispose() freed it.
  std::shared_ptr<ModelHolder> held(Napi::Env env) const {
    if (!held_) throw Napi::Error::New(env, "this model was disposed: load it again with loadModel()");
    return held_;
  }

  static void Init(Napi::Env env, Napi::Object exports) {
    auto cls = DefineClass(env, "NativeModel",
                           {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("summary", &ModelWrap::Summary),
                            InstanceMethod("fuse", &ModelWrap::Fuse),
                            InstanceMethod("forward", &ModelWrap::Forward), InstanceMethod("save", &ModelWrap::Save),
                            InstanceMethod("dispose", &ModelWrap::Dispose)});
    ctor = Napi::Persistent(cls);
    exports.Set("NativeModel", cls);
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}
  ~ModelWrap() override { release(Env()); }

  // dispose(): lets go of the model now; its memory is freed once no predictor uses it. Idempotent.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto holder = held(env);
    return guard(env, [&]() -> Napi::Value {
      std::lock_guard<std::mutex> lk(holder->mu);
      auto& m = *holder->loaded.model;
      auto o = Napi::Object::New(env);
      o.Set("task", holder->loaded.task);
      o.Set("nc", (double)holder->loaded.nc);
      auto names = Napi::Object::New(env);
      for (size_t i = 0; i < holder->loaded.names.size(); ++i) names.Set((uint32_t)i, holder->loaded.names[i]);
      o.Set("names", names);
      if (holder->loaded.kpt_shape.size() == 2) {
        auto k = Napi::Array::New(env, 2);
        k.Set(0u, (double)holder->loaded.kpt_shape[0]);
        k.Set(1u, (double)holder->loaded.kpt_shape[1]);
        o.Set("kptShape", k);
      } else {
        o.Set("kptShape", env.Null());
      }
      auto st = Napi::Array::New(env, m.stride().size());
      for (size_t i = 0; i < m.stride().size(); ++i) st.Set((uint32_t)i, m.stride()[i]);
      o.Set("stride", st);
      o.Set("end2end", m.end2end());
      o.Set("imgsz", holder->loaded.imgsz.empty() ? env.Null() : Napi::Number::New(env, (double)holder->loaded.imgsz[0]));
      o.Set("layers", (double)m.num_layers());
      o.Set("parameters", (double)m.num_params());
      o.Set("gradients", (double)m.num_params(true));
      o.Set("fused", m.is_fused());
      o.Set("source", holder->loaded.source);
      return o;
    });
  }

  // summary(imgsz): {gflops, text}; a forward pass at imgsz the first time (cached by the model), so info() leaves it
  // to a lazy getter.
  Napi::Value Summary(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto holder = held(env);
    return guard(env, [&]() -> Napi::Value {
      int imgsz = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 640;
      std::lock_guard<std::mutex> lk(holder->mu);
      auto& m = *holder->loaded.model;
      auto o = Napi::Object::New(env);
      o.Set("gflops", m.gflops(imgsz));
      o.Set("text", m.info(false, imgsz));
      return o;
    });
  }

  Napi::Value Fuse(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto holder = held(env);
    return guard(env, [&]() -> Napi::Value {
      std::lock_guard<std::mutex> lk(holder->mu);
      holder->loaded.model->fuse();
      return env.Undefined();
    });
  }

  // save(path): the weights as a checkpoint of ours (see y26::save_model); async, resolves to the path.
  Napi::Value Save(const Napi::CallbackInfo& info) {
    std::string path = info[0].ToString().Utf8Value();
    auto h = held(info.Env());
    return run_async(info.Env(), [h, path]() {
      {
        std::lock_guard<std::mutex> lk(h->mu);
        y26::save_model(h->loaded, path);
      }
      return Finish([path](Napi::Env env) -> Napi::Value { return Napi::String::New(env, path); });
    });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto input = tensor_from_js(info[0], info[1]);  // copies: the JS buffer may change while we run
    bool raw = info.Length() > 2 && info[2].ToBoolean().Value();
    auto h = held(env);
    return run_async(env, [h, input, raw]() {
      std::lock_guard<std::mutex> lk(h->mu);
      torch::NoGradGuard ng;
      auto& m = *h->loaded.model;
      auto out = m.forward(input.to(m.parameters().empty() ? torch::kCPU : m.parameters()[0].device()));
      struct Branch { std::optional<TensorCopy> boxes, scores, kpts; };
      auto branch = [raw](const y26::BranchOutput& b) {
        Branch r;
        if (!raw || !b.defined()) return r;
        r.boxes = copy_tensor(b.boxes);
        r.scores = copy_tensor(b.scores);
        if (b.kpts.defined()) r.kpts = copy_tensor(b.kpts);
        return r;
      };
      Branch o2m = branch(out.one2many), o2o = branch(out.one2one);
      TensorCopy e2e = copy_tensor(out.end2end);
      // classify: softmax probabilities (eval) and the logits behind them
      std::optional<TensorCopy> probs, logits;
      if (out.cls_probs.defined()) probs = copy_tensor(out.cls_probs);
      if (out.cls_logits.defined()) logits = copy_tensor(out.cls_logits);
      return Finish([o2m, o2o, e2e, probs, logits](Napi::Env env) -> Napi::Value {
        auto res = Napi::Object::New(env);
        auto put = [&](const char* name, const Branch& b) {
          if (!b.boxes) return;
          auto o = Napi::Object::New(env);
          o.Set("boxes", tensor_to_js(env, *b.boxes));
          o.Set("scores", tensor_to_js(env, *b.scores));
          if (b.kpts) o.Set("kpts", tensor_to_js(env, *b.kpts));
          res.Set(name, o);
        };
        put("one2many", o2m);
        put("one2one", o2o);
        res.Set("end2end", tensor_to_js(env, e2e));
        if (probs) res.Set("probs", tensor_to_js(env, *probs));
        if (logits) res.Set("logits", tensor_to_js(env, *logits));
        return res;
      });
    });
  }

 private:
  void release(Napi::Env env) {
    if (external_) Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
    external_ = 0;
    held_.reset();
  }
  std::shared_ptr<ModelHolder> held_;
  int64_t external_ = 0;  // bytes reported to V8
};
Napi::FunctionReference ModelWrap::ctor;

// Wraps a loaded model in a new NativeModel JS object.
Napi::Object wrap_model(Napi::Env env, std::shared_ptr<ModelHolder> h) {
  auto obj = ModelWrap::ctor.New({});
  ModelWrap::Unwrap(obj)->adopt(env, std::move(h));
  return obj;
}

std::shared_ptr<ModelHolder> unwrap_model(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ModelWrap::ctor.Value()))
    throw Napi::TypeError::New(v.Env(), "expected a model from loadModel()");
  return ModelWrap::Unwrap(v.As<Napi::Object>())->held(v.Env());
}

static Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].ToString().Utf8Value();
  std::string device = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "cpu";
  int nc = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;  // YAML models
  return run_async(env, [path, device, nc]() {
    auto h = std::make_shared<ModelHolder>();
    h->device = y26::resolve_device(device);
    h->loaded = y26::load_model(path, h->device, nc);
    return Finish([h](Napi::Env env) -> Napi::Value { return wrap_model(env, h); });
  });
}

// The package tells the engine where its builtin model YAMLs live (a prebuilt addon's compile-time path is
// another machine's).
static Napi::Value SetModelsDir(const Napi::CallbackInfo& info) {
  y26::set_models_dir(info[0].ToString().Utf8Value());
  return info.Env().Undefined();
}

// calibrateBatchNorm(model, data, shape): test support, see y26::calibrate_batchnorm (synchronous).
static Napi::Value CalibrateBatchNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto h = unwrap_model(info[0]);
    auto x = tensor_from_js(info[1], info[2]);
    std::lock_guard<std::mutex> lk(h->mu);
    y26::calibrate_batchnorm(*h->loaded.model, x.to(torch::Device(h->device)));
    return env.Undefined();
  });
}

// checkpointImgsz(path): the imgsz a checkpoint was trained at (its train_args), or null. predict() and val() use it
// as their default, as upstream does.
static Napi::Value CheckpointImgsz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const auto ck = y26::load_checkpoint(info[0].As<Napi::String>().Utf8Value());
    if (ck.imgsz.empty()) return env.Null();
    auto a = Napi::Array::New(env, 2);
    a.Set(0u, (double)ck.imgsz[0]);
    a.Set(1u, (double)ck.imgsz[ck.imgsz.size() > 1 ? 1 : 0]);
    return a;
  });
}

static void InitModel(Napi::Env env, Napi::Object exports) {
  exports.Set("checkpointImgsz", Napi::Function::New(env, CheckpointImgsz));
  exports.Set("calibrateBatchNorm", Napi::Function::New(env, CalibrateBatchNorm));
  ModelWrap::Init(env, exports);
  exports.Set("setModelsDir", Napi::Function::New(env, SetModelsDir));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
}
Y26_ADDON_REGISTER(InitModel);

}  // namespace y26addon
