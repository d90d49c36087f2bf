#include "io/zip.h"

#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "util/error.h"

#if __has_include(<zlib.h>)
#include <zlib.h>
#define Y26_ZIP_HAVE_ZLIB_HEADER 1
#endif

namespace y26 {

// ---- CRC-32, slice-by-4 (fast enough to check every record of a checkpoint on load) ----------

static const std::array<std::array<uint32_t, 256>, 4>& crc_tables() {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 4> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    return t;
  }();
  return tables;
}

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  const auto& t = crc_tables();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);  // little-endian hosts only (as is the whole .pt format here)
    crc ^= w;
    crc = t[3][crc & 0xFF] ^ t[2][(crc >> 8) & 0xFF] ^ t[1][(crc >> 16) & 0xFF] ^ t[0][crc >> 24];
    p += 4;
    n -= 4;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// ---- little-endian field access --------------------------------------------------------------

static uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
static uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kEnd64LocSig = 0x07064b50;
constexpr uint32_t k32Max = 0xFFFFFFFFu;

// ---- zlib, loaded on first use so the core links without it -----------------------------------

namespace {
#ifdef Y26_ZIP_HAVE_ZLIB_HEADER
struct ZlibApi {
  decltype(&::inflateInit2_) init = nullptr;
  decltype(&::inflate) inflate = nullptr;
  decltype(&::inflateEnd) end = nullptr;
  bool ok = false;
};
const ZlibApi& zlib_api() {
  static const ZlibApi api = [] {
    ZlibApi a;
    for (const char* lib : {"libz.so.1", "libz.so", "libz.1.dylib", "libz.dylib"}) {
      void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      a.init = reinterpret_cast<decltype(a.init)>(dlsym(h, "inflateInit2_"));
      a.inflate = reinterpret_cast<decltype(a.inflate)>(dlsym(h, "inflate"));
      a.end = reinterpret_cast<decltype(a.end)>(dlsym(h, "inflateEnd"));
      a.ok = a.init && a.inflate && a.end;
      if (a.ok) break;
    }
    return a;
  }();
  return api;
}
#endif

// Raw deflate stream -> exactly `size` bytes. Returns an error text, empty on success.
std::string inflate_raw(const uint8_t* src, uint64_t n, uint8_t* dst, uint64_t size) {
#ifdef Y26_ZIP_HAVE_ZLIB_HEADER
  const ZlibApi& z = zlib_api();
  if (!z.ok) return "the entry is deflate-compressed and zlib (libz.so.1) could not be loaded: install zlib";
  z_stream s{};
  if (z.init(&s, -MAX_WBITS, ZLIB_VERSION, int(sizeof(z_stream))) != Z_OK) return "zlib inflateInit2 failed";
  s.next_in = const_cast<Bytef*>(src);
  s.avail_in = uInt(n);  // checkpoints stay far below 4 GiB per deflated entry
  s.next_out = dst;
  s.avail_out = uInt(size);
  int rc = z.inflate(&s, Z_FINISH);
  uint64_t produced = s.total_out;
  z.end(&s);
  if (rc != Z_STREAM_END || produced != size) return "corrupt deflate data";
  return {};
#else
  return "the entry is deflate-compressed and this build has no zlib headers: rebuild with zlib1g-dev";
#endif
}
}  // namespace

// ---- reader ---------------------------------------------------------------------------------

ZipReader::ZipReader(const std::string& path) : path_(path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path + ": file not found or not readable (check the path)");
  std::streamoff n = in.tellg();
  if (n < 0) fail(path + ": cannot determine the file size");
  bytes_.resize(size_t(n));
  in.seekg(0);
  if (n > 0 && !in.read(reinterpret_cast<char*>(bytes_.data()), n)) fail(path + ": read error");
  parse();
}

ZipReader::ZipReader(std::vector<uint8_t> bytes, std::string label) : path_(std::move(label)), bytes_(std::move(bytes)) {
  parse();
}

std::string ZipReader::where() const { return path_ + ": "; }

void ZipReader::parse() {
  const uint8_t* b = bytes_.data();
  const uint64_t n = bytes_.size();
  const std::string not_zip = "not a zip archive (a .pt checkpoint is one); the file is truncated or not a checkpoint";
  if (n < 22) fail(where() + not_zip + " (only " + std::to_string(n) + " bytes)");
  // The end record sits in the last 22 + 65535 (comment) bytes.
  int64_t eocd = -1;
  int64_t lowest = std::max<int64_t>(0, int64_t(n) - 22 - 65535);
  for (int64_t p = int64_t(n) - 22; p >= lowest; --p)
    if (rd32(b + p) == kEndSig && uint64_t(p) + 22 + rd16(b + p + 20) <= n) { eocd = p; break; }
  if (eocd < 0) {
    if (rd32(b) == kLocalSig)
      fail(where() + "the zip archive is truncated (its central directory is missing): the download or save was cut "
                     "short; re-download or re-save the file");
    if (b[0] == 0x80 && b[1] <= 5)
      fail(where() + "a legacy (pre-1.6, non-zip) torch file; load and re-save it with a recent torch.save");
    fail(where() + not_zip + " (no end-of-central-directory record)");
  }

  uint64_t count = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_offset = rd32(b + eocd + 16);
  if (eocd >= 20 && rd32(b + eocd - 20) == kEnd64LocSig) {
    uint64_t z64 = rd64(b + eocd - 20 + 8);
    if (z64 + 56 > n || rd32(b + z64) != kEnd64Sig) fail(where() + "corrupt zip64 end record (the file is damaged)");
    count = rd64(b + z64 + 32);
    cd_size = rd64(b + z64 + 40);
    cd_offset = rd64(b + z64 + 48);
  }
  if (cd_offset > n || cd_size > n - cd_offset)
    fail(where() + "the central directory lies outside the file: truncated or corrupt archive");

  entries_.clear();
  entries_.reserve(size_t(count));
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (p + 46 > cd_end || rd32(b + p) != kCentralSig)
      fail(where() + "corrupt central directory (entry " + std::to_string(i) + "): truncated or damaged archive");
    ZipEntry e;
    uint16_t flags = rd16(b + p + 8);
    e.method = rd16(b + p + 10);
    e.crc = rd32(b + p + 16);
    e.compressed_size = rd32(b + p + 20);
    e.size = rd32(b + p + 24);
    uint16_t name_len = rd16(b + p + 28), extra_len = rd16(b + p + 30), comment_len = rd16(b + p + 32);
    e.header_offset = rd32(b + p + 42);
    if (p + 46 + name_len + extra_len + comment_len > cd_end)
      fail(where() + "corrupt central directory (entry " + std::to_string(i) + " overruns it)");
    e.name.assign(reinterpret_cast<const char*>(b + p + 46), name_len);
    // zip64 extended information: only the fields whose 32-bit value is saturated are present.
    const uint8_t* x = b + p + 46 + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x + 4 <= x_end) {
      uint16_t id = rd16(x), len = rd16(x + 2);
      if (x + 4 + len > x_end) break;
      if (id == 0x0001) {
        const uint8_t* f = x + 4;
        const uint8_t* f_end = f + len;
        auto take = [&](uint64_t& v) {
          if (v != k32Max) return;
          if (f + 8 > f_end) fail(where() + "corrupt zip64 extra field for " + e.name);
          v = rd64(f);
          f += 8;
        };
        take(e.size);
        take(e.compressed_size);
        take(e.header_offset);
      }
      x += 4 + len;
    }
    if (flags & 1) fail(where() + "entry " + e.name + " is encrypted; checkpoints never are (wrong file?)");
    if (e.method != 0 && e.method != 8)
      fail(where() + "entry " + e.name + " uses zip compression method " + std::to_string(e.method) +
           "; only stored and deflate are supported (re-save the checkpoint with torch.save)");
    if (e.header_offset + 30 > n || rd32(b + e.header_offset) != kLocalSig)
      fail(where() + "entry " + e.name + " has no valid local header: truncated or corrupt archive");
    e.data_offset = e.header_offset + 30 + rd16(b + e.header_offset + 26) + rd16(b + e.header_offset + 28);
    if (e.data_offset > n || e.compressed_size > n - e.data_offset)
      fail(where() + "entry " + e.name + " extends past the end of the file: the file is truncated");
    if (e.method == 0 && e.compressed_size != e.size)
      fail(where() + "entry " + e.name + " is stored but its sizes disagree: corrupt archive");
    index_[e.name] = entries_.size();
    entries_.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::view(const ZipEntry& e, std::vector<uint8_t>& scratch) const {
  const uint8_t* src = bytes_.data() + e.data_offset;
  const uint8_t* out = src;
  if (e.method == 8) {
    scratch.resize(size_t(e.size));
    std::string err = inflate_raw(src, e.compressed_size, scratch.data(), e.size);
    if (!err.empty()) fail(where() + "entry " + e.name + ": " + err);
    out = scratch.data();
  }
  if (crc32_update(0, out, size_t(e.size)) != e.crc)
    fail(where() + "CRC mismatch in entry " + e.name + ": the file is corrupt (re-download or re-save it)");
  return out;
}

std::vector<uint8_t> ZipReader::read(const ZipEntry& e) const {
  std::vector<uint8_t> scratch;
  const uint8_t* p = view(e, scratch);
  if (p == scratch.data()) return scratch;
  return std::vector<uint8_t>(p, p + e.size);
}

std::vector<uint8_t> ZipReader::read(const std::string& name) const {
  const ZipEntry* e = find(name);
  if (!e) fail(where() + "the archive has no entry " + name);
  return read(*e);
}

// ---- writer ---------------------------------------------------------------------------------

namespace {
struct Buf {
  std::vector<uint8_t> v;
  void u16(uint16_t x) { v.push_back(uint8_t(x)); v.push_back(uint8_t(x >> 8)); }
  void u32(uint32_t x) { u16(uint16_t(x)); u16(uint16_t(x >> 16)); }
  void u64(uint64_t x) { u32(uint32_t(x)); u32(uint32_t(x >> 32)); }
  void raw(const std::string& s) { v.insert(v.end(), s.begin(), s.end()); }
};
uint32_t sat32(uint64_t x, bool force) { return (force || x >= k32Max) ? k32Max : uint32_t(x); }
}  // namespace

ZipWriter::ZipWriter(const std::string& path, bool force_zip64) : path_(path), force_zip64_(force_zip64) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) fail(path + ": cannot create the file (" + std::strerror(errno) + "); check the directory exists and is writable");
}

ZipWriter::~ZipWriter() {
  if (f_) std::fclose(f_);
}

void ZipWriter::put(const void* p, size_t n) {
  if (!f_) fail(path_ + ": write after finish()");
  if (n && std::fwrite(p, 1, n, f_) != n)
    fail(path_ + ": write failed (" + std::strerror(errno) + "); is the disk full?");
  offset_ += n;
}

void ZipWriter::add(const std::string& name, const void* data, size_t n) {
  if (name.size() > 0xFFFF) fail(path_ + ": zip entry name too long: " + name.substr(0, 80));
  ZipEntry e;
  e.name = name;
  e.crc = crc32_update(0, data, n);
  e.size = e.compressed_size = n;
  e.header_offset = offset_;
  const bool z64 = force_zip64_ || n >= k32Max;
  Buf h;
  h.u32(kLocalSig);
  h.u16(z64 ? 45 : 20);  // version needed
  h.u16(0);              // flags
  h.u16(0);              // stored
  h.u16(0);              // time
  h.u16(0);              // date (torch writes zeros too)
  h.u32(e.crc);
  h.u32(sat32(n, z64));
  h.u32(sat32(n, z64));
  h.u16(uint16_t(name.size()));
  size_t extra_len_pos = h.v.size();
  h.u16(0);  // extra length, patched below
  h.raw(name);
  size_t extra_start = h.v.size();
  if (z64) {  // a local zip64 field carries both sizes
    h.u16(0x0001);
    h.u16(16);
    h.u64(n);
    h.u64(n);
  }
  // Pad with an 'FB' field so the data starts on a 64-byte boundary (lets readers mmap tensors).
  uint64_t data_at = offset_ + h.v.size() + 4;
  uint16_t pad = uint16_t((64 - data_at % 64) % 64);
  h.u16(0x4246);
  h.u16(pad);
  h.v.insert(h.v.end(), pad, uint8_t('Z'));
  uint16_t extra_len = uint16_t(h.v.size() - extra_start);
  h.v[extra_len_pos] = uint8_t(extra_len);
  h.v[extra_len_pos + 1] = uint8_t(extra_len >> 8);
  put(h.v.data(), h.v.size());
  e.data_offset = offset_;
  put(data, n);
  entries_.push_back(std::move(e));
}

void ZipWriter::finish() {
  uint64_t cd_offset = offset_;
  Buf c;
  for (const ZipEntry& e : entries_) {
    const bool big_size = force_zip64_ || e.size >= k32Max;
    const bool big_off = force_zip64_ || e.header_offset >= k32Max;
    c.u32(kCentralSig);
    c.u16(45);  // made by
    c.u16((big_size || big_off) ? 45 : 20);
    c.u16(0);
    c.u16(0);
    c.u16(0);
    c.u16(0);
    c.u32(e.crc);
    c.u32(sat32(e.compressed_size, big_size));
    c.u32(sat32(e.size, big_size));
    c.u16(uint16_t(e.name.size()));
    uint16_t extra = uint16_t((big_size ? 16 : 0) + (big_off ? 8 : 0));
    c.u16(extra ? extra + 4 : 0);
    c.u16(0);  // comment
    c.u16(0);  // disk
    c.u16(0);  // internal attributes
    c.u32(0);  // external attributes
    c.u32(sat32(e.header_offset, big_off));
    c.raw(e.name);
    if (extra) {
      c.u16(0x0001);
      c.u16(extra);
      if (big_size) { c.u64(e.size); c.u64(e.compressed_size); }
      if (big_off) c.u64(e.header_offset);
    }
  }
  uint64_t cd_size = c.v.size();
  uint64_t count = entries_.size();
  const bool z64 = force_zip64_ || count >= 0xFFFF || cd_offset >= k32Max || cd_size >= k32Max;
  if (z64) {
    uint64_t end64_at = cd_offset + cd_size;
    c.u32(kEnd64Sig);
    c.u64(44);  // size of the rest of this record
    c.u16(45);
    c.u16(45);
    c.u32(0);
    c.u32(0);
    c.u64(count);
    c.u64(count);
    c.u64(cd_size);
    c.u64(cd_offset);
    c.u32(kEnd64LocSig);
    c.u32(0);
    c.u64(end64_at);
    c.u32(1);
  }
  c.u32(kEndSig);
  c.u16(0);
  c.u16(0);
  c.u16(uint16_t(z64 ? 0xFFFF : count));
  c.u16(uint16_t(z64 ? 0xFFFF : count));
  c.u32(sat32(cd_size, z64));
  c.u32(sat32(cd_offset, z64));
  c.u16(0);
  put(c.v.data(), c.v.size());
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    fail(path_ + ": flushing to disk failed (" + std::strerror(errno) + "); is the disk full?");
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail(path_ + ": closing failed (" + std::strerror(errno) + ")");
}

}  // namespace y26
