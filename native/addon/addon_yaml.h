// JS values <-> YAML::Node: options objects travel to the core as the same tree the core writes
// to args.yaml, so option names stay the official ones end to end.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cmath>

#include "addon.h"

namespace y26addon {

inline YAML::Node js_to_yaml(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return YAML::Node(YAML::NodeType::Null);
  if (v.IsBoolean()) return YAML::Node(v.As<Napi::Boolean>().Value());
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return YAML::Node((long long)d);
    return YAML::Node(d);
  }
  if (v.IsString()) return YAML::Node(v.As<Napi::String>().Utf8Value());
  if (v.IsArray()) {
    YAML::Node n(YAML::NodeType::Sequence);
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) n.push_back(js_to_yaml(a.Get(i)));
    return n;
  }
  if (v.IsObject()) {
    YAML::Node n(YAML::NodeType::Map);
    auto o = v.As<Napi::Object>();
    auto keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      auto k = keys.Get(i).ToString().Utf8Value();
      auto val = o.Get(k);
      if (!val.IsUndefined()) n[k] = js_to_yaml(val);
    }
    return n;
  }
  throw Napi::TypeError::New(v.Env(), "options must be plain JSON-like values");
}

}  // namespace y26addon
