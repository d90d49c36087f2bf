#include "train/results_table.h"

#include <fstream>

#include "eval/validator.h"
#include "train/criterion.h"
#include "util/error.h"
#include "util/text.h"

namespace y26 {

std::vector<std::string> results_columns(const TrainCriterion& criterion, Task task, size_t lr_groups) {
  std::vector<std::string> out = {"epoch", "time"};
  for (const auto& c : loss_columns(criterion, "train/")) out.push_back(c);
  for (const auto& c : metric_keys(task)) out.push_back(c);
  for (const auto& c : loss_columns(criterion, "val/")) out.push_back(c);
  for (size_t g = 0; g < lr_groups; ++g) out.push_back("lr/pg" + std::to_string(g));
  out.push_back("images_per_second");
  out.push_back("data_wait_fraction");
  return out;
}

void ResultsTable::add_row(int64_t epoch, double time, const std::map<std::string, double>& values) {
  std::vector<double> row;
  for (const auto& c : columns) {
    if (c == "epoch") row.push_back((double)epoch);
    else if (c == "time") row.push_back(time);
    else {
      auto it = values.find(c);
      row.push_back(it != values.end() ? it->second : 0.0);
    }
  }
  rows.push_back(row);
}

YAML::Node ResultsTable::to_yaml() const {
  YAML::Node m(YAML::NodeType::Map);
  for (size_t c = 0; c < columns.size(); ++c) {
    YAML::Node col(YAML::NodeType::Sequence);
    for (const auto& r : rows) col.push_back(r[c]);
    m[columns[c]] = col;
  }
  return m;
}

void ResultsTable::load(const YAML::Node& m) {
  if (!m || !m.IsMap() || !m["epoch"]) return;
  size_t n = m["epoch"].size();
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> row;
    for (const auto& c : columns) row.push_back(m[c] && m[c].size() > i ? m[c][i].as<double>() : 0.0);
    rows.push_back(row);
  }
}

void ResultsTable::write_csv(const std::string& path) const {
  std::ofstream f(path, std::ios::trunc);
  if (!f) fail("cannot write " + path + ": check that the run folder is writable and the disk is not full");
  for (size_t c = 0; c < columns.size(); ++c) f << (c ? "," : "") << columns[c];
  f << "\n";
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) {
      if (c) f << ",";
      if (c == 0) f << (int64_t)r[c];
      else f << format_number("%.6g", r[c]);
    }
    f << "\n";
  }
  if (!f.flush()) fail("cannot write " + path + ": the disk may be full");
}

}  // namespace y26
