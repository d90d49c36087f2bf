// Small string helpers shared by the option parsers.
#pragma once
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace y26 {

// ASCII lower case (option values, file extensions, class names).
inline std::string to_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return s;
}

// A number in a printf format ("%.3g", "%.0f"), for log lines and CSV cells.
inline std::string format_number(const char* printf_format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, printf_format, v);
  return buf;
}

// The accepted name a misspelt one most likely meant, or "" when none is close: one abbreviating the other
// ('confidence' -> 'conf'), else the nearest by edit distance within max(2, len/3). The rule of the facade's
// suggest() (ts/options.ts), for the names C++ reads itself (tracker YAMLs, direct callers of the core).
inline std::string closest_name(const std::string& name, const std::vector<std::string>& accepted) {
  const std::string n = to_lower(name);
  if (n.size() >= 3)
    for (const auto& a : accepted) {
      const std::string c = to_lower(a);
      if (c.size() >= 3 && (n.rfind(c, 0) == 0 || c.rfind(n, 0) == 0)) return a;
    }
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& a : accepted) {
    const std::string c = to_lower(a);
    std::vector<size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= n.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (n[i - 1] == c[j - 1] ? 0 : 1)});
      std::swap(prev, cur);
    }
    if (prev[c.size()] < best_d) best_d = prev[c.size()], best = a;
  }
  return best_d <= std::max<size_t>(2, name.size() / 3) ? best : "";
}

}  // namespace y26
