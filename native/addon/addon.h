// Shared plumbing of the N-API binding: registration of each area's functions, promise-returning
// async work, and conversion of every native exception into a JS Error. No YOLO logic here.
#pragma once
#define NAPI_CPP_EXCEPTIONS
#define NODE_ADDON_API_CPP_EXCEPTIONS
#define NODE_ADDON_API_CPP_EXCEPTIONS_ALL
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "util/error.h"

namespace y26addon {

using InitFn = void (*)(Napi::Env, Napi::Object);
struct Registry {
  static std::vector<InitFn>& fns() { static std::vector<InitFn> v; return v; }
  explicit Registry(InitFn f) { fns().push_back(f); }
};
#define Y26_ADDON_REGISTER(fn) static ::y26addon::Registry y26_registry_##fn(fn)

// Runs `fn` and converts any native exception into a thrown JS Error (never aborts Node).
template <typename F>
auto guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw Napi::Error::New(env, y26::describe_exception(std::current_exception()));
  }
}

// Work for the libuv pool: `work` runs off the JS thread and returns a closure that builds the
// JS result on the JS thread. Exceptions from either part reject the promise with an Error.
using Finish = std::function<Napi::Value(Napi::Env)>;
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<Finish()> work)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      finish_ = work_();
    } catch (...) {
      SetError(y26::describe_exception(std::current_exception()));
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(finish_ ? finish_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(Napi::Error::New(env, y26::describe_exception(std::current_exception())).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Finish()> work_;
  Finish finish_;
};

inline Napi::Promise run_async(Napi::Env env, std::function<Finish()> work) {
  auto* w = new PromiseWorker(env, std::move(work));
  auto p = w->Promise();
  w->Queue();
  return p;
}

// Small conversions used across the binding.
inline std::string get_string(const Napi::Object& o, const char* key, const std::string& def = "") {
  auto v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : def;
}
inline double get_number(const Napi::Object& o, const char* key, double def) {
  auto v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}
inline bool get_bool(const Napi::Object& o, const char* key, bool def) {
  auto v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : def;
}
inline Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set((uint32_t)i, v[i]);
  return a;
}

}  // namespace y26addon
