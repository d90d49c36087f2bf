#include "infer/predictor.h"

#include "infer/model_forward.h"
#include "util/error.h"

namespace y26 {

namespace {

template <typename T>
T arg_or(const YAML::Node& args, const char* key, T fallback) {
  const YAML::Node v = args[key];
  if (!v || v.IsNull()) return fallback;
  try {
    return v.as<T>();
  } catch (const YAML::Exception&) {
    fail("predict(): option '" + std::string(key) + "' has the wrong type");
  }
}

// Options every backend applies the same way: thresholds, class filter, errors, kept images.
void apply_common(PipelineOptions& po, const PredictArgs& a) {
  po.skip_errors = a.skip_errors;
  po.keep_images = true;  // Result.plot() and saving draw on the original
  po.post.conf = a.conf;
  po.post.iou = a.iou;
  po.post.max_det = a.max_det;
  po.post.agnostic_nms = a.agnostic_nms;
  po.post.classes = a.classes;
}

std::string on_off(bool b) { return b ? "true" : "false"; }

}  // namespace

PredictArgs parse_predict_args(const YAML::Node& args) {
  PredictArgs a;
  if (!args || args.IsNull()) return a;
  if (!args.IsMap()) fail("predict(): options must be a map of option names to values");
  if (const YAML::Node sz = args["imgsz"]; sz && !sz.IsNull()) {
    if (sz.IsSequence() && sz.size() == 2) {
      a.imgsz_h = sz[0].as<int>();
      a.imgsz_w = sz[1].as<int>();
    } else if (sz.IsScalar()) {
      a.imgsz_h = a.imgsz_w = sz.as<int>();
    } else {
      fail("predict(): option 'imgsz' must be a number or [height, width]");
    }
    a.imgsz_given = true;
  }
  a.batch = arg_or(args, "batch", a.batch);
  a.half = arg_or(args, "half", a.half);
  if (const YAML::Node e = args["end2end"]; e && !e.IsNull()) a.end2end = e.as<bool>();
  a.conf = arg_or(args, "conf", a.conf);
  a.iou = arg_or(args, "iou", a.iou);
  a.max_det = arg_or(args, "max_det", a.max_det);
  a.agnostic_nms = arg_or(args, "agnostic_nms", a.agnostic_nms);
  a.classes = arg_or(args, "classes", a.classes);
  a.vid_stride = arg_or(args, "vid_stride", a.vid_stride);
  a.skip_errors = arg_or(args, "skip_errors", a.skip_errors);
  a.save = arg_or(args, "save", a.save);
  a.save_txt = arg_or(args, "save_txt", a.save_txt);
  a.save_conf = arg_or(args, "save_conf", a.save_conf);
  a.save_crop = arg_or(args, "save_crop", a.save_crop);
  a.project = arg_or(args, "project", a.project);
  a.name = arg_or(args, "name", a.name);
  a.exist_ok = arg_or(args, "exist_ok", a.exist_ok);
  a.line_width = arg_or(args, "line_width", a.line_width);
  a.show_labels = arg_or(args, "show_labels", a.show_labels);
  a.show_conf = arg_or(args, "show_conf", a.show_conf);
  return a;
}

PredictPlan plan_torch(const LoadedModel& lm, const std::string& device, const PredictArgs& args,
                       std::shared_ptr<std::mutex> mu) {
  if (!lm.model) fail("predict(): no model");
  if (!mu) mu = std::make_shared<std::mutex>();
  PredictPlan plan;
  const bool classify = parse_task(lm.task) == Task::Classify;
  std::lock_guard<std::mutex> lock(*mu);
  YoloModel& m = *lm.model;
  // classify: softmax probabilities, no boxes; otherwise the model's own head unless end2end is chosen.
  const bool end2end = !classify && args.end2end.value_or(m.end2end());
  if (end2end && !m.end2end()) fail("predict(): end2end=true but this model has no end-to-end head");
  if (!classify && !end2end && m.is_fused())
    fail("predict(): end2end=false needs the one-to-many head, which fuse() removed: load the model again");
  if ((classify || end2end) && !m.is_fused()) m.fuse();  // what the official predictor runs
  m.max_det = args.max_det;
  plan.po = model_pipeline_options(m, {}, end2end);
  plan.po.imgsz_h = args.imgsz_h;
  plan.po.imgsz_w = args.imgsz_w;
  plan.po.batch = args.batch;
  plan.po.half = args.half;
  plan.po.device = device;
  apply_common(plan.po, args);
  plan.names = lm.names;
  plan.forward = model_forward(lm.model, end2end, mu);
  return plan;
}

PredictPlan plan_onnx(const OnnxMetadata& md, const std::string& path, const PredictArgs* args) {
  const std::string fix = "; export it with exportModel({ format: 'onnx' }) or `yolo export format=onnx`, which write the metadata";
  if (md.task.empty() || md.names.empty()) fail("predict(): " + path + " has no YOLO metadata (task and names)" + fix);
  const Task task = parse_task(md.task);
  const bool classify = task == Task::Classify;
  const size_t out_rank = classify ? 2 : 3;  // classify: (B, nc) probabilities
  if (md.inputs.empty() || md.inputs[0].shape.size() != 4 || md.outputs.empty() || md.outputs[0].shape.size() != out_rank)
    fail("predict(): " + path + " does not have one (B,3,H,W) input and a rank-" + std::to_string(out_rank) +
         " output0 as YOLO exports of " + md.task + " models" + fix);
  if (task == Task::Segment && md.outputs.size() < 2)
    fail("predict(): " + path + " is a segment model without its mask prototypes (output1)" + fix);
  PredictPlan plan;
  plan.names = md.names;
  auto& po = plan.po;
  auto& post = po.post;
  post.task = task;
  post.nc = static_cast<int>(md.names.size());
  if (md.kpt_shape.size() == 2) {
    post.kpt_count = static_cast<int>(md.kpt_shape[0]);
    post.kpt_dims = static_cast<int>(md.kpt_shape[1]);
  } else if (post.task == Task::Pose) {
    fail("predict(): " + path + " is a pose model without kpt_shape metadata" + fix);
  }
  po.stride = md.stride > 0 ? static_cast<int>(md.stride) : classify ? 1 : 32;
  const auto& in = md.inputs[0];
  const auto& out = md.outputs[0].shape;
  // end2end rows (B,N,6+E) have few columns; the classic output (B,4+nc+E,A) has an anchor axis longer than its
  // channel axis (or symbolic). Official files without the end2end key are told apart this way.
  if (classify) post.end2end = false;
  else if (md.props.count("end2end")) post.end2end = md.end2end;
  else post.end2end = out[2] > 0 && out[1] > 0 && out[2] < out[1];
  po.half = in.elem_type == 10;
  plan.fixed_batch = in.shape[0] > 0 ? in.shape[0] : 0;
  plan.fixed_size = in.shape[2] > 0 && in.shape[3] > 0;
  if (plan.fixed_size) {
    po.imgsz_h = static_cast<int>(in.shape[2]);
    po.imgsz_w = static_cast<int>(in.shape[3]);
    po.rect = false;  // the file runs exactly this size: full letterbox, no minimal-rect padding
  }
  po.device = "cpu";  // ONNX Runtime takes host memory; its execution provider decides where it runs
  if (!args) return plan;

  if (!plan.fixed_size) {
    po.imgsz_h = args->imgsz_h;
    po.imgsz_w = args->imgsz_w;
  } else if (args->imgsz_given && (args->imgsz_h != po.imgsz_h || args->imgsz_w != po.imgsz_w)) {
    plan.warnings.push_back("predict(): " + path + " has a fixed input of " + std::to_string(po.imgsz_h) + "x" +
                            std::to_string(po.imgsz_w) + "; imgsz " + std::to_string(args->imgsz_h) + "x" +
                            std::to_string(args->imgsz_w) + " is ignored");
  }
  po.batch = plan.fixed_batch > 0 ? static_cast<int>(plan.fixed_batch) : args->batch;
  if (args->end2end && !classify && *args->end2end != post.end2end)
    fail("predict(): end2end=" + on_off(*args->end2end) + " but " + path + " was exported with end2end=" + on_off(post.end2end) +
         ": export it again with the end2end you want");
  if (args->half != po.half)
    plan.warnings.push_back("predict(): half is fixed by " + path + " (" + (po.half ? "float16" : "float32") + " input); ignoring half");
  apply_common(po, *args);
  return plan;
}

void use_ort_model(PredictPlan& plan, std::shared_ptr<OrtModel> model) {
  plan.forward = ort_model_forward(std::move(model), plan.fixed_batch);
  plan.po.forward_thread = true;
}

Predictor::Predictor(std::unique_ptr<Source> source, PredictPlan plan, const PredictArgs& args) : plan_(std::move(plan)) {
  if (!plan_.forward) fail("predict(): no model forward");
  pipeline_ = std::make_unique<Pipeline>(std::move(source), plan_.forward, plan_.po);
  if (args.save || args.save_txt || args.save_crop) {
    SaveOptions so;
    so.project = args.project;
    so.name = args.name;
    so.exist_ok = args.exist_ok;
    so.save = args.save;
    so.save_txt = args.save_txt;
    so.save_conf = args.save_conf;
    so.save_crop = args.save_crop;
    so.task = plan_.po.post.task;
    so.names = plan_.names;
    so.annotate.line_width = args.line_width;
    so.annotate.labels = args.show_labels;
    so.annotate.conf = args.show_conf;
    saver_ = std::make_unique<ResultSaver>(so);
  }
}

bool Predictor::next(Result& out) {
  if (!pipeline_->next(out)) return false;
  if (saver_ && out.error.empty()) {
    std::lock_guard<std::mutex> lock(saver_mu_);
    saver_->save(out);
  }
  return true;
}

void Predictor::close() {
  pipeline_->cancel();
  std::lock_guard<std::mutex> lock(saver_mu_);
  if (saver_) saver_->close();
}

std::string Predictor::save_dir() const { return saver_ ? saver_->save_dir() : ""; }

std::vector<std::string> Predictor::warnings() const {
  std::vector<std::string> w = plan_.warnings;
  for (auto& s : pipeline_->warnings()) w.push_back(s);
  return w;
}

}  // namespace y26
