// Zip archives as torch.save writes them: reader (central directory, zip64, stored or deflated
// entries, CRC-checked) and writer (stored entries, data 64-byte aligned, zip64 when needed).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

namespace y26 {

// CRC-32 (the zip/zlib polynomial); `crc` continues a previous call.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);

struct ZipEntry {
  std::string name;
  uint16_t method = 0;        // 0 stored, 8 deflate
  uint32_t crc = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;           // uncompressed
  uint64_t header_offset = 0;  // local file header
  uint64_t data_offset = 0;    // first byte of the (compressed) data
};

// Reads the whole archive into memory once; entries are then served without further I/O.
// Every error is a y26::Error naming the file.
class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  // An archive already in memory; `label` names it in error messages.
  ZipReader(std::vector<uint8_t> bytes, std::string label);

  const std::string& path() const { return path_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;  // nullptr when absent
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // The uncompressed bytes of an entry, CRC-checked. Throws when the entry is absent.
  std::vector<uint8_t> read(const std::string& name) const;
  std::vector<uint8_t> read(const ZipEntry& e) const;
  // Zero-copy view of a stored (uncompressed) entry, CRC-checked; valid while the reader lives.
  // Deflated entries are inflated into `scratch` and the view points there.
  const uint8_t* view(const ZipEntry& e, std::vector<uint8_t>& scratch) const;

 private:
  void parse();
  std::string where() const;
  std::string path_;
  std::vector<uint8_t> bytes_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// Writes a zip the way torch.save does: stored entries, each entry's data aligned to 64 bytes
// (an extra field of id 'FB' pads the local header), zip64 records only when sizes, offsets or the
// entry count need them (or always, with force_zip64, which tests use).
class ZipWriter {
 public:
  explicit ZipWriter(const std::string& path, bool force_zip64 = false);
  ~ZipWriter();  // closes without finishing if finish() was not called (the file is then invalid)
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  void add(const std::string& name, const void* data, size_t n);
  // Writes the central directory, flushes and fsyncs the file, then closes it.
  void finish();

 private:
  void put(const void* p, size_t n);
  std::string path_;
  std::FILE* f_ = nullptr;
  bool force_zip64_;
  uint64_t offset_ = 0;
  std::vector<ZipEntry> entries_;
};

}  // namespace y26
