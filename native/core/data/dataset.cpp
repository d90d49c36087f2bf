#include "data/dataset.h"
#include "data/index_warnings.h"

#include <opencv2/imgproc.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "data/image_io.h"
#include "util/error.h"
#include "util/npy.h"

namespace fs = std::filesystem;

namespace y26 {

// ---- data.yaml -------------------------------------------------------------------------------------------------
const std::vector<std::string>& DataConfig::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  fail("unknown split '" + name + "': use train, val or test");
}

namespace {

const char* kImageExts[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"};

bool is_image_path(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  for (const char* e : kImageExts) if (ext == e) return true;
  return false;
}

std::vector<std::string> split_entries(const YAML::Node& node, const std::string& root, const std::string& yaml,
                                       const std::string& key) {
  std::vector<std::string> raw;
  if (!node || node.IsNull()) return {};
  if (node.IsSequence()) for (const auto& n : node) raw.push_back(n.as<std::string>());
  else if (node.IsScalar()) raw.push_back(node.as<std::string>());
  else fail(yaml + ": '" + key + "' must be a path or a list of paths");
  std::vector<std::string> out;
  for (const std::string& r : raw) {
    fs::path p(r);
    if (p.is_relative()) {
      fs::path cand = fs::path(root) / p;
      // The official tool retries "../x" as "x" under path when the first form does not exist.
      if (!fs::exists(cand) && r.rfind("../", 0) == 0) cand = fs::path(root) / r.substr(3);
      p = cand;
    }
    out.push_back(fs::weakly_canonical(p).string());
  }
  return out;
}

}  // namespace

DataConfig load_data_yaml(const std::string& yaml_path) {
  if (!fs::exists(yaml_path)) fail("data file " + yaml_path + " not found: pass the path of a data.yaml");
  YAML::Node y;
  try {
    y = YAML::LoadFile(yaml_path);
  } catch (const YAML::Exception& e) {
    fail(yaml_path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!y.IsMap()) fail(yaml_path + ": expected a mapping with path/train/val/nc/names");
  DataConfig c;
  c.yaml_file = fs::absolute(yaml_path).string();
  fs::path yaml_dir = fs::path(c.yaml_file).parent_path();
  try {
    // `path` relative to the yaml's folder first, then the working directory; absent -> the yaml's folder.
    fs::path root = yaml_dir;
    if (y["path"] && !y["path"].IsNull()) {
      fs::path p(y["path"].as<std::string>());
      if (p.is_absolute()) root = p;
      else if (fs::exists(yaml_dir / p) || !fs::exists(p)) root = yaml_dir / p;
      else root = fs::absolute(p);
    }
    c.root = fs::weakly_canonical(root).string();
    c.train = split_entries(y["train"], c.root, yaml_path, "train");
    c.val = split_entries(y["val"], c.root, yaml_path, "val");
    c.test = split_entries(y["test"], c.root, yaml_path, "test");
    if (c.train.empty() && c.val.empty()) fail(yaml_path + ": needs a 'train' or 'val' entry");

    YAML::Node names = y["names"];
    if (names && names.IsSequence()) {
      for (const auto& n : names) c.names.push_back(n.as<std::string>());
    } else if (names && names.IsMap()) {
      std::map<int, std::string> m;
      for (const auto& kv : names) m[kv.first.as<int>()] = kv.second.as<std::string>();
      int expect = 0;
      for (const auto& [k, v] : m) {
        if (k != expect) fail(yaml_path + ": 'names' indices must be 0..nc-1 without gaps (missing " +
                              std::to_string(expect) + ")");
        c.names.push_back(v);
        ++expect;
      }
    }
    if (y["nc"]) c.nc = y["nc"].as<int>();
    if (c.nc == 0) c.nc = (int)c.names.size();
    if (c.nc <= 0) fail(yaml_path + ": needs 'names' (list or index map) or 'nc'");
    if (c.names.empty()) for (int i = 0; i < c.nc; ++i) c.names.push_back(std::to_string(i));
    if ((int)c.names.size() != c.nc)
      fail(yaml_path + ": 'nc' is " + std::to_string(c.nc) + " but 'names' has " + std::to_string(c.names.size()) +
           " entries; make them agree");

    if (y["kpt_shape"]) {
      YAML::Node k = y["kpt_shape"];
      if (!k.IsSequence() || k.size() != 2) fail(yaml_path + ": 'kpt_shape' must be [keypoints, dims], e.g. [17, 3]");
      c.kpt_count = k[0].as<int>();
      c.kpt_dims = k[1].as<int>();
      if (c.kpt_count <= 0 || (c.kpt_dims != 2 && c.kpt_dims != 3))
        fail(yaml_path + ": 'kpt_shape' must be [K > 0, 2 or 3]");
      if (y["flip_idx"]) {
        for (const auto& n : y["flip_idx"]) c.flip_idx.push_back(n.as<int>());
        if ((int)c.flip_idx.size() != c.kpt_count)
          fail(yaml_path + ": 'flip_idx' has " + std::to_string(c.flip_idx.size()) + " entries but kpt_shape says " +
               std::to_string(c.kpt_count) + " keypoints");
        for (int v : c.flip_idx)
          if (v < 0 || v >= c.kpt_count) fail(yaml_path + ": 'flip_idx' entry " + std::to_string(v) + " out of range");
      }
      if (y["kpt_oks_sigmas"]) {
        if (!y["kpt_oks_sigmas"].IsSequence())
          fail(yaml_path + ": 'kpt_oks_sigmas' must be a list of " + std::to_string(c.kpt_count) + " positive numbers");
        for (const auto& n : y["kpt_oks_sigmas"]) c.kpt_oks_sigmas.push_back(n.as<double>());
        if ((int)c.kpt_oks_sigmas.size() != c.kpt_count)
          fail(yaml_path + ": 'kpt_oks_sigmas' has " + std::to_string(c.kpt_oks_sigmas.size()) +
               " entries but kpt_shape says " + std::to_string(c.kpt_count) + " keypoints; give one sigma per keypoint");
        for (double v : c.kpt_oks_sigmas)
          if (!(v > 0)) fail(yaml_path + ": 'kpt_oks_sigmas' entry " + std::to_string(v) + " must be > 0");
      }
    }
  } catch (const YAML::Exception& e) {
    fail(yaml_path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return c;
}

std::vector<std::string> list_image_files(const std::vector<std::string>& sources, const std::string& what) {
  std::vector<std::string> files;
  for (const std::string& src : sources) {
    fs::path p(src);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p, fs::directory_options::follow_directory_symlink))
        if (e.is_regular_file() && is_image_path(e.path())) files.push_back(e.path().string());
    } else if (p.extension() == ".txt" && fs::exists(p)) {
      std::ifstream in(p);
      std::string line;
      while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty()) continue;
        fs::path q(line);
        if (q.is_relative()) q = p.parent_path() / q;  // official: "./x" lines are relative to the list's folder
        files.push_back(fs::weakly_canonical(q).string());
      }
    } else if (fs::is_regular_file(p) && is_image_path(p)) {
      files.push_back(p.string());
    } else {
      fail(what + " source " + src + " does not exist (or is not a folder, .txt list or image): check data.yaml");
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  if (files.empty()) fail("no images found in " + what + " sources" + (sources.empty() ? "" : " (" + sources[0] + ")"));
  return files;
}

std::string label_path_for(const std::string& image_path) {
  const std::string sa = "/images/", sb = "/labels/";
  std::string p = image_path;
  size_t pos = p.rfind(sa);
  if (pos != std::string::npos) p.replace(pos, sa.size(), sb);
  size_t dot = p.rfind('.');
  size_t slash = p.rfind('/');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) p = p.substr(0, dot);
  return p + ".txt";
}

// ---- label index -----------------------------------------------------------------------------------------------
std::string IndexSummary::line() const {
  std::ostringstream s;
  s << (found + missing + empty + corrupt) << " images: " << found << " with labels, " << missing
    << " missing labels (background), " << empty << " empty, " << corrupt << " corrupt";
  if (duplicates) s << ", " << duplicates << " duplicate rows removed";
  if (from_cache) s << " (cache " << cache_file << ")";
  return s.str();
}

std::vector<std::string> shown_warnings(const std::vector<std::string>& warnings, size_t limit) {
  std::vector<std::string> out(warnings.begin(), warnings.begin() + std::min(limit, warnings.size()));
  if (warnings.size() > limit)
    out.push_back("... and " + std::to_string(warnings.size() - limit) + " more skipped images/labels like these (" +
                  std::to_string(warnings.size()) + " warnings in all)");
  return out;
}

namespace {

constexpr uint32_t kCacheVersion = 1;
constexpr char kCacheMagic[8] = {'Y', '2', '6', 'I', 'D', 'X', '\n', '\0'};
constexpr float kCoordTolerance = 0.01f;  // the official tool tolerates small negative drift; we allow it both ways

void fnv(uint64_t& h, const void* data, size_t n) {
  const uint8_t* p = (const uint8_t*)data;
  for (size_t i = 0; i < n; ++i) { h ^= p[i]; h *= 1099511628211ull; }
}

void hash_file(uint64_t& h, const std::string& path) {
  fnv(h, path.data(), path.size());
  std::error_code ec;
  int64_t size = -1, mtime = -1;
  auto st = fs::status(path, ec);
  if (!ec && fs::is_regular_file(st)) {
    size = (int64_t)fs::file_size(path, ec);
    mtime = (int64_t)fs::last_write_time(path, ec).time_since_epoch().count();
  }
  fnv(h, &size, sizeof size);
  fnv(h, &mtime, sizeof mtime);
}

// What parsing one label file gives: labels or a reason to skip.
struct ParsedLabels {
  enum Status { Found, Missing, Empty, Corrupt } status = Found;
  std::string message;  // warning for Corrupt
  int duplicates = 0;
};

[[noreturn]] void label_error(const std::string& file, int line, const std::string& what) {
  fail(file + ":" + std::to_string(line) + ": " + what);
}

ParsedLabels parse_label_file(const std::string& path, ImageLabels& out, const IndexOptions& opt) {
  ParsedLabels r;
  std::ifstream in(path);
  if (!in) { r.status = ParsedLabels::Missing; return r; }
  const int kpt_cols = opt.kpt_count * opt.kpt_dims;
  std::vector<std::vector<float>> rows;
  std::string line;
  int lineno = 0;
  try {
    while (std::getline(in, line)) {
      ++lineno;
      // Upstream reads labels as plain UTF-8 and skips such a file too; the message must show why.
      if (lineno == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0)
        label_error(path, lineno, "the file starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF), which is not part of a "
                                  "number: save it as UTF-8 without BOM (or ASCII)");
      std::istringstream ls(line);
      std::vector<float> v;
      std::string tok;
      while (ls >> tok) {
        char* end = nullptr;
        float f = std::strtof(tok.c_str(), &end);
        if (end == tok.c_str() || *end != '\0' || !std::isfinite(f))
          label_error(path, lineno, "'" + tok + "' is not a number; each row is 'class x_center y_center width height'"
                                        " normalised to 0..1");
        v.push_back(f);
      }
      if (v.empty()) continue;
      size_t n = v.size();
      bool ok = opt.kpt_count > 0 ? n == size_t(5 + kpt_cols) : (n == 5 || (n >= 7 && n % 2 == 1));
      if (!ok) {
        if (opt.kpt_count > 0)
          label_error(path, lineno, "has " + std::to_string(n) + " columns; pose rows need 5 + " +
                                        std::to_string(opt.kpt_count) + "x" + std::to_string(opt.kpt_dims) + " = " +
                                        std::to_string(5 + kpt_cols) + " (class, box, keypoints)");
        label_error(path, lineno, "has " + std::to_string(n) + " columns; use 5 (class x y w h) or a polygon "
                                      "(class x1 y1 x2 y2 x3 y3 ...)");
      }
      float c = v[0];
      if (c != std::floor(c) || c < 0 || (opt.nc > 0 && c >= opt.nc))
        label_error(path, lineno, "class " + std::to_string((long long)c) + " is outside [0, " + std::to_string(opt.nc) +
                                      "); fix the label or the 'names'/'nc' of data.yaml");
      for (size_t k = 1; k < n; ++k) {
        // Keypoint visibility (every third value of a 3-dim keypoint) is a flag, not a coordinate.
        bool is_vis = opt.kpt_count > 0 && opt.kpt_dims == 3 && k >= 5 && (k - 5) % 3 == 2;
        if (is_vis) continue;
        if (v[k] < -kCoordTolerance || v[k] > 1 + kCoordTolerance)
          label_error(path, lineno, "coordinate " + std::to_string(v[k]) + " (column " + std::to_string(k + 1) +
                                        ") is outside [0, 1]; labels must be normalised by the image width/height");
        v[k] = std::min(std::max(v[k], 0.f), 1.f);
      }
      rows.push_back(std::move(v));
    }
  } catch (const Error& e) {
    if (opt.strict) throw;
    r.status = ParsedLabels::Corrupt;
    r.message = e.what();
    return r;
  }
  if (rows.empty()) { r.status = ParsedLabels::Empty; return r; }
  // Exact duplicate rows are removed, as the official tool does.
  std::set<std::vector<float>> seen;
  std::vector<std::vector<float>> segments;  // one per kept row; box rows of a polygon file get an empty polygon
  bool any_polygon = false;
  for (auto& v : rows) {
    if (!seen.insert(v).second) { ++r.duplicates; continue; }
    out.cls.push_back(v[0]);
    if (v.size() >= 7 && opt.kpt_count == 0) {
      // Polygon row: the box is the polygon's extent.
      float x0 = 1, y0 = 1, x1 = 0, y1 = 0;
      for (size_t k = 1; k + 1 < v.size(); k += 2) {
        x0 = std::min(x0, v[k]); x1 = std::max(x1, v[k]);
        y0 = std::min(y0, v[k + 1]); y1 = std::max(y1, v[k + 1]);
      }
      out.boxes.insert(out.boxes.end(), {(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0});
      segments.emplace_back(v.begin() + 1, v.end());
      any_polygon = true;
    } else {
      out.boxes.insert(out.boxes.end(), v.begin() + 1, v.begin() + 5);
      if (opt.kpt_count > 0) out.keypoints.insert(out.keypoints.end(), v.begin() + 5, v.end());
      segments.emplace_back();
    }
  }
  if (any_polygon) out.segments = std::move(segments);
  return r;
}

// ---- binary cache: magic, version, hash, summary counts, then the items --------------------------------------
struct Writer {
  std::ofstream& o;
  void u64(uint64_t v) { o.write((const char*)&v, 8); }
  void i32(int32_t v) { o.write((const char*)&v, 4); }
  void str(const std::string& s) { u64(s.size()); o.write(s.data(), s.size()); }
  void floats(const std::vector<float>& v) { u64(v.size()); o.write((const char*)v.data(), v.size() * 4); }
};
struct Reader {
  std::ifstream& in;
  uint64_t u64() { uint64_t v = 0; in.read((char*)&v, 8); check(); return v; }
  int32_t i32() { int32_t v = 0; in.read((char*)&v, 4); check(); return v; }
  std::string str() { std::string s(len(), '\0'); in.read(&s[0], s.size()); check(); return s; }
  std::vector<float> floats() { std::vector<float> v(len()); in.read((char*)v.data(), v.size() * 4); check(); return v; }
  uint64_t len() { uint64_t n = u64(); if (n > (1ull << 32)) throw std::runtime_error("bad length"); return n; }
  void check() { if (!in) throw std::runtime_error("truncated"); }
};

bool load_cache(const std::string& file, uint64_t hash, DatasetIndex& idx) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return false;
  try {
    char magic[8];
    in.read(magic, 8);
    if (!in || std::memcmp(magic, kCacheMagic, 8) != 0) return false;
    Reader r{in};
    if (r.u64() != kCacheVersion || r.u64() != hash) return false;
    IndexSummary& s = idx.summary;
    s.found = r.i32(); s.missing = r.i32(); s.empty = r.i32(); s.corrupt = r.i32(); s.duplicates = r.i32();
    uint64_t nw = r.len();
    for (uint64_t i = 0; i < nw; ++i) s.warnings.push_back(r.str());
    uint64_t n = r.len();
    idx.items.resize(n);
    for (auto& it : idx.items) {
      it.im_file = r.str();
      it.width = r.i32(); it.height = r.i32();
      it.cls = r.floats(); it.boxes = r.floats(); it.keypoints = r.floats();
      it.segments.resize(r.len());
      for (auto& sg : it.segments) sg = r.floats();
    }
    return true;
  } catch (const std::exception&) {
    idx = DatasetIndex{};
    return false;  // unreadable cache: rebuild
  }
}

bool save_cache(const std::string& file, uint64_t hash, const DatasetIndex& idx) {
  std::string tmp = file + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream o(tmp, std::ios::binary);
    if (!o) return false;
    o.write(kCacheMagic, 8);
    Writer w{o};
    w.u64(kCacheVersion); w.u64(hash);
    const IndexSummary& s = idx.summary;
    w.i32(s.found); w.i32(s.missing); w.i32(s.empty); w.i32(s.corrupt); w.i32(s.duplicates);
    w.u64(s.warnings.size());
    for (auto& m : s.warnings) w.str(m);
    w.u64(idx.items.size());
    for (auto& it : idx.items) {
      w.str(it.im_file); w.i32(it.width); w.i32(it.height);
      w.floats(it.cls); w.floats(it.boxes); w.floats(it.keypoints);
      w.u64(it.segments.size());
      for (auto& sg : it.segments) w.floats(sg);
    }
    if (!o) return false;
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);  // atomic: concurrent readers never see a half-written cache
  if (!ec) return true;
  std::error_code ignored;  // the rename's error decides; removing the temporary must not clear it
  fs::remove(tmp, ignored);
  return false;
}

std::string default_cache_file(const std::vector<std::string>& image_files) {
  fs::path labels_dir = fs::path(label_path_for(image_files.front())).parent_path();
  return labels_dir.string() + ".y26cache";
}

}  // namespace

uint64_t index_hash(const std::vector<std::string>& image_files, const IndexOptions& opt) {
  uint64_t h = 1469598103934665603ull;
  int32_t key[5] = {(int32_t)kCacheVersion, opt.nc, opt.kpt_count, opt.kpt_dims, opt.strict ? 1 : 0};
  fnv(h, key, sizeof key);
  for (const auto& f : image_files) {
    hash_file(h, f);
    hash_file(h, label_path_for(f));
  }
  return h;
}

DatasetIndex DatasetIndex::build(const std::vector<std::string>& image_files, const IndexOptions& opt) {
  if (image_files.empty()) fail("cannot index an empty image list: check the data.yaml split");
  DatasetIndex idx;
  uint64_t hash = index_hash(image_files, opt);
  std::string cache_file = opt.cache_file.empty() ? default_cache_file(image_files) : opt.cache_file;
  if (opt.use_cache && load_cache(cache_file, hash, idx)) {
    idx.summary.from_cache = true;
    idx.summary.cache_file = cache_file;
    if (opt.verbose) {  // as upstream, a cache hit repeats the warnings found when it was written
      for (auto& w : shown_warnings(idx.summary.warnings)) std::cerr << "yolo26: warning: " << w << "\n";
      std::cerr << "yolo26: " << idx.summary.line() << "\n";
    }
    return idx;
  }

  const size_t n = image_files.size();
  std::vector<ImageLabels> items(n);
  std::vector<ParsedLabels> parsed(n);
  std::vector<std::string> errors(n);  // strict-mode label errors, re-thrown in file order
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < n;) {
      ImageLabels& it = items[i];
      it.im_file = image_files[i];
      try {
        ImageInfo info = probe_image(it.im_file);
        it.width = info.width;
        it.height = info.height;
      } catch (const std::exception& e) {
        parsed[i].status = ParsedLabels::Corrupt;
        parsed[i].message = std::string("skipping corrupt image: ") + e.what();
        continue;
      }
      try {
        parsed[i] = parse_label_file(label_path_for(it.im_file), it, opt);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  int threads = std::max(1, std::min<int>(opt.threads, (int)n));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors) if (!e.empty()) fail(e);

  IndexSummary& s = idx.summary;
  for (size_t i = 0; i < n; ++i) {
    ParsedLabels& p = parsed[i];
    if (p.duplicates) {
      s.duplicates += p.duplicates;
      s.warnings.push_back(label_path_for(image_files[i]) + ": " + std::to_string(p.duplicates) +
                           " duplicate rows removed");
    }
    switch (p.status) {
      case ParsedLabels::Found: ++s.found; break;
      case ParsedLabels::Missing: ++s.missing; break;
      case ParsedLabels::Empty: ++s.empty; break;
      case ParsedLabels::Corrupt: ++s.corrupt; s.warnings.push_back(p.message); continue;
    }
    idx.items.push_back(std::move(items[i]));
  }
  if (idx.items.empty()) {
    // Say why: the skipped files (with the bad label line) are the fix the user needs.
    std::string why;
    for (size_t i = 0; i < s.warnings.size() && i < 3; ++i) why += "; " + s.warnings[i];
    fail("no usable images among " + std::to_string(n) + " (" + s.line() + ")" + why);
  }
  if (opt.use_cache) {
    if (save_cache(cache_file, hash, idx)) s.cache_file = cache_file;
    else s.warnings.push_back("cannot write the label cache " + cache_file + " (its folder is not writable): the labels will be read again next time");
  }
  if (opt.verbose) {
    for (auto& w : shown_warnings(s.warnings)) std::cerr << "yolo26: warning: " << w << "\n";
    std::cerr << "yolo26: " << s.line() << "\n";
  }
  return idx;
}

// ---- images ----------------------------------------------------------------------------------------------------
CacheMode parse_cache_mode(const std::string& value) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  if (v.empty() || v == "false" || v == "none" || v == "0") return CacheMode::None;
  if (v == "ram" || v == "true" || v == "1") return CacheMode::Ram;
  if (v == "disk") return CacheMode::Disk;
  fail("cache must be false, 'ram' or 'disk' (got '" + value + "')");
}

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

Dataset::Dataset(DatasetIndex index, DatasetOptions opt, int kpt_count, int kpt_dims, std::vector<int> flip_idx,
                 std::vector<std::string> names)
    : index_(std::move(index)), opt_(opt), kpt_count_(kpt_count), kpt_dims_(kpt_dims), flip_idx_(std::move(flip_idx)),
      names_(std::move(names)) {
  if (opt_.imgsz < 32) fail("imgsz must be at least 32 (got " + std::to_string(opt_.imgsz) + ")");
  for (auto& it : index_.items) if (!it.segments.empty()) { has_segments_ = true; break; }
  if (opt_.cache == CacheMode::Ram) fill_ram_cache();
}

std::shared_ptr<Dataset> Dataset::open(const DataConfig& cfg, const std::string& split, DatasetOptions opt,
                                       IndexOptions index_opt) {
  index_opt.nc = cfg.nc;
  index_opt.kpt_count = cfg.kpt_count;
  index_opt.kpt_dims = cfg.kpt_dims;
  auto files = list_image_files(cfg.split(split), cfg.yaml_file + " '" + split + "'");
  return std::make_shared<Dataset>(DatasetIndex::build(files, index_opt), opt, cfg.kpt_count, cfg.kpt_dims,
                                   cfg.flip_idx, cfg.names);
}

cv::Size Dataset::resized_size(size_t i) const {
  const ImageLabels& it = labels(i);
  double r = (double)opt_.imgsz / std::max(it.width, it.height);
  if (r == 1.0) return {it.width, it.height};
  return {std::min((int)std::ceil(it.width * r), opt_.imgsz), std::min((int)std::ceil(it.height * r), opt_.imgsz)};
}

cv::Mat Dataset::decode(size_t i) const {
  const ImageLabels& it = labels(i);
  cv::Mat img;
  if (opt_.cache == CacheMode::Disk) {
    // The official disk cache: the full decoded BGR image as .npy beside the image.
    std::string npy = fs::path(it.im_file).replace_extension(".npy").string();
    if (fs::exists(npy)) {
      try {
        NpyArray a = read_npy(npy);
        if (a.dtype == "u1" && a.shape.size() == 3 && a.shape[0] == it.height && a.shape[1] == it.width && a.shape[2] == 3)
          img = cv::Mat(it.height, it.width, CV_8UC3, a.bytes.data()).clone();
      } catch (const std::exception&) {
        // unreadable cache file: decode and rewrite below
      }
    }
    if (img.empty()) {
      img = read_image_bgr(it.im_file);
      try {
        std::string tmp = npy + ".tmp" + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
        write_npy(tmp, "u1", {img.rows, img.cols, 3}, img.data, img.total() * 3);
        fs::rename(tmp, npy);
      } catch (const std::exception& e) {
        if (opt_.verbose) std::cerr << "yolo26: warning: cannot write disk cache " << npy << ": " << e.what() << "\n";
      }
    }
  } else {
    img = read_image_bgr(it.im_file, opt_.fast_decode ? opt_.imgsz : 0);
  }
  if (img.cols != it.width || img.rows != it.height) {
    // Scaled decoding gave a smaller image; anything else means the file changed after indexing.
    if (!(opt_.fast_decode && img.cols <= it.width && img.rows <= it.height))
      fail("image " + it.im_file + " changed size since it was indexed; delete the label cache and retry");
  }
  cv::Size target = resized_size(i);
  if (img.size() != target) {
    cv::Mat out;
    cv::resize(img, out, target, 0, 0, cv::INTER_LINEAR);
    return out;
  }
  return img;
}

cv::Mat Dataset::load_image(size_t i) const {
  if (!ram_.empty()) return ram_[i];
  return decode(i);
}

// The shared cache: one mapping of a POSIX shared-memory object, the images back to back in index order. The owner
// maps it shared and writes the images; the others map it copy-on-write, so a stray write can never reach the
// other processes (and costs only that page).
void Dataset::map_shared_cache(uint64_t bytes) {
  const std::string& name = opt_.shared_cache;
  const bool owner = opt_.shared_cache_owner;
  if (owner) {
    struct statvfs fs_info;
    if (statvfs("/dev/shm", &fs_info) == 0 && (uint64_t)fs_info.f_bavail * fs_info.f_frsize < bytes)
      fail("cache='ram' shared by this machine's ranks needs " + std::to_string(bytes >> 20) + " MiB in /dev/shm but " +
           std::to_string(((uint64_t)fs_info.f_bavail * fs_info.f_frsize) >> 20) +
           " MiB are free there: enlarge /dev/shm (docker: --shm-size), or train with cache=false or cache=disk");
    shm_unlink(name.c_str());  // a leftover of a killed run with the same port
  }
  const int fd = owner ? shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600) : shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0)
    fail("cache='ram': cannot " + std::string(owner ? "create" : "open") + " the shared image cache " + name + ": " +
         std::strerror(errno) + (owner ? "" : " (local rank 0 makes it; did it fail?)"));
  struct stat st {};
  if ((owner && ftruncate(fd, (off_t)std::max<uint64_t>(bytes, 1)) != 0) || fstat(fd, &st) != 0 ||
      (uint64_t)st.st_size != std::max<uint64_t>(bytes, 1)) {
    const std::string why = std::strerror(errno);
    close(fd);
    fail("cache='ram': the shared image cache " + name + " has the wrong size (" + why +
         "): every rank of a machine must train on the same data and imgsz");
  }
  const size_t len = std::max<uint64_t>(bytes, 1);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, owner ? MAP_SHARED : MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) fail("cache='ram': cannot map the shared image cache " + name + ": " + std::strerror(errno));
  shared_ = std::shared_ptr<void>(p, [len](void* q) { munmap(q, len); });
  ram_.resize(size());
  uint8_t* base = (uint8_t*)p;
  for (size_t i = 0; i < size(); ++i) {
    const cv::Size s = resized_size(i);
    ram_[i] = cv::Mat(s.height, s.width, CV_8UC3, base);
    base += (size_t)s.width * s.height * 3;
  }
}

uint64_t Dataset::ram_cache_bytes() const {
  uint64_t n = 0;
  for (const auto& m : ram_) n += (uint64_t)m.total() * m.elemSize();
  return n;
}

void Dataset::unlink_shared_cache() const {
  if (shared_ && opt_.shared_cache_owner) shm_unlink(opt_.shared_cache.c_str());
}

void Dataset::fill_ram_cache() {
  uint64_t need = 0;
  for (size_t i = 0; i < size(); ++i) { cv::Size s = resized_size(i); need += (uint64_t)s.width * s.height * 3; }
  if (!opt_.shared_cache.empty()) {
    map_shared_cache(need);
    if (!opt_.shared_cache_owner) {
      if (opt_.verbose) std::cerr << "yolo26: mapped the shared RAM cache of " << size() << " images (" << (need >> 20) << " MiB)\n";
      return;
    }
  }
  uint64_t avail = available_memory_bytes();
  // Same margin as the official check: the cache plus 50% must fit in the memory available now.
  if (avail && need * 3 / 2 > avail && shared_) {  // the other ranks wait for these images: fail, do not skip
    unlink_shared_cache();
    fail("cache='ram' needs " + std::to_string(need >> 20) + " MiB (+50% margin) but only " + std::to_string(avail >> 20) +
         " MiB are available; train with cache=false or cache=disk");
  }
  if (avail && need * 3 / 2 > avail) {
    if (opt_.verbose)
      std::cerr << "yolo26: warning: cache='ram' needs " << (need >> 20) << " MiB (+50% margin) but only " << (avail >> 20)
                << " MiB are available; not caching images\n";
    opt_.cache = CacheMode::None;
    return;
  }
  std::vector<cv::Mat> cache = shared_ ? ram_ : std::vector<cv::Mat>(size());
  ram_.clear();  // load_image decodes while the cache fills
  std::atomic<size_t> next{0};
  std::vector<std::string> errors(size());
  auto work = [&] {
    for (size_t i; (i = next++) < size();) {
      try {
        if (shared_) {  // into the mapping (copyTo keeps the destination when size and type match)
          cv::Mat img = decode(i);
          if (img.size() != cache[i].size()) fail("internal: " + labels(i).im_file + " decoded to an unexpected size");
          img.copyTo(cache[i]);
        }
        else cache[i] = decode(i);
      } catch (const std::exception& e) { errors[i] = e.what(); }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, opt_.cache_threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (!e.empty()) {
      unlink_shared_cache();
      fail(e);
    }
  ram_ = std::move(cache);
  if (opt_.verbose) std::cerr << "yolo26: cached " << size() << " images in RAM (" << (need >> 20) << " MiB)\n";
}

}  // namespace y26
