// Scratch folders and the tiny generated detection and classification sets that the training test programs share.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data/synthetic.h"

namespace y26test {

namespace detail {
// The scratch trees this process made, removed when it exits (not by a forked child that exits, which shares the
// registry but not the ownership). Y26_KEEP_TEST_FILES=1 keeps them for inspection.
struct ScratchRoots {
  pid_t owner = ::getpid();
  std::set<std::string> roots;
  ~ScratchRoots() {
    if (::getpid() != owner) return;
    const char* keep = std::getenv("Y26_KEEP_TEST_FILES");
    for (const auto& r : roots) {
      if (keep && *keep && std::string(keep) != "0") {
        std::cout << "kept test files in " << r << "\n";
        continue;
      }
      std::error_code ec;
      std::filesystem::remove_all(r, ec);
    }
  }
};
inline ScratchRoots& scratch_roots() {
  static ScratchRoots s;
  return s;
}
}  // namespace detail

// <tmp>/y26_<program>_<pid>/<name>, created; one tree per test process, removed when the process exits.
inline std::string scratch_dir(const std::string& program, const std::string& name) {
  auto root = std::filesystem::temp_directory_path() / ("y26_" + program + "_" + std::to_string(::getpid()));
  auto& reg = detail::scratch_roots();
  if (reg.owner == ::getpid()) reg.roots.insert(root.string());
  auto d = root / name;
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

// A classification folder root/{train,val}/<class>/<i>.png: 3 classes of 32 px images (red, green, striped blue),
// `train` and `val` images per class; returns root.
inline std::string write_tiny_classify_set(const std::string& root, int train = 8, int val = 3) {
  const char* classes[] = {"red", "green", "stripes"};
  for (const char* split : {"train", "val"}) {
    const int n = std::string(split) == "train" ? train : val;
    for (int c = 0; c < 3; ++c) {
      std::filesystem::create_directories(std::filesystem::path(root) / split / classes[c]);
      for (int i = 0; i < n; ++i) {
        cv::Mat im(32, 32, CV_8UC3);
        cv::randu(im, 0, 40);
        if (c == 0) im += cv::Scalar(0, 0, 200);
        if (c == 1) im += cv::Scalar(0, 200, 0);
        if (c == 2)
          for (int y = 0; y < 32; y += 4) im.rowRange(y, y + 2).setTo(cv::Scalar(230, 120, 20));
        cv::imwrite((std::filesystem::path(root) / split / classes[c] / (std::to_string(i) + ".png")).string(), im);
      }
    }
  }
  return root;
}

}  // namespace y26test
