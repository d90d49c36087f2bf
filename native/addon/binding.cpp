// Module entry: each native/addon/*.cpp registers its functions with Y26_ADDON_REGISTER.
#include "addon.h"
#include "util/system.h"

#include <mutex>

namespace y26addon {

static std::once_flag g_threads_once;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // libtorch starts with 1 intra-op thread on Debian: use the physical cores (or OMP_NUM_THREADS).
  std::call_once(g_threads_once, [] { y26::configure_threads(0); });
  for (auto fn : Registry::fns()) fn(env, exports);
  return exports;
}

}  // namespace y26addon

static Napi::Object InitYolo26(Napi::Env env, Napi::Object exports) { return y26addon::Init(env, exports); }
NODE_API_MODULE(yolo26_native, InitYolo26)
