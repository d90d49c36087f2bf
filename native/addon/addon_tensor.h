// Moving tensors between JS ({data: Float32Array, shape}) and libtorch without sharing memory
// across threads: copies are made on the JS thread (in) or the worker (out).
#pragma once
#include <torch/types.h>

#include "addon.h"

namespace y26addon {

struct TensorCopy {
  std::vector<float> data;
  std::vector<int64_t> shape;
};

inline TensorCopy copy_tensor(const torch::Tensor& t) {
  TensorCopy c;
  if (!t.defined()) return c;
  auto f = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  c.shape.assign(f.sizes().begin(), f.sizes().end());
  c.data.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  return c;
}

inline Napi::Object tensor_to_js(Napi::Env env, const TensorCopy& c) {
  auto o = Napi::Object::New(env);
  auto arr = Napi::Float32Array::New(env, c.data.size());
  std::memcpy(arr.Data(), c.data.data(), c.data.size() * sizeof(float));
  auto shape = Napi::Array::New(env, c.shape.size());
  for (size_t i = 0; i < c.shape.size(); ++i) shape.Set((uint32_t)i, Napi::Number::New(env, (double)c.shape[i]));
  o.Set("data", arr);
  o.Set("shape", shape);
  return o;
}

// (Float32Array, shape array) -> an owned float32 tensor.
inline torch::Tensor tensor_from_js(const Napi::Value& data, const Napi::Value& shape_v) {
  Napi::Env env = data.Env();
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "tensor data must be a Float32Array");
  auto arr = data.As<Napi::Float32Array>();
  std::vector<int64_t> shape;
  int64_t n = 1;
  auto sa = shape_v.As<Napi::Array>();
  for (uint32_t i = 0; i < sa.Length(); ++i) {
    shape.push_back(sa.Get(i).As<Napi::Number>().Int64Value());
    n *= shape.back();
  }
  if (n != (int64_t)arr.ElementLength())
    throw Napi::RangeError::New(env, "tensor shape does not match the number of values");
  auto t = torch::empty(shape, torch::kFloat32);
  std::memcpy(t.data_ptr<float>(), arr.Data(), n * sizeof(float));
  return t;
}

}  // namespace y26addon
