#include "train/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace y26 {

void set_autocast(bool on, bool cpu) {
#if (TORCH_VERSION_MAJOR > 2) || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (cpu) {
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, on);
  } else {
    at::autocast::set_autocast_enabled(at::kCUDA, on);
  }
#else
  if (cpu) {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
#endif
  if (!on) at::autocast::clear_cache();
}

}  // namespace y26
