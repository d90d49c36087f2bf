// Data pipeline: data.yaml, label index and cache, label checks, transforms' geometry, determinism, loader.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/loader.h"
#include "data/obb_labels.h"
#include "data/synthetic.h"
#include "testing.h"
#include "util/error.h"
#include "util/npy.h"

#include <yaml-cpp/yaml.h>

namespace fs = std::filesystem;
using namespace y26;

namespace {

std::string tmp_root() {
  static std::string root = [] {
    std::string r = "/tmp/y26_test_data_" + std::to_string(::getpid());
    fs::remove_all(r);
    fs::create_directories(r);
    return r;
  }();
  return root;
}

// A generated detection set (data/synthetic.h) of train + val images of w x h px under the test root; its data.yaml.
std::string synthetic_set(const std::string& name, int train, int val, int w, int h,
                          uint64_t seed = SyntheticOptions{}.seed) {
  SyntheticOptions so;
  so.train_images = train;
  so.val_images = val;
  so.width = w;
  so.height = h;
  so.seed = seed;
  return write_synthetic_dataset(tmp_root() + "/" + name, so);
}

// A fresh folder with images/ and labels/ under the test root.
std::string fresh_dir(const std::string& name) {
  std::string d = tmp_root() + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d + "/images");
  fs::create_directories(d + "/labels");
  return d;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string add_image(const std::string& dir, const std::string& name, const cv::Mat& img, const std::string& labels,
                      bool with_label = true) {
  std::string p = dir + "/images/" + name;
  cv::imwrite(p, img);
  if (with_label) write_text(label_path_for(p), labels);
  return p;
}

cv::Mat plain(int w = 64, int h = 48) { return cv::Mat(h, w, CV_8UC3, cv::Scalar(30, 60, 90)); }

std::string error_of(const std::function<void()>& f) {
  try { f(); } catch (const std::exception& e) { return e.what(); }
  return "";
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

IndexOptions quiet(int nc) {
  IndexOptions o;
  o.nc = nc;
  o.verbose = false;
  return o;
}

// Colour-coded rectangles: class c is drawn in kColours[c] on black, one rectangle per image.
const cv::Scalar kColours[4] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}, {0, 255, 255}};

std::shared_ptr<Dataset> rect_dataset(const std::string& name, int imgsz, int n = 4) {
  std::string d = fresh_dir(name);
  std::vector<std::string> files;
  for (int i = 0; i < n; ++i) {
    int w = 320 + 40 * (i % 3), h = 240 + 30 * (i % 2);
    cv::Mat img(h, w, CV_8UC3, cv::Scalar(0, 0, 0));
    int c = i % 4;
    cv::Rect r(w / 4 + (7 * i) % 20, h / 4 + (11 * i) % 15, w / 2 - 10, h / 2 - 10);  // central: visible in mosaics
    cv::rectangle(img, r, kColours[c], cv::FILLED);
    char lab[128];
    std::snprintf(lab, sizeof lab, "%d %.6f %.6f %.6f %.6f\n", c, (r.x + r.width / 2.0) / w, (r.y + r.height / 2.0) / h,
                  (double)r.width / w, (double)r.height / h);
    files.push_back(add_image(d, "r" + std::to_string(i) + ".png", img, lab));
  }
  IndexOptions io = quiet(4);
  io.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = imgsz;
  dopt.verbose = false;
  return std::make_shared<Dataset>(DatasetIndex::build(files, io), dopt);
}

// Bounding box of the pixels of colour c inside `region` (grown by 3 px); empty when none.
cv::Rect colour_extent(const cv::Mat& img, int c, cv::Rect region) {
  region = cv::Rect(region.x - 3, region.y - 3, region.width + 6, region.height + 6) & cv::Rect(0, 0, img.cols, img.rows);
  cv::Mat m(img.size(), CV_8U, cv::Scalar(0));
  const cv::Vec3b col((uint8_t)kColours[c][0], (uint8_t)kColours[c][1], (uint8_t)kColours[c][2]);
  for (int y = region.y; y < region.y + region.height; ++y)
    for (int x = region.x; x < region.x + region.width; ++x) {
      const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
      int d = 0;
      for (int k = 0; k < 3; ++k) d = std::max(d, std::abs((int)p[k] - (int)col[k]));
      if (d < 100) m.at<uint8_t>(y, x) = 255;  // mostly this colour: more than half-covered edge pixels
    }
  return cv::boundingRect(m);
}

// Every label box must match the extent of its colour's pixels within tol px. Returns the boxes checked.
// skip_border: a rotated/sheared box cut by the image border is only an outer bound of its pixels (official too).
int check_boxes_match_pixels(const Sample& s, float tol, const std::string& what, bool skip_border = false) {
  int checked = 0;
  for (size_t k = 0; k < s.inst.size(); ++k) {
    const float* b = &s.inst.xyxy[4 * k];
    if (skip_border && (b[0] <= 1 || b[1] <= 1 || b[2] >= s.img.cols - 1 || b[3] >= s.img.rows - 1)) continue;
    int c = (int)s.inst.cls[k];
    cv::Rect region((int)std::floor(b[0]), (int)std::floor(b[1]), (int)std::ceil(b[2] - b[0]) + 1, (int)std::ceil(b[3] - b[1]) + 1);
    cv::Rect e = colour_extent(s.img, c, region);
    bool ok = e.area() > 0 && std::fabs(e.x - b[0]) <= tol && std::fabs(e.y - b[1]) <= tol &&
              std::fabs(e.x + e.width - b[2]) <= tol && std::fabs(e.y + e.height - b[3]) <= tol;
    EXPECT_MSG(ok, what << ": box " << k << " class " << c << " label [" << b[0] << "," << b[1] << "," << b[2] << ","
                        << b[3] << "] vs pixels [" << e.x << "," << e.y << "," << e.x + e.width << "," << e.y + e.height << "]");
    ++checked;
  }
  return checked;
}

bool same(const torch::Tensor& a, const torch::Tensor& b) {
  return a.defined() && b.defined() && a.sizes() == b.sizes() && a.equal(b);
}

}  // namespace

// ---- data.yaml ---------------------------------------------------------------------------------------------------
TEST_CASE("data.yaml: path relative to the yaml, names map, txt lists, kpt_shape") {
  std::string d = fresh_dir("yaml");
  fs::create_directories(d + "/ds/images/train");
  fs::create_directories(d + "/ds/images/val");
  cv::imwrite(d + "/ds/images/train/a.png", plain());
  cv::imwrite(d + "/ds/images/train/b.jpg", plain());
  cv::imwrite(d + "/ds/images/val/c.png", plain());
  write_text(d + "/ds/val.txt", "./images/val/c.png\n");
  write_text(d + "/data.yaml", "path: ds\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n"
                               "kpt_shape: [2, 3]\nflip_idx: [1, 0]\n");
  DataConfig c = load_data_yaml(d + "/data.yaml");
  EXPECT(c.nc == 2);
  EXPECT(c.names.size() == 2 && c.names[1] == "dog");
  EXPECT(c.root == fs::weakly_canonical(d + "/ds").string());
  EXPECT(c.kpt_count == 2 && c.kpt_dims == 3 && c.flip_idx == std::vector<int>({1, 0}));
  auto train = list_image_files(c.train);
  EXPECT(train.size() == 2);
  auto val = list_image_files(c.val);
  EXPECT(val.size() == 1 && contains(val[0], "images/val/c.png"));
  EXPECT(label_path_for("/x/images/train/a.b.jpg") == "/x/labels/train/a.b.txt");

  EXPECT(c.kpt_oks_sigmas.empty());  // the defaults
  write_text(d + "/sig.yaml", "path: ds\ntrain: images/train\nnames: [a]\nkpt_shape: [2, 3]\nkpt_oks_sigmas: [0.1, 0.2]\n");
  EXPECT(load_data_yaml(d + "/sig.yaml").kpt_oks_sigmas == std::vector<double>({0.1, 0.2}));
  write_text(d + "/sig3.yaml", "path: ds\ntrain: images/train\nnames: [a]\nkpt_shape: [2, 3]\nkpt_oks_sigmas: [0.1, 0.2, 0.3]\n");
  std::string se = error_of([&] { load_data_yaml(d + "/sig3.yaml"); });
  EXPECT_MSG(contains(se, "sig3.yaml") && contains(se, "kpt_oks_sigmas") && contains(se, "3 entries"), se);
  write_text(d + "/sig0.yaml", "path: ds\ntrain: images/train\nnames: [a]\nkpt_shape: [2, 3]\nkpt_oks_sigmas: [0.1, 0]\n");
  se = error_of([&] { load_data_yaml(d + "/sig0.yaml"); });
  EXPECT_MSG(contains(se, "sig0.yaml") && contains(se, "kpt_oks_sigmas") && contains(se, "> 0"), se);

  write_text(d + "/bad.yaml", "train: images/train\nnc: 3\nnames: [a, b]\n");
  std::string e = error_of([&] { load_data_yaml(d + "/bad.yaml"); });
  EXPECT_MSG(contains(e, "bad.yaml") && contains(e, "nc"), e);
  e = error_of([&] { list_image_files({d + "/nowhere"}, "train"); });
  EXPECT_MSG(contains(e, "nowhere"), e);
}

// ---- index and cache ---------------------------------------------------------------------------------------------
TEST_CASE("index: background, empty, duplicates, corrupt image; cache hit and invalidation") {
  std::string d = fresh_dir("index");
  std::vector<std::string> files;
  files.push_back(add_image(d, "a.png", plain(), "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n0 0.5 0.5 0.2 0.2\n"));
  files.push_back(add_image(d, "bg.png", plain(), "", false));  // no label file: background
  files.push_back(add_image(d, "empty.png", plain(), "\n"));
  std::string bad = d + "/images/broken.jpg";
  write_text(bad, "this is not a jpeg");
  write_text(label_path_for(bad), "0 0.5 0.5 0.1 0.1\n");
  files.push_back(bad);
  std::string trunc = d + "/images/truncated.jpg";
  {
    std::vector<uchar> buf;
    cv::imencode(".jpg", plain(200, 200), buf);
    std::ofstream(trunc, std::ios::binary).write((const char*)buf.data(), buf.size() / 2);
  }
  files.push_back(trunc);

  DatasetIndex idx = DatasetIndex::build(files, quiet(2));
  const IndexSummary& s = idx.summary;
  EXPECT(!s.from_cache);
  EXPECT(s.found == 1 && s.missing == 1 && s.empty == 1 && s.corrupt == 2 && s.duplicates == 1);
  EXPECT(idx.items.size() == 3);
  EXPECT(idx.items[0].count() == 2);         // duplicate row removed
  EXPECT(idx.items[1].count() == 0);         // background image kept, no labels
  EXPECT(idx.items[0].width == 64 && idx.items[0].height == 48);
  bool warned_broken = false, warned_trunc = false;
  for (auto& w : s.warnings) { warned_broken |= contains(w, "broken.jpg"); warned_trunc |= contains(w, "truncated.jpg"); }
  EXPECT(warned_broken && warned_trunc);
  EXPECT(contains(s.line(), "1 with labels") && contains(s.line(), "2 corrupt"));
  EXPECT(fs::exists(s.cache_file));

  DatasetIndex again = DatasetIndex::build(files, quiet(2));
  EXPECT(again.summary.from_cache);
  EXPECT(again.items.size() == 3 && again.items[0].boxes == idx.items[0].boxes && again.summary.corrupt == 2);

  // Changing a label file (size and mtime) invalidates the cache.
  write_text(label_path_for(files[0]), "1 0.5 0.5 0.3 0.3\n");
  DatasetIndex changed = DatasetIndex::build(files, quiet(2));
  EXPECT(!changed.summary.from_cache);
  EXPECT(changed.items[0].count() == 1 && changed.items[0].cls[0] == 1);
  // A different nc is a different index too.
  EXPECT(index_hash(files, quiet(2)) != index_hash(files, quiet(3)));
}

TEST_CASE("index: bad labels are errors naming file and line (or skipped when not strict)") {
  struct Case { std::string text, expect; };
  std::vector<Case> cases = {
      {"0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n", "class 3"},     // class out of range
      {"0 0.5 0.5 0.2\n", "columns"},                           // malformed: 4 columns
      {"0 0.5 0.5 0.2 0.2 0.1\n", "columns"},                   // malformed: 6 columns
      {"0 0.5 zero 0.2 0.2\n", "not a number"},                 // malformed: text
      {"0 0.5 0.5 0.2 0.2\n\n1 1.30 0.5 0.2 0.2\n", "outside [0, 1]"},  // coordinates out of range
  };
  int k = 0;
  for (auto& c : cases) {
    std::string d = fresh_dir("badlabel" + std::to_string(k++));
    std::string img = add_image(d, "x.png", plain(), c.text);
    std::string good = add_image(d, "y.png", plain(), "1 0.5 0.5 0.2 0.2\n");
    std::string e = error_of([&] { DatasetIndex::build({img, good}, quiet(3)); });
    int line = c.expect == "outside [0, 1]" ? 3 : c.expect == "class 3" ? 2 : 1;
    EXPECT_MSG(contains(e, "labels/x.txt:" + std::to_string(line) + ":") && contains(e, c.expect), "got: " << e);
    IndexOptions lenient = quiet(3);
    lenient.strict = false;
    DatasetIndex idx = DatasetIndex::build({img, good}, lenient);
    EXPECT(idx.items.size() == 1 && idx.summary.corrupt == 1);
    EXPECT(!idx.summary.warnings.empty() && contains(idx.summary.warnings[0], "x.txt"));
  }
  // Small drift past the borders is tolerated and clipped.
  std::string d = fresh_dir("drift");
  std::string img = add_image(d, "x.png", plain(), "0 0.5 0.5 1.005 0.2\n");
  DatasetIndex idx = DatasetIndex::build({img}, quiet(1));
  EXPECT(idx.items[0].boxes[2] == 1.0f);
}

TEST_CASE("index: pose rows and polygon rows") {
  std::string d = fresh_dir("posepoly");
  std::string img = add_image(d, "p.png", plain(100, 100), "0 0.5 0.5 0.4 0.4 0.4 0.45 2 0.6 0.55 0\n");
  IndexOptions o = quiet(1);
  o.kpt_count = 2;
  o.kpt_dims = 3;
  DatasetIndex idx = DatasetIndex::build({img}, o);
  EXPECT(idx.items[0].keypoints.size() == 6 && idx.items[0].keypoints[2] == 2.f && idx.items[0].keypoints[3] == 0.6f);
  std::string e = error_of([&] { DatasetIndex::build({add_image(d, "q.png", plain(), "0 0.5 0.5 0.4 0.4 0.4 0.45\n")}, o); });
  EXPECT_MSG(contains(e, "q.txt:1") && contains(e, "pose"), e);

  std::string d2 = fresh_dir("polygon");
  std::string im2 = add_image(d2, "s.png", plain(100, 100), "1 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.5 0.5 0.2 0.2\n");
  DatasetIndex si = DatasetIndex::build({im2}, quiet(2));
  const ImageLabels& L = si.items[0];
  EXPECT(L.segments.size() == 2 && L.segments[0].size() == 6 && L.segments[1].empty());
  EXPECT_NEAR(L.boxes[0], 0.3, 1e-6);  // polygon extent x 0.1..0.5
  EXPECT_NEAR(L.boxes[3], 0.4, 1e-6);  // y 0.2..0.6
}

// ---- images ------------------------------------------------------------------------------------------------------
TEST_CASE("image_io: turbojpeg decode equals OpenCV's; scaled decode; probe") {
  std::string jpg = y26test::fixture("images/jpeg_originals/wide_480x300.jpg");
  cv::Mat ours = read_image_bgr(jpg);
  cv::Mat png = cv::imread(y26test::fixture("images/extra/wide_480x300.png"), cv::IMREAD_COLOR);
  EXPECT(ours.size() == png.size());
  double maxdiff = cv::norm(ours, png, cv::NORM_INF);
  EXPECT_MSG(maxdiff <= 1, "turbojpeg vs cv2 decode max diff " << maxdiff);
  cv::Mat half = read_image_bgr(jpg, 240);  // 1/2 scale still reaches 240
  EXPECT(half.cols == 240 && half.rows == 150);
  ImageInfo info = probe_image(jpg);
  EXPECT(info.width == 480 && info.height == 300 && info.format == "jpeg");
  EXPECT(probe_image(y26test::fixture("images/extra/wide_480x300.png")).format == "png");
}

TEST_CASE("non-augmented batch equals the official loss fixture batch") {
  std::vector<std::string> files = {y26test::fixture("images/val/s11_val_0000.png"),
                                    y26test::fixture("images/val/s11_val_0001.png"),
                                    y26test::fixture("images/val/s11_val_0002.png"),
                                    y26test::fixture("images/extra/wide_480x300.png")};
  IndexOptions io = quiet(3);
  io.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = 320;
  dopt.verbose = false;
  auto ds = std::make_shared<Dataset>(DatasetIndex::build(files, io), dopt);
  LoaderOptions lo;
  lo.batch = 4;
  lo.workers = 1;
  lo.shuffle = false;
  lo.augment = false;
  DataLoader loader(ds, lo);
  Batch b;
  EXPECT(loader.next(b));
  NpyArray img = read_npy(y26test::fixture("loss/batch_img_u8.npy"));
  EXPECT(b.img.sizes() == torch::IntArrayRef({4, 3, 320, 320}));
  torch::Tensor ref = torch::from_blob(img.bytes.data(), {4, 3, 320, 320}, torch::kUInt8).clone();
  int64_t maxdiff = (b.img.to(torch::kInt32) - ref.to(torch::kInt32)).abs().max().item<int64_t>();
  EXPECT_MSG(maxdiff <= 1, "image max diff vs official batch " << maxdiff);
  auto cls = read_npy(y26test::fixture("loss/batch_cls.npy")).as_float();
  auto box = read_npy(y26test::fixture("loss/batch_bboxes_xywhn.npy")).as_float();
  auto bi = read_npy(y26test::fixture("loss/batch_batch_idx.npy")).as_float();
  EXPECT(b.cls.size(0) == (int64_t)cls.size());
  for (size_t i = 0; i < cls.size() && i < (size_t)b.cls.size(0); ++i) {
    EXPECT(b.cls[i][0].item<float>() == cls[i]);
    EXPECT(b.batch_idx[i].item<float>() == bi[i]);
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(b.bboxes[i][k].item<float>(), box[4 * i + k], 1e-5);
  }
  // What the validator needs to map predictions back: wide image 480x300 -> 320x200, 60 px top padding.
  EXPECT(b.ori_shape[3] == (std::array<int, 2>{300, 480}));
  EXPECT(b.resized_shape[3] == (std::array<int, 2>{320, 320}));
  EXPECT_NEAR(b.ratio_pad[3][0], 2.0 / 3, 1e-9);
  EXPECT_NEAR(b.ratio_pad[3][3], 60, 1e-9);
  EXPECT(!loader.next(b));  // one batch per epoch
}

TEST_CASE("val rect batch shapes: 320 imgsz, batch 8 -> 352x352; wide -> 352x224") {
  std::vector<size_t> order;
  auto sq = rect_batch_shapes(std::vector<cv::Size>(8, cv::Size(320, 320)), 8, 320, 32, 0.5f, &order);
  EXPECT(sq.size() == 1 && sq[0] == cv::Size(352, 352));
  std::vector<cv::Size> mixed = {{320, 320}, {480, 300}, {300, 480}, {480, 300}};
  auto sh = rect_batch_shapes(mixed, 2, 320, 32, 0.5f, &order);
  EXPECT(order == std::vector<size_t>({1, 3, 0, 2}));  // sorted by h/w, stable
  EXPECT(sh.size() == 2 && sh[0] == cv::Size(352, 224) && sh[1] == cv::Size(352, 352));

  // Through the loader: the wide fixture image alone gets a 224x352 batch, letterboxed 16 px left, 12 px top.
  IndexOptions io = quiet(3);
  io.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = 320;
  dopt.verbose = false;
  auto ds = std::make_shared<Dataset>(DatasetIndex::build({y26test::fixture("images/extra/wide_480x300.png")}, io), dopt);
  LoaderOptions lo;
  lo.batch = 8;
  lo.workers = 1;
  lo.rect = true;
  DataLoader loader(ds, lo);
  Batch b;
  EXPECT(loader.next(b));
  EXPECT(b.img.sizes() == torch::IntArrayRef({1, 3, 224, 352}));
  EXPECT_NEAR(b.ratio_pad[0][2], 16, 1e-9);
  EXPECT_NEAR(b.ratio_pad[0][3], 12, 1e-9);
  EXPECT(b.img[0][0][0][0].item<uint8_t>() == 114);
}

// ---- transform geometry ------------------------------------------------------------------------------------------
TEST_CASE("mosaic + perspective (fast path): boxes match the drawn pixels") {
  auto ds = rect_dataset("geo_fast", 320);
  AugmentConfig cfg = AugmentConfig::none();
  cfg.mosaic = 1;
  cfg.scale = 0.5f;
  cfg.translate = 0.1f;
  TrainAugmenter aug(ds, cfg);
  int checked = 0;
  for (int i = 0; i < 12; ++i) {
    Sample s = aug.make(i % ds->size(), 1000 + i, true);
    EXPECT(s.img.rows == 320 && s.img.cols == 320);
    checked += check_boxes_match_pixels(s, 2.0f, "mosaic fast #" + std::to_string(i));
  }
  EXPECT_MSG(checked >= 12, "only " << checked << " boxes checked");
}

TEST_CASE("mosaic + rotation/shear (canvas path), letterbox + perspective, flips: boxes match pixels") {
  auto ds = rect_dataset("geo_general", 256, 6);
  int checked = 0;
  {
    AugmentConfig cfg = AugmentConfig::none();
    cfg.mosaic = 1;
    cfg.scale = 0.3f;
    cfg.translate = 0.1f;
    cfg.shear = 3;  // rotation of an axis-aligned rectangle: its pixel extent is the rotated corners' extent
    TrainAugmenter aug(ds, cfg);
    for (int i = 0; i < 8; ++i) checked += check_boxes_match_pixels(aug.make(i % ds->size(), 7 + i, true), 2.5f, "mosaic shear", true);
  }
  {
    AugmentConfig cfg = AugmentConfig::none();
    cfg.degrees = 10;
    cfg.scale = 0.1f;
    cfg.fliplr = 1;
    cfg.flipud = 1;
    TrainAugmenter aug(ds, cfg);
    for (int i = 0; i < 6; ++i) {
      Sample s = aug.make(i, 50 + i, true);  // mosaic probability 0: letterbox + perspective
      EXPECT(s.inst.size() <= 1);
      // A rotated rectangle's pixel extent equals the extent of its rotated corners (within interpolation).
      checked += check_boxes_match_pixels(s, 2.5f, "letterbox rotate flip", true);
    }
  }
  {
    // Plain flips of the letterboxed image, exactly.
    Sample s = letterbox_sample(*ds, 1, {256, 256}, false);
    flip_sample(s, true, 0, 0, {});
    checked += check_boxes_match_pixels(s, 1.0f, "fliplr");
    flip_sample(s, false, 0, 0, {});
    checked += check_boxes_match_pixels(s, 1.0f, "flipud");
  }
  EXPECT_MSG(checked >= 10, "only " << checked << " boxes checked");
}

TEST_CASE("write_planes: HSV jitter and flips in one pass equal apply_hsv + cv::flip + split within 1 level") {
  cv::Mat img(97, 301, CV_8UC3);  // odd sizes: partial chunks and rows
  cv::RNG r(5);
  r.fill(img, cv::RNG::UNIFORM, 0, 256);
  // Flat areas, greys, saturated primaries and near-black pixels: the hue/saturation edge cases.
  img(cv::Rect(0, 0, 40, 30)).setTo(cv::Scalar(128, 128, 128));
  img(cv::Rect(40, 0, 40, 30)).setTo(cv::Scalar(255, 0, 0));
  img(cv::Rect(80, 0, 40, 30)).setTo(cv::Scalar(0, 0, 255));
  img(cv::Rect(120, 0, 40, 30)).setTo(cv::Scalar(1, 0, 2));
  img(cv::Rect(160, 0, 40, 30)).setTo(cv::Scalar(0, 255, 255));
  AugmentConfig def;
  int64_t total = 0, differ = 0;
  int worst = 0;
  for (int t = 0; t < 24; ++t) {
    SampleRng rng(100 + t);
    PendingPixels p;
    p.hsv = t % 8 == 7 ? HsvShift{} : draw_hsv(def.hsv_h, def.hsv_s, def.hsv_v, rng);
    if (t % 4 == 1) p.hsv.h = -p.hsv.h;  // negative and positive hue shifts, both wrap-arounds
    p.flip_lr = t % 2 == 1;
    p.flip_ud = t % 3 == 2;
    const bool keep_bgr = t % 5 == 4;
    cv::Mat ref = img.clone();
    apply_hsv(ref, p.hsv);
    if (p.flip_ud) cv::flip(ref, ref, 0);
    if (p.flip_lr) cv::flip(ref, ref, 1);
    std::vector<uint8_t> planes(3 * img.total());
    write_planes(img, p, keep_bgr, planes.data());
    for (int c = 0; c < 3; ++c) {
      const int src_c = keep_bgr ? c : 2 - c;
      for (int y = 0; y < img.rows; ++y)
        for (int x = 0; x < img.cols; ++x) {
          int d = std::abs((int)planes[c * img.total() + y * img.cols + x] - (int)ref.at<cv::Vec3b>(y, x)[src_c]);
          worst = std::max(worst, d);
          differ += d != 0;
          ++total;
        }
    }
  }
  EXPECT_MSG(worst <= 1, "write_planes differs from the reference by up to " << worst << " levels");
  // OpenCV's HSV->BGR truncates in its vector body but rounds in each row's last few pixels (13 of these 301);
  // ours truncates throughout. So a few per cent differ by one level; 640-px rows (no remainder) differ in ~0.02 %.
  EXPECT_MSG(differ * 100 < total * 3, differ << " of " << total << " values differ by 1 (more than 3 %)");
}

// The fixture holds a small set (image sizes and labels; flat grey pixels) and the label statistics the official
// training loader produced from it (scripts/fixtures/official_label_stats.py). Ours must match each mean within
// 4.5 standard errors of the difference (samples treated as the independent unit).
TEST_CASE("augmented label statistics match the official loader's (mosaic, perspective, flips)") {
  YAML::Node fx = YAML::LoadFile(y26test::fixture("label_stats/official.json"));
  const int imgsz = fx["imgsz"].as<int>();
  std::string d = fresh_dir("label_stats");
  std::vector<std::string> files;
  int i = 0;
  for (const auto& im : fx["images"]) {
    std::ostringstream lab;
    for (const auto& row : im["labels"])
      lab << row[0].as<int>() << " " << row[1].as<double>() << " " << row[2].as<double>() << " " << row[3].as<double>()
          << " " << row[4].as<double>() << "\n";
    char name[32];
    std::snprintf(name, sizeof name, "%03d.jpg", i++);
    files.push_back(add_image(d, name, cv::Mat(im["height"].as<int>(), im["width"].as<int>(), CV_8UC3, cv::Scalar::all(114)), lab.str()));
  }
  DatasetOptions dopt;
  dopt.imgsz = imgsz;
  dopt.verbose = false;
  auto ds = std::make_shared<Dataset>(DatasetIndex::build(files, quiet(3)), dopt);
  LoaderOptions lo;
  lo.batch = 16;
  lo.workers = 2;
  lo.seed = 3;
  DataLoader loader(ds, lo);
  const YAML::Node off = fx["official"];
  const int64_t want = off["samples"].as<int64_t>();
  std::vector<double> counts;
  std::vector<std::array<double, 5>> boxes;  // cx, cy, w, h, area
  Batch b;
  for (int epoch = 0; (int64_t)counts.size() < want; ++epoch) {
    loader.set_epoch(epoch);
    while ((int64_t)counts.size() < want && loader.next(b)) {
      std::vector<double> c(b.size(), 0.0);
      for (int64_t k = 0; k < b.batch_idx.size(0); ++k) {
        c[(size_t)b.batch_idx[k].item<float>()] += 1;
        auto x = b.bboxes[k];
        double w = x[2].item<float>(), h = x[3].item<float>();
        boxes.push_back({x[0].item<float>(), x[1].item<float>(), w, h, w * h});
      }
      counts.insert(counts.end(), c.begin(), c.end());
    }
  }
  auto compare = [&](const std::string& name, const std::vector<double>& v) {
    double mean = 0, sq = 0;
    for (double x : v) mean += x;
    mean /= v.size();
    for (double x : v) sq += (x - mean) * (x - mean);
    const double sd = std::sqrt(sq / v.size());
    const double om = off[name]["mean"].as<double>(), osd = off[name]["std"].as<double>();
    const double se = std::sqrt(sd * sd / counts.size() + osd * osd / want);
    EXPECT_MSG(std::fabs(mean - om) <= 4.5 * se, name << ": ours " << mean << " (sd " << sd << "), official " << om
                                                       << " (sd " << osd << "), allowed difference " << 4.5 * se);
  };
  compare("boxes_per_image", counts);
  const char* names[5] = {"cx", "cy", "w", "h", "area"};
  for (int k = 0; k < 5; ++k) {
    std::vector<double> v;
    for (auto& x : boxes) v.push_back(x[k]);
    compare(names[k], v);
  }
}

TEST_CASE("keypoints and polygons follow the transforms; flip_idx swaps left/right") {
  std::string d = fresh_dir("kpts");
  std::string img = add_image(d, "k.png", plain(200, 100), "0 0.5 0.5 0.4 0.4 0.30 0.40 2 0.70 0.60 1\n");
  IndexOptions o = quiet(1);
  o.kpt_count = 2;
  o.kpt_dims = 3;
  o.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = 200;
  dopt.verbose = false;
  Dataset ds(DatasetIndex::build({img}, o), dopt, 2, 3, {1, 0});
  Sample s = letterbox_sample(ds, 0, {200, 200}, false);  // 200x100 -> padded 50 px top
  EXPECT_NEAR(s.inst.kpts[0], 60, 1e-4);
  EXPECT_NEAR(s.inst.kpts[1], 90, 1e-4);
  flip_sample(s, true, 2, 3, ds.flip_idx());
  // Keypoint 0 is now the mirrored old keypoint 1 (x 140 -> 60, y 110), with its visibility.
  EXPECT_NEAR(s.inst.kpts[0], 200 - 140, 1e-4);
  EXPECT_NEAR(s.inst.kpts[1], 110, 1e-4);
  EXPECT(s.inst.kpts[2] == 1.f);
  EXPECT_NEAR(s.inst.kpts[3], 200 - 60, 1e-4);
  // Keypoints pushed out of the image become invisible.
  Instances in = s.inst;
  cv::Matx33d shift(1, 0, 100, 0, 1, 0, 0, 0, 1);
  transform_instances(in, shift, {200, 200}, 1.0, false, 3);
  EXPECT(in.size() == 1 && in.kpts[5] == 0.f && in.kpts[2] == 1.f);

  // Polygons: the box follows the transformed polygon's extent.
  Instances poly;
  poly.cls = {0};
  poly.xyxy = {10, 10, 50, 30};
  poly.segs = {{{10, 10}, {50, 10}, {30, 30}}};
  cv::Matx33d scale2(2, 0, 5, 0, 2, 7, 0, 0, 1);
  transform_instances(poly, scale2, {200, 200}, 2.0, false, 0);
  EXPECT(poly.size() == 1);
  EXPECT_NEAR(poly.xyxy[0], 25, 1e-4);
  EXPECT_NEAR(poly.xyxy[3], 67, 1e-4);
  EXPECT_NEAR(poly.segs[0][2].x, 65, 1e-4);
  // Box filter: a box squeezed below 2 px is dropped.
  Instances tiny;
  tiny.cls = {0};
  tiny.xyxy = {10, 10, 12, 30};
  transform_instances(tiny, cv::Matx33d::eye(), {100, 100}, 1.0, false, 0);
  EXPECT(tiny.size() == 0);
}

// ---- determinism, mosaic, loader ---------------------------------------------------------------------------------
TEST_CASE("seeded batches: same seed identical, different seed different") {
  std::string yaml = synthetic_set("synth_det", 24, 4, 160, 120, 3);
  DataConfig cfg = load_data_yaml(yaml);
  DatasetOptions dopt;
  dopt.imgsz = 128;
  dopt.fast_decode = true;
  dopt.verbose = false;
  IndexOptions io;
  io.verbose = false;
  auto ds = Dataset::open(cfg, "train", dopt, io);
  EXPECT(ds->size() == 24);
  auto run = [&](uint64_t seed) {
    LoaderOptions lo;
    lo.batch = 6;
    lo.workers = 2;
    lo.seed = seed;
    lo.hyp.mixup = 0.5f;
    lo.hyp.cutmix = 0.5f;
    DataLoader dl(ds, lo);
    std::vector<Batch> out;
    Batch b;
    while (dl.next(b)) out.push_back(b);
    return out;
  };
  auto a = run(1), b = run(1), c = run(2);
  EXPECT(a.size() == 4 && b.size() == 4 && c.size() == 4);
  bool all_same = true, any_diff = false;
  for (size_t i = 0; i < a.size() && i < b.size() && i < c.size(); ++i) {
    all_same &= same(a[i].img, b[i].img) && same(a[i].bboxes, b[i].bboxes) && same(a[i].cls, b[i].cls);
    any_diff |= !same(a[i].img, c[i].img);
  }
  EXPECT(all_same);
  EXPECT(any_diff);
}

// Training decodes JPEGs like OpenCV (so like the official loader and our validation): the fast integer DCT it
// used before was 0.8 grey levels darker on average.
TEST_CASE("training-path JPEG decode equals cv::imread when no DCT scaling applies") {
  std::string yaml = synthetic_set("synth_decode", 3, 1, 160, 120, 5);
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(yaml).parent_path() / "images" / "train")) {
    const std::string f = e.path().string();
    cv::Mat ours = read_image_bgr(f, 160), ref = cv::imread(f, cv::IMREAD_COLOR);
    EXPECT(ours.size() == ref.size());
    if (ours.size() == ref.size()) EXPECT_MSG(cv::norm(ours, ref, cv::NORM_INF) == 0, f << " decodes differently");
    ++checked;
  }
  EXPECT(checked == 3);
}

// Y26_DUMP_DIR=/some/dir writes a training batch with its boxes drawn, for eyeballing the augmentation.
TEST_CASE("training batch: boxes inside the image, sizes and dtypes (optional preview dump)") {
  std::string yaml = synthetic_set("synth_preview", 16, 1, 320, 240);
  DatasetOptions dopt;
  dopt.imgsz = 256;
  dopt.fast_decode = true;
  dopt.verbose = false;
  IndexOptions io;
  io.verbose = false;
  auto ds = Dataset::open(load_data_yaml(yaml), "train", dopt, io);
  LoaderOptions lo;
  lo.batch = 8;
  lo.workers = 2;
  lo.hyp.mixup = 0.2f;
  DataLoader dl(ds, lo);
  Batch b;
  EXPECT(dl.next(b));
  EXPECT(b.img.sizes() == torch::IntArrayRef({8, 3, 256, 256}));
  EXPECT(b.cls.dtype() == torch::kFloat32 && b.bboxes.dim() == 2 && b.bboxes.size(1) == 4);
  EXPECT(b.cls.size(0) > 8);  // mosaics of 1-4 shapes per image
  auto bx = b.bboxes;
  EXPECT((bx.select(1, 2) > 0).all().item<bool>() && (bx.select(1, 3) > 0).all().item<bool>());
  auto x1 = bx.select(1, 0) - bx.select(1, 2) / 2, x2 = bx.select(1, 0) + bx.select(1, 2) / 2;
  EXPECT((x1 >= -1e-5).all().item<bool>() && (x2 <= 1 + 1e-5).all().item<bool>());
  EXPECT((b.cls >= 0).all().item<bool>() && (b.cls < 3).all().item<bool>());
  const char* dump = std::getenv("Y26_DUMP_DIR");
  if (!dump) return;
  for (int i = 0; i < b.size(); ++i) {
    torch::Tensor chw = b.img[i].permute({1, 2, 0}).contiguous();
    cv::Mat rgb(256, 256, CV_8UC3, chw.data_ptr<uint8_t>()), bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    for (int64_t k = 0; k < b.cls.size(0); ++k) {
      if (b.batch_idx[k].item<float>() != i) continue;
      float cx = b.bboxes[k][0].item<float>() * 256, cy = b.bboxes[k][1].item<float>() * 256;
      float w = b.bboxes[k][2].item<float>() * 256, h = b.bboxes[k][3].item<float>() * 256;
      cv::rectangle(bgr, cv::Point2f(cx - w / 2, cy - h / 2), cv::Point2f(cx + w / 2, cy + h / 2), cv::Scalar(255, 255, 255));
    }
    cv::imwrite(std::string(dump) + "/batch_" + std::to_string(i) + ".png", bgr);
  }
}

TEST_CASE("close_mosaic: epochs-based and set_mosaic(false)") {
  auto ds = rect_dataset("closemosaic", 128, 8);
  LoaderOptions lo;
  lo.batch = 8;
  lo.workers = 2;
  lo.epochs = 3;
  lo.hyp = AugmentConfig::none();
  lo.hyp.mosaic = 1;
  lo.hyp.scale = 0.5f;
  lo.hyp.close_mosaic = 1;
  DataLoader dl(ds, lo);
  EXPECT(dl.mosaic_enabled(1) && !dl.mosaic_enabled(2));
  // One rectangle per image: mosaic gives more labels than images, no mosaic at most one per image.
  std::vector<int64_t> labels_per_epoch;
  for (int e = 0; e < 3; ++e) {
    dl.set_epoch(e);
    Batch b;
    int64_t n = 0;
    while (dl.next(b)) { n += b.cls.size(0); EXPECT(b.epoch == e); }
    labels_per_epoch.push_back(n);
  }
  EXPECT_MSG(labels_per_epoch[0] > 8 && labels_per_epoch[1] > 8, labels_per_epoch[0] << " " << labels_per_epoch[1]);
  EXPECT_MSG(labels_per_epoch[2] <= 8, labels_per_epoch[2]);

  LoaderOptions lo2 = lo;
  lo2.epochs = 0;
  DataLoader dl2(ds, lo2);
  Batch b;
  EXPECT(dl2.next(b) && b.cls.size(0) > 8);
  dl2.set_epoch(1);
  dl2.close_mosaic();
  EXPECT(dl2.next(b) && b.cls.size(0) <= 8 && b.epoch == 1);
}

TEST_CASE("loader: each sample once per epoch, new order per epoch, wait stats, one decode per sample") {
  std::string yaml = synthetic_set("synth_small", 10, 2, 96, 80);
  DatasetOptions dopt;
  dopt.imgsz = 96;
  dopt.verbose = false;
  IndexOptions io;
  io.verbose = false;
  auto ds = Dataset::open(load_data_yaml(yaml), "train", dopt, io);
  LoaderOptions lo;
  lo.batch = 3;
  lo.workers = 2;
  lo.seed = 5;
  DataLoader dl(ds, lo);
  EXPECT(dl.batches_per_epoch() == 4);
  std::vector<std::vector<int64_t>> orders;
  for (int e = 0; e < 2; ++e) {
    std::vector<int64_t> seen;
    Batch b;
    int batches = 0;
    while (dl.next(b)) {
      ++batches;
      EXPECT(b.img.dtype() == torch::kUInt8 && b.img.size(1) == 3 && b.img.size(2) == 96);
      EXPECT(b.bboxes.size(0) == b.cls.size(0) && b.batch_idx.size(0) == b.cls.size(0));
      EXPECT(b.im_file.size() == (size_t)b.size() && b.wait_ms >= 0);
      seen.insert(seen.end(), b.indices.begin(), b.indices.end());
    }
    EXPECT(batches == 4 && dl.epoch() == e);
    std::set<int64_t> uniq(seen.begin(), seen.end());
    EXPECT(seen.size() == 10 && uniq.size() == 10);
    orders.push_back(seen);
  }
  EXPECT(orders[0] != orders[1]);
  LoaderStats st = dl.stats();
  EXPECT(st.batches == 8 && st.samples == 20 && st.wait_ms_total >= st.wait_ms_max && st.build_ms_total > 0);

  // The mosaic buffer: after warm-up, one decode per sample.
  TrainAugmenter aug(ds, AugmentConfig{}, 16);
  for (int i = 0; i < 30; ++i) aug.make(i % ds->size(), i, true);
  EXPECT_MSG(aug.decodes() <= 33, "decodes " << aug.decodes() << " for 30 samples");

  // A failing worker surfaces as an error naming the file.
  fs::remove(ds->labels(0).im_file);
  LoaderOptions lo3 = lo;
  lo3.shuffle = false;
  DataLoader bad(ds, lo3);
  Batch b;
  std::string e = error_of([&] { bad.next(b); });
  EXPECT_MSG(contains(e, fs::path(ds->labels(0).im_file).filename().string()), e);
}

TEST_CASE("loader device: CUDA batches (pinned, non_blocking) equal CPU batches; clear error without CUDA") {
  auto ds = rect_dataset("device", 128, 4);
  LoaderOptions lo;
  lo.batch = 4;
  lo.workers = 1;
  lo.seed = 9;
  if (!torch::cuda::is_available()) {
    lo.device = "cuda:0";
    std::string e = error_of([&] { DataLoader dl(ds, lo); });
    EXPECT_MSG(contains(e, "CUDA") && contains(e, "cpu"), e);
    return;
  }
  Batch cpu, gpu;
  DataLoader a(ds, lo);
  EXPECT(a.next(cpu));
  lo.device = "cuda:0";
  DataLoader b(ds, lo);
  EXPECT(b.next(gpu));
  EXPECT(gpu.img.is_cuda() && gpu.bboxes.is_cuda());
  EXPECT(same(cpu.img, gpu.img.cpu()) && same(cpu.bboxes, gpu.bboxes.cpu()));
}

TEST_CASE("polygon datasets: batch polygons and segmentation masks") {
  std::string d = fresh_dir("segbatch");
  // A big square and a small triangle inside it, as polygons.
  std::string img = add_image(d, "s.png", plain(128, 128),
                              "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n1 0.4 0.4 0.6 0.4 0.5 0.6\n");
  IndexOptions io = quiet(2);
  io.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = 128;
  dopt.verbose = false;
  auto ds = std::make_shared<Dataset>(DatasetIndex::build({img}, io), dopt);
  EXPECT(ds->has_segments());
  LoaderOptions lo;
  lo.batch = 1;
  lo.workers = 1;
  lo.augment = false;
  DataLoader dl(ds, lo);
  Batch b;
  EXPECT(dl.next(b));
  EXPECT(b.segments.size() == 2 && b.segments[0].size(0) == 4);
  EXPECT_NEAR(b.segments[0][1][0].item<float>(), 0.75, 1e-5);
  torch::Tensor ov = polygon_masks(b, 4, true);
  EXPECT(ov.sizes() == torch::IntArrayRef({1, 32, 32}));
  EXPECT(ov[0][16][16].item<int>() == 2);  // the small triangle is drawn over the square
  EXPECT(ov[0][10][10].item<int>() == 1 && ov[0][2][2].item<int>() == 0);
  torch::Tensor sep = polygon_masks(b, 4, false);
  EXPECT(sep.sizes() == torch::IntArrayRef({2, 32, 32}));
  int64_t area = sep[0].sum().item<int64_t>();
  EXPECT_MSG(area >= 15 * 15 && area <= 18 * 18, "square mask area " << area);
}

// `n` plain 128 x 128 images, each labelled with one class-0 box of half sizes (hu, hv) px turned by `angle` rad
// about the image centre, as a polygon row.
std::vector<std::string> rotated_box_images(const std::string& dir, int n, int hu, int hv, double angle) {
  std::ostringstream row;
  row << "0";
  for (auto [u, v] : {std::pair{hu, hv}, {hu, -hv}, {-hu, -hv}, {-hu, hv}})
    row << " " << (64 + u * std::cos(angle) - v * std::sin(angle)) / 128 << " "
        << (64 + u * std::sin(angle) + v * std::cos(angle)) / 128;
  std::vector<std::string> files;
  for (int i = 0; i < n; ++i) files.push_back(add_image(dir, "r" + std::to_string(i) + ".png", plain(128, 128), row.str() + "\n"));
  return files;
}

TEST_CASE("OBB datasets: boxes cut by the border after mosaic/affine keep their angle; segments are clipped per point") {
  // One long rotated box (64 x 16 px at 0.4 rad) in the middle of a 128 x 128 image, as a polygon row, 4 images.
  const double kA = 0.4, kPi = 3.14159265358979323846;
  std::vector<std::string> files = rotated_box_images(fresh_dir("obbclip"), 4, 32, 8, kA);
  IndexOptions io = quiet(1);
  io.use_cache = false;
  // Angle distance modulo pi/2 (a cut box may turn its short side into the long one: same direction).
  auto off = [&](double a) { double m = std::fmod(std::fabs(a - kA), kPi / 2); return std::min(m, kPi / 2 - m); };
  for (bool mosaic : {true, false}) {
    int cut_obb = 0, bent_seg = 0;
    for (bool obb : {true, false}) {
      DatasetOptions dopt;
      dopt.imgsz = 128;
      dopt.verbose = false;
      dopt.obb = obb;
      auto ds = std::make_shared<Dataset>(DatasetIndex::build(files, io), dopt);
      LoaderOptions lo;
      lo.batch = 4;
      lo.workers = 1;
      lo.hyp = AugmentConfig::none();
      lo.hyp.set("mosaic", mosaic ? 1.0 : 0.0);
      lo.hyp.set("translate", 0.4);
      lo.hyp.set("scale", 0.3);
      for (uint64_t seed = 0; seed < 6; ++seed) {
        lo.seed = seed;
        DataLoader dl(ds, lo);
        Batch b;
        EXPECT(dl.next(b));
        auto rb = batch_rboxes(b, false), xywh = b.bboxes;
        for (int64_t i = 0; i < rb.size(0); ++i) {
          const double x = xywh[i][0].item<double>(), y = xywh[i][1].item<double>();
          const double w = xywh[i][2].item<double>(), h = xywh[i][3].item<double>();
          const bool at_border = x - w / 2 < 1e-3 || y - h / 2 < 1e-3 || x + w / 2 > 1 - 1e-3 || y + h / 2 > 1 - 1e-3;
          const double e = off(rb[i][4].item<double>());
          if (obb) {
            EXPECT_MSG(e < 2e-3, "OBB instance " << i << " (seed " << seed << ") turned by " << e << " rad");
            cut_obb += at_border;
          } else {
            bent_seg += at_border && e > 0.02;
          }
        }
      }
    }
    EXPECT_MSG(cut_obb > 0, "no OBB box crossed the border (mosaic " << mosaic << "): the test proves nothing");
    EXPECT_MSG(bent_seg > 0, "point-wise clipping of a segment dataset should bend cut boxes (mosaic " << mosaic << ")");
  }
}

TEST_CASE("OBB cutmix: pasted rotated boxes are cut to the pasted area (centre within the clipped box), angle kept") {
  const double kA = 0.4, kPi = 3.14159265358979323846;
  // one 80 x 20 px box at 0.4 rad in the middle of each of 8 images
  std::vector<std::string> files = rotated_box_images(fresh_dir("obbcutmix"), 8, 40, 10, kA);
  IndexOptions io = quiet(1);
  io.use_cache = false;
  DatasetOptions dopt;
  dopt.imgsz = 128;
  dopt.verbose = false;
  dopt.obb = true;
  auto ds = std::make_shared<Dataset>(DatasetIndex::build(files, io), dopt);
  auto off = [&](double a) { double m = std::fmod(std::fabs(a - kA), kPi / 2); return std::min(m, kPi / 2 - m); };
  int pasted = 0;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    LoaderOptions lo;
    lo.batch = 8;
    lo.workers = 1;
    lo.seed = seed;
    lo.hyp = AugmentConfig::none();
    lo.hyp.set("mosaic", 1.0);
    lo.hyp.set("cutmix", 1.0);
    DataLoader dl(ds, lo);
    Batch b;
    EXPECT(dl.next(b));
    auto rb = batch_rboxes(b, false);
    const double W = b.img.size(3), H = b.img.size(2);
    for (int64_t i = 0; i < rb.size(0); ++i) {
      const double bx = b.bboxes[i][0].item<double>() * W, by = b.bboxes[i][1].item<double>() * H;
      const double bw = b.bboxes[i][2].item<double>() * W, bh = b.bboxes[i][3].item<double>() * H;
      const double cx = rb[i][0].item<double>(), cy = rb[i][1].item<double>(), w = rb[i][2].item<double>(),
                   h = rb[i][3].item<double>(), a = rb[i][4].item<double>();
      EXPECT_MSG(off(a) < 2e-3, "instance " << i << " turned by " << off(a));
      // A cut rotated box keeps its angle and shrinks to the visible part: its centre stays inside its (clipped)
      // axis-aligned box; an uncut pasted polygon would keep the centre of the whole box.
      EXPECT_MSG(std::fabs(cx - bx) <= bw / 2 + 0.5 && std::fabs(cy - by) <= bh / 2 + 0.5 && w > 0 && h > 0,
                 "seed " << seed << " instance " << i << ": centre (" << cx << ", " << cy << ") outside its box");
    }
    for (int k = 0; k < b.img.size(0); ++k) pasted += (b.batch_idx == k).sum().item<int>() > 4;  // mosaic 4 + pasted
  }
  EXPECT_MSG(pasted > 0, "cutmix pasted nothing: the test proves nothing");
}

TEST_CASE("cache ram and disk give the same images as no cache") {
  std::string yaml = synthetic_set("synth_cache", 6, 1, 120, 90);
  DataConfig cfg = load_data_yaml(yaml);
  IndexOptions io;
  io.verbose = false;
  DatasetOptions none, ram, disk;
  none.imgsz = ram.imgsz = disk.imgsz = 100;
  none.verbose = ram.verbose = disk.verbose = false;
  ram.cache = parse_cache_mode("ram");
  disk.cache = parse_cache_mode("disk");
  auto a = Dataset::open(cfg, "train", none, io), b = Dataset::open(cfg, "train", ram, io), c = Dataset::open(cfg, "train", disk, io);
  EXPECT(b->ram_cached());
  for (size_t i = 0; i < a->size(); ++i) {
    cv::Mat x = a->load_image(i), y = b->load_image(i), z = c->load_image(i);
    EXPECT(x.size() == cv::Size(100, 75));
    EXPECT(cv::norm(x, y, cv::NORM_INF) == 0 && cv::norm(x, z, cv::NORM_INF) == 0);
  }
  EXPECT(fs::exists(fs::path(a->labels(0).im_file).replace_extension(".npy")));
  cv::Mat again = c->load_image(0);  // now from the .npy
  EXPECT(cv::norm(again, a->load_image(0), cv::NORM_INF) == 0);
  EXPECT(available_memory_bytes() > 0);
  EXPECT_THROWS(parse_cache_mode("fast"));
}

TEST_CASE("synthetic: seeded, labels are the drawn extents, dataset reused") {
  SyntheticImage a = make_synthetic_image(160, 120, 42), b = make_synthetic_image(160, 120, 42);
  EXPECT(cv::norm(a.bgr, b.bgr, cv::NORM_INF) == 0 && a.boxes == b.boxes && !a.cls.empty());
  EXPECT(cv::norm(a.bgr, make_synthetic_image(160, 120, 43).bgr, cv::NORM_INF) > 0);
  for (size_t k = 0; k < a.cls.size(); ++k) {
    EXPECT(a.cls[k] >= 0 && a.cls[k] < 3);
    EXPECT(a.boxes[4 * k + 2] > 0.1f && a.boxes[4 * k + 2] <= 0.5f);
  }
  SyntheticOptions so;
  so.train_images = 3;
  so.val_images = 1;
  so.width = 64;
  so.height = 64;
  std::string dir = tmp_root() + "/synth_reuse";
  std::string y1 = write_synthetic_dataset(dir, so);
  auto t1 = fs::last_write_time(dir + "/images/train/train_000000.jpg");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write_synthetic_dataset(dir, so);
  EXPECT(fs::last_write_time(dir + "/images/train/train_000000.jpg") == t1);
  DataConfig cfg = load_data_yaml(y1);
  EXPECT(cfg.nc == 3 && cfg.names[2] == "triangle" && list_image_files(cfg.val).size() == 1);
}

int main() {
  int rc = y26test::run_all();
  if (rc == 0) fs::remove_all(tmp_root());  // keep the files of a failing run for inspection
  return rc;
}
