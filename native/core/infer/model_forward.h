// Wires a YoloModel into the predict pipeline. Header-only and separate from pipeline.h, so the pipeline itself
// never depends on the model class.
#pragma once
#include <algorithm>
#include <memory>
#include <mutex>

#include "infer/pipeline.h"
#include "model/loader.h"
#include "model/yolo.h"
#include "util/error.h"

namespace y26 {

// The model's forward as the pipeline wants it: the end2end rows (or, with end2end=false, the classic
// (B,4+nc+extra,A) xywh output for NMS), then the mask prototypes of segment models. Put the model in eval mode
// (and fuse() it, as the official predictor does) before calling.
// Classify models return their (B, nc) softmax probabilities (end2end does not apply).
// `mu`, when given, is held during each forward (a model shared with other threads).
inline ForwardOutputsFn model_forward(std::shared_ptr<YoloModel> model, bool end2end = true,
                                      std::shared_ptr<std::mutex> mu = nullptr) {
  if (!model) fail("predict: no model");
  const bool classify = model->task_kind() == Task::Classify;
  if (!classify && end2end && !model->end2end()) fail("predict: this model has no end2end head; predict with end2end=false");
  if (!classify) model->compute_classic = !end2end;
  return [model, end2end, classify, mu](const torch::Tensor& x) {
    std::unique_lock<std::mutex> lock;
    if (mu) lock = std::unique_lock<std::mutex>(*mu);
    torch::NoGradGuard no_grad;
    ModelOutput out = model->forward(x);
    if (classify) return std::vector<torch::Tensor>{out.cls_probs};
    std::vector<torch::Tensor> v{end2end ? out.end2end : out.classic};
    if (out.proto.defined()) v.push_back(out.proto);
    return v;
  };
}

// Pipeline settings that follow from the model: task, class count, keypoint shape, end2end and stride.
inline PipelineOptions model_pipeline_options(const YoloModel& m, PipelineOptions base = {}, bool end2end = true) {
  base.post.task = m.task_kind();
  base.post.nc = static_cast<int>(m.nc());
  base.post.end2end = end2end && m.task_kind() != Task::Classify;
  const auto& kpt = m.config().kpt_shape;
  if (kpt.size() == 2) {
    base.post.kpt_count = static_cast<int>(kpt[0]);
    base.post.kpt_dims = static_cast<int>(kpt[1]);
  }
  if (!m.stride().empty()) base.stride = static_cast<int>(*std::max_element(m.stride().begin(), m.stride().end()));
  return base;
}

}  // namespace y26
