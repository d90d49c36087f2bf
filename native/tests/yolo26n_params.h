// yolo26n's 366 parameters (names and shapes from the reference checkpoint's keys.json), as ParamInfo with
// zero tensors: lets tests and benchmarks exercise the param groups and optimisers at real scale without a model.
#pragma once
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "train/optimizer.h"

namespace y26test {

inline std::vector<y26::ParamInfo> yolo26n_params(const std::string& keys_json_path) {
  YAML::Node root = YAML::LoadFile(keys_json_path);
  std::vector<y26::ParamInfo> out;
  for (const auto& e : root["state_dict"]) {
    const std::string key = e["key"].as<std::string>();
    const size_t dot = key.rfind('.');
    const std::string module = key.substr(0, dot), name = key.substr(dot + 1);
    if (name != "weight" && name != "bias") continue;  // BN buffers are not parameters
    std::vector<int64_t> shape;
    for (const auto& d : e["shape"]) shape.push_back(d.as<int64_t>());
    const bool bn = module.size() >= 3 && module.compare(module.size() - 3, 3, ".bn") == 0;
    out.push_back({module, bn ? "BatchNorm2d" : "Conv2d", name, torch::zeros(shape)});
  }
  return out;
}

}  // namespace y26test
