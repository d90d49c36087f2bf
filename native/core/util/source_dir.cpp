#include "util/source_dir.h"

namespace y26 {

// Only this unit sees the absolute path, so every other unit compiles to the same command line in any clone
// and ccache reuses it.
std::string source_dir() { return YOLO26_SOURCE_DIR; }

}  // namespace y26
