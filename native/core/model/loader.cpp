#include "model/loader.h"

#include <sys/stat.h>

#include "util/error.h"

namespace y26 {

static bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

bool is_checkpoint_path(const std::string& p) {
  return ends_with(p, ".pt") || ends_with(p, ".pth");
}

LoadedModel load_model(const std::string& path_or_yaml, const std::string& device, int nc) {
  LoadedModel out;
  out.source = path_or_yaml;
  if (is_checkpoint_path(path_or_yaml)) {
    struct stat st;
    if (stat(path_or_yaml.c_str(), &st) != 0)
      fail("model file '" + path_or_yaml + "' not found: pass the path of a .pt checkpoint (weights are never downloaded)");
    Checkpoint ck = load_checkpoint(path_or_yaml);
    if (!ck.yaml || !ck.yaml.IsMap())
      fail("checkpoint '" + path_or_yaml + "' holds no model definition (yaml): it is not a YOLO model checkpoint");
    out.model = build_model(ck, path_or_yaml);
    out.from_checkpoint = true;
    out.task = out.model->task();
    out.nc = out.model->nc();
    out.names = ck.names;
    out.kpt_shape = out.model->config().kpt_shape;
    out.imgsz = ck.imgsz;
    out.train_args = ck.train_args;
  } else {
    out.model = build_model(path_or_yaml, nc);
    out.task = out.model->task();
    out.nc = out.model->nc();
    out.kpt_shape = out.model->config().kpt_shape;
  }
  if ((int64_t)out.names.size() != out.nc) {
    out.names.clear();
    for (int64_t i = 0; i < out.nc; ++i) out.names.push_back(std::to_string(i));
  }
  out.model->to(torch::Device(device));
  out.model->eval();
  return out;
}

void save_model(const LoadedModel& lm, const std::string& path) {
  if (!lm.model) fail("save(): no model");
  const YoloModel& m = *lm.model;
  if (m.is_fused()) fail("save(" + path + "): the model is fused (BatchNorm folded); save the model before fuse()");
  CheckpointData d;
  d.task = m.task();
  d.nc = m.nc();
  d.names = lm.names;
  d.kpt_shape = m.config().kpt_shape;
  for (double s : m.stride()) d.stride.push_back(static_cast<float>(s));
  d.end2end = m.end2end();
  d.reg_max = m.config().reg_max;
  d.imgsz = lm.imgsz;
  d.yaml = m.config().yaml;
  d.train_args = lm.train_args;
  for (auto& [k, t] : m.state_dict()) d.state_dict.emplace_back(k, t.detach().to(torch::kCPU).clone());
  d.version = "yolo26-native";
  save_checkpoint(path, d);
}

}  // namespace y26
