// The loaded model shared between the model object, predictors and other modes.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "addon.h"
#include "model/loader.h"

namespace y26addon {

struct ModelHolder {
  y26::LoadedModel loaded;
  std::string device;  // torch device string
  std::mutex mu;       // forward runs on pool threads; fuse/info must not interleave with it
};

Napi::Object wrap_model(Napi::Env env, std::shared_ptr<ModelHolder> h);
// The holder behind a NativeModel object; throws a TypeError for anything else.
std::shared_ptr<ModelHolder> unwrap_model(const Napi::Value& v);

}  // namespace y26addon
