// train() / val() / demo: long runs on their own thread, events streamed to JS through a thread-safe
// function, stop() honoured after the current batch, and the outcome delivered as a final event.
#include <atomic>
#include <thread>

#include "addon.h"
#include "addon_yaml.h"
#include "eval/validator.h"
#include "export/onnx_export.h"
#include "infer/predictor.h"
#include "train/demo.h"
#include "train/trainer.h"

namespace y26addon {

namespace {

// What crosses from the training thread to JS.
struct Message {
  y26::TrainEvent event;
  bool final = false;
  std::string error;                       // final with an error
  std::map<std::string, double> result;    // final numbers
  std::map<std::string, std::string> text; // final strings (save_dir, best, last)
};

Napi::Object event_to_js(Napi::Env env, const y26::TrainEvent& e) {
  auto o = Napi::Object::New(env);
  o.Set("type", e.type);
  auto num = Napi::Object::New(env);
  for (auto& [k, v] : e.num) num.Set(k, v);
  auto str = Napi::Object::New(env);
  for (auto& [k, v] : e.str) str.Set(k, v);
  o.Set("num", num);
  o.Set("str", str);
  return o;
}

struct Run {
  std::atomic<bool> stop{false};
  std::thread thread;
  Napi::ThreadSafeFunction tsfn;
};

using Job = std::function<void(const y26::TrainCallbacks&, const std::atomic<bool>&, Message&)>;

// Starts `job` on a new thread; returns {stop()} and calls onEvent(event) for each event and once
// with {type:'final', ...}.
Napi::Value start_run(Napi::Env env, Napi::Function on_event, Job job) {
  auto run = std::make_shared<Run>();
  run->tsfn = Napi::ThreadSafeFunction::New(env, on_event, "yolo26-run", 0, 1);
  run->thread = std::thread([run, job]() {
    auto send = [run](Message* m) {
      run->tsfn.BlockingCall(m, [](Napi::Env env, Napi::Function fn, Message* m) {
        std::unique_ptr<Message> own(m);
        auto o = event_to_js(env, m->event);
        if (m->final) {
          o.Set("type", "final");
          if (!m->error.empty()) o.Set("error", m->error);
          auto res = Napi::Object::New(env);
          for (auto& [k, v] : m->result) res.Set(k, v);
          for (auto& [k, v] : m->text) res.Set(k, v);
          o.Set("result", res);
        }
        fn.Call({o});
      });
    };
    y26::TrainCallbacks cb;
    cb.on_event = [send](const y26::TrainEvent& e) {
      auto* m = new Message;
      m->event = e;
      send(m);
    };
    auto* fin = new Message;
    fin->final = true;
    try {
      job(cb, run->stop, *fin);
    } catch (...) {
      fin->error = y26::describe_exception(std::current_exception());
    }
    send(fin);
    run->tsfn.Release();
  });
  run->thread.detach();  // the thread owns `run`; it ends after the final message
  auto handle = Napi::Object::New(env);
  handle.Set("stop", Napi::Function::New(env, [run](const Napi::CallbackInfo& info) {
    run->stop = true;
    return info.Env().Undefined();
  }));
  return handle;
}

}  // namespace

static Napi::Value StartTraining(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    YAML::Node args = js_to_yaml(info[0]);
    return start_run(env, info[1].As<Napi::Function>(), [args](const y26::TrainCallbacks& cb, const std::atomic<bool>& stop, Message& fin) {
      auto r = y26::run_training(args, cb, stop);
      fin.result = r.final_metrics;
      fin.text["save_dir"] = r.save_dir;
      fin.text["best"] = r.best;
      fin.text["last"] = r.last;
      fin.result["epochs_completed"] = (double)r.epochs_completed;
      fin.result["best_fitness"] = r.best_fitness;
      fin.result["stopped"] = r.stopped ? 1 : 0;
    });
  });
}

static Napi::Value StartValidation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    YAML::Node args = js_to_yaml(info[0]);
    return start_run(env, info[1].As<Napi::Function>(), [args](const y26::TrainCallbacks& cb, const std::atomic<bool>& stop, Message& fin) {
      auto log = [&cb](const std::string& line) {
        y26::TrainEvent e;
        e.type = "log";
        e.str["text"] = line;
        if (cb.on_event) cb.on_event(e);
      };
      auto r = y26::run_validation(args, log);
      fin.result = r.metrics;
      fin.result["images"] = (double)r.images;
      fin.result["imgsz"] = (double)r.imgsz;
      fin.text["data"] = r.data;
      if (!r.save_dir.empty()) fin.text["save_dir"] = r.save_dir;
      fin.result["speed/preprocess"] = r.preprocess_ms;
      fin.result["speed/inference"] = r.inference_ms;
      fin.result["speed/postprocess"] = r.postprocess_ms;
    });
  });
}

static Napi::Value StartDemo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    YAML::Node args = js_to_yaml(info[0]);
    return start_run(env, info[1].As<Napi::Function>(), [args](const y26::TrainCallbacks& cb, const std::atomic<bool>& stop, Message& fin) {
      auto r = y26::run_demo(args, cb, stop);
      fin.result = r.metrics;
      fin.result["detections"] = (double)r.detections;
      fin.result["seconds"] = r.seconds;
      fin.result["epochs_completed"] = (double)r.train.epochs_completed;
      fin.text["save_dir"] = r.train.save_dir;
      fin.text["best"] = r.train.best;
      fin.text["last"] = r.train.last;
      fin.text["data"] = r.data_yaml;
      fin.text["predict_dir"] = r.predict_dir;
    });
  });
}

// coreDefaults() -> {train, predict, export}: the defaults the core applies to options a C++ caller leaves out
// (train_defaults(), PredictArgs, ExportOptions), for the test that keeps the facade's schemas in agreement.
static Napi::Value CoreDefaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto train = Napi::Object::New(env);
    for (const auto& kv : y26::train_defaults()) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      bool b;
      double d;
      if (v.IsNull()) train.Set(key, env.Null());
      else if (YAML::convert<bool>::decode(v, b)) train.Set(key, b);
      else if (YAML::convert<double>::decode(v, d)) train.Set(key, d);
      else train.Set(key, v.as<std::string>());
    }
    auto size = [&](int64_t h, int64_t w) {
      auto a = Napi::Array::New(env, 2);
      a.Set(0u, (double)h);
      a.Set(1u, (double)w);
      return a;
    };
    const y26::PredictArgs pa;
    auto predict = Napi::Object::New(env);
    predict.Set("imgsz", size(pa.imgsz_h, pa.imgsz_w));
    predict.Set("batch", pa.batch);
    predict.Set("half", pa.half);
    predict.Set("conf", pa.conf);
    predict.Set("iou", pa.iou);
    predict.Set("max_det", pa.max_det);
    predict.Set("agnostic_nms", pa.agnostic_nms);
    predict.Set("vid_stride", pa.vid_stride);
    predict.Set("skip_errors", pa.skip_errors);
    predict.Set("save", pa.save);
    predict.Set("save_txt", pa.save_txt);
    predict.Set("save_conf", pa.save_conf);
    predict.Set("save_crop", pa.save_crop);
    predict.Set("exist_ok", pa.exist_ok);
    predict.Set("show_labels", pa.show_labels);
    predict.Set("show_conf", pa.show_conf);
    const y26::ExportOptions eo;
    auto exp = Napi::Object::New(env);
    exp.Set("format", eo.format);
    exp.Set("imgsz", size(eo.imgsz_h, eo.imgsz_w));
    exp.Set("batch", (double)eo.batch);
    exp.Set("dynamic", eo.dynamic);
    exp.Set("half", eo.half);
    exp.Set("opset", eo.opset);
    exp.Set("simplify", eo.simplify);
    exp.Set("end2end", eo.end2end);
    exp.Set("max_det", (double)eo.max_det);
    auto o = Napi::Object::New(env);
    o.Set("train", train);
    o.Set("predict", predict);
    o.Set("export", exp);
    return o;
  });
}

static void InitTrain(Napi::Env env, Napi::Object exports) {
  exports.Set("coreDefaults", Napi::Function::New(env, CoreDefaults));
  exports.Set("startDemo", Napi::Function::New(env, StartDemo));
  exports.Set("startTraining", Napi::Function::New(env, StartTraining));
  exports.Set("startValidation", Napi::Function::New(env, StartValidation));
}
Y26_ADDON_REGISTER(InitTrain);

}  // namespace y26addon
