// Minimal ONNX protobuf model: plain structs, a wire-format writer and a reader. Written by hand so the
// engine needs neither libonnx nor libprotobuf (libtorch 2.x wheels bundle their own, clashing copies).
// Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace y26::onnxpb {

// TensorProto.DataType values used here.
enum DataType : int32_t { kFloat = 1, kUint8 = 2, kInt32 = 6, kInt64 = 7, kBool = 9, kFloat16 = 10, kDouble = 11 };

struct Tensor {
  std::string name;
  int32_t dtype = kFloat;
  std::vector<int64_t> dims;
  std::string raw;  // little-endian element bytes (raw_data)
};

struct Attribute {
  enum Type : int32_t { kFloatAttr = 1, kInt = 2, kString = 3, kTensor = 4, kFloats = 6, kInts = 7 };
  std::string name;
  Type type = kInt;
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<Tensor> t;  // 0 or 1 entries (kept in a vector so Attribute stays copyable without pointers)
  std::vector<float> floats;
  std::vector<int64_t> ints;
};

struct Node {
  std::string op_type, name, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<Attribute> attributes;
};

struct Dim {
  int64_t value = -1;  // >= 0 when fixed
  std::string param;   // symbolic name when dynamic
};

struct ValueInfo {
  std::string name;
  int32_t elem_type = kFloat;
  std::vector<Dim> shape;
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;
  std::vector<Tensor> initializers;
  std::vector<ValueInfo> inputs, outputs;
};

struct Model {
  int64_t ir_version = 8;
  std::string producer_name, producer_version;
  std::vector<std::pair<std::string, int64_t>> opset_imports;  // (domain, version); "" is the default domain
  Graph graph;
  std::vector<std::pair<std::string, std::string>> metadata_props;
};

std::string serialize(const Model& m);
// Parses a serialized ModelProto; unknown fields are skipped. Errors name `source` (a file path).
Model parse(const std::string& bytes, const std::string& source);

void write_file(const Model& m, const std::string& path);
Model read_file(const std::string& path);

}  // namespace y26::onnxpb
