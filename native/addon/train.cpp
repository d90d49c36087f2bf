// train() / val() / demo: long runs on their own thread, events streamed to JS through a thread-safe
// function, stop() honoured after the current batch, and the outcome delivered as a final event.
#include <atomic>
#include <thread>

#include "addon.h"
#include "addon_yaml.h"
#include "eval/validator.h"
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

// trainDefaults() -> the core's table of train/val defaults (default.yaml values), for the test that keeps the
// facade's schemas in agreement with it.
static Napi::Value TrainDefaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto o = Napi::Object::New(env);
    for (const auto& kv : y26::train_defaults()) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      bool b;
      double d;
      if (v.IsNull()) o.Set(key, env.Null());
      else if (YAML::convert<bool>::decode(v, b)) o.Set(key, b);
      else if (YAML::convert<double>::decode(v, d)) o.Set(key, d);
      else o.Set(key, v.as<std::string>());
    }
    return o;
  });
}

static void InitTrain(Napi::Env env, Napi::Object exports) {
  exports.Set("trainDefaults", Napi::Function::New(env, TrainDefaults));
  exports.Set("startDemo", Napi::Function::New(env, StartDemo));
  exports.Set("startTraining", Napi::Function::New(env, StartTraining));
  exports.Set("startValidation", Napi::Function::New(env, StartValidation));
}
Y26_ADDON_REGISTER(InitTrain);

}  // namespace y26addon
