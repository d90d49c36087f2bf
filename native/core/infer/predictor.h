// The predictor both backends share, as run_training / run_validation are for their modes: the predict options
// (official names, the args tree the front end hands over), the policy of which model output feeds which
// post-processing, the libtorch model's fuse and end2end rules, the ONNX metadata -> options rules, and saving.
// A front end only converts values: it opens a Source and, for ONNX Runtime, supplies the forward call.
#pragma once
#include <yaml-cpp/yaml.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "export/onnx_export.h"
#include "infer/ort_runtime.h"
#include "infer/pipeline.h"
#include "infer/save.h"
#include "model/loader.h"

namespace y26 {

// predict()'s options under their official names (imgsz, conf, iou, max_det, classes, agnostic_nms, batch, half,
// end2end, vid_stride, skip_errors, save, save_txt, save_conf, save_crop, project, name, exist_ok, line_width,
// show_labels, show_conf); absent or null keys keep the defaults here.
struct PredictArgs {
  int imgsz_h = 640, imgsz_w = 640;
  bool imgsz_given = false;       // imgsz was in the args (a fixed-size ONNX file then warns that it ignores it)
  int batch = 1;
  bool half = false;
  std::optional<bool> end2end;    // unset: as the model was made or exported
  float conf = 0.25f, iou = 0.7f;
  int max_det = 300;
  bool agnostic_nms = false;
  std::vector<int64_t> classes;
  int vid_stride = 1;
  bool skip_errors = false;
  bool save = false, save_txt = false, save_conf = false, save_crop = false;
  std::string project = "runs", name = "predict";
  bool exist_ok = false;
  int line_width = 0;             // 0: from the image size
  bool show_labels = true, show_conf = true;
};
PredictArgs parse_predict_args(const YAML::Node& args);

// What a model brings to the pipeline: task, names, class count, keypoint shape, stride, end2end and (fixed-size
// ONNX files) the input size, batch and half; warnings for options the model overrides.
struct PredictPlan {
  PipelineOptions po;
  std::vector<std::string> names;
  std::vector<std::string> warnings;
  int64_t fixed_batch = 0;        // ONNX: the file's static batch (0 when symbolic); partial batches are padded
  bool fixed_size = false;        // ONNX: height and width are fixed by the file
  ForwardOutputsFn forward;       // libtorch: set by plan_torch; ONNX: the front end's call into the runtime
};

// libtorch: fuses the model as the official predictor does (classify, and end2end, which drops the one-to-many head),
// checks end2end against the head, sets max_det, and returns the plan with the model's forward (model_forward).
// `mu` guards the model, which other users share; the forward holds it while it runs and keeps it alive.
PredictPlan plan_torch(const LoadedModel& lm, const std::string& device, const PredictArgs& args,
                       std::shared_ptr<std::mutex> mu);

// ONNX files (ours or the official exporter's): the plan from the metadata (end2end from the metadata, else from
// output0's shape); a fixed input size wins over imgsz (warned). Fails naming the file when the metadata is missing
// or end2end contradicts the file. `args` null: the file alone (what onnx_info reports).
PredictPlan plan_onnx(const OnnxMetadata& md, const std::string& path, const PredictArgs* args = nullptr);

// An ONNX plan run by ONNX Runtime's C API in the pipeline (infer/ort_runtime.h): the session's forward (padded to
// the file's fixed batch), on a thread of the pipeline ahead of the caller.
void use_ort_model(PredictPlan& plan, std::shared_ptr<OrtModel> model);

// The streaming predictor: the pipeline plus saving (runs/<task>/<name>) when the args ask for it.
class Predictor {
 public:
  Predictor(std::unique_ptr<Source> source, PredictPlan plan, const PredictArgs& args);
  // The next result (saved when asked); false at the end. Call from one thread at a time.
  bool next(Result& out);
  void close();  // cancels the pipeline and finishes open videos; thread-safe
  std::string save_dir() const;  // "" when nothing is saved
  std::vector<std::string> warnings() const;  // the plan's, then skipped items
  const std::vector<std::string>& names() const { return plan_.names; }

 private:
  PredictPlan plan_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<ResultSaver> saver_;
  mutable std::mutex saver_mu_;
};

}  // namespace y26
