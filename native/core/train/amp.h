// Mixed-precision training helpers for CUDA: dynamic loss scaling (what torch.cuda.amp.GradScaler does, which the
// C++ API lacks in libtorch 1.13), the AMP sanity check run before training, and the AutoBatch memory fit.
#pragma once
#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace y26 {

class YoloModel;

// Dynamic loss scaling: the loss is multiplied by scale() before backward; unscale() divides the gradients back
// and reports whether all are finite. update() then backs the scale off (x0.5) after an overflow, or grows it
// (x2) after `interval` finite steps in a row, as GradScaler's defaults (init 65536, interval 2000).
class LossScaler {
 public:
  explicit LossScaler(double init = 65536.0, int64_t interval = 2000) : scale_(init), interval_(interval) {}
  double scale() const { return scale_; }
  void set_scale(double s) { scale_ = s; }
  // Divides every defined gradient by the scale; true when all of them are finite. One device sync in all
  // (a fused kernel on CUDA), not one per parameter.
  bool unscale(const std::vector<torch::Tensor>& params);
  void update(bool finite);

 private:
  double scale_;
  int64_t interval_;
  int64_t good_steps_ = 0;
};

// The AMP check's comparison: same shape, and every value within atol (the official check compares the boxes of
// a pretrained model's predictions within 0.5).
bool amp_outputs_agree(const torch::Tensor& fp32, const torch::Tensor& amp, double atol = 0.5);

// GPUs whose fp16 training is known to produce NaN losses or zero mAP (the official list: GTX 16xx, some T-series
// Quadros, K40m).
bool gpu_has_broken_amp(const std::string& gpu_name);

// Runs the model in fp32 and under fp16 autocast on a fixed synthetic batch (8 images at 256 px) and compares the
// decoded outputs (boxes in px and sigmoid scores; class probabilities for classify). True when AMP may be used.
// `why` receives the reason when it returns false. The model is left in the mode it was in.
bool check_amp(YoloModel& model, const torch::Device& device, std::string* why);

// AutoBatch as the official one: memory is measured for a few batch sizes (mem_gb(b) = GB a forward and backward
// at batch b adds, or nullopt when it ran out of memory), a line is fitted through the increasing measurements,
// and the batch expected to fill `fraction` of the memory free before the probe is returned (nullopt when the fit
// is unusable; the caller then uses its default). Multiples of 8 are not forced, as upstream.
struct AutoBatchResult {
  int64_t batch = 0;
  double predicted_fraction = 0;  // share of the free memory the chosen batch is expected to use
};
std::optional<AutoBatchResult> fit_autobatch(const std::function<std::optional<double>(int64_t)>& mem_gb,
                                             double free_gb, double fraction,
                                             const std::vector<int64_t>& sizes);
// The batch sizes probed on a card with this much memory (GB).
std::vector<int64_t> autobatch_sizes(double total_gb);

}  // namespace y26
