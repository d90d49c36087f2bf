// openPredictor(): the streaming inference pipeline behind a pull API (next() -> Promise<result|null>), and
// plotResult() for Result.plot(). Backpressure comes from the pull: nothing is decoded past the bounded queue.
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <sys/stat.h>

#include <cmath>
#include <list>
#include <mutex>

#include "addon.h"
#include "addon_model.h"
#include "addon_track.h"
#include "addon_yaml.h"
#include "infer/annotate.h"
#include "infer/predictor.h"
#include "infer/segments.h"
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

// Uint8Array from a CPU tensor (masks: 0/1), flattened.
Napi::Uint8Array u8(Napi::Env env, const torch::Tensor& t) {
  auto c = t.to(torch::kUInt8).contiguous();
  auto arr = Napi::Uint8Array::New(env, c.numel());
  if (c.numel()) std::memcpy(arr.Data(), c.data_ptr<uint8_t>(), c.numel());
  return arr;
}

Napi::Array shape_of(Napi::Env env, const torch::Tensor& t) {
  auto a = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) a.Set((uint32_t)i, (double)t.size(i));
  return a;
}

void finalize_mat(Napi::Env env, cv::Mat* m) {
  int64_t bytes = (int64_t)(m->total() * m->elemSize());
  delete m;
  Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
}

// An ONNX file's metadata, read once per version of the file: reading it parses the whole model (about 100 ms for
// yolo26n on a loaded machine), and onnxInfo() and openPredictor() both need it on every predict() call.
y26::OnnxMetadata onnx_metadata(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return y26::read_onnx_metadata(path);  // its error names the file
  const std::string key = path + "\n" + std::to_string(st.st_size) + "\n" + std::to_string(st.st_mtim.tv_sec) + "." +
                          std::to_string(st.st_mtim.tv_nsec) + "\n" + std::to_string(st.st_ino);
  static std::mutex mu;
  static std::list<std::pair<std::string, y26::OnnxMetadata>> cache;  // most recent first
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = cache.begin(); it != cache.end(); ++it)
      if (it->first == key) {
        cache.splice(cache.begin(), cache, it);
        return it->second;
      }
  }
  y26::OnnxMetadata md = y26::read_onnx_metadata(path);
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace_front(key, md);
  if (cache.size() > 8) cache.pop_back();
  return md;
}

struct PredictorState {
  std::shared_ptr<ModelHolder> model;  // libtorch: keeps the model alive while the predictor runs
  std::unique_ptr<y26::Predictor> predictor;
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
                            InstanceMethod("warnings", &PredictorWrap::Warnings),
                            InstanceMethod("names", &PredictorWrap::Names)});
    ctor = Napi::Persistent(cls);
  }
  explicit PredictorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PredictorWrap>(info) {}

  Napi::Value Next(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto st = state;
    if (!st || !st->predictor) return run_async(env, [] { return Finish([](Napi::Env e) -> Napi::Value { return e.Null(); }); });
    return run_async(env, [st]() {
      auto r = std::make_shared<y26::Result>();
      if (!st->predictor->next(*r)) return Finish([](Napi::Env e) -> Napi::Value { return e.Null(); });
      // Mask outlines (Masks.xy) are traced here, off the JS thread.
      auto polygons = std::make_shared<std::vector<torch::Tensor>>(y26::mask_polygons(r->masks));
      return Finish([r, polygons](Napi::Env env) -> Napi::Value {
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
        if (r->masks.defined()) {
          o.Set("masks", u8(env, r->masks));
          o.Set("maskShape", shape_of(env, r->masks));
          auto segs = Napi::Array::New(env, polygons->size());
          for (size_t i = 0; i < polygons->size(); ++i) segs.Set((uint32_t)i, f32(env, (*polygons)[i]));
          o.Set("segments", segs);
        }
        if (r->obb.defined()) o.Set("xywhr", f32(env, r->obb));
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
    if (state && state->predictor) state->predictor->close();
    state.reset();  // a next() still in flight keeps its own reference until it returns
    return info.Env().Undefined();
  }

  Napi::Value SaveDir(const Napi::CallbackInfo& info) {
    if (!state || !state->predictor || state->predictor->save_dir().empty()) return info.Env().Null();
    return Napi::String::New(info.Env(), state->predictor->save_dir());
  }

  Napi::Value Warnings(const Napi::CallbackInfo& info) {
    return strings_to_js(info.Env(), state && state->predictor ? state->predictor->warnings() : std::vector<std::string>{});
  }

  Napi::Value Names(const Napi::CallbackInfo& info) {
    return strings_to_js(info.Env(), state && state->predictor ? state->predictor->names() : std::vector<std::string>{});
  }
};
Napi::FunctionReference PredictorWrap::ctor;

// openPredictor(model, source, args, onnx): args are predict()'s options under their official names (see
// y26::PredictArgs); model is a NativeModel (libtorch), or null with onnx = {path, session} for ONNX Runtime
// (session: a NativeOrtSession from ortOpen) or {path, run} (run: see ort_forward.h). Every rule lives in y26::Predictor; this only converts.
static Napi::Value OpenPredictor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const y26::PredictArgs args = y26::parse_predict_args(js_to_yaml(info[2]));
    auto st = std::make_shared<PredictorState>();
    y26::PredictPlan plan;
    if (info.Length() > 3 && info[3].IsObject()) {
      auto ox = info[3].As<Napi::Object>();
      const std::string path = get_string(ox, "path");
      plan = y26::plan_onnx(onnx_metadata(path), path, &args);
      if (ox.Get("session").IsObject()) y26::use_ort_model(plan, unwrap_ort_session(ox.Get("session")));
      else plan.forward = ort_forward(env, ox.Get("run").As<Napi::Function>(), plan.fixed_batch);
    } else {
      st->model = unwrap_model(info[0]);
      plan = y26::plan_torch(st->model->loaded, st->model->device, args, std::shared_ptr<std::mutex>(st->model, &st->model->mu));
    }
    if (auto o = info[2].As<Napi::Object>(); o.Get("tracker").IsObject()) {
      if (plan.po.post.task == y26::Task::Classify)
        y26::fail("track(): classify models have no boxes to track; use a detect, segment, pose or obb model");
      y26::attach_tracking(plan.po, unwrap_tracker(o.Get("tracker")), get_bool(o, "persist", false));
    }
    st->predictor = std::make_unique<y26::Predictor>(make_source(info[1].As<Napi::Object>(), args.vid_stride), std::move(plan), args);
    auto obj = PredictorWrap::ctor.New({});
    PredictorWrap::Unwrap(obj)->state = st;
    return obj;
  });
}

// onnxInfo(path) -> what an exported file brings to predict: names, task, input size (null when dynamic), batch
// (0 when dynamic), half, end2end, stride. Fails naming the file without YOLO metadata.
static Napi::Value OnnxInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    const auto plan = y26::plan_onnx(onnx_metadata(path), path);
    auto o = Napi::Object::New(env);
    o.Set("task", y26::task_name(plan.po.post.task));
    o.Set("names", strings_to_js(env, plan.names));
    if (plan.fixed_size) {
      auto sz = Napi::Array::New(env, 2);
      sz.Set(0u, plan.po.imgsz_h);
      sz.Set(1u, plan.po.imgsz_w);
      o.Set("imgsz", sz);
    } else {
      o.Set("imgsz", env.Null());
    }
    o.Set("batch", (double)plan.fixed_batch);
    o.Set("half", plan.po.half);
    o.Set("end2end", plan.po.post.end2end);
    o.Set("stride", plan.po.stride);
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
    if (r.Get("xywhr").IsTypedArray()) res.obb = tensor_of(r.Get("xywhr"), {-1, 5});
    if (r.Get("masks").IsTypedArray()) {
      auto m = r.Get("masks").As<Napi::Uint8Array>();
      auto t = torch::empty({(int64_t)m.ElementLength()}, torch::kUInt8);
      if (m.ElementLength()) std::memcpy(t.data_ptr<uint8_t>(), m.Data(), m.ElementLength());
      res.masks = t.view({res.conf.size(0), img.rows, img.cols});
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
