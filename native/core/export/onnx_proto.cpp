#include "export/onnx_proto.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace y26::onnxpb {
namespace {

// ---- writer ----------------------------------------------------------------------------------
enum Wire { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

class Writer {
 public:
  std::string out;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out.push_back(char((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(char(v));
  }
  void tag(int field, Wire w) { varint((uint64_t(field) << 3) | w); }
  void int_field(int field, int64_t v) {
    tag(field, kVarint);
    varint(uint64_t(v));  // negative int64/int32 values use the 10-byte two's complement form
  }
  void bytes_field(int field, const std::string& s) {
    tag(field, kLen);
    varint(s.size());
    out += s;
  }
  void float_field(int field, float f) {
    tag(field, kFixed32);
    char b[4];
    std::memcpy(b, &f, 4);
    out.append(b, 4);
  }
};

std::string encode(const Tensor& t) {
  Writer w;
  for (int64_t d : t.dims) w.int_field(1, d);
  w.int_field(2, t.dtype);
  if (!t.name.empty()) w.bytes_field(8, t.name);
  w.bytes_field(9, t.raw);
  return w.out;
}

std::string encode(const Attribute& a) {
  Writer w;
  w.bytes_field(1, a.name);
  switch (a.type) {
    case Attribute::kFloatAttr: w.float_field(2, a.f); break;
    case Attribute::kInt: w.int_field(3, a.i); break;
    case Attribute::kString: w.bytes_field(4, a.s); break;
    case Attribute::kTensor: w.bytes_field(5, encode(a.t.at(0))); break;
    case Attribute::kFloats:
      for (float f : a.floats) w.float_field(7, f);
      break;
    case Attribute::kInts:
      for (int64_t v : a.ints) w.int_field(8, v);
      break;
  }
  w.int_field(20, a.type);
  return w.out;
}

std::string encode(const Node& n) {
  Writer w;
  for (const auto& s : n.inputs) w.bytes_field(1, s);
  for (const auto& s : n.outputs) w.bytes_field(2, s);
  if (!n.name.empty()) w.bytes_field(3, n.name);
  w.bytes_field(4, n.op_type);
  for (const auto& a : n.attributes) w.bytes_field(5, encode(a));
  if (!n.domain.empty()) w.bytes_field(7, n.domain);
  return w.out;
}

std::string encode(const ValueInfo& v) {
  Writer shape;
  for (const auto& d : v.shape) {
    Writer dim;
    if (d.param.empty()) dim.int_field(1, d.value);
    else dim.bytes_field(2, d.param);
    shape.bytes_field(1, dim.out);
  }
  Writer tensor_type;
  tensor_type.int_field(1, v.elem_type);
  tensor_type.bytes_field(2, shape.out);
  Writer type;
  type.bytes_field(1, tensor_type.out);
  Writer w;
  w.bytes_field(1, v.name);
  w.bytes_field(2, type.out);
  return w.out;
}

std::string encode(const Graph& g) {
  Writer w;
  for (const auto& n : g.nodes) w.bytes_field(1, encode(n));
  w.bytes_field(2, g.name);
  for (const auto& t : g.initializers) w.bytes_field(5, encode(t));
  for (const auto& v : g.inputs) w.bytes_field(11, encode(v));
  for (const auto& v : g.outputs) w.bytes_field(12, encode(v));
  return w.out;
}

// ---- reader ----------------------------------------------------------------------------------
struct Field {
  int number = 0;
  Wire wire = kVarint;
  uint64_t value = 0;     // varint / fixed
  std::string_view data;  // length-delimited payload
};

class Reader {
 public:
  Reader(std::string_view d, const std::string& source) : d_(d), src_(source) {}
  bool next(Field& f) {
    if (pos_ >= d_.size()) return false;
    uint64_t key = varint();
    f.number = int(key >> 3);
    f.wire = Wire(key & 7);
    if (f.number == 0) bad("field number 0");
    switch (f.wire) {
      case kVarint: f.value = varint(); break;
      case kFixed64: f.value = fixed(8); break;
      case kFixed32: f.value = fixed(4); break;
      case kLen: {
        uint64_t n = varint();
        if (n > d_.size() - pos_) bad("a length runs past the end of the data");
        f.data = d_.substr(pos_, n);
        pos_ += n;
        break;
      }
      default: bad("unsupported wire type " + std::to_string(int(f.wire)));
    }
    return true;
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail(src_ + ": not a valid ONNX file (" + what + " at byte " + std::to_string(pos_) +
         "); export it again or check that the file is complete");
  }
  const std::string& source() const { return src_; }

 private:
  std::string_view d_;
  size_t pos_ = 0;
  const std::string& src_;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) bad("truncated varint");
      uint8_t b = uint8_t(d_[pos_++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }
  uint64_t fixed(int n) {
    if (d_.size() - pos_ < size_t(n)) bad("truncated fixed-size value");
    uint64_t v = 0;
    std::memcpy(&v, d_.data() + pos_, n);
    pos_ += n;
    return v;
  }
};

std::string str(const Field& f) { return std::string(f.data); }

// Repeated int64 fields may come packed (one length-delimited run of varints) or one per tag.
void read_ints(const Field& f, std::vector<int64_t>& out, const std::string& source) {
  if (f.wire == kVarint) {
    out.push_back(int64_t(f.value));
    return;
  }
  Reader r(f.data, source);  // only for its error message
  size_t pos = 0;
  while (pos < f.data.size()) {
    uint64_t v = 0;
    int shift = 0;
    for (;; shift += 7) {
      if (pos >= f.data.size() || shift >= 64) r.bad("bad packed varint");
      uint8_t b = uint8_t(f.data[pos++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    out.push_back(int64_t(v));
  }
}

float as_float(uint64_t v) {
  uint32_t u = uint32_t(v);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Tensor decode_tensor(std::string_view d, const std::string& src) {
  Tensor t;
  Reader r(d, src);
  Field f;
  while (r.next(f)) {
    if (f.number == 1) read_ints(f, t.dims, src);
    else if (f.number == 2) t.dtype = int32_t(f.value);
    else if (f.number == 8) t.name = str(f);
    else if (f.number == 9) t.raw = str(f);
  }
  return t;
}

Attribute decode_attribute(std::string_view d, const std::string& src) {
  Attribute a;
  Reader r(d, src);
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1: a.name = str(f); break;
      case 2: a.f = as_float(f.value); break;
      case 3: a.i = int64_t(f.value); break;
      case 4: a.s = str(f); break;
      case 5: a.t.push_back(decode_tensor(f.data, src)); break;
      case 7:
        if (f.wire == kFixed32) a.floats.push_back(as_float(f.value));
        else
          for (size_t p = 0; p + 4 <= f.data.size(); p += 4) {
            float v;
            std::memcpy(&v, f.data.data() + p, 4);
            a.floats.push_back(v);
          }
        break;
      case 8: read_ints(f, a.ints, src); break;
      case 20: a.type = Attribute::Type(f.value); break;
      default: break;
    }
  }
  return a;
}

Node decode_node(std::string_view d, const std::string& src) {
  Node n;
  Reader r(d, src);
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1: n.inputs.push_back(str(f)); break;
      case 2: n.outputs.push_back(str(f)); break;
      case 3: n.name = str(f); break;
      case 4: n.op_type = str(f); break;
      case 5: n.attributes.push_back(decode_attribute(f.data, src)); break;
      case 7: n.domain = str(f); break;
      default: break;
    }
  }
  return n;
}

ValueInfo decode_value_info(std::string_view d, const std::string& src) {
  ValueInfo v;
  Reader r(d, src);
  Field f;
  while (r.next(f)) {
    if (f.number == 1) v.name = str(f);
    if (f.number != 2) continue;
    Reader type(f.data, src);
    Field tf;
    while (type.next(tf)) {
      if (tf.number != 1) continue;  // only tensor types are written by the exporter
      Reader tensor(tf.data, src);
      Field xf;
      while (tensor.next(xf)) {
        if (xf.number == 1) v.elem_type = int32_t(xf.value);
        if (xf.number != 2) continue;
        Reader shape(xf.data, src);
        Field sf;
        while (shape.next(sf)) {
          if (sf.number != 1) continue;
          Dim dim;
          Reader dr(sf.data, src);
          Field df;
          while (dr.next(df)) {
            if (df.number == 1) dim.value = int64_t(df.value);
            if (df.number == 2) dim.param = str(df);
          }
          v.shape.push_back(dim);
        }
      }
    }
  }
  return v;
}

Graph decode_graph(std::string_view d, const std::string& src) {
  Graph g;
  Reader r(d, src);
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1: g.nodes.push_back(decode_node(f.data, src)); break;
      case 2: g.name = str(f); break;
      case 5: g.initializers.push_back(decode_tensor(f.data, src)); break;
      case 11: g.inputs.push_back(decode_value_info(f.data, src)); break;
      case 12: g.outputs.push_back(decode_value_info(f.data, src)); break;
      default: break;
    }
  }
  return g;
}

}  // namespace

std::string serialize(const Model& m) {
  Writer w;
  w.int_field(1, m.ir_version);
  if (!m.producer_name.empty()) w.bytes_field(2, m.producer_name);
  if (!m.producer_version.empty()) w.bytes_field(3, m.producer_version);
  w.bytes_field(7, encode(m.graph));
  for (const auto& [domain, version] : m.opset_imports) {
    Writer o;
    if (!domain.empty()) o.bytes_field(1, domain);
    o.int_field(2, version);
    w.bytes_field(8, o.out);
  }
  for (const auto& [k, v] : m.metadata_props) {
    Writer e;
    e.bytes_field(1, k);
    e.bytes_field(2, v);
    w.bytes_field(14, e.out);
  }
  return w.out;
}

Model parse(const std::string& bytes, const std::string& source) {
  Model m;
  m.ir_version = 0;
  Reader r(bytes, source);
  Field f;
  bool has_graph = false;
  while (r.next(f)) {
    switch (f.number) {
      case 1: m.ir_version = int64_t(f.value); break;
      case 2: m.producer_name = str(f); break;
      case 3: m.producer_version = str(f); break;
      case 7:
        m.graph = decode_graph(f.data, source);
        has_graph = true;
        break;
      case 8: {
        std::pair<std::string, int64_t> op{"", 0};
        Reader o(f.data, source);
        Field of;
        while (o.next(of)) {
          if (of.number == 1) op.first = str(of);
          if (of.number == 2) op.second = int64_t(of.value);
        }
        m.opset_imports.push_back(op);
        break;
      }
      case 14: {
        std::pair<std::string, std::string> kv;
        Reader e(f.data, source);
        Field ef;
        while (e.next(ef)) {
          if (ef.number == 1) kv.first = str(ef);
          if (ef.number == 2) kv.second = str(ef);
        }
        m.metadata_props.push_back(kv);
        break;
      }
      default: break;
    }
  }
  if (!has_graph || m.ir_version == 0) r.bad("no graph or ir_version: the file is not an ONNX model");
  return m;
}

void write_file(const Model& m, const std::string& path) {
  const std::string bytes = serialize(m);
  std::ofstream f(path, std::ios::binary);
  if (!f) fail(path + ": cannot open for writing; check that the folder exists and is writable");
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.close();
  if (!f) fail(path + ": write failed (disk full?)");
}

Model read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path + ": cannot open the ONNX file; check the path");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace y26::onnxpb
