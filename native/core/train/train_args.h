// The training arguments: the default table every mode reads its defaults from, the check of user keys against
// it, and typed reads of the resolved map.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>

namespace y26 {

// The official default.yaml training keys (plus ours: accumulate 0 = from nbs; test hooks debug_nan_at -1 = off,
// debug_oom_above 0 = off: any batch above it "runs out of memory" at its second iteration).
// Every key run_training accepts is in here; unknown keys are an error.
const YAML::Node& train_defaults();

// `args` over the defaults; throws y26::Error naming an unknown key (with the closest valid one when any).
YAML::Node resolve_train_args(const YAML::Node& args);

// Typed reads of the resolved args; null means "use the fallback". A value of the wrong type throws y26::Error
// naming the argument.
struct TrainArgs {
  YAML::Node n;
  bool has(const char* k) const { return n[k] && !n[k].IsNull(); }
  std::string str(const char* k, const std::string& d = "") const { return has(k) ? n[k].as<std::string>() : d; }
  double num(const char* k) const;
  int64_t integer(const char* k) const;
  bool flag(const char* k) const;
};

// "true" / "false" in any case: sets *value and returns true. Anything else (a path) returns false.
bool is_bool_text(const std::string& s, bool* value);

}  // namespace y26
