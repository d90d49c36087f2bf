#include "train/weight_transfer.h"

#include <regex>
#include <sstream>

#include "util/text.h"

namespace y26 {

namespace {

bool placeholder_names(const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] != std::to_string(i)) return false;
  return true;
}

std::string name_key(std::string s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return to_lower(b == std::string::npos ? "" : s.substr(b, e - b + 1));
}

}  // namespace

std::vector<std::string> freeze_prefixes(const YAML::Node& freeze) {
  std::vector<std::string> out = {".dfl"};
  if (!freeze || freeze.IsNull()) return out;
  if (freeze.IsSequence()) {
    for (const auto& v : freeze) out.push_back("model." + std::to_string(v.as<int>()) + ".");
  } else {
    int n = freeze.as<int>();
    for (int i = 0; i < n; ++i) out.push_back("model." + std::to_string(i) + ".");
  }
  return out;
}

void apply_freeze(YoloModel& model, const std::vector<std::string>& prefixes, std::vector<std::string>* frozen) {
  for (auto& p : model.named_parameters(true)) {
    bool freeze = false;
    for (const auto& pre : prefixes)
      freeze |= pre[0] == '.' ? p.key().find(pre) != std::string::npos : p.key().rfind(pre, 0) == 0;
    p.value().set_requires_grad(!freeze);
    if (freeze) frozen->push_back(p.key());
  }
}

std::set<std::string> remap_class_rows(StateDict& sd, const std::map<std::string, torch::Tensor>& src,
                                       const std::vector<std::string>& src_names,
                                       const std::vector<std::string>& tgt_names, int64_t* matched) {
  std::set<std::string> done;
  *matched = 0;
  if (src_names.empty() || tgt_names.empty() || placeholder_names(src_names) || placeholder_names(tgt_names))
    return done;
  std::map<std::string, int64_t> lookup;
  for (size_t i = 0; i < src_names.size(); ++i) lookup.emplace(name_key(src_names[i]), (int64_t)i);
  std::vector<int64_t> idx;
  bool identity = src_names.size() == tgt_names.size();
  for (size_t k = 0; k < tgt_names.size(); ++k) {
    auto it = lookup.find(name_key(tgt_names[k]));
    idx.push_back(it == lookup.end() ? -1 : it->second);
    *matched += idx.back() >= 0;
    identity &= idx.back() == (int64_t)k;
  }
  if (*matched == 0 || identity) return done;  // identity: the plain transfer copies them in order
  static const std::regex logit_conv(R"(^model\.\d+\.(one2one_)?cv3\.\d+\.\d+\.(weight|bias)$)");
  const int64_t nc = (int64_t)tgt_names.size();
  for (auto& [name, t] : sd) {
    if (!std::regex_match(name, logit_conv) || t.dim() < 1 || t.size(0) != nc) continue;
    auto it = src.find(name);
    if (it == src.end() || it->second.dim() != t.dim() || it->second.sizes().slice(1) != t.sizes().slice(1)) continue;
    auto out = t.detach().clone();
    for (int64_t k = 0; k < nc; ++k)
      if (idx[k] >= 0 && idx[k] < it->second.size(0)) out[k].copy_(it->second[idx[k]]);
    t = out;
    done.insert(name);
  }
  return done;
}

int64_t transfer_weights(YoloModel& model, const NamedTensors& src, std::vector<std::string>* skipped,
                         const std::vector<std::string>& src_names, const std::vector<std::string>& tgt_names,
                         std::string* remap_note) {
  std::map<std::string, torch::Tensor> by_name(src.begin(), src.end());
  StateDict sd = model.state_dict();
  int64_t matched = 0;
  const auto remapped = remap_class_rows(sd, by_name, src_names, tgt_names, &matched);
  if (!remapped.empty() && remap_note)
    *remap_note = "Remapped " + std::to_string(matched) + "/" + std::to_string(tgt_names.size()) +
                  " cls head rows from pretrained weights by class name";
  int64_t n = (int64_t)remapped.size();
  for (auto& [name, t] : sd) {
    if (remapped.count(name)) continue;
    auto it = by_name.find(name);
    if (it != by_name.end() && it->second.sizes() == t.sizes()) {
      t = it->second;
      ++n;
    } else {
      skipped->push_back(name);
    }
  }
  model.load_state_dict(sd, "pretrained weights");
  return n;
}

std::string transfer_summary(int64_t transferred, const std::vector<std::string>& skipped, const std::string& src) {
  std::ostringstream s;
  s << "Transferred " << transferred << "/" << (transferred + (int64_t)skipped.size())
    << " items from pretrained weights " << src;
  if (!skipped.empty()) {
    s << "; not transferred (missing or shape differs):";
    for (size_t i = 0; i < skipped.size() && i < 8; ++i) s << " " << skipped[i];
    if (skipped.size() > 8) s << " ... (" << skipped.size() << " in all)";
  }
  return s.str();
}

}  // namespace y26
