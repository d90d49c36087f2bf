#include "util/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace y26 {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

template <typename T>
static std::vector<T> convert(const NpyArray& a) {
  std::vector<T> out(a.numel());
  const uint8_t* p = a.bytes.data();
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (a.dtype == "f4") { float v; std::memcpy(&v, p + 4 * i, 4); out[i] = (T)v; }
    else if (a.dtype == "f8") { double v; std::memcpy(&v, p + 8 * i, 8); out[i] = (T)v; }
    else if (a.dtype == "i8") { int64_t v; std::memcpy(&v, p + 8 * i, 8); out[i] = (T)v; }
    else if (a.dtype == "i4") { int32_t v; std::memcpy(&v, p + 4 * i, 4); out[i] = (T)v; }
    else if (a.dtype == "u1" || a.dtype == "b1") { out[i] = (T)p[i]; }
    else fail("npy: unsupported dtype " + a.dtype);
  }
  return out;
}

std::vector<float> NpyArray::as_float() const { return convert<float>(*this); }
std::vector<int64_t> NpyArray::as_int64() const { return convert<int64_t>(*this); }

static size_t dtype_size(const std::string& d) {
  if (d == "f4" || d == "i4") return 4;
  if (d == "f8" || d == "i8") return 8;
  if (d == "u1" || d == "b1") return 1;
  if (d == "f2") return 2;
  fail("npy: unsupported dtype " + d);
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + path + ": file not found or unreadable");
  char magic[6];
  f.read(magic, 6);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path + " is not a .npy file");
  uint8_t ver[2];
  f.read(reinterpret_cast<char*>(ver), 2);
  uint32_t hlen = 0;
  if (ver[0] == 1) { uint16_t h; f.read(reinterpret_cast<char*>(&h), 2); hlen = h; }
  else { f.read(reinterpret_cast<char*>(&hlen), 4); }
  std::string header(hlen, '\0');
  f.read(&header[0], hlen);
  NpyArray a;
  auto d = header.find("'descr':");
  auto q1 = header.find('\'', d + 8);
  auto q2 = header.find('\'', q1 + 1);
  std::string descr = header.substr(q1 + 1, q2 - q1 - 1);
  if (descr.size() >= 2 && (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')) descr = descr.substr(1);
  if (descr == "?") descr = "b1";
  a.dtype = descr;
  if (header.find("'fortran_order': True") != std::string::npos) fail(path + ": Fortran order is not supported");
  auto s = header.find("'shape':");
  auto p1 = header.find('(', s);
  auto p2 = header.find(')', p1);
  std::stringstream ss(header.substr(p1 + 1, p2 - p1 - 1));
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_of("0123456789") == std::string::npos) continue;
    a.shape.push_back(std::stoll(tok));
  }
  a.bytes.resize(a.numel() * dtype_size(a.dtype));
  f.read(reinterpret_cast<char*>(a.bytes.data()), a.bytes.size());
  if (!f) fail(path + ": truncated .npy data");
  return a;
}

void write_npy(const std::string& path, const std::string& dtype, const std::vector<int64_t>& shape,
               const void* data, size_t nbytes) {
  std::string shp = "(";
  for (size_t i = 0; i < shape.size(); ++i) shp += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
  shp += ")";
  std::string order = dtype == "u1" || dtype == "b1" ? "|" : "<";
  std::string header = "{'descr': '" + order + dtype + "', 'fortran_order': False, 'shape': " + shp + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t h = (uint16_t)header.size();
  f.write(reinterpret_cast<const char*>(&h), 2);
  f.write(header.data(), header.size());
  f.write(static_cast<const char*>(data), nbytes);
  if (!f) fail("write failed: " + path);
}

}  // namespace y26
