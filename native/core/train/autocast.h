// Automatic mixed precision on/off for the current thread, with the same meaning under libtorch 1.13 and 2.x.
#pragma once

namespace y26 {

// cpu = false: fp16 autocast on CUDA (official `amp`, trained with loss scaling); cpu = true: bf16 autocast on the
// CPU (our `cpu_amp`, no loss scaling needed). Turning it off clears the autocast weight cache.
void set_autocast(bool on, bool cpu);

}  // namespace y26
