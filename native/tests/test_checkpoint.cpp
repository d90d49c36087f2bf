// Checkpoint I/O: zip container, safe unpickler/pickler, official Ultralytics .pt files, our format.
#include <torch/torch.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/checkpoint.h"
#include "io/checkpoint_temps.h"
#include "io/pickle.h"
#include "io/zip.h"
#include "testing.h"
#include "util/error.h"

using y26::PyValue;

namespace {

// Python pickles of one value, made with pickle.dumps(obj, protocol=N) (generator in the report):
// {'short': 'héllo', 'big': 2**40, 'neg': -5, 'huge': 2**70, 'f': 0.1, 'b': b'\x00\xffab',
//  'set': {1, 2}, 'fs': frozenset({'q'}), 'od': OrderedDict(z=1, a=2), 't': (1, 2, 3, 4),
//  'shared': [lst, lst] with lst = [1, 2], 'ns': SimpleNamespace(lr=0.01, name='n'),
//  'path': PurePosixPath('/data/coco.yaml'), 'obj': somemod.Thing() with a=1, b='x',
//  'none': None, 'tf': [True, False]}
// and, for protocol 0, {'a': [1, 2.5, 'x', None, True], 'b': (3,)}.
static const char* kPickleProto2Hex =
    "80027d710028580500000073686f72747101580600000068c3a96c6c6f7102580300000062696771038a0600000000000158"
    "030000006e656771044afbffffff58040000006875676571058a090000000000000000405801000000667106473fb9999999"
    "99999a5801000000627107635f636f646563730a656e636f64650a7108580500000000c3bf6162710958060000006c617469"
    "6e31710a86710b52710c5803000000736574710d635f5f6275696c74696e5f5f0a7365740a710e5d710f284b014b02658571"
    "10527111580200000066737112635f5f6275696c74696e5f5f0a66726f7a656e7365740a71135d7114580100000071711561"
    "85711652711758020000006f64711863636f6c6c656374696f6e730a4f726465726564446963740a71192952711a28580100"
    "00007a711b4b01580100000061711c4b0275580100000074711d284b014b024b034b0474711e580600000073686172656471"
    "1f5d7120285d7121284b014b026568216558020000006e7371226374797065730a53696d706c654e616d6573706163650a71"
    "23295271247d71252858020000006c727126473f847ae147ae147b58040000006e616d65712758010000006e712875625804"
    "00000070617468712963706174686c69620a50757265506f736978506174680a712a58010000002f712b5804000000646174"
    "61712c5809000000636f636f2e79616d6c712d87712e52712f58030000006f626a713063736f6d656d6f640a5468696e670a"
    "7131298171327d713328681c4b0168075801000000787134756258040000006e6f6e6571354e5802000000746671365d7137"
    "28888965752e";

static const char* kPickleProto4Hex =
    "8004958c010000000000007d94288c0573686f7274948c0668c3a96c6c6f948c03626967948a060000000000018c036e6567"
    "944afbffffff8c0468756765948a090000000000000000408c016694473fb999999999999a8c016294430400ff6162948c03"
    "736574948f94284b014b02908c02667394288c01719491948c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572"
    "656444696374949394295294288c017a944b018c0161944b02758c017494284b014b024b034b0474948c0673686172656494"
    "5d94285d94284b014b02656819658c026e73948c057479706573948c0f53696d706c654e616d657370616365949394295294"
    "7d94288c026c7294473f847ae147ae147b8c046e616d65948c016e9475628c0470617468948c07706174686c6962948c0d50"
    "757265506f736978506174689493948c012f948c0464617461948c09636f636f2e79616d6c94879452948c036f626a948c07"
    "736f6d656d6f64948c055468696e679493942981947d942868144b0168078c01789475628c046e6f6e65944e8c027466945d"
    "9428888965752e";

static const char* kPickleProto5Hex =
    "8005958c010000000000007d94288c0573686f7274948c0668c3a96c6c6f948c03626967948a060000000000018c036e6567"
    "944afbffffff8c0468756765948a090000000000000000408c016694473fb999999999999a8c016294430400ff6162948c03"
    "736574948f94284b014b02908c02667394288c01719491948c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572"
    "656444696374949394295294288c017a944b018c0161944b02758c017494284b014b024b034b0474948c0673686172656494"
    "5d94285d94284b014b02656819658c026e73948c057479706573948c0f53696d706c654e616d657370616365949394295294"
    "7d94288c026c7294473f847ae147ae147b8c046e616d65948c016e9475628c0470617468948c07706174686c6962948c0d50"
    "757265506f736978506174689493948c012f948c0464617461948c09636f636f2e79616d6c94879452948c036f626a948c07"
    "736f6d656d6f64948c055468696e679493942981947d942868144b0168078c01789475628c046e6f6e65944e8c027466945d"
    "9428888965752e";

static const char* kPickleProto0Hex =
    "286470300a56610a70310a286c70320a49310a6146322e350a6156780a70330a614e614930310a617356620a70340a284933"
    "0a7470350a732e";

// {'np_f': np.float64(0.5), 'np_i': np.int64(-7), 'np_f4': np.float32(0.25), 'np_b': np.bool_(True),
//  'dev': torch.device('cuda', 1), 'cpu': torch.device('cpu'), 'dt': torch.float16,
//  'dd': collections.defaultdict(list, {'k': [1]})}, protocol 2.
static const char* kPickleNumpyTorchHex =
    "80027d71002858040000006e705f667101636e756d70792e636f72652e6d756c746961727261790a7363616c61720a710263"
    "6e756d70790a64747970650a71035802000000663871048988877105527106284b0358010000003c71074e4e4e4affffffff"
    "4affffffff4b0074710862635f636f646563730a656e636f64650a71095809000000000000000000c3a03f710a5806000000"
    "6c6174696e31710b86710c52710d86710e52710f58040000006e705f69711068026803580200000069387111898887711252"
    "7113284b0368074e4e4e4affffffff4affffffff4b007471146268095810000000c3b9c3bfc3bfc3bfc3bfc3bfc3bfc3bf71"
    "15680b86711652711786711852711958050000006e705f6634711a6802680358020000006634711b898887711c52711d284b"
    "0368074e4e4e4affffffff4affffffff4b0074711e62680958050000000000c2803e711f680b867120527121867122527123"
    "58040000006e705f627124680268035802000000623171258988877126527127284b0358010000007c71284e4e4e4affffff"
    "ff4affffffff4b00747129626809580100000001712a680b86712b52712c86712d52712e5803000000646576712f63746f72"
    "63680a6465766963650a713058040000006375646171314b0186713252713358030000006370757134683058030000006370"
    "75713585713652713758020000006474713863746f7263680a666c6f617431360a713958020000006464713a63636f6c6c65"
    "6374696f6e730a64656661756c74646963740a713b635f5f6275696c74696e5f5f0a6c6973740a713c85713d52713e580100"
    "00006b713f5d71404b016173752e";

std::vector<uint8_t> from_hex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t k = 0; k + 1 < h.size(); k += 2) out.push_back(uint8_t(std::stoi(h.substr(k, 2), nullptr, 16)));
  return out;
}

PyValue unpickle_bytes(const std::vector<uint8_t>& b) { return y26::unpickle(b.data(), b.size(), nullptr, "test"); }
// A string literal with embedded NULs, by its full length.
template <size_t N>
std::string lit(const char (&s)[N]) { return std::string(s, N - 1); }

PyValue unpickle_str(const std::string& s) {
  return y26::unpickle(reinterpret_cast<const uint8_t*>(s.data()), s.size(), nullptr, "test");
}

const std::string& tmp_dir() {
  // A pointer, so nothing is destroyed before the exit handler below runs.
  static const std::string* dir = [] {
    auto* d = new std::string("/tmp/y26_ckpt_test_" + std::to_string(getpid()));
    mkdir(d->c_str(), 0755);
    if (!std::getenv("Y26_KEEP_TEST_FILES")) std::atexit([] { std::filesystem::remove_all(tmp_dir()); });
    return d;
  }();
  return *dir;
}

std::vector<uint8_t> slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The message of the y26::Error thrown by fn, or "" if none was thrown.
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const y26::Error& e) {
    if (std::getenv("Y26_SHOW_ERRORS")) std::cout << "  error: " << e.what() << "\n";
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A y26::Error: ") + e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// IEEE half -> float by bit manipulation, independent of libtorch.
float half_bits_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else {  // subnormal: normalise
      int e = -1;
      do { ++e; man <<= 1; } while (!(man & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

using y26test::fixture;

// The keys.json next to a fixture checkpoint (JSON is YAML).
YAML::Node keys_json(const std::string& rel) { return YAML::LoadFile(fixture(rel)); }

// Compares a loaded state_dict with the ordered key/shape list of a keys.json.
void expect_state_dict_matches(const y26::Checkpoint& ck, const YAML::Node& keys) {
  const YAML::Node sd = keys["state_dict"];
  EXPECT(ck.state_dict.size() == sd.size());
  EXPECT(int64_t(ck.state_dict.size()) == keys["num_state_dict_entries"].as<int64_t>());
  size_t n = std::min<size_t>(ck.state_dict.size(), sd.size());
  int bad_name = 0, bad_shape = 0, bad_dtype = 0;
  for (size_t k = 0; k < n; ++k) {
    const auto& [name, t] = ck.state_dict[k];
    if (name != sd[k]["key"].as<std::string>()) {
      if (bad_name++ < 3) std::cerr << "  entry " << k << ": " << name << " vs " << sd[k]["key"].as<std::string>() << "\n";
    }
    std::vector<int64_t> shape = sd[k]["shape"].as<std::vector<int64_t>>();
    if (t.sizes().vec() != shape) ++bad_shape;
    std::string stored = sd[k]["dtype"].as<std::string>();
    torch::ScalarType want = stored == "int64" ? torch::kLong : torch::kFloat;  // fp16 widened to fp32
    if (t.scalar_type() != want) ++bad_dtype;
  }
  EXPECT_MSG(bad_name == 0, bad_name << " state_dict names differ");
  EXPECT_MSG(bad_shape == 0, bad_shape << " state_dict shapes differ");
  EXPECT_MSG(bad_dtype == 0, bad_dtype << " state_dict dtypes differ");
}

// Parameters (not BatchNorm statistics): total element count and tensor count.
std::pair<int64_t, int64_t> param_count(const y26::NamedTensors& sd) {
  int64_t n = 0, tensors = 0;
  for (const auto& kv : sd) {
    const std::string& name = kv.first;
    if (name.find("running_") != std::string::npos || name.find("num_batches_tracked") != std::string::npos) continue;
    n += kv.second.numel();
    ++tensors;
  }
  return {n, tensors};
}

}  // namespace

// ---- zip ----------------------------------------------------------------------------------------

TEST_CASE("crc32 matches the standard check value") {
  const char* s = "123456789";
  EXPECT(y26::crc32_update(0, s, 9) == 0xCBF43926u);
  // Split updates give the same result.
  EXPECT(y26::crc32_update(y26::crc32_update(0, s, 4), s + 4, 5) == 0xCBF43926u);
}

TEST_CASE("zip writer/reader round trip, 64-byte aligned data") {
  std::string p = tmp_dir() + "/rt.zip";
  std::vector<uint8_t> a(1000), b(7);
  for (size_t k = 0; k < a.size(); ++k) a[k] = uint8_t(k * 7);
  for (size_t k = 0; k < b.size(); ++k) b[k] = uint8_t(200 + k);
  {
    y26::ZipWriter w(p);
    w.add("arc/a.bin", a.data(), a.size());
    w.add("arc/b.bin", b.data(), b.size());
    w.add("arc/empty", nullptr, 0);
    w.finish();
  }
  y26::ZipReader r(p);
  EXPECT(r.entries().size() == 3);
  EXPECT(r.read("arc/a.bin") == a);
  EXPECT(r.read("arc/b.bin") == b);
  EXPECT(r.read("arc/empty").empty());
  for (const auto& e : r.entries()) EXPECT_MSG(e.data_offset % 64 == 0, e.name << " at " << e.data_offset);
  EXPECT(r.find("nope") == nullptr);
  EXPECT_THROWS(r.read("nope"));
}

TEST_CASE("zip64 records (forced) read back") {
  std::string p = tmp_dir() + "/z64.zip";
  std::vector<uint8_t> a(300, 9);
  {
    y26::ZipWriter w(p, /*force_zip64=*/true);
    w.add("x/a", a.data(), a.size());
    w.add("x/b", a.data(), 10);
    w.finish();
  }
  std::vector<uint8_t> bytes = slurp(p);
  // The end record says "see zip64" and the zip64 end record and locator are present.
  size_t n = bytes.size();
  EXPECT(bytes[n - 22] == 0x50 && bytes[n - 21] == 0x4b && bytes[n - 20] == 5 && bytes[n - 19] == 6);
  EXPECT(bytes[n - 22 - 20] == 0x50 && bytes[n - 22 - 18] == 6 && bytes[n - 22 - 17] == 7);
  y26::ZipReader r(p);
  EXPECT(r.entries().size() == 2);
  EXPECT(r.read("x/a") == a);
  EXPECT(r.read("x/b") == std::vector<uint8_t>(10, 9));
  EXPECT(r.find("x/b")->header_offset > 0);
}

TEST_CASE("zip with more than 65535 entries uses zip64 end records") {
  std::string p = tmp_dir() + "/many.zip";
  {
    y26::ZipWriter w(p);
    for (uint32_t k = 0; k < 65540; ++k) w.add("m/" + std::to_string(k), &k, 4);
    w.finish();
  }
  y26::ZipReader r(p);
  EXPECT(r.entries().size() == 65540);
  std::vector<uint8_t> last = r.read("m/65539");
  uint32_t v = 0;
  std::memcpy(&v, last.data(), 4);
  EXPECT(v == 65539);
}

TEST_CASE("zip reader inflates deflated entries (made by Python's zipfile)") {
  y26::ZipReader r(fixture("io/deflated.zip"));
  const y26::ZipEntry* e = r.find("hello.txt");
  EXPECT(e && e->method == 8 && e->compressed_size < e->size);
  std::vector<uint8_t> text = r.read("hello.txt");
  std::string want;
  for (int k = 0; k < 200; ++k) want += "hello deflate ";
  EXPECT(std::string(text.begin(), text.end()) == want);
  std::vector<uint8_t> stored = r.read("stored.bin");
  EXPECT(stored.size() == 256 && stored[255] == 255);
}

TEST_CASE("zip reader detects a corrupt entry by its CRC") {
  std::string p = tmp_dir() + "/crc.zip";
  std::vector<uint8_t> a(128, 1);
  {
    y26::ZipWriter w(p);
    w.add("c/a", a.data(), a.size());
    w.finish();
  }
  std::vector<uint8_t> bytes = slurp(p);
  y26::ZipReader ok(p);
  bytes[ok.find("c/a")->data_offset + 5] ^= 0x40;
  spit(p, bytes);
  y26::ZipReader r(p);
  std::string err = error_of([&] { r.read("c/a"); });
  EXPECT_MSG(contains(err, "CRC") && contains(err, p), err);
}

// ---- pickle -------------------------------------------------------------------------------------

static void check_python_value(const PyValue& v, int proto) {
  EXPECT(v.is_dict());
  EXPECT(v.get("short")->as_str() == "h\xc3\xa9llo");
  EXPECT(v.get("big")->as_int() == (int64_t(1) << 40));
  EXPECT(v.get("neg")->as_int() == -5);
  EXPECT(v.get("huge")->kind() == PyValue::Kind::BigInt && v.get("huge")->as_bytes().size() == 9);
  EXPECT(v.get("f")->as_float() == 0.1);
  EXPECT(v.get("b")->as_bytes() == std::string("\x00\xff" "ab", 4));
  EXPECT(v.get("set")->kind() == PyValue::Kind::Set && v.get("set")->items().size() == 2);
  EXPECT(v.get("fs")->items().size() == 1 && v.get("fs")->items()[0].as_str() == "q");
  const PyValue& od = *v.get("od");
  EXPECT(od.as_dict().ordered && od.as_dict().entries[0].first.as_str() == "z" && od.get("a")->as_int() == 2);
  EXPECT(v.get("t")->is_tuple() && v.get("t")->items().size() == 4 && v.get("t")->items()[3].as_int() == 4);
  const PyValue& shared = *v.get("shared");
  EXPECT(shared.items().size() == 2 && shared.items()[0].identity() == shared.items()[1].identity());
  const PyValue& ns = *v.get("ns");
  EXPECT(ns.is_object() && ns.qualname() == "types.SimpleNamespace");
  EXPECT(ns.get("lr") && ns.get("lr")->as_float() == 0.01 && ns.get("name")->as_str() == "n");
  EXPECT(v.get("path")->as_str() == "/data/coco.yaml");
  const PyValue& obj = *v.get("obj");
  EXPECT(obj.is_object() && obj.qualname() == "somemod.Thing");
  EXPECT(obj.get("a")->as_int() == 1 && obj.get("b")->as_str() == "x");
  EXPECT(v.get("none")->is_none());
  EXPECT(v.get("tf")->items()[0].as_bool() && !v.get("tf")->items()[1].as_bool());
  EXPECT_MSG(v.as_dict().size() == 16, "protocol " << proto << ": " << v.as_dict().size() << " keys");
}

TEST_CASE("unpickles Python protocol 2, 4 and 5 pickles") {
  check_python_value(unpickle_bytes(from_hex(kPickleProto2Hex)), 2);
  check_python_value(unpickle_bytes(from_hex(kPickleProto4Hex)), 4);
  check_python_value(unpickle_bytes(from_hex(kPickleProto5Hex)), 5);
}

TEST_CASE("unpickles a protocol 0 (text) pickle") {
  PyValue v = unpickle_bytes(from_hex(kPickleProto0Hex));
  const auto& a = v.get("a")->items();
  EXPECT(a.size() == 5 && a[0].as_int() == 1 && a[1].as_float() == 2.5 && a[2].as_str() == "x");
  EXPECT(a[3].is_none() && a[4].is_bool() && a[4].as_bool());
  EXPECT(v.get("b")->is_tuple() && v.get("b")->items()[0].as_int() == 3);
  // {'p': somemod2.P() reduced through copy_reg.__newobj__ with state {'v': 3}, 'od': OrderedDict(a=1)}
  PyValue w = unpickle_bytes(from_hex(
      "286470300a56700a70310a63636f70795f7265670a5f5f6e65776f626a5f5f0a70320a2863736f6d656d6f64320a500a70330a"
      "7470340a5270350a286470360a56760a70370a49330a736273566f640a70380a63636f6c6c656374696f6e730a4f72646572"
      "6564446963740a70390a2874527031300a56610a7031310a49310a73732e"));
  EXPECT(w.get("p")->qualname() == "somemod2.P" && w.get("p")->get("v")->as_int() == 3);
  EXPECT(w.get("od")->as_dict().ordered && w.get("od")->get("a")->as_int() == 1);
}

TEST_CASE("unpickles numpy scalars, torch.device, dtypes and defaultdict") {
  PyValue v = unpickle_bytes(from_hex(kPickleNumpyTorchHex));
  EXPECT(v.get("np_f")->is_float() && v.get("np_f")->as_float() == 0.5);
  EXPECT(v.get("np_i")->is_int() && v.get("np_i")->as_int() == -7);
  EXPECT(v.get("np_f4")->as_float() == 0.25 && v.get("np_b")->is_bool() && v.get("np_b")->as_bool());
  EXPECT(v.get("dev")->as_str() == "cuda:1" && v.get("cpu")->as_str() == "cpu");
  EXPECT(v.get("dt")->is_global() && v.get("dt")->qualname() == "torch.float16");
  EXPECT(v.get("dd")->is_dict() && v.get("dd")->get("k")->items()[0].as_int() == 1);
}

TEST_CASE("pickler round trip, including tensors") {
  PyValue d = PyValue::dict();
  auto& dd = d.as_dict();
  dd.set(PyValue::str("ints"), PyValue::list({PyValue::integer(0), PyValue::integer(255), PyValue::integer(256),
                                              PyValue::integer(65536), PyValue::integer(-1),
                                              PyValue::integer(INT64_MIN), PyValue::integer(INT64_MAX),
                                              PyValue::integer(int64_t(1) << 31)}));
  dd.set(PyValue::str("floats"), PyValue::tuple({PyValue::real(-0.0), PyValue::real(1e-300), PyValue::real(3.5)}));
  dd.set(PyValue::str("text"), PyValue::str("\xe4\xb8\xad-0"));
  dd.set(PyValue::integer(7), PyValue::bytes(std::string("\x01\xfe", 2)));
  dd.set(PyValue::str("flags"), PyValue::list({PyValue::boolean(true), PyValue::boolean(false), PyValue::none()}));
  dd.set(PyValue::str("set"), PyValue::set({PyValue::integer(3)}));
  std::vector<PyValue> many;
  for (int k = 0; k < 2500; ++k) many.push_back(PyValue::integer(k));  // more than one APPENDS batch
  dd.set(PyValue::str("many"), PyValue::list(many));
  PyValue od = PyValue::dict();
  od.as_dict().ordered = true;
  torch::Tensor t = torch::arange(12, torch::kFloat).reshape({3, 4});
  od.as_dict().set(PyValue::str("w"), PyValue::tensor(t));
  od.as_dict().set(PyValue::str("n"), PyValue::tensor(torch::tensor(int64_t(5))));
  dd.set(PyValue::str("sd"), od);

  std::map<std::string, torch::Tensor> storages;
  std::string bytes = y26::pickle(d, [&](const std::string& k, const torch::Tensor& s) { storages[k] = s; });
  EXPECT(storages.size() == 2);
  PyValue back = y26::unpickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                               [&](const PyValue& pid) {
                                 const auto& t = pid.items();
                                 EXPECT(t[0].as_str() == "storage" && t[3].as_str() == "cpu");
                                 torch::Tensor s = storages.at(t[2].as_str());
                                 EXPECT(y26::storage_class_dtype(t[1].as_object().name) == s.scalar_type());
                                 return PyValue::tensor(s.reshape(-1));
                               },
                               "roundtrip");
  const auto& ints = back.get("ints")->items();
  EXPECT(ints.size() == 8 && ints[1].as_int() == 255 && ints[2].as_int() == 256 && ints[3].as_int() == 65536);
  EXPECT(ints[4].as_int() == -1 && ints[5].as_int() == INT64_MIN && ints[6].as_int() == INT64_MAX);
  EXPECT(ints[7].as_int() == (int64_t(1) << 31));
  const auto& floats = back.get("floats")->items();
  EXPECT(std::signbit(floats[0].as_float()) && floats[1].as_float() == 1e-300 && floats[2].as_float() == 3.5);
  EXPECT(back.get("text")->as_str() == "\xe4\xb8\xad-0");
  EXPECT(back.as_dict().find(PyValue::integer(7))->as_bytes() == std::string("\x01\xfe", 2));
  EXPECT(back.get("flags")->items()[0].as_bool() && back.get("flags")->items()[2].is_none());
  EXPECT(back.get("set")->kind() == PyValue::Kind::Set);
  EXPECT(back.get("many")->items().size() == 2500 && back.get("many")->items()[2499].as_int() == 2499);
  const PyValue& sd = *back.get("sd");
  EXPECT(sd.as_dict().ordered);
  EXPECT(torch::equal(sd.get("w")->as_tensor(), t));
  EXPECT(sd.get("n")->as_tensor().dim() == 0 && sd.get("n")->as_tensor().item<int64_t>() == 5);
}

TEST_CASE("unpickler rejects bad input with clear errors") {
  std::string err = error_of([] { unpickle_str(lit("\x80\x02\x82\x01.")); });
  EXPECT_MSG(contains(err, "unsupported pickle opcode 0x82") && contains(err, "test"), err);
  err = error_of([] { unpickle_str(lit("\x80\x02]q\x00(K\x01")); });  // no STOP
  EXPECT_MSG(contains(err, "end of the pickle"), err);
  err = error_of([] { unpickle_str(lit("\x80\x02h\x05.")); });  // memo never stored
  EXPECT_MSG(contains(err, "memo"), err);
  err = error_of([] { unpickle_str(lit("\x80\x02(X\x01\x00\x00\x00xK\x01tQ.")); });  // no storage loader
  EXPECT_MSG(contains(err, "persistent id"), err);
  // GLOBAL of anything (e.g. os.system) never executes: REDUCE yields an inert object.
  PyValue v = unpickle_str(lit("\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R."));
  EXPECT(v.is_object() && v.qualname() == "os.system" && v.as_object().args.items()[0].as_str() == "ls");
}

TEST_CASE("mutated pickles fail with y26::Error, never crash") {
  y26::ZipReader zip(fixture("io/train_like.pt"));
  const std::vector<uint8_t> good = zip.read("train_like/data.pkl");
  auto loader = [](const PyValue& pid) {
    int64_t numel = pid.items().at(4).as_int();
    if (numel < 0 || numel > 100000) y26::fail("fuzz: storage size out of range");
    return PyValue::tensor(torch::zeros({numel}));
  };
  std::mt19937 gen(7);
  int ok = 0, errors = 0, other = 0;
  for (int it = 0; it < 3000; ++it) {
    std::vector<uint8_t> b = good;
    if (it % 4 == 0) {
      b.resize(gen() % b.size());  // truncated
    } else {
      for (int k = 0, n = 1 + int(gen() % 4); k < n; ++k) b[gen() % b.size()] = uint8_t(gen());
    }
    try {
      PyValue v = y26::unpickle(b.data(), b.size(), loader, "fuzz");
      v.repr(3);
      y26::to_yaml(v);
      ++ok;
    } catch (const y26::Error&) {
      ++errors;
    } catch (const std::exception& e) {
      if (other++ < 3) std::cerr << "  non-y26 exception: " << e.what() << "\n";
    }
  }
  std::cout << "  3000 mutations: " << ok << " parsed, " << errors << " y26::Error, " << other << " other\n";
  EXPECT(other == 0);
  EXPECT(errors > 1000);  // most mutations must be caught
}

TEST_CASE("mutated checkpoint files fail with y26::Error, never crash") {
  const std::vector<uint8_t> good = slurp(fixture("io/train_like.pt"));
  const std::string p = tmp_dir() + "/mutated.pt";
  std::mt19937 gen(11);
  int ok = 0, errors = 0, other = 0;
  for (int it = 0; it < 400; ++it) {
    std::vector<uint8_t> b = good;
    // Mostly hit the zip structures (local headers at the front, central directory at the end).
    for (int k = 0, n = 1 + int(gen() % 3); k < n; ++k) {
      size_t at = it % 2 ? b.size() - 1 - gen() % std::min<size_t>(b.size(), 3000) : gen() % b.size();
      b[at] = uint8_t(gen());
    }
    spit(p, b);
    try {
      y26::load_checkpoint(p);
      ++ok;
    } catch (const y26::Error&) {
      ++errors;
    } catch (const std::exception& e) {
      if (other++ < 3) std::cerr << "  non-y26 exception: " << e.what() << "\n";
    }
  }
  std::cout << "  400 file mutations: " << ok << " loaded, " << errors << " y26::Error, " << other << " other\n";
  EXPECT(other == 0);
  EXPECT(errors > 100);
}

TEST_CASE("PyValue accessors report kind mismatches") {
  PyValue s = PyValue::str("x");
  std::string err = error_of([&] { s.as_int(); });
  EXPECT_MSG(contains(err, "expected int") && contains(err, "str"), err);
  EXPECT(PyValue::integer(3).as_float() == 3.0);
  EXPECT(PyValue().get("a") == nullptr);
  EXPECT(y26::format_double(0.1) == "0.1" && y26::format_double(1.0) == "1.0");
}

// ---- YAML ---------------------------------------------------------------------------------------

TEST_CASE("PyValue <-> YAML keeps types") {
  PyValue d = PyValue::dict();
  d.as_dict().set(PyValue::str("device"), PyValue::str("0"));
  d.as_dict().set(PyValue::str("lr"), PyValue::real(0.01));
  d.as_dict().set(PyValue::str("one"), PyValue::real(1.0));
  d.as_dict().set(PyValue::str("epochs"), PyValue::integer(30));
  d.as_dict().set(PyValue::str("amp"), PyValue::boolean(true));
  d.as_dict().set(PyValue::str("none"), PyValue());
  d.as_dict().set(PyValue::str("scale"), PyValue::list({PyValue::real(0.5), PyValue::integer(1024)}));
  YAML::Node y = y26::to_yaml(d);
  EXPECT(y["epochs"].as<int>() == 30 && y["lr"].as<double>() == 0.01 && y["device"].as<std::string>() == "0");
  PyValue back = y26::from_yaml(y);
  EXPECT(back.get("device")->is_str() && back.get("device")->as_str() == "0");
  EXPECT(back.get("lr")->is_float() && back.get("lr")->as_float() == 0.01);
  EXPECT(back.get("one")->is_float() && back.get("one")->as_float() == 1.0);
  EXPECT(back.get("epochs")->is_int() && back.get("amp")->is_bool() && back.get("none")->is_none());
  EXPECT(back.get("scale")->items()[1].is_int());
  // Plain YAML text is typed the YAML way; quoted scalars stay strings.
  PyValue t = y26::from_yaml(YAML::Load("{a: 3, b: '3', c: 1.5e-3, d: yes_no, e: ~, f: .inf}"));
  EXPECT(t.get("a")->is_int() && t.get("b")->is_str() && t.get("c")->as_float() == 1.5e-3);
  EXPECT(t.get("d")->as_str() == "yes_no" && t.get("e")->is_none() && std::isinf(t.get("f")->as_float()));
}

// ---- official checkpoints -----------------------------------------------------------------------

TEST_CASE("loads the trained yolo26n-shapes.pt: state_dict and metadata") {
  const std::string path = fixture("det/yolo26n-shapes.pt");
  auto t0 = std::chrono::steady_clock::now();
  y26::Checkpoint ck = y26::load_checkpoint(path);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "  load_checkpoint(yolo26n-shapes.pt): " << ms << " ms\n";
  EXPECT_MSG(ms < 2000, "loading a 5 MB checkpoint took " << ms << " ms");
  YAML::Node keys = keys_json("det/yolo26n-shapes.keys.json");
  expect_state_dict_matches(ck, keys);
  EXPECT(ck.format == "ultralytics");
  EXPECT(ck.model_class == "ultralytics.nn.tasks.DetectionModel");
  EXPECT(ck.task == "detect");
  EXPECT(ck.nc == 3);
  EXPECT((ck.names == std::vector<std::string>{"rectangle", "ellipse", "triangle"}));
  EXPECT((ck.stride == std::vector<float>{8.f, 16.f, 32.f}));
  EXPECT(ck.end2end && ck.reg_max == 1 && ck.kpt_shape.empty());
  EXPECT(ck.imgsz == std::vector<int64_t>{320});
  EXPECT(ck.epoch == -1 && !ck.best_fitness && ck.ema.empty() && ck.optimizer.empty());
  EXPECT(ck.version == "8.4.117" && !ck.date.empty());
  // The model YAML, as the model builder needs it.
  EXPECT(ck.yaml["nc"].as<int>() == 3 && ck.yaml["scale"].as<std::string>() == "n");
  EXPECT(ck.yaml["backbone"].IsSequence() && ck.yaml["backbone"][0][2].as<std::string>() == "Conv");
  EXPECT(ck.yaml["backbone"][0][3][0].as<int>() == 64 && ck.yaml["head"].IsSequence());
  EXPECT(ck.yaml["scales"]["n"][2].as<int>() == 1024 && ck.yaml["scales"]["n"][1].as<double>() == 0.25);
  EXPECT(ck.train_args["epochs"].as<int>() == 30 && ck.train_args["optimizer"].as<std::string>() == "auto");
  EXPECT(ck.train_results["epoch"].size() == 30);
  EXPECT(ck.extra["train_metrics"].IsMap() && ck.extra["license"].as<std::string>().find("AGPL") == 0);
  EXPECT(param_count(ck.state_dict).first == keys["parameter_count_unfused"].as<int64_t>());
  EXPECT(param_count(ck.state_dict).second == keys["num_parameter_tensors"].as<int64_t>());
  // Spot checks against the fact sheet.
  EXPECT(ck.state_dict[0].first == "model.0.conv.weight" && ck.state_dict[0].second.sizes() == torch::IntArrayRef({16, 3, 3, 3}));
  EXPECT(ck.state_dict[5].first == "model.0.bn.num_batches_tracked" && ck.state_dict[5].second.scalar_type() == torch::kLong);
  EXPECT(ck.raw.get("model")->is_object());
}

TEST_CASE("fp16 weights widen to fp32 exactly") {
  const std::string path = fixture("det/yolo26n-shapes.pt");
  y26::Checkpoint ck = y26::load_checkpoint(path);
  // The raw half bits of model.0.conv.weight (storage "0", 16*3*3*3 values), straight from the zip.
  y26::ZipReader zip(path);
  std::vector<uint8_t> raw = zip.read("yolo26n-shapes/data/0");
  EXPECT(raw.size() == 432 * 2);
  const torch::Tensor& w = ck.state_dict[0].second;
  EXPECT(w.scalar_type() == torch::kFloat && w.is_contiguous());
  const float* f = w.data_ptr<float>();
  int mismatches = 0, nonzero = 0;
  for (size_t k = 0; k < 432; ++k) {
    uint16_t h = uint16_t(raw[2 * k] | raw[2 * k + 1] << 8);
    float want = half_bits_to_float(h);
    if (std::memcmp(&want, &f[k], 4) != 0) ++mismatches;
    if (want != 0) ++nonzero;
  }
  EXPECT(mismatches == 0);
  EXPECT(nonzero > 400);  // real trained weights, not zeros
}

TEST_CASE("loads yolo26n-coco-random.pt (nc 80, names '0'..'79')") {
  y26::Checkpoint ck = y26::load_checkpoint(fixture("det/yolo26n-coco-random.pt"));
  YAML::Node keys = keys_json("det/yolo26n-coco-random.keys.json");
  expect_state_dict_matches(ck, keys);
  EXPECT(ck.task == "detect" && ck.nc == 80 && ck.names.size() == 80);
  EXPECT(ck.names[0] == "0" && ck.names[79] == "79");
  EXPECT(ck.end2end && ck.reg_max == 1 && (ck.stride == std::vector<float>{8.f, 16.f, 32.f}));
  EXPECT(ck.yaml["nc"].as<int>() == 80);
  EXPECT(param_count(ck.state_dict).first == keys["parameter_count_unfused"].as<int64_t>());
  EXPECT(param_count(ck.state_dict).second == keys["num_parameter_tensors"].as<int64_t>());
}

TEST_CASE("loads yolo26n-pose-random.pt (pose, kpt_shape 17x3)") {
  y26::Checkpoint ck = y26::load_checkpoint(fixture("pose/yolo26n-pose-random.pt"));
  YAML::Node keys = keys_json("pose/yolo26n-pose-random.keys.json");
  expect_state_dict_matches(ck, keys);
  EXPECT(ck.model_class == "ultralytics.nn.tasks.PoseModel");
  EXPECT(ck.task == "pose" && ck.nc == 1 && ck.names == std::vector<std::string>{"person"});
  EXPECT((ck.kpt_shape == std::vector<int64_t>{17, 3}));
  EXPECT(ck.end2end && (ck.stride == std::vector<float>{8.f, 16.f, 32.f}));
  EXPECT(ck.yaml["kpt_shape"][0].as<int>() == 17);
  // RealNVP's loc (2), cov (2x2) and mask (6x2) are buffers, not parameters: 18 elements.
  EXPECT(param_count(ck.state_dict).first - 18 == keys["parameter_count_unfused"].as<int64_t>());
}

TEST_CASE("loads a training-style checkpoint (EMA model, fp16 optimizer state)") {
  // Written by real torch.save (scripts/fixtures/make_train_like_ckpt.py): model None, ema a
  // SegmentationModel in fp16 with a non-persistent buffer, SGD state converted to fp16.
  y26::Checkpoint ck = y26::load_checkpoint(fixture("io/train_like.pt"));
  EXPECT(ck.format == "ultralytics" && ck.model_class == "ultralytics.nn.tasks.SegmentationModel");
  EXPECT(ck.task == "segment" && ck.nc == 2 && (ck.names == std::vector<std::string>{"a", "b"}));
  const std::vector<std::pair<std::string, double>> want = {
      {"model.0.conv.weight", -1.3892974853515625}, {"model.0.bn.weight", -0.41143798828125},
      {"model.0.bn.bias", -0.280517578125},         {"model.0.bn.running_mean", 0.0},
      {"model.0.bn.running_var", 3.0},              {"model.0.bn.num_batches_tracked", 42.0},
      {"model.1.weight", 4.5966796875},             {"model.1.bias", -1.1698150634765625}};
  EXPECT(ck.state_dict.size() == want.size());  // the non-persistent "scratch" buffer is left out
  for (size_t k = 0; k < std::min(want.size(), ck.state_dict.size()); ++k) {
    EXPECT(ck.state_dict[k].first == want[k].first);
    // Sums of fp16 values are exact in double, so this checks the values bit for bit in aggregate.
    EXPECT(ck.state_dict[k].second.to(torch::kDouble).sum().item<double>() == want[k].second);
  }
  EXPECT(ck.state_dict[5].second.scalar_type() == torch::kLong);
  EXPECT(ck.ema.empty());  // the EMA weights are the state_dict
  EXPECT(ck.epoch == 4 && ck.best_fitness && *ck.best_fitness == 0.375 && ck.updates == 77);
  EXPECT(ck.imgsz == std::vector<int64_t>{320} && !ck.end2end && ck.reg_max == 16 && ck.kpt_shape.empty());
  EXPECT((ck.stride == std::vector<float>{8, 16, 32}));
  EXPECT(ck.optimizer.tensors.size() == 5 && ck.optimizer.tensors[0].first == "state.0.momentum_buffer");
  for (const auto& kv : ck.optimizer.tensors)
    EXPECT(kv.second.scalar_type() == torch::kFloat && kv.second.min().item<float>() == 1.f && kv.second.max().item<float>() == 1.f);
  EXPECT(ck.optimizer.scalars["param_groups"][0]["lr"].as<double>() == 0.01);
  EXPECT(ck.optimizer.scalars["param_groups"][0]["params"].size() == 5);
  EXPECT(ck.train_args["device"].Tag() == "!" && ck.train_args["device"].as<std::string>() == "0");
  EXPECT(ck.extra["train_metrics"]["fitness"].as<double>() == 0.375 && ck.extra["scaler"].IsNull());
}

// The train_like.pt model rebuilt in libtorch: Conv(conv, bn, act) then a plain Conv2d.
struct ConvBlockImpl : torch::nn::Module {
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  ConvBlockImpl(int64_t c1, int64_t c2) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(c2));
  }
  torch::Tensor forward(torch::Tensor x) { return torch::silu(bn(conv(x))); }
};
TORCH_MODULE(ConvBlock);
struct TinyModelImpl : torch::nn::Module {
  torch::nn::Sequential model{nullptr};
  TinyModelImpl(int64_t c_out) {
    model = register_module("model", torch::nn::Sequential(ConvBlock(3, 4), torch::nn::Conv2d(torch::nn::Conv2dOptions(4, c_out, 1))));
  }
};
TORCH_MODULE(TinyModel);

TEST_CASE("state_dict_of/load_state_dict follow PyTorch names and order") {
  y26::Checkpoint ck = y26::load_checkpoint(fixture("io/train_like.pt"));
  TinyModel m(2);
  y26::NamedTensors mine = y26::state_dict_of(*m);
  EXPECT(mine.size() == ck.state_dict.size());
  for (size_t k = 0; k < std::min(mine.size(), ck.state_dict.size()); ++k)
    EXPECT_MSG(mine[k].first == ck.state_dict[k].first, mine[k].first << " vs " << ck.state_dict[k].first);
  y26::load_state_dict(*m, ck.state_dict);
  EXPECT(torch::equal(m->model[1]->as<torch::nn::Conv2d>()->bias, ck.state_dict[7].second));
  EXPECT(m->model[0]->as<ConvBlock>()->bn->num_batches_tracked.item<int64_t>() == 42);
  EXPECT(m->model[0]->as<ConvBlock>()->bn->running_var.sum().item<float>() == 3.f);

  // A model of another width: nothing is copied and the error lists the mismatch.
  TinyModel other(5);
  torch::Tensor before = other->model[0]->as<ConvBlock>()->conv->weight.clone();
  std::string err = error_of([&] { y26::load_state_dict(*other, ck.state_dict, true, "train_like.pt"); });
  EXPECT_MSG(contains(err, "train_like.pt") && contains(err, "2 shape mismatches: model.1.weight"), err);
  EXPECT(torch::equal(other->model[0]->as<ConvBlock>()->conv->weight, before));

  // Missing and unexpected names: errors when strict, ignored otherwise.
  y26::NamedTensors partial(ck.state_dict.begin(), ck.state_dict.begin() + 6);
  partial.emplace_back("model.9.extra", torch::zeros({1}));
  err = error_of([&] { y26::load_state_dict(*m, partial); });
  EXPECT_MSG(contains(err, "2 missing: model.1.weight, model.1.bias") && contains(err, "1 unexpected: model.9.extra"), err);
  y26::load_state_dict(*m, partial, /*strict=*/false);
}

// ---- our format ---------------------------------------------------------------------------------

static y26::CheckpointData sample_training_data() {
  y26::CheckpointData d;
  torch::manual_seed(3);
  d.task = "pose";
  d.nc = 2;
  d.names = {"cat", "0"};
  d.kpt_shape = {17, 3};
  d.stride = {8, 16, 32};
  d.end2end = true;
  d.reg_max = 1;
  d.imgsz = {480, 640};
  d.yaml = YAML::Load("{nc: 2, scale: n, backbone: [[-1, 1, Conv, [64, 3, 2]]], scales: {n: [0.5, 0.25, 1024]}}");
  d.train_args = YAML::Load("{epochs: 3, lr0: 0.01, device: '0', name: run}");
  d.state_dict = {{"model.0.conv.weight", torch::randn({16, 3, 3, 3})},
                  {"model.0.bn.running_var", torch::rand({16}) + 1e-7},
                  {"model.0.bn.num_batches_tracked", torch::tensor(int64_t(123))},
                  {"model.23.strided", torch::randn({4, 6}).t()}};  // non-contiguous on purpose
  d.ema = {{"model.0.conv.weight", torch::randn({16, 3, 3, 3})}};
  d.optimizer.tensors = {{"model.0.conv.weight.exp_avg", torch::randn({16, 3, 3, 3})},
                         {"step", torch::tensor(7.0)}};
  d.optimizer.scalars = YAML::Load("{name: AdamW, lr: 0.002, betas: [0.9, 0.999]}");
  d.epoch = 2;
  d.best_fitness = 0.123456789;
  d.updates = 456;
  d.date = "2026-11-28T06:00:00+00:00";
  d.version = "yolo26-native 0.1.0";
  d.train_results = YAML::Load("{epoch: [1, 2], 'metrics/mAP50(B)': [0.1, 0.2]}");
  d.extra = YAML::Load("{note: hello}");
  return d;
}

static void expect_same_tensors(const y26::NamedTensors& a, const y26::NamedTensors& b, bool exact_dtype) {
  EXPECT(a.size() == b.size());
  for (size_t k = 0; k < std::min(a.size(), b.size()); ++k) {
    EXPECT(a[k].first == b[k].first);
    torch::Tensor x = a[k].second, y = b[k].second;
    if (exact_dtype) EXPECT(x.scalar_type() == y.scalar_type());
    EXPECT_MSG(x.sizes() == y.sizes() && torch::equal(x.to(y.scalar_type()), y), "tensor " << a[k].first << " differs");
  }
}

TEST_CASE("save -> load round trip is bit-exact") {
  y26::CheckpointData d = sample_training_data();
  std::string p = tmp_dir() + "/ours.pt";
  y26::save_checkpoint(p, d);
  y26::Checkpoint ck = y26::load_checkpoint(p);
  EXPECT(ck.format == "yolo26-native" && ck.format_version == y26::kCheckpointFormatVersion);
  expect_same_tensors(d.state_dict, ck.state_dict, true);
  expect_same_tensors(d.ema, ck.ema, true);
  expect_same_tensors(d.optimizer.tensors, ck.optimizer.tensors, true);
  EXPECT(ck.optimizer.scalars["name"].as<std::string>() == "AdamW" && ck.optimizer.scalars["betas"][1].as<double>() == 0.999);
  EXPECT(ck.task == "pose" && ck.nc == 2 && (ck.names == std::vector<std::string>{"cat", "0"}));
  EXPECT((ck.kpt_shape == std::vector<int64_t>{17, 3}) && (ck.stride == std::vector<float>{8, 16, 32}));
  EXPECT(ck.end2end && ck.reg_max == 1 && (ck.imgsz == std::vector<int64_t>{480, 640}));
  EXPECT(ck.epoch == 2 && ck.best_fitness && *ck.best_fitness == 0.123456789 && ck.updates == 456);
  EXPECT(ck.date == d.date && ck.version == d.version);
  EXPECT(ck.yaml["backbone"][0][3][0].as<int>() == 64 && ck.yaml["scales"]["n"][1].as<double>() == 0.25);
  PyValue dev = y26::from_yaml(ck.train_args["device"]);
  EXPECT(dev.is_str() && dev.as_str() == "0");
  EXPECT(ck.train_args["lr0"].as<double>() == 0.01 && ck.train_args["epochs"].as<int>() == 3);
  EXPECT(ck.train_results["metrics/mAP50(B)"][1].as<double>() == 0.2);
  EXPECT(ck.extra["note"].as<std::string>() == "hello");
  // The file is a plain dict of plain data: its top level holds no objects or globals.
  for (const auto& kv : ck.raw.as_dict()) EXPECT(!kv.second.is_object() && !kv.second.is_global());
  EXPECT(ck.raw.get("model")->as_dict().ordered);
}

TEST_CASE("official checkpoint -> our format -> load keeps weights and metadata") {
  y26::Checkpoint off = y26::load_checkpoint(fixture("det/yolo26n-shapes.pt"));
  std::string p32 = tmp_dir() + "/shapes32.pt", p16 = tmp_dir() + "/shapes16.pt";
  y26::save_checkpoint(p32, off);
  y26::CheckpointSaveOptions half;
  half.half = true;
  y26::save_checkpoint(p16, off, half);
  for (const std::string& p : {p32, p16}) {
    y26::Checkpoint ck = y26::load_checkpoint(p);
    // The official weights are fp16 values, so both fp32 and fp16 storage give them back exactly.
    expect_same_tensors(off.state_dict, ck.state_dict, true);
    EXPECT(ck.names == off.names && ck.nc == 3 && ck.stride == off.stride && ck.end2end && ck.reg_max == 1);
    EXPECT(ck.yaml["head"].size() == off.yaml["head"].size() && ck.train_args["imgsz"].as<int>() == 320);
  }
  // fp16 storage halves the file.
  struct stat a, b;
  stat(p32.c_str(), &a);
  stat(p16.c_str(), &b);
  EXPECT_MSG(b.st_size < a.st_size * 6 / 10, "fp16 " << b.st_size << " vs fp32 " << a.st_size);
  y26::ZipReader z(p16);
  for (const auto& e : z.entries()) EXPECT(e.data_offset % 64 == 0);
}

TEST_CASE("a failed save leaves the previous checkpoint intact and no temp file") {
  std::string dir = tmp_dir() + "/atomic";
  mkdir(dir.c_str(), 0755);
  std::string p = dir + "/last.pt";
  y26::CheckpointData first = sample_training_data();
  y26::save_checkpoint(p, first);
  std::vector<uint8_t> before = slurp(p);

  // A bigger checkpoint, written while the process may not create files over 64 KiB (as when the
  // disk fills up): the write fails part-way through.
  y26::CheckpointData second = sample_training_data();
  second.state_dict.emplace_back("big", torch::randn({200000}));
  second.epoch = 3;
  struct rlimit old_limit;
  getrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  setrlimit(RLIMIT_FSIZE, &small);
  std::string err = error_of([&] { y26::save_checkpoint(p, second); });
  setrlimit(RLIMIT_FSIZE, &old_limit);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_MSG(err.rfind(p + ": saving failed", 0) == 0 && contains(err, "File too large"), "error: " << err);
  EXPECT(slurp(p) == before);
  EXPECT(y26::load_checkpoint(p).epoch == 2);
  int files = 0;
  for (const char* probe : {"/last.pt"}) files += y26test::exists(dir + probe);
  EXPECT(files == 1);
  std::string cmd = "ls " + dir + " | grep -c tmp > /dev/null";
  EXPECT(std::system(cmd.c_str()) != 0);  // no leftover temporary file

  // The rename cannot replace a directory: the error names the file and nothing is left behind.
  std::string blocked = dir + "/blocked.pt";
  mkdir(blocked.c_str(), 0755);
  std::string marker = blocked + "/keep";
  spit(marker, {1, 2, 3});
  err = error_of([&] { y26::save_checkpoint(blocked, first); });
  EXPECT_MSG(contains(err, "blocked.pt"), err);
  EXPECT(slurp(marker) == std::vector<uint8_t>({1, 2, 3}));
  EXPECT(std::system(cmd.c_str()) != 0);

  // A successful save replaces the file.
  y26::save_checkpoint(p, second);
  EXPECT(y26::load_checkpoint(p).epoch == 3);
}

TEST_CASE("temporaries of a process killed mid-save are removed by the next save; live ones are kept") {
  std::string dir = tmp_dir() + "/stale";
  mkdir(dir.c_str(), 0755);
  const std::string p = dir + "/last.pt";
  const std::string dead = p + ".tmp-2147480000-0";  // above any pid_max: no such process
  const std::string live = p + ".tmp-" + std::to_string(getppid()) + "-3";  // the parent runs
  const std::string other = dir + "/best.pt.tmp-2147480000-0";           // another file's temporary
  for (const auto& f : {dead, live, other}) spit(f, {});
  EXPECT(y26::remove_stale_checkpoint_temps(p) == 1);
  EXPECT(!y26test::exists(dead) && y26test::exists(live) && y26test::exists(other));
  spit(dead, {});
  y26::save_checkpoint(p, sample_training_data());
  EXPECT(!y26test::exists(dead) && y26test::exists(live) && y26::load_checkpoint(p).epoch == 2);
}

// ---- bad input ----------------------------------------------------------------------------------

TEST_CASE("bad files give errors that name the file") {
  const std::string dir = tmp_dir();
  std::string err = error_of([&] { y26::load_checkpoint(dir + "/does-not-exist.pt"); });
  EXPECT_MSG(contains(err, "does-not-exist.pt") && contains(err, "not found"), err);

  std::vector<uint8_t> good = slurp(fixture("det/yolo26n-shapes.pt"));
  std::string trunc = dir + "/truncated.pt";
  spit(trunc, std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  err = error_of([&] { y26::load_checkpoint(trunc); });
  EXPECT_MSG(contains(err, "truncated.pt") && contains(err, "zip archive is truncated"), err);

  std::string rnd = dir + "/random.pt";
  std::mt19937 gen(1);
  std::vector<uint8_t> noise(100000);
  for (auto& b : noise) b = uint8_t(gen());
  spit(rnd, noise);
  err = error_of([&] { y26::load_checkpoint(rnd); });
  EXPECT_MSG(contains(err, "random.pt") && contains(err, "not a zip"), err);

  std::string legacy = dir + "/legacy.pt";
  spit(legacy, {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0});  // torch < 1.6 files start with a pickled magic number
  err = error_of([&] { y26::load_checkpoint(legacy); });
  EXPECT_MSG(contains(err, "legacy.pt") && contains(err, "legacy (pre-1.6"), err);

  std::string tiny = dir + "/tiny.pt";
  spit(tiny, {1, 2, 3});
  err = error_of([&] { y26::load_checkpoint(tiny); });
  EXPECT_MSG(contains(err, "tiny.pt") && contains(err, "not a zip"), err);

  // Flip one byte inside a tensor record: the CRC check catches it.
  std::string flipped = dir + "/flipped.pt";
  {
    y26::ZipReader z(fixture("det/yolo26n-shapes.pt"));
    std::vector<uint8_t> copy = good;
    copy[z.find("yolo26n-shapes/data/102")->data_offset + 100] ^= 0x01;
    spit(flipped, copy);
  }
  err = error_of([&] { y26::load_checkpoint(flipped); });
  EXPECT_MSG(contains(err, "flipped.pt") && contains(err, "CRC"), err);
}

static void write_zip_with_pickle(const std::string& p, const std::string& pkl, bool with_pkl = true) {
  y26::ZipWriter w(p);
  if (with_pkl) w.add("arc/data.pkl", pkl.data(), pkl.size());
  w.add("arc/version", "3\n", 2);
  w.finish();
}

TEST_CASE("structurally wrong checkpoints give specific errors") {
  const std::string dir = tmp_dir();
  std::string p = dir + "/nopkl.pt";
  write_zip_with_pickle(p, "", false);
  std::string err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "nopkl.pt") && contains(err, "data.pkl"), err);

  p = dir + "/badop.pt";
  write_zip_with_pickle(p, lit("\x80\x02\x82\x01."));
  err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "badop.pt") && contains(err, "unsupported pickle opcode"), err);

  // A tensor whose storage record is missing from the archive.
  PyValue d = PyValue::dict();
  d.as_dict().set(PyValue::str("model"), PyValue::tensor(torch::ones({3})));
  p = dir + "/nostorage.pt";
  write_zip_with_pickle(p, y26::pickle(d, nullptr));
  err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "nostorage.pt") && contains(err, "missing storage record arc/data/0"), err);

  PyValue empty = PyValue::dict();
  empty.as_dict().set(PyValue::str("model"), PyValue());
  empty.as_dict().set(PyValue::str("ema"), PyValue());
  p = dir + "/noweights.pt";
  write_zip_with_pickle(p, y26::pickle(empty, nullptr));
  err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "noweights.pt") && contains(err, "neither 'model' nor 'ema'"), err);

  p = dir + "/list.pt";
  write_zip_with_pickle(p, y26::pickle(PyValue::list(), nullptr));
  err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "list.pt") && contains(err, "expected a dict"), err);

  // Metadata of the wrong type: the accessor's error gains the file name.
  PyValue odd = PyValue::dict();
  PyValue sd = PyValue::dict();
  sd.as_dict().set(PyValue::str("w"), PyValue::tensor(torch::ones({2})));
  odd.as_dict().set(PyValue::str("format"), PyValue::str("yolo26-native"));
  odd.as_dict().set(PyValue::str("format_version"), PyValue::integer(1));
  odd.as_dict().set(PyValue::str("model"), sd);
  odd.as_dict().set(PyValue::str("nc"), PyValue::str("three"));
  p = dir + "/oddnc.pt";
  {
    y26::ZipWriter w(p);
    std::string pkl = y26::pickle(odd, [&](const std::string& key, const torch::Tensor& t) {
      w.add("arc/data/" + key, t.data_ptr(), size_t(t.numel() * t.element_size()));
    });
    w.add("arc/data.pkl", pkl.data(), pkl.size());
    w.finish();
  }
  err = error_of([&] { y26::load_checkpoint(p); });
  EXPECT_MSG(contains(err, "oddnc.pt: unexpected checkpoint content") && contains(err, "expected int"), err);

  y26::CheckpointData none;
  err = error_of([&] { y26::save_checkpoint(dir + "/empty.pt", none); });
  EXPECT_MSG(contains(err, "empty.pt"), err);
  err = error_of([&] { y26::save_checkpoint(dir + "/no/such/dir/x.pt", sample_training_data()); });
  EXPECT_MSG(contains(err, "x.pt") && contains(err, "does not exist"), err);
}

TEST_MAIN()
