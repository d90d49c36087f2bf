// What a training run starts from when it is given other weights: tensors copied by name and shape from a
// checkpoint (another class count or task keeps what fits), class-logit rows remapped by class name, and the
// frozen layers.
#pragma once
#include <yaml-cpp/yaml.h>

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/yolo.h"

namespace y26 {

// Copies every tensor whose name and shape match (and, with class names on both sides, the class-logit rows by
// name: remap_class_rows); returns how many tensors it set. *skipped receives the model tensors left as they were;
// *remap_note the log line of a remap ("" when none).
int64_t transfer_weights(YoloModel& model, const NamedTensors& src, std::vector<std::string>* skipped,
                         const std::vector<std::string>& src_names, const std::vector<std::string>& tgt_names,
                         std::string* remap_note);

// The log line of a transfer: "Transferred n/total items from pretrained weights <src>", and the first skipped names.
std::string transfer_summary(int64_t transferred, const std::vector<std::string>& skipped, const std::string& src);

// Official cls_remap: when the checkpoint's class names overlap the data's in another order or count, the rows of
// the head's class-logit convs (the last layer of each cv3 / one2one_cv3 level) are copied by name (trimmed, any
// case); unmatched rows keep their initialisation. A weight whose input width differs keeps only its bias rows.
// Names that are just indices carry no meaning. Returns the remapped tensor names; *matched = classes found.
std::set<std::string> remap_class_rows(StateDict& sd, const std::map<std::string, torch::Tensor>& src,
                                       const std::vector<std::string>& src_names,
                                       const std::vector<std::string>& tgt_names, int64_t* matched);

// Official freeze semantics: an int N freezes layers 0..N-1, a list freezes those indices; ".dfl" is always frozen.
std::vector<std::string> freeze_prefixes(const YAML::Node& freeze);

// Turns requires_grad off for the parameters under `prefixes` (a leading "." matches anywhere in the name);
// *frozen receives their names.
void apply_freeze(YoloModel& model, const std::vector<std::string>& prefixes, std::vector<std::string>* frozen);

}  // namespace y26
