// The one clock format written into files (checkpoint and export `date`).
#pragma once
#include <chrono>
#include <string>

namespace y26 {

// `t` as ISO-8601 in UTC with microseconds and an explicit offset, e.g. 2026-01-14T10:21:33.123456+00:00: the form
// official checkpoints carry, so files written here read the same as theirs.
std::string iso_time(std::chrono::system_clock::time_point t);

// iso_time of the current time.
std::string iso_now();

}  // namespace y26
