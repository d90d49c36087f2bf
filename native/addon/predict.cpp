// openPredictor(): the streaming inference pipeline behind a pull API (next() -> Promise<result|null>), and
// plotResult() for Result.plot(). Backpressure comes from the pull: nothing is decoded past the bounded queue.
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <cmath>
#include <iostream>

#include "addon.h"
#include "addon_model.h"
#include "addon_track.h"
#include "infer/annotate.h"
#include "infer/pipeline.h"
#include "infer/save.h"
#include "ort_forward.h"

namespace y26addon {

namespace {

std::unique_ptr<y26::Source> make_source(const Napi::Object& src, int vid_stride) {
  std::string kind = get_string(src, "kind");
  y26::SourceOptions so;
  so.vid_stride = vid_stride;
  if (kind == "paths") {
    std::vector<std::string> specs;
    auto arr = src.Get("specs").As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) specs.push_back(arr.Get(i).ToString().Utf8Value());
    return specs.size() == 1 ? y26::open_path_source(specs[0], so) : y26::open_path_list_source(specs, so);
  }
  if (kind == "encoded") {
    std::vector<std::vector<uint8_t>> bufs;
    auto arr = src.Get("buffers").As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto u8 = arr.Get(i).As<Napi::Uint8Array>();
      bufs.emplace_back(u8.Data(), u8.Data() + u8.ByteLength());
    }
    return y26::open_encoded_source(std::move(bufs));
  }
  if (kind == "pixels") {
    std::vector<y26::RawPixels> px;
    auto arr = src.Get("images").As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i).As<Napi::Object>();
      auto u8 = o.Get("data").As<Napi::Uint8Array>();
      y26::RawPixels p;
      p.data = u8.Data();
      p.width = (int)get_number(o, "width", 0);
      p.height = (int)get_number(o, "height", 0);
      p.channels = (int)get_number(o, "channels", 3);
      p.order = get_string(o, "order", "rgb") == "bgr" ? y26::PixelOrder::BGR : y26::PixelOrder::RGB;
      if ((size_t)p.width * p.height * p.channels > u8.ByteLength())
        y26::fail("predict(): raw pixel source has " + std::to_string(u8.ByteLength()) + " bytes, fewer than width x height x channels = " +
                  std::to_string((size_t)p.width * p.height * p.channels));
      px.push_back(p);
    }
    return y26::open_pixels_source(px);  // copies now, so the JS buffers may change afterwards
  }
  if (kind == "camera") return y26::open_camera_source((int)get_number(src, "index", 0), so);
  y26::fail("predict(): unknown source kind '" + kind + "'");
}

// Float32Array from a CPU tensor (any dtype), flattened.
Napi::Float32Array f32(Napi::Env env, const torch::Tensor& t) {
  if (!t.defined()) return Napi::Float32Array::New(env, 0);
  auto c = t.to(torch::kFloat32).contiguous();
  auto arr = Napi::Float32Array::New(env, c.numel());
  if (c.numel()) std::memcpy(arr.Data(), c.data_ptr<float>(), c.numel() * sizeof(float));
  return arr;
}

void finalize_mat(Napi::Env env, cv::Mat* m) {
  int64_t bytes = (int64_t)(m->total() * m->elemSize());
  delete m;
  Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
}

struct PredictorState {
  std::shared_ptr<ModelHolder> model;
  std::unique_ptr<y26::Pipeline> pipeline;
  std::unique_ptr<y26::ResultSaver> saver;
  std::mutex saver_mu;
};

}  // namespace

class PredictorWrap : public Napi::ObjectWrap<PredictorWrap> {
 public:
  static Napi::FunctionReference ctor;
  std::shared_ptr<PredictorState> state;

  static void Init(Napi::Env env, Napi::Object exports) {
    auto cls = DefineClass(env, "NativePredictor",
                           {InstanceMethod("next", &PredictorWrap::Next), InstanceMethod("close", &PredictorWrap::Close),
                            InstanceMethod("saveDir", &PredictorWrap::SaveDir),
                            InstanceMethod("warnings", &PredictorWrap::Warnings)});
    ctor = Napi::Persistent(cls);
  }
  explicit PredictorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PredictorWrap>(info) {}

  Napi::Value Next(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto st = state;
    if (!st || !st->pipeline) return run_async(env, [] { return Finish([](Napi::Env e) -> Napi::Value { return e.Null(); }); });
    return run_async(env, [st]() {
      auto r = std::make_shared<y26::Result>();
      if (!st->pipeline->next(*r)) return Finish([](Napi::Env e) -> Napi::Value { return e.Null(); });
      if (st->saver && r->error.empty()) {
        std::lock_guard<std::mutex> lk(st->saver_mu);
        st->saver->save(*r);
      }
      return Finish([r](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        o.Set("path", r->path);
        auto shape = Napi::Array::New(env, 2);
        shape.Set(0u, r->orig_h);
        shape.Set(1u, r->orig_w);
        o.Set("origShape", shape);
        o.Set("xyxy", f32(env, r->boxes));
        o.Set("conf", f32(env, r->conf));
        o.Set("cls", f32(env, r->cls));
        if (r->ids.defined()) o.Set("id", f32(env, r->ids));
        if (r->probs.defined()) o.Set("probs", f32(env, r->probs));
        if (r->keypoints.defined()) {
          o.Set("keypoints", f32(env, r->keypoints));
          auto ks = Napi::Array::New(env, 2);
          ks.Set(0u, (double)r->keypoints.size(1));
          ks.Set(1u, (double)r->keypoints.size(2));
          o.Set("kptShape", ks);
        }
        auto speed = Napi::Object::New(env);
        speed.Set("preprocess", r->speed.decode + r->speed.preprocess);
        speed.Set("inference", r->speed.inference);
        speed.Set("postprocess", r->speed.postprocess);
        o.Set("speed", speed);
        if (r->frame >= 0) o.Set("frame", (double)r->frame);
        if (!r->error.empty()) o.Set("error", r->error);
        if (!r->orig_image.empty()) {
          auto* m = new cv::Mat(r->orig_image);
          Napi::MemoryManagement::AdjustExternalMemory(env, (int64_t)(m->total() * m->elemSize()));
          o.Set("image", Napi::External<cv::Mat>::New(env, m, finalize_mat));
        }
        return o;
      });
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (state && state->pipeline) state->pipeline->cancel();
    if (state && state->saver) {
      std::lock_guard<std::mutex> lk(state->saver_mu);
      state->saver->close();
    }
    state.reset();  // a next() still in flight keeps its own reference until it returns
    return info.Env().Undefined();
  }

  Napi::Value SaveDir(const Napi::CallbackInfo& info) {
    if (state && state->saver) return Napi::String::New(info.Env(), state->saver->save_dir());
    return info.Env().Null();
  }

  Napi::Value Warnings(const Napi::CallbackInfo& info) {
    auto arr = Napi::Array::New(info.Env());
    if (state && state->pipeline) {
      auto w = state->pipeline->warnings();
      for (size_t i = 0; i < w.size(); ++i) arr.Set((uint32_t)i, w[i]);
    }
    return arr;
  }
};
Napi::FunctionReference PredictorWrap::ctor;

// Options every backend shares: thresholds, class filter, saving.
static void common_options(const Napi::Object& o, y26::PipelineOptions& po) {
  po.skip_errors = get_bool(o, "skipErrors", false);
  po.keep_images = true;  // Result.plot() and saving draw on the original
  auto& post = po.post;
  post.conf = (float)get_number(o, "conf", 0.25);
  post.iou = (float)get_number(o, "iou", 0.7);
  post.max_det = (int)get_number(o, "maxDet", 300);
  post.agnostic_nms = get_bool(o, "agnosticNms", false);
  auto classes = o.Get("classes").As<Napi::Array>();
  for (uint32_t i = 0; i < classes.Length(); ++i) post.classes.push_back(classes.Get(i).As<Napi::Number>().Int64Value());
}

// openPredictor(model, source, options): model is a NativeModel (libtorch), or null with options.onnx =
// {path, run} for the ONNX Runtime backend (run: see ort_forward.h).
static Napi::Value OpenPredictor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto src = info[1].As<Napi::Object>();
    auto o = info[2].As<Napi::Object>();
    auto st = std::make_shared<PredictorState>();
    y26::PipelineOptions po;
    y26::ForwardOutputsFn fwd;
    std::vector<std::string> names;
    if (o.Get("onnx").IsObject()) {
      auto ox = o.Get("onnx").As<Napi::Object>();
      std::string path = get_string(ox, "path");
      OnnxPipelineSpec spec = onnx_pipeline_spec(y26::read_onnx_metadata(path), path);
      po = spec.po;
      if (spec.dynamic) {
        po.imgsz_h = (int)get_number(o, "imgszH", 640);
        po.imgsz_w = (int)get_number(o, "imgszW", 640);
      }
      po.batch = spec.model.batch > 0 ? (int)spec.model.batch : (int)get_number(o, "batch", 1);
      if (o.Get("end2end").IsBoolean() && get_bool(o, "end2end", true) != po.post.end2end)
        y26::fail(std::string("predict(): end2end=") + (po.post.end2end ? "false" : "true") + " but " + path + " was exported with end2end=" +
                  (po.post.end2end ? "true" : "false") + ": export it again with the end2end you want");
      if (po.half != get_bool(o, "half", po.half))
        std::cerr << "WARNING: predict(): half is fixed by " << path << " (" << (po.half ? "float16" : "float32") << " input); ignoring half\n";
      names = spec.names;
      fwd = ort_forward(env, ox.Get("run").As<Napi::Function>(), spec.model);
    } else {
      auto model = unwrap_model(info[0]);
      st->model = model;
      po.imgsz_h = (int)get_number(o, "imgszH", 640);
      po.imgsz_w = (int)get_number(o, "imgszW", 640);
      po.batch = (int)get_number(o, "batch", 1);
      po.half = get_bool(o, "half", false);
      po.device = model->device;
      const bool classify = model->loaded.task == "classify";
      bool end2end = !classify && get_bool(o, "end2end", true);  // classify: softmax probabilities, no boxes
      {
        std::lock_guard<std::mutex> lk(model->mu);
        auto& m = *model->loaded.model;
        po.stride = (int)m.stride().back();
        if (classify && !m.is_fused()) m.fuse();
        if (end2end && !m.end2end()) y26::fail("predict(): end2end=true but this model has no end-to-end head");
        if (end2end && !m.is_fused()) m.fuse();  // what the official predictor runs; drops the one2many head
        if (!classify && !end2end && m.is_fused()) y26::fail("predict(): end2end=false needs the one-to-many head, which fuse() removed: load the model again");
        m.max_det = (int)get_number(o, "maxDet", 300);
      }
      auto& post = po.post;
      post.task = y26::parse_task(model->loaded.task);
      post.end2end = end2end;
      post.nc = (int)model->loaded.nc;
      if (model->loaded.kpt_shape.size() == 2) {
        post.kpt_count = (int)model->loaded.kpt_shape[0];
        post.kpt_dims = (int)model->loaded.kpt_shape[1];
      }
      names = model->loaded.names;
      auto holder = model;
      y26::ForwardFn f = [holder, end2end, classify](const torch::Tensor& x) {
        std::lock_guard<std::mutex> lk(holder->mu);
        torch::NoGradGuard ng;
        auto out = holder->loaded.model->forward(x);
        return classify ? out.cls_probs : end2end ? out.end2end : out.classic;
      };
      fwd = [f](const torch::Tensor& x) { return std::vector<torch::Tensor>{f(x)}; };
    }
    common_options(o, po);
    if (o.Get("tracker").IsObject()) {
      if (po.post.task == y26::Task::Classify)
        y26::fail("track(): classify models have no boxes to track; use a detect, segment, pose or obb model");
      po.on_result = y26::tracking_step(unwrap_tracker(o.Get("tracker")), get_bool(o, "persist", false));
    }
    auto source = make_source(src, (int)get_number(o, "vidStride", 1));
    st->pipeline = std::make_unique<y26::Pipeline>(std::move(source), fwd, po);
    if (get_bool(o, "save", false) || get_bool(o, "saveTxt", false) || get_bool(o, "saveCrop", false)) {
      y26::SaveOptions so;
      so.project = get_string(o, "project", "runs");
      so.name = get_string(o, "name", "predict");
      so.exist_ok = get_bool(o, "existOk", false);
      so.save = get_bool(o, "save", false);
      so.save_txt = get_bool(o, "saveTxt", false);
      so.save_conf = get_bool(o, "saveConf", false);
      so.save_crop = get_bool(o, "saveCrop", false);
      so.task = po.post.task;
      so.names = names;
      so.annotate.line_width = (int)get_number(o, "lineWidth", 0);
      so.annotate.labels = get_bool(o, "showLabels", true);
      so.annotate.conf = get_bool(o, "showConf", true);
      st->saver = std::make_unique<y26::ResultSaver>(so);
    }
    auto obj = PredictorWrap::ctor.New({});
    PredictorWrap::Unwrap(obj)->state = st;
    return obj;
  });
}

// onnxInfo(path) -> what predict needs to know of an exported file before opening it: names, task, input size
// (null when dynamic), batch (0 when dynamic), half, end2end. Fails naming the file without YOLO metadata.
static Napi::Value OnnxInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    auto md = y26::read_onnx_metadata(path);
    auto spec = onnx_pipeline_spec(md, path);
    auto o = Napi::Object::New(env);
    o.Set("task", md.task);
    auto names = Napi::Array::New(env, spec.names.size());
    for (size_t i = 0; i < spec.names.size(); ++i) names.Set((uint32_t)i, spec.names[i]);
    o.Set("names", names);
    if (spec.dynamic) {
      o.Set("imgsz", env.Null());
    } else {
      auto sz = Napi::Array::New(env, 2);
      sz.Set(0u, spec.po.imgsz_h);
      sz.Set(1u, spec.po.imgsz_w);
      o.Set("imgsz", sz);
    }
    o.Set("batch", (double)spec.model.batch);
    o.Set("half", spec.model.half);
    o.Set("end2end", spec.po.post.end2end);
    o.Set("stride", spec.po.stride);
    return o;
  });
}

// plotResult(image, result, names, {format, lineWidth, labels, conf}) -> Buffer (JPEG or PNG).
static Napi::Value PlotResult(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsExternal()) y26::fail("plot(): this result holds no image");
    const cv::Mat& img = *info[0].As<Napi::External<cv::Mat>>().Data();
    auto r = info[1].As<Napi::Object>();
    auto tensor_of = [](const Napi::Value& v, std::vector<int64_t> shape) {
      auto a = v.As<Napi::Float32Array>();
      auto t = torch::empty({(int64_t)a.ElementLength()}, torch::kFloat32);
      if (a.ElementLength()) std::memcpy(t.data_ptr<float>(), a.Data(), a.ElementLength() * sizeof(float));
      return t.view(shape);
    };
    y26::Result res;
    res.orig_h = img.rows;
    res.orig_w = img.cols;
    res.boxes = tensor_of(r.Get("xyxy"), {-1, 4});
    res.conf = tensor_of(r.Get("conf"), {-1});
    res.cls = tensor_of(r.Get("cls"), {-1}).to(torch::kInt64);
    if (r.Get("id").IsTypedArray()) res.ids = tensor_of(r.Get("id"), {-1}).to(torch::kInt64);
    if (r.Get("probs").IsTypedArray()) res.probs = tensor_of(r.Get("probs"), {-1});
    if (r.Get("keypoints").IsTypedArray()) {
      auto ks = r.Get("kptShape").As<Napi::Array>();
      res.keypoints = tensor_of(r.Get("keypoints"), {-1, ks.Get(0u).As<Napi::Number>().Int64Value(), ks.Get(1u).As<Napi::Number>().Int64Value()});
    }
    std::vector<std::string> names;
    auto na = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < na.Length(); ++i) names.push_back(na.Get(i).ToString().Utf8Value());
    auto o = info[3].As<Napi::Object>();
    y26::AnnotateOptions ao;
    ao.line_width = (int)get_number(o, "lineWidth", 0);
    ao.labels = get_bool(o, "labels", true);
    ao.conf = get_bool(o, "conf", true);
    auto bytes = y26::encode_image(y26::annotate(img, res, names, ao), get_string(o, "format", "jpg") == "png" ? ".png" : ".jpg");
    return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
  });
}

// countSource(specs, vidStride) -> how many results a path source will give (images, plus each video's
// frames after vid_stride), for the CLI's progress bar. 0 when unknown.
static Napi::Value CountSource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto arr = info[0].As<Napi::Array>();
    int stride = info.Length() > 1 && info[1].IsNumber() ? std::max(1, info[1].As<Napi::Number>().Int32Value()) : 1;
    double total = 0;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      for (const auto& f : y26::expand_source_paths(arr.Get(i).ToString().Utf8Value())) {
        auto dot = f.rfind('.');
        std::string ext = dot == std::string::npos ? "" : f.substr(dot + 1);
        for (auto& c : ext) c = (char)std::tolower(c);
        if (y26::is_video_extension(ext)) {
          cv::VideoCapture cap(f);
          total += cap.isOpened() ? std::floor(cap.get(cv::CAP_PROP_FRAME_COUNT) / stride) : 0;
        } else {
          total += 1;
        }
      }
    }
    return Napi::Number::New(env, total);
  });
}

static void InitPredict(Napi::Env env, Napi::Object exports) {
  exports.Set("countSource", Napi::Function::New(env, CountSource));
  PredictorWrap::Init(env, exports);
  exports.Set("openPredictor", Napi::Function::New(env, OpenPredictor));
  exports.Set("plotResult", Napi::Function::New(env, PlotResult));
  exports.Set("onnxInfo", Napi::Function::New(env, OnnxInfo));
}
Y26_ADDON_REGISTER(InitPredict);

}  // namespace y26addon
