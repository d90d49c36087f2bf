#include "train/train_args.h"

#include <cmath>
#include <vector>

#include "util/error.h"
#include "util/text.h"

namespace y26 {

const YAML::Node& train_defaults() {
  // default.yaml (Ultralytics 8.4) train/val keys, then ours at the end.
  static const YAML::Node defaults = YAML::Load(R"(
task: detect
mode: train
model: yolo26n.yaml
data: null
epochs: 100
time: null
patience: 100
batch: 16
imgsz: 640
save: true
save_period: -1
cache: false
device: null
workers: 8
project: null
name: null
exist_ok: false
pretrained: true
optimizer: auto
verbose: true
seed: 0
deterministic: true
single_cls: false
rect: false
cos_lr: false
close_mosaic: 10
resume: false
amp: true
fraction: 1.0
profile: false
freeze: null
multi_scale: 0.0
compile: false
overlap_mask: true
mask_ratio: 4
dropout: 0.0
val: true
split: val
save_json: false
conf: null
iou: 0.7
max_det: 300
half: false
dnn: false
plots: true
end2end: null
lr0: 0.01
lrf: 0.01
momentum: 0.937
weight_decay: 0.0005
warmup_epochs: 3.0
warmup_momentum: 0.8
warmup_bias_lr: 0.1
box: 7.5
cls: 0.5
cls_pw: 0.0
dfl: 1.5
pose: 12.0
kobj: 1.0
rle: 1.0
angle: 1.0
nbs: 64
hsv_h: 0.015
hsv_s: 0.7
hsv_v: 0.4
degrees: 0.0
translate: 0.1
scale: 0.5
shear: 0.0
perspective: 0.0
flipud: 0.0
fliplr: 0.5
bgr: 0.0
mosaic: 1.0
mixup: 0.0
cutmix: 0.0
copy_paste: 0.0
copy_paste_mode: flip
auto_augment: randaugment
erasing: 0.4
cfg: null
save_dir: null
threads: 0
accumulate: 0
cpu_amp: false
cls_remap: true
channels_last: false
debug_nan_at: -1
debug_oom_above: 0
)");
  return defaults;
}

YAML::Node resolve_train_args(const YAML::Node& args) {
  YAML::Node out = YAML::Clone(train_defaults());
  if (!args || args.IsNull()) return out;
  if (!args.IsMap()) fail("train(): the arguments must be a map of option names to values");
  for (const auto& kv : args) {
    const std::string key = kv.first.as<std::string>();
    if (!train_defaults()[key]) {
      std::vector<std::string> keys;
      for (const auto& d : train_defaults()) keys.push_back(d.first.as<std::string>());
      const std::string best = closest_name(key, keys);
      fail("train(): unknown argument '" + key + "'" + (best.empty() ? "" : " (did you mean '" + best + "'?)") +
           "; see the default.yaml keys");
    }
    out[key] = YAML::Clone(kv.second);
  }
  return out;
}

double TrainArgs::num(const char* k) const {
  try {
    return n[k].as<double>();
  } catch (const YAML::Exception&) {
    fail(std::string("train(): argument '") + k + "' must be a number (got '" + str(k) + "')");
  }
}

int64_t TrainArgs::integer(const char* k) const { return (int64_t)std::llround(num(k)); }

bool TrainArgs::flag(const char* k) const {
  try {
    return n[k].as<bool>();
  } catch (const YAML::Exception&) {
    fail(std::string("train(): argument '") + k + "' must be true or false (got '" + str(k) + "')");
  }
}

bool is_bool_text(const std::string& s, bool* value) {
  const std::string v = to_lower(s);
  if (v == "true") return *value = true, true;
  if (v == "false") return *value = false, true;
  return false;
}

}  // namespace y26
