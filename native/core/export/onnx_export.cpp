// The graph mirrors YoloModel::forward in eval mode. `simplify` has nothing left to do: BatchNorm is folded
// while writing, static anchors are constants and no shape arithmetic is emitted for static exports.
#include "export/onnx_export.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <optional>
#include <sstream>

#include "export/onnx_proto.h"
#include "util/system.h"
#include "model/loader.h"
#include "model/postprocess.h"
#include "util/error.h"
#include "util/text.h"
#include "util/timestamp.h"

namespace y26 {
namespace {

using onnxpb::Attribute;
using Names = std::vector<std::string>;

Attribute attr_i(const std::string& n, int64_t v) {
  Attribute a;
  a.name = n;
  a.type = Attribute::kInt;
  a.i = v;
  return a;
}
Attribute attr_ints(const std::string& n, std::vector<int64_t> v) {
  Attribute a;
  a.name = n;
  a.type = Attribute::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute attr_s(const std::string& n, const std::string& v) {
  Attribute a;
  a.name = n;
  a.type = Attribute::kString;
  a.s = v;
  return a;
}

int32_t onnx_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return onnxpb::kFloat;
    case torch::kHalf: return onnxpb::kFloat16;
    case torch::kLong: return onnxpb::kInt64;
    default: fail(std::string("ONNX export: unsupported tensor type ") + c10::toString(t));
  }
}

// Emits nodes and initializers with unique names; `dt` is the dtype of weights and activations.
class GraphBuilder {
 public:
  GraphBuilder(int opset, torch::ScalarType dt) : opset(opset), dt(dt) {}
  onnxpb::Graph g;
  const int opset;
  const torch::ScalarType dt;

  Names nodes(const std::string& op, const Names& in, int n_out, std::vector<Attribute> attrs = {}) {
    onnxpb::Node n;
    n.op_type = op;
    n.name = op + "_" + std::to_string(g.nodes.size());
    n.inputs = in;
    for (int i = 0; i < n_out; ++i) n.outputs.push_back(n.name + (n_out > 1 ? ":" + std::to_string(i) : ""));
    n.attributes = std::move(attrs);
    g.nodes.push_back(n);
    return n.outputs;
  }
  std::string node(const std::string& op, const Names& in, std::vector<Attribute> attrs = {}) {
    return nodes(op, in, 1, std::move(attrs))[0];
  }
  // Initializer from a tensor; floating tensors are converted to `as` (default: the graph dtype).
  std::string tensor(const torch::Tensor& t, const std::string& hint,
                     std::optional<torch::ScalarType> as = std::nullopt) {
    torch::Tensor c = t.detach().to(torch::kCPU);
    if (c.is_floating_point()) c = c.to(as ? *as : dt);
    c = c.contiguous();
    onnxpb::Tensor x;
    x.name = hint + "_" + std::to_string(g.initializers.size());
    x.dtype = onnx_dtype(c.scalar_type());
    x.dims = c.sizes().vec();
    x.raw.assign(static_cast<const char*>(c.data_ptr()), c.nbytes());
    g.initializers.push_back(std::move(x));
    return g.initializers.back().name;
  }
  std::string i64(const std::vector<int64_t>& v) {
    return tensor(torch::tensor(v, torch::kLong), "const_i64");
  }
  std::string scalar(double v, std::optional<torch::ScalarType> as = std::nullopt) {
    return tensor(torch::full({}, v, torch::kDouble), "const_f", as ? *as : dt);
  }

  // Common op helpers (opset >= 13 forms).
  std::string slice(const std::string& x, int64_t axis, int64_t start, int64_t end) {
    return node("Slice", {x, i64({start}), i64({end}), i64({axis})});
  }
  std::string concat(const Names& xs, int64_t axis) {
    return xs.size() == 1 ? xs[0] : node("Concat", xs, {attr_i("axis", axis)});
  }
  std::string reshape(const std::string& x, const std::vector<int64_t>& shape) {
    return node("Reshape", {x, i64(shape)});
  }
  std::string unsqueeze(const std::string& x, int64_t axis) { return node("Unsqueeze", {x, i64({axis})}); }
  std::string silu(const std::string& x) { return node("Mul", {x, node("Sigmoid", {x})}); }
  std::string reduce_max_last(const std::string& x) {
    if (opset >= 18) return node("ReduceMax", {x, i64({-1})}, {attr_i("keepdims", 0)});
    return node("ReduceMax", {x}, {attr_ints("axes", {-1}), attr_i("keepdims", 0)});
  }
  // x (B, N, C) indexed by idx (B, k) along dim 1 -> (B, k, C).
  std::string gather_rows(const std::string& x, const std::string& idx, int64_t c) {
    auto shape = concat({node("Shape", {idx}), i64({c})}, 0);
    return node("GatherElements", {x, node("Expand", {unsqueeze(idx, -1), shape})}, {attr_i("axis", 1)});
  }
};

// ---- layers ----------------------------------------------------------------------------------

// Conv2d with BatchNorm folded in (when the model is not fused yet), as one ONNX Conv with bias.
std::string emit_conv2d(GraphBuilder& b, torch::nn::Conv2dImpl& conv, torch::nn::BatchNorm2dImpl* bn,
                        const std::string& x) {
  torch::Tensor w = conv.weight.detach().to(torch::kFloat);
  torch::Tensor bias = conv.bias.defined() ? conv.bias.detach().to(torch::kFloat)
                                           : torch::zeros({w.size(0)}, w.options());
  if (bn) {
    auto scale = bn->weight.detach().to(torch::kFloat) /
                 torch::sqrt(bn->running_var.detach().to(torch::kFloat) + bn->options.eps());
    w = w * scale.view({-1, 1, 1, 1});
    bias = (bias - bn->running_mean.detach().to(torch::kFloat)) * scale + bn->bias.detach().to(torch::kFloat);
  }
  const auto& o = conv.options;
  // The padding option is a variant (c10:: in libtorch 1.13, std:: in 2.x): unqualified get finds either.
  using std::get;
  const auto& pad = get<torch::ExpandingArray<2>>(o.padding());
  const int64_t ph = (*pad)[0], pw = (*pad)[1];
  return b.node("Conv", {x, b.tensor(w, "w"), b.tensor(bias, "b")},
                {attr_ints("kernel_shape", {w.size(2), w.size(3)}),
                 attr_ints("strides", {(*o.stride())[0], (*o.stride())[1]}), attr_ints("pads", {ph, pw, ph, pw}),
                 attr_ints("dilations", {(*o.dilation())[0], (*o.dilation())[1]}), attr_i("group", o.groups())});
}

std::string emit_layer(GraphBuilder& b, Layer& layer, const std::string& x);

std::string emit_seq(GraphBuilder& b, Seq& s, const std::string& x) {
  std::string y = x;
  for (auto& item : s.items) y = emit_layer(b, *item, y);
  if (!s.tail.is_empty()) y = emit_conv2d(b, *s.tail, nullptr, y);
  return y;
}

std::string emit_attention(GraphBuilder& b, Attention& a, const std::string& x) {
  const int64_t kd = a.key_dim, hd = a.head_dim;
  auto shape = b.node("Shape", {x});  // (B, C, H, W): the attention output goes back to it
  auto qkv = b.reshape(emit_layer(b, *a.qkv, x), {0, a.num_heads, 2 * kd + hd, -1});
  auto q = b.slice(qkv, 2, 0, kd), k = b.slice(qkv, 2, kd, 2 * kd), v = b.slice(qkv, 2, 2 * kd, 2 * kd + hd);
  auto qt = b.node("Transpose", {q}, {attr_ints("perm", {0, 1, 3, 2})});
  auto attn = b.node("Mul", {b.node("MatMul", {qt, k}), b.scalar(a.scale)});
  attn = b.node("Softmax", {attn}, {attr_i("axis", -1)});
  auto at = b.node("Transpose", {attn}, {attr_ints("perm", {0, 1, 3, 2})});
  auto y = b.node("Reshape", {b.node("MatMul", {v, at}), shape});
  y = b.node("Add", {y, emit_layer(b, *a.pe, b.node("Reshape", {v, shape}))});
  return emit_layer(b, *a.proj, y);
}

std::string emit_layer(GraphBuilder& b, Layer& layer, const std::string& x) {
  if (auto* c = dynamic_cast<Conv*>(&layer)) {
    auto y = emit_conv2d(b, *c->conv, c->fused() ? nullptr : c->bn.get(), x);
    return c->has_act() ? b.silu(y) : y;
  }
  if (auto* s = dynamic_cast<Seq*>(&layer)) return emit_seq(b, *s, x);
  if (auto* m = dynamic_cast<Bottleneck*>(&layer)) {
    auto y = emit_layer(b, *m->cv2, emit_layer(b, *m->cv1, x));
    return m->add ? b.node("Add", {x, y}) : y;
  }
  if (auto* m = dynamic_cast<C3k*>(&layer)) {
    auto a = emit_seq(b, *m->m, emit_layer(b, *m->cv1, x));
    return emit_layer(b, *m->cv3, b.concat({a, emit_layer(b, *m->cv2, x)}, 1));
  }
  if (auto* m = dynamic_cast<C3k2*>(&layer)) {
    auto y = emit_layer(b, *m->cv1, x);
    Names parts{b.slice(y, 1, 0, m->c), b.slice(y, 1, m->c, 2 * m->c)};
    for (auto& blk : m->m->items) parts.push_back(emit_layer(b, *blk, parts.back()));
    return emit_layer(b, *m->cv2, b.concat(parts, 1));
  }
  if (auto* m = dynamic_cast<SPPF*>(&layer)) {
    Names ys{emit_layer(b, *m->cv1, x)};
    const int64_t p = m->k / 2;
    for (int64_t i = 0; i < m->n; ++i)
      ys.push_back(b.node("MaxPool", {ys.back()}, {attr_ints("kernel_shape", {m->k, m->k}),
                                                   attr_ints("strides", {1, 1}), attr_ints("pads", {p, p, p, p})}));
    auto y = emit_layer(b, *m->cv2, b.concat(ys, 1));
    return m->add ? b.node("Add", {x, y}) : y;
  }
  if (auto* m = dynamic_cast<C2PSA*>(&layer)) {
    auto y = emit_layer(b, *m->cv1, x);
    auto a = b.slice(y, 1, 0, m->c);
    auto bb = emit_seq(b, *m->m, b.slice(y, 1, m->c, 2 * m->c));
    return emit_layer(b, *m->cv2, b.concat({a, bb}, 1));
  }
  if (auto* m = dynamic_cast<PSABlock*>(&layer)) {
    auto y = emit_attention(b, *m->attn, x);
    if (m->add) y = b.node("Add", {x, y});
    auto f = emit_seq(b, *m->ffn, y);
    return m->add ? b.node("Add", {y, f}) : f;
  }
  if (auto* m = dynamic_cast<Attention*>(&layer)) return emit_attention(b, *m, x);
  fail(std::string("ONNX export: no ONNX form for layer type ") + typeid(layer).name());
}

// ---- head ------------------------------------------------------------------------------------

struct RawBranch {
  std::string boxes, scores, kpts;  // (B, 4, A), (B, nc, A), (B, nk*nd, A); float32
  std::string extra;                // segment mask coefficients (B, nm, A) or obb angle (B, ne, A); float32
};

RawBranch emit_branch(GraphBuilder& b, DetectHead& h, const Names& feats, bool o2o) {
  auto& box = o2o ? h.one2one_cv2 : h.cv2;
  auto& cls = o2o ? h.one2one_cv3 : h.cv3;
  Names bx, sc, kp, ex;
  const bool pose = h.spec.task == Task::Pose;
  const bool seg = h.spec.task == Task::Segment, obb = h.spec.task == Task::Obb;
  const int64_t nkd = pose ? h.spec.kpt_shape[0] * h.spec.kpt_shape[1] : 0;
  for (size_t i = 0; i < feats.size(); ++i) {
    bx.push_back(b.reshape(emit_layer(b, *box->items[i], feats[i]), {0, 4 * h.spec.reg_max, -1}));
    sc.push_back(b.reshape(emit_layer(b, *cls->items[i], feats[i]), {0, h.spec.nc, -1}));
    if (pose) {
      auto feat = emit_layer(b, *(o2o ? h.one2one_cv4 : h.cv4)->items[i], feats[i]);
      auto& list = o2o ? h.one2one_cv4_kpts : h.cv4_kpts;
      auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(list->ptr(i));
      kp.push_back(b.reshape(emit_conv2d(b, *conv, nullptr, feat), {0, nkd, -1}));
    }
    if (seg || obb) {
      auto& branch = o2o ? h.one2one_cv4 : h.cv4;
      ex.push_back(b.reshape(emit_layer(b, *branch->items[i], feats[i]), {0, seg ? h.spec.nm : h.spec.ne, -1}));
    }
  }
  // Decode and top-k run in float32 even for half exports (output0 stays float32).
  auto f32 = [&](const std::string& v) {
    return b.dt == torch::kFloat ? v : b.node("Cast", {v}, {attr_i("to", onnxpb::kFloat)});
  };
  RawBranch r{f32(b.concat(bx, 2)), f32(b.concat(sc, 2)), ""};
  if (pose) r.kpts = f32(b.concat(kp, 2));
  if (seg || obb) r.extra = f32(b.concat(ex, 2));
  return r;
}

// Proto26: P4/P5 refined to P3's channels and nearest-upsampled onto P3 (x2, x4), summed, then the proto chain.
std::string emit_proto(GraphBuilder& b, Proto26& p, const Names& feats) {
  std::string feat = feats[0];
  for (size_t i = 0; i < p.feat_refine->items.size(); ++i) {
    const float s = float(1 << (i + 1));  // levels are strides 8, 16, 32 and sizes are exact multiples
    auto scales = b.tensor(torch::tensor({1.0f, 1.0f, s, s}), "scales", torch::kFloat);
    auto up = b.node("Resize", {emit_layer(b, *p.feat_refine->items[i], feats[i + 1]), "", scales},
                     {attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", "asymmetric"),
                      attr_s("nearest_mode", "floor")});
    feat = b.node("Add", {feat, up});
  }
  auto x = emit_layer(b, *p.cv1, emit_layer(b, *p.feat_fuse, feat));
  auto& up = *p.upsample;
  const auto& o = up.options;
  x = b.node("ConvTranspose", {x, b.tensor(up.weight, "w"), b.tensor(up.bias, "b")},
             {attr_ints("kernel_shape", {up.weight.size(2), up.weight.size(3)}),
              attr_ints("strides", {(*o.stride())[0], (*o.stride())[1]})});
  return emit_layer(b, *p.cv3, emit_layer(b, *p.cv2, x));
}

// Anchor points (1, 2, A) and strides (1, A), float32: constants for static sizes, else from Shape ops.
std::pair<std::string, std::string> emit_anchors(GraphBuilder& b, const Names& feats,
                                                 const std::vector<double>& strides, bool dynamic,
                                                 int64_t h, int64_t w) {
  if (!dynamic) {
    std::vector<std::pair<int64_t, int64_t>> hw;
    for (double s : strides) hw.emplace_back((int64_t)std::ceil(h / s), (int64_t)std::ceil(w / s));
    auto g = anchor_grid(hw, strides, torch::kCPU, torch::kFloat);
    return {b.tensor(g.points, "anchor_points", torch::kFloat), b.tensor(g.strides, "anchor_strides", torch::kFloat)};
  }
  Names pts, strs;
  auto f32 = [&](const std::string& v) { return b.node("Cast", {v}, {attr_i("to", onnxpb::kFloat)}); };
  for (size_t i = 0; i < feats.size(); ++i) {
    auto shape = b.node("Shape", {feats[i]});
    auto H = b.slice(shape, 0, 2, 3), W = b.slice(shape, 0, 3, 4);  // (1,) int64
    auto range = [&](const std::string& n) {
      auto r = b.node("Range", {b.tensor(torch::zeros({}, torch::kLong), "zero"),
                                b.node("Squeeze", {n, b.i64({0})}), b.tensor(torch::ones({}, torch::kLong), "one")});
      return b.node("Add", {f32(r), b.scalar(0.5, torch::kFloat)});  // cell centres
    };
    auto hw = b.concat({H, W}, 0);
    auto gx = b.node("Expand", {b.unsqueeze(range(W), 0), hw});  // (H, W): x varies along columns
    auto gy = b.node("Expand", {b.unsqueeze(range(H), 1), hw});
    pts.push_back(b.concat({b.reshape(gx, {1, -1}), b.reshape(gy, {1, -1})}, 0));  // (2, H*W) row-major
    auto n = b.node("Mul", {H, W});
    strs.push_back(b.node("Expand", {b.tensor(torch::full({1, 1}, strides[i]), "stride", torch::kFloat),
                                     b.concat({b.i64({1}), n}, 0)}));
  }
  return {b.unsqueeze(b.concat(pts, 1), 0), b.concat(strs, 1)};
}

// (B, 4+nc+extra, A): boxes (xyxy or xywh) in input pixels, sigmoid scores, decoded keypoints.
std::string emit_decode(GraphBuilder& b, const RawBranch& r, const std::string& points, const std::string& strides,
                        bool xywh, Task task, const std::vector<int64_t>& kpt_shape) {
  auto lt = b.slice(r.boxes, 1, 0, 2), rb = b.slice(r.boxes, 1, 2, 4);
  auto x1y1 = b.node("Sub", {points, lt}), x2y2 = b.node("Add", {points, rb});
  std::string box;
  if (task == Task::Obb) {  // decode_rboxes: centre = anchor + R(angle)((r-l)/2, (b-t)/2), w = l+r, h = t+b
    auto cs = b.node("Cos", {r.extra}), sn = b.node("Sin", {r.extra});
    auto half = b.node("Div", {b.node("Sub", {rb, lt}), b.scalar(2.0, torch::kFloat)});
    auto xf = b.slice(half, 1, 0, 1), yf = b.slice(half, 1, 1, 2);
    auto x = b.node("Sub", {b.node("Mul", {xf, cs}), b.node("Mul", {yf, sn})});
    auto y = b.node("Add", {b.node("Mul", {xf, sn}), b.node("Mul", {yf, cs})});
    auto xy = b.node("Add", {b.concat({x, y}, 1), points});
    box = b.concat({xy, b.node("Add", {lt, rb})}, 1);
  } else if (xywh)
    box = b.concat({b.node("Div", {b.node("Add", {x1y1, x2y2}), b.scalar(2.0, torch::kFloat)}),
                    b.node("Sub", {x2y2, x1y1})}, 1);
  else
    box = b.concat({x1y1, x2y2}, 1);
  Names parts{b.node("Mul", {box, strides}), b.node("Sigmoid", {r.scores})};
  if (!r.kpts.empty()) {
    const int64_t nk = kpt_shape[0], nd = kpt_shape[1];
    auto k = b.reshape(r.kpts, {0, nk, nd, -1});
    Names kk{b.node("Mul", {b.node("Add", {b.slice(k, 2, 0, 2), points}), strides})};
    if (nd == 3) kk.push_back(b.node("Sigmoid", {b.slice(k, 2, 2, 3)}));
    parts.push_back(b.reshape(b.concat(kk, 2), {0, nk * nd, -1}));
  }
  if (!r.extra.empty()) parts.push_back(r.extra);  // raw mask coefficients / angle
  return b.concat(parts, 1);
}

// Two-stage top-k of topk_end2end: (B, C, A) decoded -> (B, k, 6+extra).
std::string emit_topk(GraphBuilder& b, const std::string& decoded, int64_t nc, int64_t extra, int64_t max_det,
                      int64_t static_anchors) {
  auto preds = b.node("Transpose", {decoded}, {attr_ints("perm", {0, 2, 1})});  // (B, A, C)
  auto boxes = b.slice(preds, 2, 0, 4), scores = b.slice(preds, 2, 4, 4 + nc);
  std::string k;
  if (static_anchors > 0) k = b.i64({std::min(max_det, static_anchors)});
  else k = b.node("Min", {b.i64({max_det}), b.slice(b.node("Shape", {preds}), 0, 1, 2)});
  auto topk = [&](const std::string& x) {
    return b.nodes("TopK", {x, k}, 2, {attr_i("axis", -1), attr_i("largest", 1), attr_i("sorted", 1)});
  };
  auto anchor_idx = topk(b.reduce_max_last(scores))[1];                        // (B, k)
  auto cand = b.reshape(b.gather_rows(scores, anchor_idx, nc), {0, -1});       // (B, k*nc)
  auto best = topk(cand);
  auto nc_c = b.i64({nc});
  auto cls = b.node("Cast", {b.node("Mod", {best[1], nc_c})}, {attr_i("to", onnxpb::kFloat)});
  auto idx = b.node("GatherElements", {anchor_idx, b.node("Div", {best[1], nc_c})}, {attr_i("axis", 1)});
  Names out{b.gather_rows(boxes, idx, 4), b.unsqueeze(best[0], -1), b.unsqueeze(cls, -1)};
  if (extra > 0) out.push_back(b.gather_rows(b.slice(preds, 2, 4 + nc, 4 + nc + extra), idx, extra));
  return b.concat(out, -1);
}

std::string py_bool(bool v) { return v ? "True" : "False"; }

std::string py_str(const std::string& s) {
  const char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string o(1, q);
  for (char c : s) {
    if (c == '\\' || c == q) o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else o += c;
  }
  return o + q;
}

int64_t ir_version_for(int opset) { return opset <= 14 ? 7 : opset <= 18 ? 8 : opset <= 20 ? 9 : 10; }

}  // namespace

// ---- options ---------------------------------------------------------------------------------

const std::vector<std::string>& known_export_formats() {
  static const std::vector<std::string> f{"torchscript", "onnx", "openvino", "engine", "coreml", "saved_model",
                                          "pb", "tflite", "edgetpu", "tfjs", "paddle", "mnn", "ncnn", "imx",
                                          "rknn", "executorch", "axelera"};
  return f;
}

ExportOptions parse_export_options(const std::string& format,
                                   const std::vector<std::pair<std::string, std::string>>& kv) {
  const std::string fmt = to_lower(format);
  const auto& known = known_export_formats();
  if (std::find(known.begin(), known.end(), fmt) == known.end())
    fail("export: unknown format '" + format + "'; supported by this engine: onnx");
  if (fmt != "onnx")
    fail("export: format '" + fmt + "' is not written by this engine; export format 'onnx' and convert it with " +
         (fmt == "engine" ? "TensorRT's trtexec --onnx=model.onnx" : "that format's own ONNX converter"));
  static const std::vector<std::string> keys{"imgsz", "batch", "dynamic", "half", "opset", "simplify",
                                             "end2end", "max_det", "nms", "device"};
  ExportOptions o;
  o.format = fmt;
  for (const auto& entry : kv) {
    const std::string& key = entry.first;
    const std::string& val = entry.second;
    auto bad = [&](const std::string& why) -> void {
      fail("export: option " + key + "=" + val + " " + why);
    };
    auto to_bool = [&]() {
      const std::string v = to_lower(val);
      if (v == "true" || v == "1" || v == "yes") return true;
      if (v == "false" || v == "0" || v == "no") return false;
      bad("is not a boolean (use true or false)");
      return false;
    };
    auto to_int = [&](const std::string& s) -> int64_t {
      try {
        size_t used = 0;
        int64_t v = std::stoll(s, &used);
        if (used == s.size()) return v;
      } catch (const std::exception&) {
      }
      bad("is not an integer");
      return 0;
    };
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      std::string list;
      for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
      fail("export: option '" + key + "' is not taken by format 'onnx' (it takes: " + list + ")");
    }
    if (key == "imgsz") {
      std::string s;
      for (char c : val)
        if (c != '[' && c != ']' && c != '(' && c != ')' && c != ' ') s += c;
      auto comma = s.find(',');
      o.imgsz_h = to_int(s.substr(0, comma));
      o.imgsz_w = comma == std::string::npos ? o.imgsz_h : to_int(s.substr(comma + 1));
      if (o.imgsz_h < 32 || o.imgsz_w < 32) bad("must be at least 32");
    } else if (key == "batch") {
      o.batch = to_int(val);
      if (o.batch < 1) bad("must be >= 1");
    } else if (key == "max_det") {
      o.max_det = to_int(val);
      if (o.max_det < 1) bad("must be >= 1");
    } else if (key == "opset") {
      o.opset = (int)to_int(val);
      if (o.opset < kMinOnnxOpset || o.opset > kMaxOnnxOpset)
        bad("is outside the supported range " + std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset));
    } else if (key == "dynamic") o.dynamic = to_bool();
    else if (key == "half") o.half = to_bool();
    else if (key == "simplify") o.simplify = to_bool();
    else if (key == "end2end") o.end2end = to_bool();
    else if (key == "nms") {
      if (to_bool()) bad("is not available: YOLO26 end2end models need no NMS (use end2end=false for the raw output)");
    } else if (key == "device") {
      // The written file does not depend on where it was exported (the weights are read, not traced), but a
      // device that cannot be used fails as it would in predict (no CUDA libtorch, missing GPU, several GPUs).
      resolve_device(val);
    }
  }
  return o;
}

// ---- export ----------------------------------------------------------------------------------

void export_onnx(const YoloModel& model_c, const ExportOptions& opt, const std::string& path) {
  auto& model = const_cast<YoloModel&>(model_c);  // only read: modules hand out non-const children
  const ModelConfig& cfg = model.config();
  if (opt.format != "onnx") fail("export_onnx: format must be 'onnx', got '" + opt.format + "'");
  if (opt.opset < kMinOnnxOpset || opt.opset > kMaxOnnxOpset)
    fail(path + ": opset " + std::to_string(opt.opset) + " is outside the supported range " +
         std::to_string(kMinOnnxOpset) + ".." + std::to_string(kMaxOnnxOpset));
  const int64_t smax = (int64_t)*std::max_element(model.stride().begin(), model.stride().end());
  if (opt.imgsz_h % smax || opt.imgsz_w % smax || opt.batch < 1)
    fail(path + ": imgsz " + std::to_string(opt.imgsz_h) + "x" + std::to_string(opt.imgsz_w) +
         " must be a multiple of the model stride " + std::to_string(smax) + " and batch >= 1");

  // Module of each layer: children of the "model" stack are named by layer index.
  std::shared_ptr<torch::nn::Module> stack;
  for (const auto& c : model.named_children())
    if (c.key() == "model") stack = c.value();
  if (!stack) fail("export_onnx: the model has no layer stack");
  std::map<int, std::shared_ptr<torch::nn::Module>> mods;
  for (const auto& c : stack->named_children()) mods[std::stoi(c.key())] = c.value();
  const Task task = cfg.task_kind();
  const bool classify = task == Task::Classify;
  auto head = std::dynamic_pointer_cast<DetectHead>(mods[cfg.layers.back().index]);
  auto cls_head = std::dynamic_pointer_cast<ClassifyHead>(mods[cfg.layers.back().index]);
  if (classify ? !cls_head : !head) fail("export_onnx: the last layer is not a " + std::string(classify ? "Classify" : "detection") + " head");
  const bool e2e = opt.end2end && cfg.end2end && !classify;
  if (!classify && !e2e && !head->has_one2many())
    fail(path + ": end2end=false needs the one2many head, which fuse() removed; export a freshly loaded model");

  GraphBuilder b(opt.opset, opt.half ? torch::kHalf : torch::kFloat);
  const std::string input = "images";
  std::vector<std::string> outs(cfg.layers.size());
  auto get = [&](int f) { return f < 0 ? input : outs[f]; };
  for (size_t i = 0; i + 1 < cfg.layers.size(); ++i) {
    const auto& l = cfg.layers[i];
    if (l.module == "Concat") {
      Names parts;
      for (int f : l.from) parts.push_back(get(f));
      outs[i] = b.concat(parts, 1);
    } else if (l.module == "Upsample") {
      auto scales = b.tensor(torch::tensor({1.0f, 1.0f, 2.0f, 2.0f}), "scales", torch::kFloat);
      outs[i] = b.node("Resize", {get(l.from[0]), "", scales},
                       {attr_s("mode", "nearest"), attr_s("coordinate_transformation_mode", "asymmetric"),
                        attr_s("nearest_mode", "floor")});
    } else {
      auto layer = std::dynamic_pointer_cast<Layer>(mods[l.index]);
      if (!layer) fail("export_onnx: layer " + std::to_string(l.index) + " (" + l.module + ") has no module");
      outs[i] = emit_layer(b, *layer, get(l.from[0]));
    }
  }
  Names feats;
  for (int f : cfg.layers.back().from) feats.push_back(get(f));

  using onnxpb::Dim;
  const Dim batch_dim = opt.dynamic ? Dim{-1, "batch"} : Dim{opt.batch, ""};
  onnxpb::ValueInfo out{"output0", onnxpb::kFloat, {}};
  int64_t extra = 0;
  if (classify) {
    // Classify head as the official export (export=True): conv, global average pool, flatten, linear, softmax.
    // Softmax runs in float32 even for half exports (output0 stays float32, as for the other tasks).
    auto y = emit_layer(b, *cls_head->conv, feats[0]);
    y = b.node("Flatten", {b.node("GlobalAveragePool", {y})}, {attr_i("axis", 1)});
    auto& lin = *cls_head->linear;
    y = b.node("Gemm", {y, b.tensor(lin.weight, "w"), b.tensor(lin.bias, "b")}, {attr_i("transB", 1)});
    if (b.dt != torch::kFloat) y = b.node("Cast", {y}, {attr_i("to", onnxpb::kFloat)});
    y = b.node("Softmax", {y}, {attr_i("axis", 1)});
    b.g.nodes.push_back(onnxpb::Node{"Identity", "output0_identity", "", {y}, {"output0"}, {}});
    out.shape = {batch_dim, Dim{cfg.nc, ""}};
  } else {
    extra = task == Task::Pose      ? cfg.kpt_shape[0] * cfg.kpt_shape[1]
                          : task == Task::Segment ? head->spec.nm
                          : task == Task::Obb     ? head->spec.ne
                                                  : 0;
    int64_t A = 0;
    for (double s : model.stride())
      A += (int64_t)std::ceil(opt.imgsz_h / s) * (int64_t)std::ceil(opt.imgsz_w / s);
    auto raw = emit_branch(b, *head, feats, e2e);
    auto [points, strides] = emit_anchors(b, feats, model.stride(), opt.dynamic, opt.imgsz_h, opt.imgsz_w);
    auto decoded = emit_decode(b, raw, points, strides, !e2e, task, cfg.kpt_shape);
    std::string output = e2e ? emit_topk(b, decoded, cfg.nc, extra, opt.max_det, opt.dynamic ? 0 : A) : decoded;
    // Name the final tensor output0 through an Identity (keeps node outputs unique).
    b.g.nodes.push_back(onnxpb::Node{"Identity", "output0_identity", "", {output}, {"output0"}, {}});
    if (task == Task::Segment) {  // output1: mask prototypes (B, nm, 2*H/8, 2*W/8), float32
      auto proto = emit_proto(b, *head->proto, feats);
      if (b.dt != torch::kFloat) proto = b.node("Cast", {proto}, {attr_i("to", onnxpb::kFloat)});
      b.g.nodes.push_back(onnxpb::Node{"Identity", "output1_identity", "", {proto}, {"output1"}, {}});
    }
    if (e2e)
      out.shape = {batch_dim, opt.dynamic ? Dim{-1, "detections"} : Dim{std::min(opt.max_det, A), ""},
                   Dim{6 + extra, ""}};
    else
      out.shape = {batch_dim, Dim{4 + cfg.nc + extra, ""}, opt.dynamic ? Dim{-1, "anchors"} : Dim{A, ""}};
  }

  onnxpb::ValueInfo in{input, opt.half ? onnxpb::kFloat16 : onnxpb::kFloat, {}};
  if (opt.dynamic) in.shape = {Dim{-1, "batch"}, Dim{cfg.channels, ""}, Dim{-1, "height"}, Dim{-1, "width"}};
  else in.shape = {Dim{opt.batch, ""}, Dim{cfg.channels, ""}, Dim{opt.imgsz_h, ""}, Dim{opt.imgsz_w, ""}};
  b.g.name = "main_graph";
  b.g.inputs = {in};
  b.g.outputs = {out};
  if (task == Task::Segment) {
    onnxpb::ValueInfo o1{"output1", onnxpb::kFloat, {}};
    const int64_t ph = (int64_t)std::ceil(opt.imgsz_h / model.stride()[0]) * 2;
    const int64_t pw = (int64_t)std::ceil(opt.imgsz_w / model.stride()[0]) * 2;
    o1.shape = {batch_dim, Dim{head->spec.nm, ""}, opt.dynamic ? Dim{-1, "proto_height"} : Dim{ph, ""},
                opt.dynamic ? Dim{-1, "proto_width"} : Dim{pw, ""}};
    b.g.outputs.push_back(o1);
  }

  onnxpb::Model m;
  m.ir_version = ir_version_for(opt.opset);
  m.producer_name = "yolo26-native";
  m.producer_version = "0.1.0";
  m.opset_imports = {{"", opt.opset}};
  m.graph = std::move(b.g);

  Names names = opt.names;
  if ((int64_t)names.size() != cfg.nc) {
    names.clear();
    for (int64_t i = 0; i < cfg.nc; ++i) names.push_back(std::to_string(i));
  }
  const std::string imgsz = "[" + std::to_string(opt.imgsz_h) + ", " + std::to_string(opt.imgsz_w) + "]";
  std::ostringstream args;
  args << "{'batch': " << opt.batch << ", 'half': " << py_bool(opt.half) << ", 'dynamic': " << py_bool(opt.dynamic)
       << ", 'simplify': " << py_bool(opt.simplify) << ", 'opset': " << opt.opset << ", 'nms': False}";
  m.metadata_props = {
      {"description", "Ultralytics " + model.display_name() + " model " +
                          (opt.data.empty() ? std::string() : "trained on " + opt.data)},
      {"author", "yolo26-native"},
      {"date", iso_now()},
      {"version", "0.1.0"},
      {"license", "AGPL-3.0 License (https://ultralytics.com/license)"},
      {"docs", "https://docs.ultralytics.com"},
      {"stride", std::to_string(smax)},
      {"task", cfg.task},
      {"batch", std::to_string(opt.batch)},
      {"imgsz", imgsz},
      {"names", names_literal(names)},
      {"args", args.str()},
      {"channels", std::to_string(cfg.channels)},
      {"end2end", py_bool(e2e)},
  };
  if (task == Task::Pose)
    m.metadata_props.push_back(
        {"kpt_shape", "[" + std::to_string(cfg.kpt_shape[0]) + ", " + std::to_string(cfg.kpt_shape[1]) + "]"});
  onnxpb::write_file(m, path);
}

std::string export_model(const std::string& model_path, const ExportOptions& opt, const std::string& out) {
  LoadedModel lm = load_model(model_path, "cpu");
  ExportOptions o = opt;
  if (o.names.empty()) o.names = lm.names;
  if (o.data.empty() && lm.train_args.IsMap() && lm.train_args["data"] && lm.train_args["data"].IsScalar())
    o.data = lm.train_args["data"].as<std::string>();
  std::string path = out;
  if (path.empty()) {
    auto dot = model_path.find_last_of('.');
    auto slash = model_path.find_last_of('/');
    path = (dot != std::string::npos && (slash == std::string::npos || dot > slash) ? model_path.substr(0, dot)
                                                                                     : model_path) + ".onnx";
  }
  export_onnx(*lm.model, o, path);
  return path;
}

// ---- metadata --------------------------------------------------------------------------------

std::string names_literal(const std::vector<std::string>& names) {
  std::string s = "{";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + std::to_string(i) + ": " + py_str(names[i]);
  return s + "}";
}

std::vector<std::string> parse_names_literal(const std::string& s, const std::string& source) {
  auto bad = [&](size_t at) -> void {
    fail(source + ": metadata 'names' is not a dict literal like {0: 'a', 1: 'b'} (at character " +
         std::to_string(at) + "); export the model again");
  };
  std::map<int64_t, std::string> m;
  size_t i = 0;
  auto ws = [&]() { while (i < s.size() && std::isspace((unsigned char)s[i])) ++i; };
  ws();
  if (i >= s.size() || s[i] != '{') bad(i);
  ++i;
  ws();
  while (i < s.size() && s[i] != '}') {
    size_t start = i;
    while (i < s.size() && (std::isdigit((unsigned char)s[i]) || s[i] == '-')) ++i;
    if (start == i) bad(i);
    int64_t key = std::stoll(s.substr(start, i - start));
    ws();
    if (i >= s.size() || s[i] != ':') bad(i);
    ++i;
    ws();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) bad(i);
    const char q = s[i++];
    std::string v;
    for (;; ++i) {
      if (i >= s.size()) bad(i);
      if (s[i] == q) break;
      if (s[i] == '\\' && i + 1 < s.size()) {
        char c = s[++i];
        v += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
      } else v += s[i];
    }
    ++i;
    m[key] = v;
    ws();
    if (i < s.size() && s[i] == ',') ++i;
    ws();
  }
  if (i >= s.size()) bad(i);
  std::vector<std::string> out;
  for (const auto& [k, v] : m) {
    if (k != (int64_t)out.size()) fail(source + ": metadata 'names' keys must be 0..n-1; export the model again");
    out.push_back(v);
  }
  return out;
}

OnnxMetadata read_onnx_metadata(const std::string& path) {
  onnxpb::Model m = onnxpb::read_file(path);
  OnnxMetadata md;
  for (const auto& [k, v] : m.metadata_props) md.props[k] = v;
  auto get = [&](const std::string& k) {
    auto it = md.props.find(k);
    return it == md.props.end() ? std::string() : it->second;
  };
  auto ints = [&](const std::string& k) {
    std::vector<int64_t> v;
    std::string s = get(k), cur;
    for (char c : s + ",") {
      if (std::isdigit((unsigned char)c) || c == '-') cur += c;
      else if (!cur.empty()) v.push_back(std::stoll(cur)), cur.clear();
    }
    return v;
  };
  auto int1 = [&](const std::string& k, int64_t dflt) {
    auto v = ints(k);
    return v.size() == 1 ? v[0] : dflt;
  };
  md.task = get("task");
  md.description = get("description");
  md.version = get("version");
  md.date = get("date");
  md.stride = int1("stride", 0);
  md.batch = int1("batch", 0);
  md.channels = int1("channels", 3);
  md.imgsz = ints("imgsz");
  if (md.imgsz.size() == 1) md.imgsz.push_back(md.imgsz[0]);
  md.end2end = get("end2end") == "True";
  md.kpt_shape = ints("kpt_shape");
  if (md.props.count("names")) md.names = parse_names_literal(get("names"), path);
  auto io = [](const onnxpb::ValueInfo& v) {
    OnnxMetadata::IO r{v.name, v.elem_type, {}};
    for (const auto& d : v.shape) r.shape.push_back(d.param.empty() ? d.value : -1);
    return r;
  };
  for (const auto& v : m.graph.inputs) md.inputs.push_back(io(v));
  for (const auto& v : m.graph.outputs) md.outputs.push_back(io(v));
  for (const auto& [domain, version] : m.opset_imports)
    if (domain.empty() || domain == "ai.onnx") md.opset = version;
  return md;
}

}  // namespace y26
