// YOLO-format datasets: data.yaml parsing, the label index (cached next to the labels) and image loading with
// optional RAM/disk caching. See docs/data.md for the rules (path resolution, label checks, cache invalidation).
#pragma once
#include <opencv2/core.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace y26 {

// ---- data.yaml -------------------------------------------------------------------------------------------------
struct DataConfig {
  std::string yaml_file;                // absolute path of the yaml
  std::string root;                     // resolved `path`
  std::vector<std::string> train, val, test;  // resolved sources: directories, .txt lists or image files
  int nc = 0;
  std::vector<std::string> names;       // nc entries ("0".."nc-1" when the yaml gives only nc)
  int kpt_count = 0, kpt_dims = 0;      // kpt_shape [K, D] for pose (D = 2 or 3), 0 otherwise
  std::vector<int> flip_idx;            // pose: keypoint index that each keypoint becomes under a horizontal flip
  std::vector<double> kpt_oks_sigmas;   // pose: per-keypoint OKS sigmas (K values > 0); empty = the defaults
  const std::vector<std::string>& split(const std::string& name) const;  // "train" / "val" / "test"
};

// Parses a data.yaml. `path` is taken relative to the yaml's folder (then the working directory); splits relative
// to `path` (a leading "../" that does not exist is retried without it, as the official tool does). `names` may be a
// list or an index map. Throws y26::Error naming the file and the key when something is missing or inconsistent.
DataConfig load_data_yaml(const std::string& yaml_path);

// Expands sources (directories searched recursively, .txt files with one image path per line relative to the
// list's folder, or single images) into a sorted list of image files. `what` names the split in error messages.
std::vector<std::string> list_image_files(const std::vector<std::string>& sources, const std::string& what = "images");

// The official rule: the last "/images/" in the path becomes "/labels/" and the extension becomes ".txt".
std::string label_path_for(const std::string& image_path);

// ---- label index -----------------------------------------------------------------------------------------------
struct ImageLabels {
  std::string im_file;
  int width = 0, height = 0;                // original image size
  std::vector<float> cls;                   // N class ids
  std::vector<float> boxes;                 // N*4 normalised xywh
  std::vector<float> keypoints;             // N*K*D normalised (pose only)
  std::vector<std::vector<float>> segments; // per instance, normalised x,y pairs (polygon rows only)
  size_t count() const { return cls.size(); }
};

struct IndexSummary {
  int found = 0, missing = 0, empty = 0, corrupt = 0, duplicates = 0;
  bool from_cache = false;
  std::string cache_file;                  // "" when no cache could be written
  std::vector<std::string> warnings;       // one per skipped image / removed duplicate / unwritable cache
  std::string line() const;                // "N images: F labels found, M missing (background), E empty, C corrupt"
};

struct IndexOptions {
  int nc = 0;                     // class ids must be in [0, nc); 0 skips the check
  int kpt_count = 0, kpt_dims = 0;
  // true: a bad label line (class out of range, malformed, coordinates outside [0,1]) throws y26::Error naming the
  // file and line. false: the image is skipped with a warning, as the official tool does.
  bool strict = true;
  bool use_cache = true;
  std::string cache_file;         // "" = <labels folder>.y26cache next to the labels folder
  int threads = 2;                // image header probes run in parallel
  bool verbose = true;            // print warnings and the summary line to stderr
};

struct DatasetIndex {
  std::vector<ImageLabels> items;  // images that passed the checks, in the order of the input list
  IndexSummary summary;
  // Builds (or loads from the cache when the files are unchanged) the index of `image_files`.
  static DatasetIndex build(const std::vector<std::string>& image_files, const IndexOptions& opt = {});
};

// Hash of paths, sizes and modification times of the images and their label files, plus the options that change
// the index: the cache key.
uint64_t index_hash(const std::vector<std::string>& image_files, const IndexOptions& opt);

// ---- images ----------------------------------------------------------------------------------------------------
enum class CacheMode { None, Ram, Disk };
// Accepts the official values: false/"" -> None, true/"ram" -> Ram, "disk" -> Disk.
CacheMode parse_cache_mode(const std::string& value);

// Bytes of memory available to this process now (MemAvailable in /proc/meminfo; 0 when unknown).
uint64_t available_memory_bytes();

struct DatasetOptions {
  int imgsz = 640;
  CacheMode cache = CacheMode::None;
  // Training: libjpeg-turbo's DCT-scaled decoding for images much larger than imgsz (the DCT itself is the
  // accurate one either way). Validation decodes at full size (false).
  bool fast_decode = false;
  int cache_threads = 2;
  bool verbose = true;
  // An OBB dataset (task obb): augmentation clips polygons as rotated boxes (clip_obb_polygon, the official
  // preserve_obb path) instead of point by point, so a box crossing the border keeps its angle.
  bool obb = false;
  // cache Ram shared by the processes of one machine (the ranks of a node): the POSIX shared-memory object of this
  // name holds every image once. The owner creates and fills it; the others map it once the owner is done (the
  // caller orders that, and removes the name with unlink_shared_cache once everyone has mapped it).
  std::string shared_cache;
  bool shared_cache_owner = false;
};

class Dataset {
 public:
  Dataset(DatasetIndex index, DatasetOptions opt, int kpt_count = 0, int kpt_dims = 0, std::vector<int> flip_idx = {},
          std::vector<std::string> names = {});
  // Lists, indexes and opens one split of a data.yaml.
  static std::shared_ptr<Dataset> open(const DataConfig& cfg, const std::string& split, DatasetOptions opt,
                                       IndexOptions index_opt = {});

  size_t size() const { return index_.items.size(); }
  const ImageLabels& labels(size_t i) const { return index_.items.at(i); }
  const DatasetIndex& index() const { return index_; }
  const DatasetOptions& options() const { return opt_; }
  int imgsz() const { return opt_.imgsz; }
  int kpt_count() const { return kpt_count_; }
  int kpt_dims() const { return kpt_dims_; }
  const std::vector<int>& flip_idx() const { return flip_idx_; }
  const std::vector<std::string>& names() const { return names_; }
  bool has_segments() const { return has_segments_; }

  // The official load_image: BGR, long side resized to imgsz (INTER_LINEAR, aspect kept, sides rounded up).
  // Served from the RAM cache when enabled. Thread-safe.
  cv::Mat load_image(size_t i) const;
  // Size load_image(i) returns, (height, width), without loading.
  cv::Size resized_size(size_t i) const;
  bool ram_cached() const { return !ram_.empty(); }
  // Bytes of images the RAM cache holds (0 without one).
  uint64_t ram_cache_bytes() const;
  // Removes the shared cache's name (the mappings stay valid); only the owner does it.
  void unlink_shared_cache() const;

 private:
  cv::Mat decode(size_t i) const;
  void fill_ram_cache();
  void map_shared_cache(uint64_t bytes);
  DatasetIndex index_;
  DatasetOptions opt_;
  int kpt_count_, kpt_dims_;
  std::vector<int> flip_idx_;
  std::vector<std::string> names_;
  bool has_segments_ = false;
  std::vector<cv::Mat> ram_;
  std::shared_ptr<void> shared_;  // the shared cache's mapping (ram_ points into it)
};

}  // namespace y26
