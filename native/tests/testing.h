// A tiny test harness for the C++ unit tests run by ctest (`npm test` runs them).
#pragma once
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <sys/stat.h>
#include <vector>
#include "util/source_dir.h"

namespace y26test {

struct Case { std::string name; std::function<void()> fn; };
inline std::vector<Case>& cases() { static std::vector<Case> c; return c; }
inline int& failures() { static int f = 0; return f; }
struct Register { Register(const char* n, std::function<void()> f) { cases().push_back({n, f}); } };

inline bool exists(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0; }

// A file under test/fixtures: every file a test reads lives in the repository.
inline std::string fixture(const std::string& rel) {
  std::string path = y26::source_dir() + "/test/fixtures/" + rel;
  if (exists(path)) return path;
  std::cerr << "missing fixture test/fixtures/" << rel << "\n";
  std::exit(1);
}

inline int run_all() {
  int passed = 0;
  for (auto& c : cases()) {
    int before = failures();
    try { c.fn(); } catch (const std::exception& e) { std::cerr << "  exception: " << e.what() << "\n"; ++failures(); }
    if (failures() == before) { ++passed; std::cout << "ok - " << c.name << "\n"; }
    else std::cout << "not ok - " << c.name << "\n";
  }
  std::cout << passed << " passed, " << (cases().size() - passed) << " failed\n";
  return passed == (int)cases().size() ? 0 : 1;
}

}  // namespace y26test

#define Y26_CAT2(a, b) a##b
#define Y26_CAT(a, b) Y26_CAT2(a, b)
#define TEST_CASE(name) \
  static void Y26_CAT(test_fn_, __LINE__)(); \
  static y26test::Register Y26_CAT(test_reg_, __LINE__)(name, Y26_CAT(test_fn_, __LINE__)); \
  static void Y26_CAT(test_fn_, __LINE__)()
#define EXPECT(cond) do { if (!(cond)) { std::cerr << __FILE__ << ":" << __LINE__ << ": EXPECT(" #cond ") failed\n"; ++y26test::failures(); } } while (0)
#define EXPECT_MSG(cond, msg) do { if (!(cond)) { std::cerr << __FILE__ << ":" << __LINE__ << ": " << msg << "\n"; ++y26test::failures(); } } while (0)
#define EXPECT_NEAR(a, b, tol) do { double _a = (a), _b = (b); if (!(std::fabs(_a - _b) <= (tol))) { std::cerr << __FILE__ << ":" << __LINE__ << ": " #a " = " << _a << " vs " #b " = " << _b << " (tol " << (tol) << ")\n"; ++y26test::failures(); } } while (0)
#define EXPECT_THROWS(expr) do { bool _t = false; try { expr; } catch (...) { _t = true; } if (!_t) { std::cerr << __FILE__ << ":" << __LINE__ << ": expected exception from " #expr "\n"; ++y26test::failures(); } } while (0)
#define TEST_MAIN() int main() { return y26test::run_all(); }
