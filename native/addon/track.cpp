// createTracker(yamlPath) -> NativeTracker: a ByteTrack / BoT-SORT tracker from an official tracker YAML, handed to
// openPredictor (option tracker) or fed detections directly with update(). No tracking logic here.
#include <cstring>

#include "addon.h"
#include "addon_track.h"

namespace y26addon {

namespace {

Napi::Float32Array f32_of(Napi::Env env, const std::vector<double>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = static_cast<float>(v[i]);
  return a;
}

const float* floats(const Napi::Object& o, const char* key, size_t want, const char* what) {
  auto v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    y26::fail(std::string("Tracker.update(): ") + key + " must be a Float32Array (" + what + ")");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != want)
    y26::fail(std::string("Tracker.update(): ") + key + " has " + std::to_string(a.ElementLength()) + " numbers, expected " +
              std::to_string(want) + " (" + what + ")");
  return a.Data();
}

}  // namespace

class TrackerWrap : public Napi::ObjectWrap<TrackerWrap> {
 public:
  static Napi::FunctionReference ctor;
  std::shared_ptr<y26::SharedTracker> shared;

  static void Init(Napi::Env env, Napi::Object exports) {
    auto cls = DefineClass(env, "NativeTracker",
                           {InstanceMethod("update", &TrackerWrap::Update), InstanceMethod("reset", &TrackerWrap::Reset),
                            InstanceMethod("config", &TrackerWrap::Config)});
    ctor = Napi::Persistent(cls);
  }
  explicit TrackerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrackerWrap>(info) {}

  // update({conf, cls, xyxy} or {conf, cls, xywhr}) -> {id, box, conf, cls, index}: one frame of detections.
  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      if (!info[0].IsObject()) y26::fail("Tracker.update(): pass {xyxy, conf, cls} (or {xywhr, conf, cls}) as Float32Arrays");
      auto o = info[0].As<Napi::Object>();
      if (!o.Get("conf").IsTypedArray()) y26::fail("Tracker.update(): conf must be a Float32Array (one score per detection)");
      const size_t n = o.Get("conf").As<Napi::TypedArray>().ElementLength();
      const bool rotated = o.Get("xywhr").IsTypedArray();
      const float* conf = floats(o, "conf", n, "one score per detection");
      const float* cls = floats(o, "cls", n, "one class per detection");
      const float* box = rotated ? floats(o, "xywhr", n * 5, "cx, cy, w, h, angle per detection")
                                 : floats(o, "xyxy", n * 4, "x1, y1, x2, y2 per detection");
      std::vector<y26::TrackInput> in(n);
      for (size_t i = 0; i < n; ++i) {
        auto& t = in[i];
        if (rotated) {
          t.cx = box[5 * i], t.cy = box[5 * i + 1], t.w = box[5 * i + 2], t.h = box[5 * i + 3], t.angle = box[5 * i + 4];
          t.rotated = true;
        } else {
          const float* b = box + 4 * i;
          t.cx = (b[0] + b[2]) / 2.0, t.cy = (b[1] + b[3]) / 2.0, t.w = b[2] - b[0], t.h = b[3] - b[1];
        }
        t.score = conf[i];
        t.cls = static_cast<int64_t>(cls[i]);
        t.idx = static_cast<int>(i);
      }
      std::vector<y26::TrackOutput> out;
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        out = shared->tracker.update(in);
      }
      std::vector<double> ids, boxes, scores, classes, index;
      for (const auto& t : out) {
        ids.push_back(static_cast<double>(t.id));
        boxes.insert(boxes.end(), t.box.begin(), t.box.begin() + (rotated ? 5 : 4));
        scores.push_back(t.score);
        classes.push_back(static_cast<double>(t.cls));
        index.push_back(t.idx);
      }
      auto r = Napi::Object::New(env);
      r.Set("id", f32_of(env, ids));
      r.Set(rotated ? "xywhr" : "xyxy", f32_of(env, boxes));
      r.Set("conf", f32_of(env, scores));
      r.Set("cls", f32_of(env, classes));
      r.Set("index", f32_of(env, index));
      return r;
    });
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    std::scoped_lock lock(shared->mu, shared->motion_mu);
    shared->tracker.reset();
    return info.Env().Undefined();
  }

  Napi::Value Config(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const y26::TrackerConfig& c = shared->tracker.config();
    auto o = Napi::Object::New(env);
    o.Set("tracker_type", c.tracker_type);
    o.Set("track_high_thresh", c.track_high_thresh);
    o.Set("track_low_thresh", c.track_low_thresh);
    o.Set("new_track_thresh", c.new_track_thresh);
    o.Set("track_buffer", c.track_buffer);
    o.Set("match_thresh", c.match_thresh);
    o.Set("fuse_score", c.fuse_score);
    if (c.tracker_type == "botsort") {
      o.Set("gmc_method", c.gmc_method);
      o.Set("proximity_thresh", c.proximity_thresh);
      o.Set("appearance_thresh", c.appearance_thresh);
      o.Set("with_reid", c.with_reid);
      o.Set("model", c.model);
    }
    return o;
  }
};
Napi::FunctionReference TrackerWrap::ctor;

std::shared_ptr<y26::SharedTracker> unwrap_tracker(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(TrackerWrap::ctor.Value()))
    y26::fail("track(): the tracker option must come from createTracker()");
  return TrackerWrap::Unwrap(v.As<Napi::Object>())->shared;
}

// createTracker(yamlPath): reads and checks the tracker YAML.
static Napi::Value CreateTracker(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) y26::fail("createTracker(): pass the path of a tracker YAML file");
    auto cfg = y26::load_tracker_config(info[0].As<Napi::String>().Utf8Value());
    auto obj = TrackerWrap::ctor.New({});
    TrackerWrap::Unwrap(obj)->shared = std::make_shared<y26::SharedTracker>(std::move(cfg));
    return obj;
  });
}

static void InitTrack(Napi::Env env, Napi::Object exports) {
  TrackerWrap::Init(env, exports);
  exports.Set("createTracker", Napi::Function::New(env, CreateTracker));
}
Y26_ADDON_REGISTER(InitTrack);

}  // namespace y26addon
