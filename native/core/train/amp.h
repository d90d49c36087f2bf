// Mixed-precision training: the run's AMP policy (MixedPrecision), dynamic loss scaling for CUDA (what
// torch.cuda.amp.GradScaler does, which the C++ API lacks in libtorch 1.13), the AMP sanity check run before
// training, and AutoBatch (the memory fit and the probe on the device).
#pragma once
#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace y26 {

class YoloModel;
struct TrainArgs;

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

// The AMP of one training run: fp16 autocast with loss scaling on CUDA (`amp`), bf16 autocast without it on a CPU
// that computes bf16 natively (`cpu_amp`), else fp32.
class MixedPrecision {
 public:
  using Log = std::function<void(const std::string&)>;
  // Reads amp / cpu_amp; logs when cpu_amp cannot be honoured.
  void configure(const torch::Device& device, const TrainArgs& args, const Log& log);
  // The official AMP check on CUDA, before training: failing it falls back to fp32.
  void check(YoloModel& model, const torch::Device& device, const Log& log);
  bool enabled() const { return on_; }
  bool fp16() const { return on_ && cuda_; }  // validation during training then runs in half precision too

  // Autocast on for the lifetime of the guard (when AMP is on); off again also when the forward throws.
  class Scope {
   public:
    explicit Scope(const MixedPrecision& mp);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    bool on_, cpu_;
  };
  Scope autocast() const { return Scope(*this); }

  // What to back-propagate: the loss times the scale under fp16, else the loss.
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  // Before the optimiser step: unscales the gradients and updates the scale; false when they were not finite and
  // the step must be skipped.
  bool unscale_and_update(const std::vector<torch::Tensor>& params);
  double loss_scale() const { return scaler_.scale(); }   // checkpointed as amp_scale
  void set_loss_scale(double s) { scaler_.set_scale(s); }  // resume

 private:
  bool on_ = false, cuda_ = false, scaling_ = false;
  LossScaler scaler_;
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

// batch=-1 or a fraction in (0, 1) on CUDA: the batch filling `fraction` of the free memory (fit_autobatch over
// the process's device memory read through NVML, the caching allocator's cache emptied before each size). Without
// NVML: the largest power of two that ran, times the fraction. Throws y26::Error when not even 8 fit.
int64_t probe_cuda_batch(YoloModel& model, int imgsz, const torch::Device& dev, double fraction,
                         const std::function<void(const std::string&)>& log);

}  // namespace y26
