// exportModel(): writes an ONNX file from a checkpoint off the JS thread.
#include "addon.h"
#include "export/onnx_export.h"

namespace y26addon {

static Napi::Value ExportOnnx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    std::string model = get_string(o, "model");
    std::string out = get_string(o, "out");
    y26::ExportOptions opt;
    opt.format = "onnx";
    opt.imgsz_h = (int64_t)get_number(o, "imgszH", 640);
    opt.imgsz_w = (int64_t)get_number(o, "imgszW", 640);
    opt.batch = (int64_t)get_number(o, "batch", 1);
    opt.dynamic = get_bool(o, "dynamic", false);
    opt.half = get_bool(o, "half", false);
    opt.opset = (int)get_number(o, "opset", 17);
    opt.simplify = get_bool(o, "simplify", true);
    opt.end2end = get_bool(o, "end2end", true);
    opt.max_det = (int64_t)get_number(o, "maxDet", 300);
    return run_async(env, [model, opt, out]() {
      std::string path = y26::export_model(model, opt, out);
      return Finish([path](Napi::Env env) -> Napi::Value { return Napi::String::New(env, path); });
    });
  });
}

static void InitExport(Napi::Env env, Napi::Object exports) {
  exports.Set("exportOnnx", Napi::Function::New(env, ExportOnnx));
}
Y26_ADDON_REGISTER(InitExport);

}  // namespace y26addon
