// One way in for every mode: a checkpoint (official or ours) or a model YAML becomes a ready model.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/yolo.h"

namespace y26 {

struct LoadedModel {
  std::shared_ptr<YoloModel> model;
  std::string source;                 // the path or YAML name it came from
  bool from_checkpoint = false;
  std::string task;
  int64_t nc = 0;
  std::vector<std::string> names;     // class index -> name
  std::vector<int64_t> kpt_shape;     // pose only
  std::vector<int64_t> imgsz;         // training imgsz recorded in the checkpoint, empty when unknown
  YAML::Node train_args;              // from the checkpoint (Null for YAML models)
};

// Loads `path_or_yaml` (".pt" file, YAML path or builtin name such as "yolo26n.yaml") onto `device`
// ("cpu", "cuda:0"; resolve user strings with resolve_device first), in eval mode. nc > 0 overrides
// the class count of a YAML model. Errors name the file and the fix.
LoadedModel load_model(const std::string& path_or_yaml, const std::string& device = "cpu", int nc = -1);

// Writes the model's current weights as one of our checkpoints (task, names, stride, imgsz, model YAML; no
// optimizer or EMA), loadable by load_model and torch.load. The model must not be fused (the file keeps the
// official unfused key set).
void save_model(const LoadedModel& lm, const std::string& path);

// True when the string names a checkpoint rather than a model definition.
bool is_checkpoint_path(const std::string& path_or_yaml);

}  // namespace y26
