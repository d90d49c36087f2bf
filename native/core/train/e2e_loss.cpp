#include "train/e2e_loss.h"

#include "util/error.h"

#include <algorithm>
#include <string>

namespace y26 {

ProgLossSchedule::ProgLossSchedule(int64_t epochs) : epochs_(epochs) {
  if (epochs < 1) fail("ProgLossSchedule: epochs must be >= 1, got " + std::to_string(epochs));
  set_updates(0);
}

void ProgLossSchedule::set_updates(int64_t finished) {
  if (finished < 0) fail("ProgLossSchedule: finished epochs must be >= 0");
  updates_ = finished;
  const double start = 0.8, final_o2m = 0.1;
  if (finished == 0) {
    o2m_ = start;  // the reference starts from the constant, not from the formula (which gives 0.8 + 1 ulp)
  } else {
    const double frac = double(finished) / double(std::max<int64_t>(epochs_ - 1, 1));
    o2m_ = std::max(1.0 - frac, 0.0) * (start - final_o2m) + final_o2m;
  }
  o2o_ = std::max(1.0 - o2m_, 0.0);
}

}  // namespace y26
