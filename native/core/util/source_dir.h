// The repository folder this build was configured from: where the builtin model YAMLs, the shipped tracker
// configurations and the test fixtures live when nothing else says where.
#pragma once
#include <string>

namespace y26 {

std::string source_dir();

}  // namespace y26
