// The label-index warnings to show a user: the first few, then one line counting the rest (upstream prints them all;
// a summary keeps thousands of bad labels readable).
#pragma once
#include <string>
#include <vector>

namespace y26 {

std::vector<std::string> shown_warnings(const std::vector<std::string>& warnings, size_t limit = 10);

}  // namespace y26
