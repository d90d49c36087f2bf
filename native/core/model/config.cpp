#include "model/config.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sys/stat.h>

#include "util/error.h"
#include "util/source_dir.h"

namespace y26 {

namespace {

std::string g_models_dir;

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string basename_of(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// Scale letter after the version digits: yolo26n.yaml, yolo26s-seg.yaml, yolo26x-cls.pt.
std::string scale_from_name(const std::string& path) {
  static const std::regex re(R"(yolo(?:e-)?v?\d+([nslmx]))", std::regex::icase);
  std::smatch m;
  std::string stem = basename_of(path);
  if (std::regex_search(stem, m, re)) return std::string(1, (char)std::tolower(m[1].str()[0]));
  return "";
}

const std::set<std::string>& known_modules() {
  static const std::set<std::string> k = {"Conv",   "DWConv",    "C3k2",   "SPPF",  "C2PSA",   "Concat",
                                          "Upsample", "Detect", "Segment26", "Pose26", "OBB26", "Classify"};
  return k;
}

std::string where(const std::string& source, const LayerSpec& l) {
  std::string s = source;
  if (l.line > 0) s += ":" + std::to_string(l.line);
  return s + ": layer " + std::to_string(l.index);
}

}  // namespace

std::string models_dir() {
  if (const char* env = std::getenv("YOLO26_MODELS_DIR"); env && *env) return env;
  if (!g_models_dir.empty()) return g_models_dir;
  return y26::source_dir() + "/models";
}

void set_models_dir(const std::string& dir) { g_models_dir = dir; }

std::string resolve_model_yaml(const std::string& name_or_path, std::string* scale_out) {
  std::string scale = scale_from_name(name_or_path);
  if (scale_out) *scale_out = scale;
  if (file_exists(name_or_path)) return name_or_path;
  // Drop the scale letter to find the family file: yolo26n-seg.yaml -> yolo26-seg.yaml.
  std::string base = basename_of(name_or_path);
  std::string family = std::regex_replace(base, std::regex(R"((\d+)[nslmx](-|\.|$))"), "$1$2");
  auto dot = family.rfind('.');
  if (dot == std::string::npos || (family.substr(dot) != ".yaml" && family.substr(dot) != ".yml"))
    family = (dot == std::string::npos ? family : family.substr(0, dot)) + ".yaml";
  std::string dir = models_dir();
  for (const std::string& cand : {dir + "/" + family, dir + "/" + base})
    if (file_exists(cand)) return cand;
  fail("model YAML '" + name_or_path + "' not found: looked for " + dir + "/" + family +
       " (set YOLO26_MODELS_DIR or pass a path to an existing .yaml)");
}

ModelConfig load_model_config(const std::string& name_or_path) {
  std::string scale;
  std::string path = resolve_model_yaml(name_or_path, &scale);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail(path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) fail(path + ": a model YAML must be a mapping with nc, scales, backbone and head");
  ModelConfig cfg = parse_model_config(root, path, scale);
  // Keys the official model adds to its yaml dict, so saved checkpoints carry them too.
  if (!cfg.yaml["scale"] && !cfg.scale.empty()) cfg.yaml["scale"] = cfg.scale;
  if (!cfg.yaml["yaml_file"]) cfg.yaml["yaml_file"] = basename_of(name_or_path);
  if (!cfg.yaml["channels"]) cfg.yaml["channels"] = cfg.channels;
  return cfg;
}

ModelConfig parse_model_config(const YAML::Node& yaml_in, const std::string& source, const std::string& scale_in) {
  ModelConfig cfg;
  cfg.source = source;
  cfg.yaml = YAML::Clone(yaml_in);
  const YAML::Node& y = yaml_in;  // read the original: clones lose the line marks
  auto need = [&](const char* key) {
    if (!y[key]) fail(source + ": missing key '" + std::string(key) + "' (every model YAML needs nc, backbone, head)");
    return y[key];
  };
  try {
    cfg.nc = need("nc").as<int>();
    if (y["end2end"]) cfg.end2end = y["end2end"].as<bool>();
    if (y["reg_max"]) cfg.reg_max = y["reg_max"].as<int>();
    if (y["channels"]) cfg.channels = y["channels"].as<int>();
    if (y["kpt_shape"]) cfg.kpt_shape = y["kpt_shape"].as<std::vector<int64_t>>();
  } catch (const YAML::Exception& e) {
    fail(source + ":" + std::to_string(e.mark.line + 1) + ": bad top-level value: " + e.msg);
  }
  if (cfg.nc < 1) fail(source + ": nc must be >= 1, got " + std::to_string(cfg.nc));
  if (!cfg.kpt_shape.empty() && (cfg.kpt_shape.size() != 2 || cfg.kpt_shape[0] < 1 ||
                                 (cfg.kpt_shape[1] != 2 && cfg.kpt_shape[1] != 3)))
    fail(source + ": kpt_shape must be [num_keypoints, 2 or 3]");

  // Scale: explicit argument, then the dict's own `scale` (checkpoints), then the first listed one.
  std::string scale = scale_in;
  if (scale.empty() && y["scale"] && y["scale"].IsScalar()) scale = y["scale"].as<std::string>();
  if (const YAML::Node& scales = y["scales"]; scales && scales.IsMap() && scales.size() > 0) {
    if (scale.empty()) scale = scales.begin()->first.as<std::string>();
    if (!scales[scale])
      fail(source + ": scale '" + scale + "' is not listed under scales (use one of the listed letters)");
    auto v = scales[scale];
    if (!v.IsSequence() || v.size() != 3) fail(source + ": scales." + scale + " must be [depth, width, max_channels]");
    cfg.depth = v[0].as<double>();
    cfg.width = v[1].as<double>();
    cfg.max_channels = v[2].as<int>();
    cfg.scale = scale;
  }

  int index = 0;
  for (const char* section : {"backbone", "head"}) {
    const YAML::Node& list = need(section);
    if (!list.IsSequence()) fail(source + ": '" + section + "' must be a list of [from, repeats, module, args]");
    for (size_t j = 0; j < list.size(); ++j, ++index) {
      const YAML::Node& row = list[j];
      LayerSpec l;
      l.index = index;
      l.line = row.Mark().is_null() ? 0 : row.Mark().line + 1;
      if (!row.IsSequence() || row.size() != 4)
        fail(where(source, l) + ": expected [from, repeats, module, args]");
      try {
        std::vector<int> from = row[0].IsSequence() ? row[0].as<std::vector<int>>() : std::vector<int>{row[0].as<int>()};
        for (int f : from) {
          int abs = f < 0 ? index + f : f;
          bool input = index == 0 && f == -1;  // the image itself
          if (!input && (abs < 0 || abs >= index))
            fail(where(source, l) + ": bad 'from' index " + std::to_string(f) +
                 " (must refer to an earlier layer, or -1 for the previous one)");
          l.from.push_back(abs);
        }
        l.repeats = row[1].as<int>();
        l.module = row[2].as<std::string>();
      } catch (const YAML::Exception& e) {
        fail(where(source, l) + ": bad field: " + e.msg);
      }
      if (l.module.rfind("nn.", 0) == 0) l.module = l.module.substr(3);
      if (l.module.rfind("torch.nn.", 0) == 0) l.module = l.module.substr(9);
      if (!known_modules().count(l.module))
        fail(where(source, l) + ": unknown module '" + l.module +
             "' (known: Conv, DWConv, C3k2, SPPF, C2PSA, Concat, nn.Upsample, Detect, Segment26, Pose26, OBB26, "
             "Classify)");
      if (l.repeats < 1) fail(where(source, l) + ": repeats must be >= 1");
      l.args = row[3];
      if (!l.args.IsSequence()) fail(where(source, l) + ": args must be a list");
      cfg.layers.push_back(l);
    }
  }
  if (cfg.layers.empty()) fail(source + ": the model has no layers");
  const std::string& head = cfg.layers.back().module;
  cfg.task = head == "Detect" ? "detect" : head == "Segment26" ? "segment" : head == "Pose26" ? "pose"
           : head == "OBB26" ? "obb" : head == "Classify" ? "classify" : "";
  if (cfg.task.empty())
    fail(where(source, cfg.layers.back()) + ": the last layer must be a head (Detect, Segment26, Pose26, OBB26, Classify), got '" +
         head + "'");
  for (size_t i = 0; i + 1 < cfg.layers.size(); ++i) {
    const std::string& m = cfg.layers[i].module;
    if (m == "Detect" || m == "Segment26" || m == "Pose26" || m == "OBB26" || m == "Classify")
      fail(where(source, cfg.layers[i]) + ": a head (" + m + ") is only allowed as the last layer");
  }
  if (cfg.task_kind() == Task::Pose && cfg.kpt_shape.empty())
    fail(source + ": a Pose26 model needs kpt_shape: [17, 3]");
  return cfg;
}

void set_num_classes(ModelConfig& cfg, int nc) {
  if (nc < 1) fail("number of classes must be >= 1, got " + std::to_string(nc));
  cfg.nc = nc;
  cfg.yaml["nc"] = nc;
}

void set_kpt_shape(ModelConfig& cfg, const std::vector<int64_t>& kpt_shape) {
  if (kpt_shape.size() != 2 || kpt_shape[0] < 1 || (kpt_shape[1] != 2 && kpt_shape[1] != 3))
    fail("kpt_shape must be [num_keypoints, 2 or 3]; check the data yaml's kpt_shape");
  cfg.kpt_shape = kpt_shape;
  YAML::Node seq(YAML::NodeType::Sequence);
  seq.SetStyle(YAML::EmitterStyle::Flow);
  for (int64_t v : kpt_shape) seq.push_back(v);
  cfg.yaml["kpt_shape"] = seq;
}

}  // namespace y26
