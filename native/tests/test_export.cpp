// ONNX export: protobuf round trip, graph structure and metadata of exported checkpoints, BN folding
// equivalence, option and error handling, and the official checker (python3-onnx) on the written files.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include <torch/cuda.h>

#include "export/onnx_export.h"
#include "export/onnx_proto.h"
#include "model/loader.h"
#include "testing.h"
#include "util/error.h"

using namespace y26;

namespace {

std::string tmp_path(const std::string& name) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/y26_export_test_XXXXXX";
    const char* d = mkdtemp(tmpl);
    return std::string(d ? d : "/tmp");
  }();
  return dir + "/" + name;
}

std::multiset<std::string> op_types(const onnxpb::Model& m) {
  std::multiset<std::string> ops;
  for (const auto& n : m.graph.nodes) ops.insert(n.op_type);
  return ops;
}

// The official checker, full check (shape inference included), through Debian's python3-onnx.
bool onnx_checker_passes(const std::string& path, std::string* log) {
  // Debian's interpreter first: a pyenv python3 on PATH does not see python3-onnx.
  const std::string cmd = "p=/usr/bin/python3; [ -x $p ] || p=python3; $p -c \"import onnx,sys; m=onnx.load(sys.argv[1]); "
                          "onnx.checker.check_model(m, full_check=True)\" '" + path + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return false;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) *log += buf;
  return pclose(p) == 0;
}

const std::string kShapes = "det/yolo26n-shapes.pt";

}  // namespace

TEST_CASE("protobuf writer and reader round trip every field kind") {
  onnxpb::Model m;
  m.ir_version = 8;
  m.producer_name = "p";
  m.opset_imports = {{"", 17}, {"com.example", 1}};
  onnxpb::Node n;
  n.op_type = "Conv";
  n.name = "c0";
  n.inputs = {"x", "", "w"};
  n.outputs = {"y"};
  onnxpb::Attribute a;
  a.name = "pads";
  a.type = onnxpb::Attribute::kInts;
  a.ints = {1, -2, 300000000000LL};
  n.attributes.push_back(a);
  onnxpb::Attribute f;
  f.name = "alpha";
  f.type = onnxpb::Attribute::kFloatAttr;
  f.f = -0.125f;
  n.attributes.push_back(f);
  m.graph.nodes.push_back(n);
  onnxpb::Tensor t;
  t.name = "w";
  t.dtype = onnxpb::kFloat16;
  t.dims = {2, 3};
  t.raw = std::string(12, '\x7f');
  m.graph.initializers.push_back(t);
  m.graph.inputs.push_back({"x", onnxpb::kFloat, {{-1, "batch"}, {3, ""}}});
  m.graph.outputs.push_back({"y", onnxpb::kFloat16, {{5, ""}}});
  m.metadata_props = {{"names", "{0: 'a'}"}, {"empty", ""}};

  auto back = onnxpb::parse(onnxpb::serialize(m), "mem");
  EXPECT(back.ir_version == 8 && back.producer_name == "p");
  EXPECT(back.opset_imports.size() == 2 && back.opset_imports[1].first == "com.example");
  EXPECT(back.graph.nodes.size() == 1);
  const auto& bn = back.graph.nodes[0];
  EXPECT(bn.op_type == "Conv" && bn.name == "c0" && bn.inputs.size() == 3 && bn.inputs[1].empty());
  EXPECT(bn.attributes.size() == 2 && bn.attributes[0].ints == a.ints);
  EXPECT(bn.attributes[1].type == onnxpb::Attribute::kFloatAttr && bn.attributes[1].f == -0.125f);
  EXPECT(back.graph.initializers[0].dims == t.dims && back.graph.initializers[0].raw == t.raw &&
         back.graph.initializers[0].dtype == onnxpb::kFloat16);
  EXPECT(back.graph.inputs[0].shape[0].param == "batch" && back.graph.inputs[0].shape[1].value == 3);
  EXPECT(back.graph.outputs[0].elem_type == onnxpb::kFloat16 && back.graph.outputs[0].shape[0].value == 5);
  EXPECT(back.metadata_props == m.metadata_props);

  // Damaged data: every truncation is a clean y26::Error naming the source, never a crash.
  const std::string bytes = onnxpb::serialize(m);
  int errors = 0;
  for (size_t cut = 1; cut < bytes.size(); cut += 7) {
    try {
      onnxpb::parse(bytes.substr(0, cut), "cut.onnx");
    } catch (const Error& e) {
      ++errors;
      EXPECT(std::string(e.what()).find("cut.onnx") != std::string::npos);
    }
  }
  EXPECT_MSG(errors > 0, "no truncation was detected");
  EXPECT_THROWS(onnxpb::parse("not a model at all", "junk.onnx"));
}

TEST_CASE("names literal: python dict repr round trip with quotes and backslashes") {
  std::vector<std::string> names{"person", "it's", "say \"hi\"", "a\\b", "both ' and \""};
  auto lit = names_literal(names);
  EXPECT(lit.rfind("{0: 'person', 1: \"it's\"", 0) == 0);
  EXPECT(parse_names_literal(lit, "x") == names);
  EXPECT(parse_names_literal("{0: 'a', 1: \"b\"}", "x") == (std::vector<std::string>{"a", "b"}));
  EXPECT_THROWS(parse_names_literal("[0, 1]", "x"));
  EXPECT_THROWS(parse_names_literal("{0: 'a', 2: 'b'}", "x"));
  EXPECT_THROWS(parse_names_literal("{0: 'a'", "x"));
}

TEST_CASE("export yolo26n-shapes at 320: graph, metadata round trip, checker") {
  const std::string out = tmp_path("shapes320.onnx");
  ExportOptions opt;
  opt.imgsz_h = opt.imgsz_w = 320;
  std::string written = export_model(y26test::fixture(kShapes), opt, out);
  EXPECT(written == out);

  auto md = read_onnx_metadata(out);
  EXPECT(md.task == "detect");
  EXPECT(md.stride == 32 && md.batch == 1 && md.channels == 3);
  EXPECT((md.imgsz == std::vector<int64_t>{320, 320}));
  EXPECT(md.end2end);
  EXPECT(md.kpt_shape.empty());
  EXPECT(md.opset == 17);
  auto lm = load_model(y26test::fixture(kShapes), "cpu");
  EXPECT(md.names == lm.names && md.names.size() == 3);
  for (const char* k : {"description", "author", "date", "version", "license", "docs", "stride", "task", "batch",
                        "imgsz", "names", "args", "channels", "end2end"})
    EXPECT_MSG(md.props.count(k) == 1, "missing metadata prop " << k);
  EXPECT(md.props["args"].find("'opset': 17") != std::string::npos);
  EXPECT_MSG(std::regex_match(md.props["date"], std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00)")),
             "export date " << md.props["date"]);
  EXPECT(md.description.find("YOLO26n") != std::string::npos);

  EXPECT(md.inputs.size() == 1 && md.inputs[0].name == "images" && md.inputs[0].elem_type == onnxpb::kFloat);
  EXPECT((md.inputs[0].shape == std::vector<int64_t>{1, 3, 320, 320}));
  EXPECT(md.outputs.size() == 1 && md.outputs[0].name == "output0");
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{1, 300, 6}));

  auto m = onnxpb::read_file(out);
  auto ops = op_types(m);
  EXPECT(ops.count("TopK") == 2 && ops.count("GatherElements") >= 3);
  EXPECT(ops.count("BatchNormalization") == 0);   // folded into conv bias
  EXPECT(ops.count("Resize") == 2 && ops.count("MaxPool") == 3);
  EXPECT(ops.count("Softmax") == 2);              // C2PSA (layer 10) and the attn C3k2 (layer 22)
  EXPECT(ops.count("Shape") == 4);  // 2 attention reshapes + 2 top-k gathers; static anchors are constants
  // Conv count = conv modules on the deploy path: the one2many head is not emitted.
  lm.model->fuse();
  int64_t convs = 0;
  for (const auto& kv : lm.model->state_dict())
    if (kv.second.dim() == 4 && kv.first.size() > 7 && kv.first.substr(kv.first.size() - 7) == ".weight") ++convs;
  EXPECT_MSG((int64_t)ops.count("Conv") == convs, "Conv nodes " << ops.count("Conv") << " vs conv weights " << convs);
  // Initializers carry exactly the fused parameters (plus small constants).
  int64_t params = 0;
  for (const auto& t : m.graph.initializers)
    if (t.dims.size() >= 1 && t.name.rfind("w_", 0) == 0) {
      int64_t n = 1;
      for (auto d : t.dims) n *= d;
      params += n;
    } else if (t.name.rfind("b_", 0) == 0) params += t.dims[0];
  EXPECT_MSG(params == lm.model->num_params(), "exported params " << params << " vs fused " << lm.model->num_params());

  std::string log;
  EXPECT_MSG(onnx_checker_passes(out, &log), "onnx.checker failed (install python3-onnx): " << log);
}

TEST_CASE("BN folding while writing equals YoloModel::fuse") {
  auto a = load_model(y26test::fixture(kShapes), "cpu");
  auto b = load_model(y26test::fixture(kShapes), "cpu");
  b.model->fuse();
  ExportOptions opt;
  opt.imgsz_h = opt.imgsz_w = 320;
  export_onnx(*a.model, opt, tmp_path("unfused.onnx"));
  export_onnx(*b.model, opt, tmp_path("fused.onnx"));
  auto ma = onnxpb::read_file(tmp_path("unfused.onnx")), mb = onnxpb::read_file(tmp_path("fused.onnx"));
  EXPECT(ma.graph.nodes.size() == mb.graph.nodes.size());
  EXPECT(ma.graph.initializers.size() == mb.graph.initializers.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(ma.graph.initializers.size(), mb.graph.initializers.size()); ++i) {
    const auto &x = ma.graph.initializers[i], &y = mb.graph.initializers[i];
    EXPECT(x.dims == y.dims && x.dtype == y.dtype && x.raw.size() == y.raw.size());
    if (x.dtype != onnxpb::kFloat || x.raw.size() != y.raw.size()) continue;
    const float* px = reinterpret_cast<const float*>(x.raw.data());
    const float* py = reinterpret_cast<const float*>(y.raw.data());
    for (size_t j = 0; j < x.raw.size() / 4; ++j)
      worst = std::max(worst, (double)std::fabs(px[j] - py[j]) / (1.0 + std::fabs(py[j])));
  }
  EXPECT_MSG(worst < 1e-5, "folded weights differ by " << worst);
}

TEST_CASE("dynamic, half, classic and opset variants") {
  const std::string model = y26test::fixture(kShapes);
  auto dyn = parse_export_options("onnx", {{"imgsz", "320"}, {"dynamic", "true"}});
  export_model(model, dyn, tmp_path("dyn.onnx"));
  auto md = read_onnx_metadata(tmp_path("dyn.onnx"));
  EXPECT((md.inputs[0].shape == std::vector<int64_t>{-1, 3, -1, -1}));
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{-1, -1, 6}));
  auto ops = op_types(onnxpb::read_file(tmp_path("dyn.onnx")));
  EXPECT(ops.count("Range") == 6);  // x and y cell centres per level, computed in-graph
  std::string log;
  EXPECT_MSG(onnx_checker_passes(tmp_path("dyn.onnx"), &log), "checker (dynamic): " << log);

  auto half = parse_export_options("onnx", {{"imgsz", "320"}, {"half", "true"}});
  export_model(model, half, tmp_path("half.onnx"));
  md = read_onnx_metadata(tmp_path("half.onnx"));
  EXPECT(md.inputs[0].elem_type == onnxpb::kFloat16);
  EXPECT(md.outputs[0].elem_type == onnxpb::kFloat);  // output0 stays float32, as the official export's
  int fp16_weights = 0;
  for (const auto& t : onnxpb::read_file(tmp_path("half.onnx")).graph.initializers)
    fp16_weights += t.name.rfind("w_", 0) == 0 && t.dtype == onnxpb::kFloat16;
  EXPECT(fp16_weights > 50);
  log.clear();
  EXPECT_MSG(onnx_checker_passes(tmp_path("half.onnx"), &log), "checker (half): " << log);

  auto classic = parse_export_options("onnx", {{"imgsz", "320,256"}, {"end2end", "false"}});
  export_model(model, classic, tmp_path("classic.onnx"));
  md = read_onnx_metadata(tmp_path("classic.onnx"));
  EXPECT(!md.end2end);
  EXPECT((md.imgsz == std::vector<int64_t>{320, 256}));
  // (B, 4+nc, A): A = 40*32 + 20*16 + 10*8 at 320x256
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{1, 7, 1280 + 320 + 80}));
  EXPECT(op_types(onnxpb::read_file(tmp_path("classic.onnx"))).count("TopK") == 0);
  log.clear();
  EXPECT_MSG(onnx_checker_passes(tmp_path("classic.onnx"), &log), "checker (classic): " << log);

  // A fused model has no one2many head left: the classic output cannot be written.
  auto lm = load_model(model, "cpu");
  lm.model->fuse();
  classic.imgsz_h = classic.imgsz_w = 320;
  EXPECT_THROWS(export_onnx(*lm.model, classic, tmp_path("x.onnx")));

  auto o18 = parse_export_options("onnx", {{"imgsz", "320"}, {"opset", "18"}});
  export_model(model, o18, tmp_path("o18.onnx"));
  auto m18 = onnxpb::read_file(tmp_path("o18.onnx"));
  EXPECT(m18.ir_version == 8 && read_onnx_metadata(tmp_path("o18.onnx")).opset == 18);
  bool axes_input = false;
  for (const auto& n : m18.graph.nodes)
    if (n.op_type == "ReduceMax") axes_input = n.inputs.size() == 2 && n.attributes.size() == 1;
  EXPECT(axes_input);  // opset 18 moved ReduceMax axes from an attribute to an input
}

TEST_CASE("pose export: (1, 300, 57) and kpt_shape metadata") {
  const std::string out = tmp_path("pose.onnx");
  ExportOptions opt;
  opt.imgsz_h = 384;
  opt.imgsz_w = 640;
  export_model(y26test::fixture("pose/yolo26n-pose-random.pt"), opt, out);
  auto md = read_onnx_metadata(out);
  EXPECT(md.task == "pose");
  EXPECT((md.kpt_shape == std::vector<int64_t>{17, 3}));
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{1, 300, 57}));
  EXPECT((md.inputs[0].shape == std::vector<int64_t>{1, 3, 384, 640}));
  std::string log;
  EXPECT_MSG(onnx_checker_passes(out, &log), "checker (pose): " << log);
}

TEST_CASE("segment and obb exports (YAML models): outputs and checker") {
  ExportOptions opt;
  opt.imgsz_h = 256;
  opt.imgsz_w = 320;
  auto seg = build_model("yolo26n-seg.yaml", 3);
  export_onnx(*seg, opt, tmp_path("seg.onnx"));
  auto md = read_onnx_metadata(tmp_path("seg.onnx"));
  EXPECT(md.task == "segment" && md.outputs.size() == 2);
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{1, 300, 6 + 32}));
  EXPECT(md.outputs[1].name == "output1");
  EXPECT((md.outputs[1].shape == std::vector<int64_t>{1, 32, 64, 80}));  // 2x the P3 grid
  EXPECT(op_types(onnxpb::read_file(tmp_path("seg.onnx"))).count("ConvTranspose") == 1);
  std::string log;
  EXPECT_MSG(onnx_checker_passes(tmp_path("seg.onnx"), &log), "checker (segment): " << log);

  auto obb = build_model("yolo26n-obb.yaml", 15);
  export_onnx(*obb, opt, tmp_path("obb.onnx"));
  md = read_onnx_metadata(tmp_path("obb.onnx"));
  EXPECT(md.task == "obb");
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{1, 300, 7}));  // xywh, score, class, angle
  auto ops = op_types(onnxpb::read_file(tmp_path("obb.onnx")));
  EXPECT(ops.count("Cos") == 1 && ops.count("Sin") == 1);
  log.clear();
  EXPECT_MSG(onnx_checker_passes(tmp_path("obb.onnx"), &log), "checker (obb): " << log);
}

TEST_CASE("classify export: conv, global pool, Gemm, softmax -> (B, nc); metadata; dynamic batch; checker") {
  auto cls = build_model("yolo26n-cls.yaml", 10);
  cls->eval();
  ExportOptions opt;
  opt.imgsz_h = opt.imgsz_w = 64;
  opt.batch = 2;
  opt.names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  export_onnx(*cls, opt, tmp_path("cls.onnx"));
  auto md = read_onnx_metadata(tmp_path("cls.onnx"));
  EXPECT(md.task == "classify" && md.stride == 1 && !md.end2end);
  EXPECT((md.imgsz == std::vector<int64_t>{64, 64}) && md.names.size() == 10 && md.names[9] == "j");
  EXPECT(md.outputs.size() == 1 && md.outputs[0].name == "output0");
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{2, 10}));
  EXPECT((md.inputs[0].shape == std::vector<int64_t>{2, 3, 64, 64}));
  auto graph = onnxpb::read_file(tmp_path("cls.onnx")).graph;
  auto ops = op_types(onnxpb::read_file(tmp_path("cls.onnx")));
  EXPECT(ops.count("GlobalAveragePool") == 1 && ops.count("Gemm") == 1 && ops.count("Flatten") == 1);
  EXPECT(ops.count("TopK") == 0 && ops.count("Sigmoid") > 0);
  // output0 is the head's softmax (probabilities, as the official export=True head), then Gemm before it
  const auto& n = graph.nodes;
  EXPECT(n.size() > 3 && n.back().outputs[0] == "output0" && n[n.size() - 2].op_type == "Softmax" &&
         n[n.size() - 3].op_type == "Gemm");
  std::string log;
  EXPECT_MSG(onnx_checker_passes(tmp_path("cls.onnx"), &log), "checker (classify): " << log);

  opt.dynamic = true;
  opt.half = true;
  export_onnx(*cls, opt, tmp_path("cls_dyn.onnx"));
  md = read_onnx_metadata(tmp_path("cls_dyn.onnx"));
  EXPECT((md.outputs[0].shape == std::vector<int64_t>{-1, 10}) && md.outputs[0].elem_type == 1);
  EXPECT((md.inputs[0].shape == std::vector<int64_t>{-1, 3, -1, -1}) && md.inputs[0].elem_type == 10);
  log.clear();
  EXPECT_MSG(onnx_checker_passes(tmp_path("cls_dyn.onnx"), &log), "checker (classify dynamic half): " << log);
}

TEST_CASE("export errors: unknown format, foreign option, bad values, not a model") {
  auto msg = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  EXPECT(msg([] { parse_export_options("onxx", {}); }).find("unknown format 'onxx'") != std::string::npos);
  EXPECT(msg([] { parse_export_options("coreml", {}); }).find("not written by this engine") != std::string::npos);
  EXPECT(msg([] { parse_export_options("engine", {}); }).find("trtexec") != std::string::npos);
  EXPECT(msg([] { parse_export_options("onnx", {{"int8", "true"}}); }).find("'int8' is not taken by format 'onnx'") !=
         std::string::npos);
  EXPECT(msg([] { parse_export_options("onnx", {{"opset", "99"}}); }).find("13..21") != std::string::npos);
  EXPECT(msg([] { parse_export_options("onnx", {{"half", "maybe"}}); }).find("not a boolean") != std::string::npos);
  EXPECT(msg([] { parse_export_options("onnx", {{"nms", "true"}}); }).find("no NMS") != std::string::npos);
  auto ok = parse_export_options("ONNX", {{"imgsz", "[640, 384]"}, {"batch", "4"}, {"simplify", "False"}});
  EXPECT(ok.imgsz_h == 640 && ok.imgsz_w == 384 && ok.batch == 4 && !ok.simplify);
  // device: the file is portable, but a device that cannot be used fails as in predict
  EXPECT(msg([] { parse_export_options("onnx", {{"device", "cpu"}}); }) == "<no error>");
  EXPECT(msg([] { parse_export_options("onnx", {{"device", "0,1"}}); }).find("multi-GPU") != std::string::npos);
  if (!torch::cuda::is_available())
    EXPECT(msg([] { parse_export_options("onnx", {{"device", "0"}}); }).find("libtorch") != std::string::npos);
  else
    EXPECT(msg([] { parse_export_options("onnx", {{"device", "0"}}); }) == "<no error>");

  ExportOptions odd;
  odd.imgsz_h = odd.imgsz_w = 300;  // not a multiple of 32
  EXPECT(msg([&] { export_model(y26test::fixture(kShapes), odd, tmp_path("odd.onnx")); }).find("multiple of") !=
         std::string::npos);

  const std::string junk = tmp_path("junk.pt");
  std::ofstream(junk) << "this is not a checkpoint";
  EXPECT(msg([&] { export_model(junk, ExportOptions{}, tmp_path("junk.onnx")); }).find("junk.pt") !=
         std::string::npos);
  EXPECT(msg([&] { read_onnx_metadata(junk); }).find("junk.pt") != std::string::npos);
  EXPECT(msg([&] { read_onnx_metadata(tmp_path("missing.onnx")); }).find("missing.onnx") != std::string::npos);
}

TEST_MAIN()
