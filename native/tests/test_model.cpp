// YOLO26 model family: structure (param counts, state_dict names), config errors, fuse, and parity with the
// official outputs stored in the fixtures.
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "model/config.h"
#include "model/postprocess.h"
#include "model/yolo.h"
#include "testing.h"
#include "util/error.h"

using namespace y26;

namespace {

struct KeyEntry {
  std::string key;
  std::vector<int64_t> shape;
};

std::vector<KeyEntry> fixture_keys(const std::string& rel) {
  YAML::Node j = YAML::LoadFile(y26test::fixture(rel));  // JSON is YAML
  std::vector<KeyEntry> out;
  for (const auto& e : j["state_dict"]) out.push_back({e["key"].as<std::string>(), e["shape"].as<std::vector<int64_t>>()});
  return out;
}

// Compares our state_dict with a keys.json fixture: same names, order and shapes.
void expect_keys_match(YoloModel& m, const std::string& rel) {
  auto want = fixture_keys(rel);
  auto have = m.state_dict();
  EXPECT_MSG(have.size() == want.size(), rel << ": " << have.size() << " entries vs " << want.size());
  size_t n = std::min(have.size(), want.size()), bad = 0;
  for (size_t i = 0; i < n && bad < 5; ++i) {
    auto s = have[i].second.sizes().vec();
    if (have[i].first != want[i].key || s != want[i].shape) {
      ++bad;
      EXPECT_MSG(false, rel << " entry " << i << ": have " << have[i].first << " " << have[i].second.sizes()
                            << ", want " << want[i].key << " " << torch::IntArrayRef(want[i].shape));
    }
  }
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = "/tmp/y26_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("unfused parameter counts of every family and scale match the official YAML figures") {
  struct Row { const char* fam; int64_t n, s, m, l, x; };
  const Row rows[] = {
      {"yolo26%c.yaml", 2572280, 10009784, 21896248, 26299704, 58993368},
      {"yolo26%c-seg.yaml", 3126280, 11505800, 27112072, 31515528, 70693800},
      {"yolo26%c-pose.yaml", 3747554, 11870498, 24344482, 28747938, 62914350},
      {"yolo26%c-obb.yaml", 2715614, 10582142, 23593918, 27997374, 62811678},
      {"yolo26%c-cls.yaml", 2812104, 6724008, 11634216, 14115624, 29637064},
  };
  const char scales[] = "nsmlx";
  for (const auto& r : rows) {
    const int64_t want[] = {r.n, r.s, r.m, r.l, r.x};
    for (int i = 0; i < 5; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, r.fam, scales[i]);
      auto m = build_model(name);
      EXPECT_MSG(m->num_params() == want[i], name << ": " << m->num_params() << " params, want " << want[i]);
    }
  }
}

TEST_CASE("fused deploy parameter counts") {
  struct Row { const char* name; int64_t unfused, fused; };
  const Row rows[] = {{"yolo26n.yaml", 2572280, 2408932},    {"yolo26s.yaml", 10009784, 9496140},
                      {"yolo26n-seg.yaml", 3126280, 2722980}, {"yolo26n-pose.yaml", 3747554, 2960395},
                      {"yolo26n-obb.yaml", 2715614, 2480503}};
  for (const auto& r : rows) {
    auto m = build_model(r.name);
    m->eval();
    m->fuse();
    EXPECT_MSG(m->num_params() == r.fused, r.name << " fused: " << m->num_params() << ", want " << r.fused);
  }
}

TEST_CASE("state_dict names, order and shapes equal the official yolo26n (nc=80), shapes (nc=3) and pose") {
  auto det = build_model("yolo26n.yaml");
  EXPECT(det->state_dict().size() == 708);
  expect_keys_match(*det, "det/yolo26n-coco-random.keys.json");
  auto shapes = build_model("yolo26n.yaml", 3);
  expect_keys_match(*shapes, "det/yolo26n-shapes.keys.json");
  EXPECT(shapes->num_params() == 2504970);
  auto pose = build_model("yolo26n-pose.yaml", 1);
  expect_keys_match(*pose, "pose/yolo26n-pose-random.keys.json");
  EXPECT(pose->num_params() == 3679464);
  pose->fuse();
  EXPECT(pose->num_params() == 2926494);
  shapes->fuse();
  EXPECT(shapes->num_params() == 2375421);
}

TEST_MAIN()
