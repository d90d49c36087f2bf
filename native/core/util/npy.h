// Minimal .npy (format 1.0/2.0, little endian, C order) reader and writer for fixtures and caches.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace y26 {

struct NpyArray {
  std::string dtype;             // numpy descr without byte order: "f4", "f8", "i8", "u1", "i4", "b1"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;    // raw little-endian data, C order
  int64_t numel() const;
  std::vector<float> as_float() const;     // converts any numeric dtype
  std::vector<int64_t> as_int64() const;   // converts any integer dtype
};

NpyArray read_npy(const std::string& path);
void write_npy(const std::string& path, const std::string& dtype, const std::vector<int64_t>& shape,
               const void* data, size_t nbytes);

}  // namespace y26
