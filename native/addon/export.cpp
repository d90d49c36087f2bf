// exportModel(): writes an ONNX file from a checkpoint off the JS thread. Options come under their official names
// (the export schema fills them); an absent or null one keeps y26::ExportOptions' default.
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
    if (auto sz = o.Get("imgsz"); sz.IsArray() && sz.As<Napi::Array>().Length() == 2) {
      opt.imgsz_h = sz.As<Napi::Array>().Get(0u).ToNumber().Int64Value();
      opt.imgsz_w = sz.As<Napi::Array>().Get(1u).ToNumber().Int64Value();
    } else {
      opt.imgsz_h = opt.imgsz_w = (int64_t)get_number(o, "imgsz", (double)opt.imgsz_h);
    }
    opt.batch = (int64_t)get_number(o, "batch", (double)opt.batch);
    opt.dynamic = get_bool(o, "dynamic", opt.dynamic);
    opt.half = get_bool(o, "half", opt.half);
    opt.opset = (int)get_number(o, "opset", opt.opset);
    opt.simplify = get_bool(o, "simplify", opt.simplify);
    opt.end2end = get_bool(o, "end2end", opt.end2end);
    opt.max_det = (int64_t)get_number(o, "max_det", (double)opt.max_det);
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
