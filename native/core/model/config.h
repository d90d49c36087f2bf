// Model YAML parsing: builtin family files, scale letters, and validation with file/layer-precise errors.
#pragma once
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "model/task.h"

namespace y26 {

struct LayerSpec {
  int index = 0;              // position in backbone + head
  std::vector<int> from;      // resolved to absolute layer indices (-1 for the model input)
  int repeats = 1;            // as written in the YAML (depth scaling happens at build time)
  std::string module;         // "Conv", "C3k2", "Upsample" ("nn." prefix stripped), "Detect", ...
  YAML::Node args;            // as written; "nc" / "kpt_shape" / None are resolved at build time
  int line = 0;               // 1-based line in the YAML file, 0 when unknown (checkpoint dict)
};

struct ModelConfig {
  std::string source;                 // file path, or a description such as "checkpoint x.pt" for errors
  YAML::Node yaml;                    // the whole dict, kept so a checkpoint can store it again
  int nc = 80;
  bool end2end = false;
  int reg_max = 16;                   // parse_model's default when the key is absent
  std::vector<int64_t> kpt_shape;     // {nkpt, ndim} for pose, empty otherwise
  int channels = 3;
  std::string scale;                  // "n".."x", empty when the YAML has no scales
  double depth = 1.0, width = 1.0;
  int max_channels = 1 << 30;
  std::vector<LayerSpec> layers;      // backbone then head
  std::string task;                   // detect, segment, pose, obb, classify (from the last layer)
  Task task_kind() const { return parse_task(task); }  // throws for a task name the build does not know
  std::string head_module() const { return layers.empty() ? "" : layers.back().module; }
};

// Folder of the builtin model YAMLs: env YOLO26_MODELS_DIR, else set_models_dir(), else <source>/models.
std::string models_dir();
void set_models_dir(const std::string& dir);

// "yolo26n.yaml" -> (<models_dir>/yolo26.yaml, "n"); an existing path is used as is (scale from its name).
std::string resolve_model_yaml(const std::string& name_or_path, std::string* scale_out = nullptr);

// Loads and validates a model YAML by path or builtin name.
ModelConfig load_model_config(const std::string& name_or_path);

// Validates a YAML dict (e.g. a checkpoint's model.yaml). `scale` overrides the dict's own `scale` key.
ModelConfig parse_model_config(const YAML::Node& yaml, const std::string& source, const std::string& scale = "");

// Overrides the class count (e.g. from a data YAML); keeps cfg.yaml in sync.
void set_num_classes(ModelConfig& cfg, int nc);
// Overrides a pose model's kpt_shape (the data's, as the official PoseModel does); keeps cfg.yaml in sync.
void set_kpt_shape(ModelConfig& cfg, const std::vector<int64_t>& kpt_shape);

}  // namespace y26
