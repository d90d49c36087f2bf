// Small string helpers shared by the option parsers.
#pragma once
#include <algorithm>
#include <cctype>
#include <string>

namespace y26 {

// ASCII lower case (option values, file extensions, class names).
inline std::string to_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return s;
}

}  // namespace y26
