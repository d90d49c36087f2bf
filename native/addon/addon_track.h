// The tracker handle shared between track.cpp (createTracker) and predict.cpp (openPredictor's tracker option).
#pragma once
#include <napi.h>

#include <memory>

#include "track/track_results.h"

namespace y26addon {

// The tracker inside a NativeTracker object; fails with a clear message for anything else.
std::shared_ptr<y26::SharedTracker> unwrap_tracker(const Napi::Value& v);

}  // namespace y26addon
