// Model checkpoints: official Ultralytics .pt files (read) and our own torch-compatible format
// (read and written atomically). Both are torch.save zip archives holding a pickled dict.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/pickle.h"

namespace y26 {

// Tensors by name, in order (a state_dict).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct OptimizerState {
  NamedTensors tensors;  // e.g. "model.0.conv.weight.exp_avg" (official files: "state.<index>.<key>")
  YAML::Node scalars;    // everything that is not a tensor: hyper-parameters, param groups, step counts
  bool empty() const { return tensors.empty() && (!scalars || scalars.IsNull()); }
};

// What a checkpoint holds, independent of its on-disk format.
struct CheckpointData {
  std::string task = "detect";         // detect | segment | pose | obb | classify
  int64_t nc = 0;
  std::vector<std::string> names;      // class index -> name
  std::vector<int64_t> kpt_shape;      // pose: {17, 3}; empty otherwise
  std::vector<float> stride;           // per detection level, e.g. {8, 16, 32}
  bool end2end = false;
  int64_t reg_max = 16;
  std::vector<int64_t> imgsz;          // {size} or {h, w}; empty when unknown
  YAML::Node yaml;                     // model definition (the model YAML as a dict)
  YAML::Node train_args;               // training arguments (default.yaml keys)
  NamedTensors state_dict;             // model weights, official names and order
  NamedTensors ema;                    // EMA weights of a training checkpoint; empty when none
  OptimizerState optimizer;
  int64_t epoch = -1;
  std::optional<double> best_fitness;
  int64_t updates = 0;                 // EMA update count
  std::string date, version;
  YAML::Node train_results;            // column -> list of values
  YAML::Node extra;                    // any further metadata (a map)
};

struct Checkpoint : CheckpointData {
  std::string path;
  std::string format;                  // "ultralytics" or "yolo26-native"
  int64_t format_version = 0;          // ours only
  std::string model_class;             // official: e.g. "ultralytics.nn.tasks.DetectionModel"
  PyValue raw;                         // the whole unpickled top-level object
};

// Reads an official Ultralytics checkpoint (uses `ema` when present, else `model`) or one of ours.
// Floating tensors come back as float32 (fp16 converts exactly), integer buffers keep their dtype.
Checkpoint load_checkpoint(const std::string& path);

constexpr const char* kCheckpointFormat = "yolo26-native";
constexpr int64_t kCheckpointFormatVersion = 1;

// Our file: a torch.save-style zip ("archive/data.pkl", "archive/data/<n>", "archive/byteorder",
// "archive/version") whose pickle is a plain dict:
//   format 'yolo26-native', format_version, date, version, task, nc, names {0: 'a', ...},
//   kpt_shape [17, 3] | None, stride [8.0, ...], end2end, reg_max, imgsz int | [h, w] | None,
//   yaml {...}, train_args {...}, epoch, best_fitness float | None, updates,
//   model OrderedDict(name -> tensor), ema OrderedDict | None,
//   optimizer {'tensors': OrderedDict(name -> tensor), 'scalars': {...}} | None,
//   train_results {...} | None, extra {...} | None.
struct SaveOptions {
  bool half = false;  // store floating model/EMA weights as float16 (as Ultralytics does)
};
// Writes our format atomically: a temporary file in the same directory is written, fsynced and
// renamed over `path` (then the directory is fsynced), so a crash leaves the old file or the new
// one, never a partial file. Python's torch.load(path, weights_only=True) opens it as a plain dict.
void save_checkpoint(const std::string& path, const CheckpointData& data, const SaveOptions& opts = {});

// The unpickled object of any torch.save zip file (storages resolved to tensors).
PyValue load_torch_file(const std::string& path);

// The state_dict of a pickled nn.Module object (walks _parameters, _buffers, _modules in order,
// skipping None entries and non-persistent buffers); tensors are returned as stored.
NamedTensors module_state_dict(const PyValue& module);

// A libtorch module's state_dict in PyTorch's order and names: for each module (pre-order, children
// in registration order) its parameters, then its buffers; undefined tensors are skipped.
NamedTensors state_dict_of(const torch::nn::Module& module);

// Copies `state` into the module's parameters and buffers (no autograd; dtype and device follow the
// module). Every shape must match. With strict, missing and unexpected names are errors too.
// Nothing is copied unless the whole state fits. `source` (e.g. the file) prefixes error messages.
void load_state_dict(torch::nn::Module& module, const NamedTensors& state, bool strict = true,
                     const std::string& source = "state_dict");

// PyValue <-> YAML::Node. Strings carry the YAML "!" tag so that from_yaml keeps "0" a string;
// untagged scalars (as yaml-cpp builds them from C++ values or plain YAML text) are typed the
// YAML way: null/~, true/false, integers, floats (.nan/.inf), else strings. Tensors become
// (nested) lists of numbers, objects their attribute map.
YAML::Node to_yaml(const PyValue& v);
PyValue from_yaml(const YAML::Node& n);

}  // namespace y26
