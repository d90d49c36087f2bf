// ONNX export written by the engine itself: the graph is emitted from the model's layer list and weights
// (BatchNorm folded into conv bias, SiLU as Sigmoid*Mul, attention as MatMul/Softmax, head decode and the
// end-to-end top-k in-graph), with the official metadata props so a later load can read them back.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/yolo.h"

namespace y26 {

struct ExportOptions {
  std::string format = "onnx";
  int64_t imgsz_h = 640, imgsz_w = 640;  // static input size; the example size when dynamic
  int64_t batch = 1;
  bool dynamic = false;  // batch, height and width symbolic; anchors are then computed in-graph from Shape ops
  bool half = false;     // fp16 weights and input; output0 stays float32 (as the official export's, #23645)
  int opset = 17;        // supported: 13..21
  bool simplify = true;  // accepted for compatibility: the graph is emitted already folded (see onnx_export.cpp)
  bool end2end = true;   // false: classic (B, 4+nc+extra, A) xywh + sigmoid output of the one2many head
  int64_t max_det = 300;
  // Metadata filled by export_model() from the checkpoint; export_onnx() writes them as given.
  std::vector<std::string> names;  // class index -> name (defaults to "0".."nc-1")
  std::string data;                // training data YAML, for the description
};

// Lowest and highest opset the emitter knows how to write.
constexpr int kMinOnnxOpset = 13, kMaxOnnxOpset = 21;

// Formats the official exporter knows; only "onnx" is written by this engine.
const std::vector<std::string>& known_export_formats();

// Builds options from user key/values (strings as typed on a CLI: "640", "640,384", "true").
// Keys: imgsz, batch, dynamic, half, opset, simplify, end2end, max_det, nms (false only), device (checked as
// predict checks it; the file does not depend on it).
// Unknown formats, unsupported formats and keys the format does not take raise y26::Error naming the fix.
ExportOptions parse_export_options(const std::string& format,
                                   const std::vector<std::pair<std::string, std::string>>& kv);

// Writes the ONNX graph of `model` to `path`. The model may be fused or not (BatchNorm is folded while
// writing); end2end=false needs the one2many head, so the model must not have been fuse()d.
void export_onnx(const YoloModel& model, const ExportOptions& opt, const std::string& path);

// Loads a checkpoint or YAML (`load_model`), then export_onnx with its names. Returns the written path
// (`out` or the checkpoint path with an .onnx extension when `out` is empty).
std::string export_model(const std::string& model_path, const ExportOptions& opt, const std::string& out = "");

// Metadata read back from an exported file: the raw props and the fields a loader needs, parsed.
struct OnnxMetadata {
  std::map<std::string, std::string> props;
  std::string task, description, version, date;
  int64_t stride = 0, batch = 0, channels = 3;
  std::vector<int64_t> imgsz;     // [h, w]
  std::vector<std::string> names; // index -> name
  bool end2end = false;
  std::vector<int64_t> kpt_shape; // pose only
  // Model inputs/outputs: name, element type (1 float, 10 float16) and shape (-1 for a symbolic axis).
  struct IO {
    std::string name;
    int elem_type = 1;
    std::vector<int64_t> shape;
  };
  std::vector<IO> inputs, outputs;
  int64_t opset = 0;
};
OnnxMetadata read_onnx_metadata(const std::string& path);

// Python-literal helpers used for the props, exposed for tests: "{0: 'a', 1: 'b'}" <-> names.
std::string names_literal(const std::vector<std::string>& names);
std::vector<std::string> parse_names_literal(const std::string& s, const std::string& source);

}  // namespace y26
