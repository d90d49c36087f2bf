#include <torch/torch.h>

#include "testing.h"
#include "util/npy.h"
#include "util/system.h"
#include "util/gpu_stats.h"
#include "util/text.h"
#include "util/timestamp.h"

#include <cstdlib>
#include <ctime>
#include <regex>

TEST_CASE("system info reports libtorch and threads") {
  auto s = y26::system_info();
  EXPECT(!s.torch_version.empty());
  EXPECT(s.physical_cores >= 1);
  EXPECT(s.intra_op_threads >= 1);
}

TEST_CASE("configure_threads honours an explicit count") {
  EXPECT(y26::configure_threads(1) == 1);
  EXPECT(y26::configure_threads(2) == 2);
}

TEST_CASE("gpu_stats reads NVML where CUDA runs and reports nothing elsewhere") {
  auto g = y26::gpu_stats(0);
  if (torch::cuda::is_available()) {
    EXPECT(g.has_value());
    EXPECT(g->mem_total_gb > 0 && g->mem_used_gb > 0 && g->mem_used_gb <= g->mem_total_gb);
    EXPECT(g->util_percent >= 0 && g->util_percent <= 100);
  } else if (g) {
    EXPECT(g->mem_total_gb > 0);  // a driver without a usable CUDA libtorch: numbers still sane
  }
  EXPECT(!y26::gpu_stats(-1));  // no such device
}

TEST_CASE("resolve_device accepts cpu and rejects garbage") {
  EXPECT(y26::resolve_device("cpu") == "cpu");
  EXPECT(y26::resolve_device("CPU") == "cpu");
  EXPECT_THROWS(y26::resolve_device("gpu-please"));
  if (!torch::cuda::is_available()) EXPECT_THROWS(y26::resolve_device("0"));
}

TEST_CASE("npy round trip") {
  std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  std::string p = "/tmp/y26_npy_test.npy";
  y26::write_npy(p, "f4", {2, 3}, v.data(), v.size() * 4);
  auto a = y26::read_npy(p);
  EXPECT(a.shape.size() == 2 && a.shape[0] == 2 && a.shape[1] == 3);
  auto back = a.as_float();
  EXPECT(back == v);
}

TEST_CASE("reads a reference fixture") {
  auto a = y26::read_npy(y26test::fixture("loss/batch_cls.npy"));
  EXPECT(a.dtype == "f4");
  EXPECT(a.shape.size() == 2 && a.shape[0] == 11 && a.shape[1] == 1);
}

TEST_CASE("closest_name suggests the option a typo meant, as the facade's suggest()") {
  const std::vector<std::string> keys{"conf", "epochs", "save", "save_txt", "track_buffer"};
  EXPECT(y26::closest_name("epochz", keys) == "epochs");
  EXPECT(y26::closest_name("confidence", keys) == "conf");  // one abbreviates the other
  EXPECT(y26::closest_name("sav", keys) == "save");
  EXPECT(y26::closest_name("Track_Bufer", keys) == "track_buffer");
  EXPECT(y26::closest_name("lr0", keys).empty());  // nothing close
}

TEST_CASE("iso_now is UTC ISO-8601 with microseconds and +00:00, as official checkpoint dates") {
  const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00)");
  const std::string now = y26::iso_now();
  EXPECT_MSG(std::regex_match(now, iso), "iso_now() gave " << now);
  // The official fixture's value has this form too (the date in yolo26n-shapes.pt).
  EXPECT(std::regex_match(std::string("2026-11-28T05:02:33.075393+00:00"), iso));
  using namespace std::chrono;
  const system_clock::time_point t{duration_cast<system_clock::duration>(microseconds(1736850093123456LL))};
  EXPECT(y26::iso_time(t) == "2025-01-14T10:21:33.123456+00:00");
  EXPECT(y26::iso_time(system_clock::time_point{}) == "1970-01-01T00:00:00.000000+00:00");
  // before 1970 the fraction counts forward from the earlier second, as Python's isoformat() does
  EXPECT(y26::iso_time(system_clock::time_point{} - milliseconds(1500)) == "1969-12-31T23:59:58.500000+00:00");
  // the machine's time zone does not leak in
  const char* old_tz = std::getenv("TZ");
  const std::string saved = old_tz ? old_tz : "";
  setenv("TZ", "Asia/Kolkata", 1);
  tzset();
  EXPECT(y26::iso_time(t) == "2025-01-14T10:21:33.123456+00:00");
  if (old_tz) setenv("TZ", saved.c_str(), 1); else unsetenv("TZ");
  tzset();
}

TEST_MAIN()
