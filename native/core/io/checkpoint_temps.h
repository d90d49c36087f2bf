// Temporaries of the atomic checkpoint save ("<path>.tmp-<pid>-<n>") that a process killed mid-write left behind.
#pragma once
#include <string>

namespace y26 {

// Removes those of `path` whose process no longer runs; returns how many. save_checkpoint calls it first; a resume
// calls it before reading.
int remove_stale_checkpoint_temps(const std::string& path);

}  // namespace y26
