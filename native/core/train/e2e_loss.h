// The end-to-end training loss shared by every task head: the one2many branch (topk 10) and the one2one branch
// (topk 7, then the single best: topk2 1) evaluated with the same task's branch loss, blended by the progressive
// (ProgLoss) weighting. The task only supplies the branch loss; the blending lives here once.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace y26 {

// Progressive one2many/one2one weighting of the end-to-end losses (ProgLoss): w_o2m = 0.8 before the first
// update, then max(1 - e / max(epochs - 1, 1), 0) * 0.7 + 0.1 after e finished epochs; w_o2o = 1 - w_o2m.
class ProgLossSchedule {
 public:
  explicit ProgLossSchedule(int64_t epochs);
  void update() { set_updates(updates_ + 1); }  // call once after each finished epoch
  void set_updates(int64_t finished);          // resume: number of finished epochs (start_epoch)
  int64_t updates() const { return updates_; }
  double o2m() const { return o2m_; }
  double o2o() const { return o2o_; }

 private:
  int64_t epochs_;
  int64_t updates_ = 0;
  double o2m_ = 0.8, o2o_ = 0.2;
};

// BranchResult: the branch loss's result, whose `loss` is the gained item vector (not yet x batch size).
template <class BranchResult>
struct E2EResult {
  torch::Tensor total;        // () the value to back-propagate: sum of loss_vector
  torch::Tensor loss_vector;  // w_o2m * L_o2m * B + w_o2o * L_o2o * B, differentiable
  torch::Tensor loss_items;   // detached gained one2one items: what the trainer logs
  BranchResult one2many, one2one;
};

// A branch loss that declares `static constexpr bool kOne2OneDetachesShared = true` gets the tensors shared by
// both branches (the call's arguments after the branch predictions) detached for its one2one branch, so only the
// one2many terms train the modules that produce them (segment: proto and semseg).
template <class L, class = void>
struct one2one_detaches_shared : std::false_type {};
template <class L>
struct one2one_detaches_shared<L, std::void_t<decltype(L::kOne2OneDetachesShared)>>
    : std::bool_constant<L::kOne2OneDetachesShared> {};

// BranchLoss: a per-branch loss with the types Preds (one head branch's train outputs) and Result, and a call
// (const Preds&, shared arguments...) -> Result. Its constructor takes (nc, strides, topk, topk2, extra...).
template <class BranchLoss>
class E2ELoss {
 public:
  using Preds = typename BranchLoss::Preds;
  using BranchResult = typename BranchLoss::Result;
  using Result = E2EResult<BranchResult>;

  static constexpr int64_t kOne2ManyTopk = 10, kOne2OneTopk = 7, kOne2OneTopk2 = 1;

  // extra: the branch loss's constructor arguments after topk2 (gains, task options), given to both branches.
  template <class... Extra>
  E2ELoss(int64_t num_classes, const std::vector<double>& strides, int64_t epochs, const Extra&... extra)
      : one2many_(num_classes, strides, kOne2ManyTopk, /*topk2=*/0, extra...),
        one2one_(num_classes, strides, kOne2OneTopk, kOne2OneTopk2, extra...),
        schedule_(epochs) {}
  // Branches built by the caller, for a branch loss whose constructor orders its arguments otherwise.
  E2ELoss(BranchLoss one2many, BranchLoss one2one, int64_t epochs)
      : one2many_(std::move(one2many)), one2one_(std::move(one2one)), schedule_(epochs) {}

  // shared: the branch loss's arguments after its predictions (grid sizes, labels, task targets), the same for both.
  template <class... Shared>
  Result operator()(const Preds& one2many, const Preds& one2one, const Shared&... shared) const {
    Result r;
    r.one2many = one2many_(one2many, shared...);
    r.one2one = one2one_(one2one, for_one2one(shared)...);
    const int64_t bs = one2many.scores.size(0);
    r.loss_vector = (r.one2many.loss * bs) * schedule_.o2m() + (r.one2one.loss * bs) * schedule_.o2o();
    r.total = r.loss_vector.sum();
    r.loss_items = r.one2one.loss.detach();
    return r;
  }

  void update() { schedule_.update(); }                                    // once after each finished epoch
  void set_updates(int64_t finished) { schedule_.set_updates(finished); }  // resume
  int64_t updates() const { return schedule_.updates(); }
  double o2m_weight() const { return schedule_.o2m(); }
  double o2o_weight() const { return schedule_.o2o(); }
  ProgLossSchedule& schedule() { return schedule_; }
  const ProgLossSchedule& schedule() const { return schedule_; }

  static auto loss_names() { return BranchLoss::loss_names(); }

 protected:
  BranchLoss one2many_, one2one_;

 private:
  template <class T>
  static decltype(auto) for_one2one(const T& x) {
    if constexpr (one2one_detaches_shared<BranchLoss>::value && std::is_same_v<T, torch::Tensor>)
      return x.defined() ? x.detach() : x;
    else
      return x;
  }

  ProgLossSchedule schedule_;
};

}  // namespace y26
