// Scratch folders and the tiny generated detection set that the training test programs share.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

#include "data/synthetic.h"

namespace y26test {

// <tmp>/y26_<program>_<pid>/<name>, created; one tree per test process.
inline std::string scratch_dir(const std::string& program, const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("y26_" + program + "_" + std::to_string(::getpid())) / name;
  std::filesystem::create_directories(d);
  return d.string();
}

// A generated set of 96 px images with large shapes (at most 2 per image) for `task`: a few batches at imgsz 64.
inline std::string write_tiny_set(const std::string& dir, const std::string& task = "detect", int train = 12,
                                  int val = 4, float min_size = 0.3f) {
  y26::SyntheticOptions o;
  o.train_images = train;
  o.val_images = val;
  o.width = o.height = 96;
  o.min_size = min_size;
  o.max_size = 0.6f;
  o.max_objects = 2;
  o.task = task;
  return y26::write_synthetic_dataset(dir, o);
}

}  // namespace y26test
