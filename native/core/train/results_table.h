// results.csv: one row per epoch, the official column names then ours. Checkpoints carry the table as a map of
// columns (train_results), so a resumed run continues it.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "model/task.h"

namespace y26 {

class TrainCriterion;

// Official column order: epoch, time, train losses, the task's metrics, val losses, learning rates per parameter
// group; then ours (images_per_second, data_wait_fraction).
std::vector<std::string> results_columns(const TrainCriterion& criterion, Task task, size_t lr_groups);

struct ResultsTable {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;

  // The epoch's row (1-based epoch, training seconds so far): every other column from `values`, 0 when absent.
  void add_row(int64_t epoch, double time, const std::map<std::string, double>& values);
  // Training seconds at the last row (0 when empty): a resumed run's clock starts there.
  double time() const { return rows.empty() ? 0.0 : rows.back()[1]; }
  YAML::Node to_yaml() const;
  // Rows of a checkpoint's train_results for this table's columns (absent columns read 0).
  void load(const YAML::Node& m);
  void write_csv(const std::string& path) const;
};

}  // namespace y26
