#include "io/pickle.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "util/error.h"

namespace y26 {

// ---- PyValue --------------------------------------------------------------------------------

PyValue PyValue::boolean(bool b) { PyValue v; v.kind_ = Kind::Bool; v.b_ = b; v.i_ = b; return v; }
PyValue PyValue::integer(int64_t i) { PyValue v; v.kind_ = Kind::Int; v.i_ = i; return v; }
PyValue PyValue::big_integer(std::string raw) { PyValue v; v.kind_ = Kind::BigInt; v.s_ = std::make_shared<std::string>(std::move(raw)); return v; }
PyValue PyValue::real(double f) { PyValue v; v.kind_ = Kind::Float; v.f_ = f; return v; }
PyValue PyValue::str(std::string s) { PyValue v; v.kind_ = Kind::Str; v.s_ = std::make_shared<std::string>(std::move(s)); return v; }
PyValue PyValue::bytes(std::string s) { PyValue v; v.kind_ = Kind::Bytes; v.s_ = std::make_shared<std::string>(std::move(s)); return v; }
PyValue PyValue::list(std::vector<PyValue> items) { return make_seq(Kind::List, std::move(items)); }
PyValue PyValue::tuple(std::vector<PyValue> items) { return make_seq(Kind::Tuple, std::move(items)); }
PyValue PyValue::set(std::vector<PyValue> items) { return make_seq(Kind::Set, std::move(items)); }
PyValue PyValue::dict() { PyValue v; v.kind_ = Kind::Dict; v.dict_ = std::make_shared<PyDict>(); return v; }
PyValue PyValue::global(std::string module, std::string name) {
  PyValue v;
  v.kind_ = Kind::Global;
  v.obj_ = std::make_shared<PyObject>();
  v.obj_->module = std::move(module);
  v.obj_->name = std::move(name);
  return v;
}
PyValue PyValue::object(std::string module, std::string name, PyValue args) {
  PyValue v = global(std::move(module), std::move(name));
  v.kind_ = Kind::Object;
  v.obj_->args = std::move(args);
  return v;
}
PyValue PyValue::tensor(torch::Tensor t) { PyValue v; v.kind_ = Kind::Tensor; v.tensor_ = std::make_shared<torch::Tensor>(std::move(t)); return v; }

PyValue PyValue::make_seq(Kind k, std::vector<PyValue> items) {
  PyValue v;
  v.kind_ = k;
  v.seq_ = std::make_shared<std::vector<PyValue>>(std::move(items));
  return v;
}

const char* PyValue::kind_name() const {
  switch (kind_) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "int (wider than 64 bits)";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Set: return "set";
    case Kind::Dict: return "dict";
    case Kind::Global: return "class/function reference";
    case Kind::Object: return "object";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

[[noreturn]] static void wrong_kind(const PyValue& v, const char* want) {
  fail(std::string("pickle value: expected ") + want + ", got " + v.kind_name() + " " + v.repr(1));
}

bool PyValue::as_bool() const {
  if (kind_ == Kind::Bool || kind_ == Kind::Int) return i_ != 0;
  wrong_kind(*this, "bool");
}
int64_t PyValue::as_int() const {
  if (kind_ == Kind::Int || kind_ == Kind::Bool) return i_;
  if (kind_ == Kind::Float && std::floor(f_) == f_ && std::fabs(f_) < 9.2e18) return int64_t(f_);
  wrong_kind(*this, "int");
}
double PyValue::as_float() const {
  if (kind_ == Kind::Float) return f_;
  if (kind_ == Kind::Int || kind_ == Kind::Bool) return double(i_);
  wrong_kind(*this, "float");
}
const std::string& PyValue::as_str() const {
  if (kind_ == Kind::Str) return *s_;
  wrong_kind(*this, "str");
}
const std::string& PyValue::as_bytes() const {
  if (kind_ == Kind::Bytes || kind_ == Kind::BigInt) return *s_;
  wrong_kind(*this, "bytes");
}
const std::vector<PyValue>& PyValue::items() const {
  if (seq_ && (kind_ == Kind::List || kind_ == Kind::Tuple || kind_ == Kind::Set)) return *seq_;
  wrong_kind(*this, "list/tuple");
}
std::vector<PyValue>& PyValue::items() {
  if (seq_ && (kind_ == Kind::List || kind_ == Kind::Tuple || kind_ == Kind::Set)) return *seq_;
  wrong_kind(*this, "list/tuple");
}
const PyDict& PyValue::as_dict() const {
  if (kind_ == Kind::Dict) return *dict_;
  wrong_kind(*this, "dict");
}
PyDict& PyValue::as_dict() {
  if (kind_ == Kind::Dict) return *dict_;
  wrong_kind(*this, "dict");
}
const PyObject& PyValue::as_object() const {
  if (kind_ == Kind::Object || kind_ == Kind::Global) return *obj_;
  wrong_kind(*this, "object");
}
PyObject& PyValue::as_object() {
  if (kind_ == Kind::Object || kind_ == Kind::Global) return *obj_;
  wrong_kind(*this, "object");
}
const torch::Tensor& PyValue::as_tensor() const {
  if (kind_ == Kind::Tensor) return *tensor_;
  wrong_kind(*this, "tensor");
}

const PyValue* PyValue::get(const std::string& key) const {
  if (kind_ == Kind::Dict) return dict_->find(key);
  if (kind_ == Kind::Object) {
    // Instance attributes: BUILD state is the __dict__, or (__dict__, slots) for classes with slots.
    const PyValue& st = obj_->state;
    if (st.is_dict()) return st.dict_->find(key);
    if (st.is_tuple())
      for (const PyValue& part : *st.seq_)
        if (part.is_dict())
          if (const PyValue* v = part.dict_->find(key)) return v;
  }
  return nullptr;
}

PyValue PyValue::get_or_none(const std::string& key) const {
  const PyValue* v = get(key);
  return v ? *v : PyValue();
}

std::string PyValue::qualname() const {
  if (kind_ == Kind::Object || kind_ == Kind::Global) return obj_->module + "." + obj_->name;
  return {};
}

const void* PyValue::identity() const {
  if (seq_) return seq_.get();
  if (dict_) return dict_.get();
  if (obj_) return obj_.get();
  if (tensor_) return tensor_.get();
  return nullptr;
}

std::string format_double(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {  // shortest text that reads back to the same double
    std::snprintf(buf, sizeof buf, "%.*g", prec, f);
    if (std::strtod(buf, nullptr) == f) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string PyValue::repr(int depth) const {
  std::ostringstream o;
  switch (kind_) {
    case Kind::None: return "None";
    case Kind::Bool: return b_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::BigInt: return "<int of " + std::to_string(s_->size()) + " bytes>";
    case Kind::Float: return format_double(f_);
    case Kind::Str: return "'" + (s_->size() > 60 ? s_->substr(0, 60) + "..." : *s_) + "'";
    case Kind::Bytes: return "b<" + std::to_string(s_->size()) + " bytes>";
    case Kind::List: case Kind::Tuple: case Kind::Set: {
      const char* open = kind_ == Kind::List ? "[" : kind_ == Kind::Tuple ? "(" : "{";
      const char* close = kind_ == Kind::List ? "]" : kind_ == Kind::Tuple ? ")" : "}";
      o << open;
      if (depth <= 0) o << "..." << seq_->size() << " items";
      else
        for (size_t k = 0; k < seq_->size() && k < 8; ++k) o << (k ? ", " : "") << (*seq_)[k].repr(depth - 1);
      if (depth > 0 && seq_->size() > 8) o << ", ...";
      o << close;
      return o.str();
    }
    case Kind::Dict: {
      o << "{";
      if (depth <= 0) o << "..." << dict_->size() << " items";
      else {
        size_t k = 0;
        for (const auto& kv : dict_->entries) {
          if (k++ == 8) { o << ", ..."; break; }
          o << (k > 1 ? ", " : "") << kv.first.repr(0) << ": " << kv.second.repr(depth - 1);
        }
      }
      o << "}";
      return o.str();
    }
    case Kind::Global: return "<" + qualname() + ">";
    case Kind::Object: return "<" + qualname() + " object>";
    case Kind::Tensor: {
      o << "tensor(" << tensor_->sizes() << ", " << tensor_->scalar_type() << ")";
      return o.str();
    }
  }
  return "?";
}

// ---- PyDict ---------------------------------------------------------------------------------

// Python hash equality for the keys pickles use: True == 1 == 1.0; unhashables never merge.
static std::string key_text(const PyValue& k) {
  switch (k.kind()) {
    case PyValue::Kind::None: return "N";
    case PyValue::Kind::Bool: case PyValue::Kind::Int: return "i" + std::to_string(k.as_int());
    case PyValue::Kind::Float: {
      double f = k.as_float();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) return "i" + std::to_string(int64_t(f));
      return "f" + format_double(f);
    }
    case PyValue::Kind::BigInt: return "I" + k.as_bytes();
    case PyValue::Kind::Str: return "s" + k.as_str();
    case PyValue::Kind::Bytes: return "b" + k.as_bytes();
    case PyValue::Kind::Tuple: {
      std::string s = "t(";
      for (const PyValue& e : k.items()) s += key_text(e) + "\x1f";
      return s + ")";
    }
    case PyValue::Kind::Global: return "g" + k.qualname();
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "p%p", k.identity());
      return buf;
    }
  }
}

void PyDict::set(const PyValue& key, PyValue value) {
  std::string t = key_text(key);
  auto it = index_.find(t);
  if (it != index_.end()) {
    entries[it->second].second = std::move(value);
    return;
  }
  index_.emplace(std::move(t), entries.size());
  entries.emplace_back(key, std::move(value));
}

const PyValue* PyDict::find(const PyValue& key) const {
  auto it = index_.find(key_text(key));
  return it == index_.end() ? nullptr : &entries[it->second].second;
}
const PyValue* PyDict::find(const std::string& key) const {
  auto it = index_.find("s" + key);
  return it == index_.end() ? nullptr : &entries[it->second].second;
}
PyValue* PyDict::find(const std::string& key) {
  auto it = index_.find("s" + key);
  return it == index_.end() ? nullptr : &entries[it->second].second;
}

// ---- storage classes ------------------------------------------------------------------------

namespace {
struct StorageName { const char* name; torch::ScalarType type; };
const StorageName kStorages[] = {
    {"FloatStorage", torch::kFloat},   {"HalfStorage", torch::kHalf},     {"DoubleStorage", torch::kDouble},
    {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kLong}, {"IntStorage", torch::kInt},
    {"ShortStorage", torch::kShort},   {"CharStorage", torch::kChar},     {"ByteStorage", torch::kByte},
    {"BoolStorage", torch::kBool},
};
}  // namespace

torch::ScalarType storage_class_dtype(const std::string& name) {
  for (const auto& s : kStorages)
    if (name == s.name) return s.type;
  fail("unsupported torch storage class torch." + name +
       " (supported: Float, Half, Double, BFloat16, Long, Int, Short, Char, Byte, Bool)");
}

std::string storage_class_name(torch::ScalarType t) {
  for (const auto& s : kStorages)
    if (t == s.type) return s.name;
  fail(std::string("cannot save tensors of dtype ") + c10::toString(t));
}

// ---- unpickler ------------------------------------------------------------------------------

namespace {

// Unicode helpers: pickles carry UTF-8 (BINUNICODE) or Latin-1 bytes (_codecs.encode, py2 strings).
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) out += char(cp);
  else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
}

// UTF-8 text whose code points are all < 256 -> those bytes (what str.encode('latin1') does).
bool utf8_to_latin1(const std::string& s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    uint8_t c = uint8_t(s[i]);
    if (c < 0x80) out += char(c);
    else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      uint32_t cp = ((c & 0x1F) << 6) | (uint8_t(s[i + 1]) & 0x3F);
      if (cp > 0xFF) return false;
      out += char(cp);
      ++i;
    } else return false;
  }
  return true;
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  for (unsigned char c : s) append_utf8(out, c);
  return out;
}

int64_t le_signed(const uint8_t* p, size_t n) {  // n <= 8, two's complement
  if (n == 0) return 0;
  uint64_t v = 0;
  for (size_t k = 0; k < n; ++k) v |= uint64_t(p[k]) << (8 * k);
  if (n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);
  return int64_t(v);
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const PersistentLoader& pl, const std::string& label)
      : d_(d), n_(n), persistent_load_(pl), label_(label) {}

  PyValue run();

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(label_ + ": " + what + " (at byte " + std::to_string(pos_) + " of the pickle); the file is corrupt or not a torch checkpoint");
  }
  const uint8_t* take(size_t k) {
    if (k > n_ - pos_) bad("unexpected end of the pickle data");
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint8_t u8() { return *take(1); }
  uint16_t u16() { const uint8_t* p = take(2); return uint16_t(p[0] | p[1] << 8); }
  uint32_t u32() { const uint8_t* p = take(4); return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
  uint64_t u64() { uint64_t lo = u32(); return lo | uint64_t(u32()) << 32; }
  std::string chars(uint64_t k) {
    if (k > n_ - pos_) bad("string length past the end of the pickle data");
    return std::string(reinterpret_cast<const char*>(take(size_t(k))), size_t(k));
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) bad("unterminated text line");
    std::string s(reinterpret_cast<const char*>(d_ + start), pos_ - start);
    ++pos_;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
  }

  void push(PyValue v) { stack_.push_back(std::move(v)); }
  PyValue pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) bad("stack underflow");
    PyValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PyValue& top() {
    if (stack_.empty()) bad("stack underflow");
    return stack_.back();
  }
  std::vector<PyValue> pop_mark() {
    if (marks_.empty()) bad("MARK expected");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyValue> items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  // Memo keys are dense (0, 1, 2, ... as picklers number them), so a vector serves as the memo.
  void memo_put(uint64_t idx) {
    if (idx > n_) bad("memo key " + std::to_string(idx) + " out of range");
    if (idx >= memo_.size()) {
      memo_.resize(size_t(idx) + 1);
      stored_.resize(size_t(idx) + 1, false);
    }
    memo_[idx] = top();
    if (!stored_[idx]) ++memo_count_;
    stored_[idx] = true;
  }
  void memo_get(uint64_t idx) {
    if (idx >= memo_.size() || !stored_[idx]) bad("memo key " + std::to_string(idx) + " was never stored");
    push(memo_[idx]);
  }
  void append_to(PyValue& target, std::vector<PyValue> items);
  void setitems_on(PyValue& target, std::vector<PyValue>& kv);
  PyValue call(const PyValue& callable, const PyValue& args);
  PyValue rebuild_tensor(const std::vector<PyValue>& a);
  PyValue global(std::string module, std::string name);

  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const PersistentLoader& persistent_load_;
  const std::string& label_;
  std::vector<PyValue> stack_;
  std::vector<size_t> marks_;
  std::vector<PyValue> memo_;
  std::vector<bool> stored_;
  size_t memo_count_ = 0;  // MEMOIZE numbering
};

PyValue Unpickler::global(std::string module, std::string name) {
  if (module == "__builtin__") module = "builtins";  // protocol 2 pickles name Python 2 modules
  if (module == "copy_reg") module = "copyreg";
  return PyValue::global(std::move(module), std::move(name));
}

void Unpickler::append_to(PyValue& target, std::vector<PyValue> items) {
  if (target.is_list() || target.kind() == PyValue::Kind::Set) {
    auto& v = target.items();
    v.insert(v.end(), std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
  } else if (target.is_object()) {
    auto& v = target.as_object().appended;
    v.insert(v.end(), std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
  } else {
    bad(std::string("APPEND onto a ") + target.kind_name());
  }
}

void Unpickler::setitems_on(PyValue& target, std::vector<PyValue>& kv) {
  if (kv.size() % 2) bad("SETITEMS with an odd number of items");
  PyDict* d = nullptr;
  if (target.is_dict()) d = &target.as_dict();
  else if (target.is_object()) {
    PyObject& o = target.as_object();
    if (!o.set_items.is_dict()) o.set_items = PyValue::dict();
    d = &o.set_items.as_dict();
  } else {
    bad(std::string("SETITEM onto a ") + target.kind_name());
  }
  for (size_t k = 0; k < kv.size(); k += 2) d->set(kv[k], std::move(kv[k + 1]));
}

PyValue Unpickler::rebuild_tensor(const std::vector<PyValue>& a) {
  // (storage, storage_offset, size, stride, ...): a view of the storage, as torch rebuilds it.
  if (a.size() < 4 || !a[0].is_tensor()) bad("malformed tensor record (_rebuild_tensor arguments)");
  const torch::Tensor& storage = a[0].as_tensor();
  int64_t offset = a[1].as_int();
  std::vector<int64_t> size, stride;
  for (const PyValue& v : a[2].items()) size.push_back(v.as_int());
  for (const PyValue& v : a[3].items()) stride.push_back(v.as_int());
  if (size.size() != stride.size()) bad("tensor record with size and stride of different ranks");
  int64_t last = offset;  // highest element index the view touches
  bool empty = false;
  for (size_t k = 0; k < size.size(); ++k) {
    if (size[k] < 0 || stride[k] < 0) bad("tensor record with a negative size or stride");
    if (size[k] == 0) empty = true;
    else last += (size[k] - 1) * stride[k];
  }
  if (!empty && (offset < 0 || last >= storage.numel()))
    fail(label_ + ": a tensor of shape " + c10::str(c10::IntArrayRef(size)) + " needs elements up to " +
         std::to_string(last) + " of a storage of " + std::to_string(storage.numel()) +
         ": the checkpoint is corrupt");
  return PyValue::tensor(storage.as_strided(size, stride, empty ? 0 : offset));
}

PyValue Unpickler::call(const PyValue& callable, const PyValue& args_in) {
  if (!callable.is_global()) {
    if (callable.is_object()) return PyValue::object(callable.as_object().module, callable.as_object().name, args_in);
    bad(std::string("cannot call a ") + callable.kind_name());
  }
  const std::string& m = callable.as_object().module;
  const std::string& n = callable.as_object().name;
  static const std::vector<PyValue> no_args;
  const std::vector<PyValue>& a = args_in.is_sequence() ? args_in.items() : no_args;

  if ((m == "collections" && (n == "OrderedDict" || n == "defaultdict")) || (m == "builtins" && n == "dict")) {
    PyValue d = PyValue::dict();
    d.as_dict().ordered = n == "OrderedDict";
    size_t first = n == "defaultdict" ? 1 : 0;  // defaultdict(factory, items)
    if (a.size() > first) {
      const PyValue& src = a[first];
      if (src.is_dict()) for (const auto& kv : src.as_dict()) d.as_dict().set(kv.first, kv.second);
      else if (src.is_sequence())
        for (const PyValue& pair : src.items())
          if (pair.is_sequence() && pair.items().size() == 2) d.as_dict().set(pair.items()[0], pair.items()[1]);
    }
    return d;
  }
  if (m == "builtins" && (n == "set" || n == "frozenset" || n == "list" || n == "tuple")) {
    std::vector<PyValue> items;
    if (!a.empty() && a[0].is_sequence()) items = a[0].items();
    else if (!a.empty() && a[0].is_dict()) for (const auto& kv : a[0].as_dict()) items.push_back(kv.first);
    if (n == "list") return PyValue::list(std::move(items));
    if (n == "tuple") return PyValue::tuple(std::move(items));
    return PyValue::set(std::move(items));
  }
  if ((m == "_codecs" && n == "encode") || (m == "builtins" && n == "bytearray") || (m == "builtins" && n == "bytes")) {
    if (a.empty()) return PyValue::bytes("");
    if (a[0].is_bytes()) return PyValue::bytes(a[0].as_bytes());
    if (a[0].is_str()) {
      std::string enc = a.size() > 1 && a[1].is_str() ? a[1].as_str() : "utf-8";
      if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1") {
        std::string out;
        if (!utf8_to_latin1(a[0].as_str(), out)) bad("bytes payload not encodable as latin1");
        return PyValue::bytes(std::move(out));
      }
      return PyValue::bytes(a[0].as_str());  // utf-8
    }
    if (a[0].is_sequence()) {
      std::string out;
      for (const PyValue& v : a[0].items()) out += char(v.as_int());
      return PyValue::bytes(std::move(out));
    }
  }
  if (m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor")) return rebuild_tensor(a);
  if (m == "torch._utils" && (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state")) {
    if (a.empty() || !a[0].is_tensor()) bad("malformed parameter record");
    return a[0];
  }
  if (m == "torch._tensor" && n == "_rebuild_from_type_v2") {  // (func, type, args, state)
    if (a.size() < 3) bad("malformed _rebuild_from_type_v2 record");
    return call(a[0], a[2]);
  }
  if (m == "torch" && n == "Size") return PyValue::tuple(a.empty() ? std::vector<PyValue>{} : a[0].items());
  if (m == "torch" && n == "device") {
    std::string s = a.empty() ? "cpu" : a[0].as_str();
    if (a.size() > 1 && a[1].is_int()) s += ":" + std::to_string(a[1].as_int());
    return PyValue::str(s);
  }
  if (m == "copyreg" && n == "_reconstructor") {  // (cls, base, state): an instance of cls
    if (a.empty()) bad("malformed copyreg._reconstructor record");
    return call(a[0], PyValue::tuple());
  }
  if (m == "pathlib" && (n == "Path" || n == "PosixPath" || n == "WindowsPath" || n == "PurePath" ||
                         n == "PurePosixPath" || n == "PureWindowsPath")) {
    std::string p;
    for (const PyValue& part : a) {
      if (!part.is_str()) continue;
      if (!p.empty() && p.back() != '/' && p.back() != '\\') p += '/';
      p += part.as_str();
    }
    return PyValue::str(p);
  }
  if ((m == "numpy.core.multiarray" || m == "numpy._core.multiarray") && n == "scalar" && a.size() == 2) {
    // numpy scalar: (dtype object built from numpy.dtype(code, ...), raw little-endian bytes)
    const PyValue& dt = a[0];
    std::string code = dt.is_object() && dt.as_object().args.is_sequence() && !dt.as_object().args.items().empty() &&
                               dt.as_object().args.items()[0].is_str()
                           ? dt.as_object().args.items()[0].as_str()
                           : "";
    std::string raw = a[1].is_bytes() ? a[1].as_bytes() : a[1].is_str() ? a[1].as_str() : "";
    auto num = [&](auto tag) {
      using T = decltype(tag);
      T v;
      if (raw.size() != sizeof(T)) bad("numpy scalar of dtype " + code + " with " + std::to_string(raw.size()) + " bytes");
      std::memcpy(&v, raw.data(), sizeof(T));
      return v;
    };
    if (code == "f8") return PyValue::real(num(double()));
    if (code == "f4") return PyValue::real(num(float()));
    if (code == "i8") return PyValue::integer(num(int64_t()));
    if (code == "i4") return PyValue::integer(num(int32_t()));
    if (code == "u8") return PyValue::integer(int64_t(num(uint64_t())));
    if (code == "u4") return PyValue::integer(num(uint32_t()));
    if (code == "u1") return PyValue::integer(num(uint8_t()));
    if (code == "b1") return PyValue::boolean(num(uint8_t()) != 0);
  }
  // Anything else (nn.Module classes, SimpleNamespace, numpy.dtype, ...) stays an inert record.
  return PyValue::object(m, n, args_in.is_none() ? PyValue::tuple() : args_in);
}

PyValue Unpickler::run() {
  while (true) {
    size_t op_at = pos_;
    uint8_t op = u8();
    switch (op) {
      case 0x80: { uint8_t proto = u8(); if (proto > 5) bad("pickle protocol " + std::to_string(proto) + " is newer than 5"); break; }  // PROTO
      case 0x95: take(8); break;  // FRAME: frames are only a read-ahead hint
      case '.': {  // STOP
        if (stack_.size() != 1 || !marks_.empty()) bad("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
      }
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                            // POP
      case '1': pop_mark(); break;                       // POP_MARK
      case '2': push(top()); break;                      // DUP
      case 'N': push(PyValue()); break;
      case 0x88: push(PyValue::boolean(true)); break;
      case 0x89: push(PyValue::boolean(false)); break;
      case 'J': push(PyValue::integer(int32_t(u32()))); break;  // BININT
      case 'K': push(PyValue::integer(u8())); break;            // BININT1
      case 'M': push(PyValue::integer(u16())); break;           // BININT2
      case 0x8a: case 0x8b: {                                   // LONG1, LONG4
        uint64_t len = op == 0x8a ? u8() : u32();
        const uint8_t* p = take(size_t(len));
        if (len <= 8) push(PyValue::integer(le_signed(p, size_t(len))));
        else push(PyValue::big_integer(std::string(reinterpret_cast<const char*>(p), size_t(len))));
        break;
      }
      case 'I': {  // INT (text); I01/I00 are protocol-0 booleans
        std::string s = line();
        if (s == "01" || s == "00") push(PyValue::boolean(s == "01"));
        else push(PyValue::integer(std::stoll(s)));
        break;
      }
      case 'L': {  // LONG (text)
        std::string s = line();
        if (!s.empty() && s.back() == 'L') s.pop_back();
        push(PyValue::integer(std::stoll(s)));
        break;
      }
      case 'G': {  // BINFLOAT, big endian
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = bits << 8 | p[k];
        double f;
        std::memcpy(&f, &bits, 8);
        push(PyValue::real(f));
        break;
      }
      case 'F': push(PyValue::real(std::strtod(line().c_str(), nullptr))); break;
      case 'X': push(PyValue::str(chars(u32()))); break;          // BINUNICODE
      case 0x8c: push(PyValue::str(chars(u8()))); break;          // SHORT_BINUNICODE
      case 0x8d: push(PyValue::str(chars(u64()))); break;         // BINUNICODE8
      case 'V': {  // UNICODE (raw-unicode-escape text)
        std::string s = line(), out;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] == '\\' && k + 5 < s.size() + 0 && s[k + 1] == 'u') {
            append_utf8(out, uint32_t(std::stoul(s.substr(k + 2, 4), nullptr, 16)));
            k += 5;
          } else {
            append_utf8(out, uint8_t(s[k]));
          }
        }
        push(PyValue::str(out));
        break;
      }
      case 'T': push(PyValue::str(latin1_to_utf8(chars(u32())))); break;  // BINSTRING (py2 str)
      case 'U': push(PyValue::str(latin1_to_utf8(chars(u8())))); break;   // SHORT_BINSTRING
      case 'S': {  // STRING: a quoted py2 repr; only simple escapes appear in practice
        std::string s = line();
        if (s.size() < 2) bad("malformed STRING");
        s = s.substr(1, s.size() - 2);
        std::string out;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] != '\\' || k + 1 == s.size()) { out += s[k]; continue; }
          char e = s[++k];
          if (e == 'n') out += '\n';
          else if (e == 't') out += '\t';
          else if (e == 'r') out += '\r';
          else if (e == 'x' && k + 2 < s.size()) { out += char(std::stoi(s.substr(k + 1, 2), nullptr, 16)); k += 2; }
          else out += e;
        }
        push(PyValue::str(latin1_to_utf8(out)));
        break;
      }
      case 'B': push(PyValue::bytes(chars(u32()))); break;     // BINBYTES
      case 'C': push(PyValue::bytes(chars(u8()))); break;      // SHORT_BINBYTES
      case 0x8e: push(PyValue::bytes(chars(u64()))); break;    // BINBYTES8
      case 0x96: push(PyValue::bytes(chars(u64()))); break;    // BYTEARRAY8
      case 0x98: break;                                        // READONLY_BUFFER: no-op for us
      case ']': push(PyValue::list()); break;
      case ')': push(PyValue::tuple()); break;
      case '}': push(PyValue::dict()); break;
      case 0x8f: push(PyValue::set()); break;                  // EMPTY_SET
      case 'l': push(PyValue::list(pop_mark())); break;        // LIST
      case 't': push(PyValue::tuple(pop_mark())); break;       // TUPLE
      case 0x91: push(PyValue::set(pop_mark())); break;        // FROZENSET
      case 0x85: { PyValue a = pop(); push(PyValue::tuple({a})); break; }
      case 0x86: { PyValue b = pop(), a = pop(); push(PyValue::tuple({a, b})); break; }
      case 0x87: { PyValue c = pop(), b = pop(), a = pop(); push(PyValue::tuple({a, b, c})); break; }
      case 'd': {  // DICT
        std::vector<PyValue> kv = pop_mark();
        PyValue d = PyValue::dict();
        setitems_on(d, kv);
        push(d);
        break;
      }
      case 'a': { PyValue v = pop(); append_to(top(), {std::move(v)}); break; }  // APPEND
      case 'e': { std::vector<PyValue> v = pop_mark(); append_to(top(), std::move(v)); break; }  // APPENDS
      case 0x90: {  // ADDITEMS
        std::vector<PyValue> v = pop_mark();
        if (top().kind() != PyValue::Kind::Set) bad("ADDITEMS onto a non-set");
        append_to(top(), std::move(v));
        break;
      }
      case 's': { PyValue v = pop(), k = pop(); std::vector<PyValue> kv{k, v}; setitems_on(top(), kv); break; }
      case 'u': { std::vector<PyValue> kv = pop_mark(); setitems_on(top(), kv); break; }
      case 'h': memo_get(u8()); break;      // BINGET
      case 'j': memo_get(u32()); break;     // LONG_BINGET
      case 'g': memo_get(std::stoull(line())); break;  // GET
      case 'q': memo_put(u8()); break;      // BINPUT
      case 'r': memo_put(u32()); break;     // LONG_BINPUT
      case 'p': memo_put(std::stoull(line())); break;  // PUT
      case 0x94: memo_put(memo_count_); break;          // MEMOIZE
      case 'c': { std::string mod = line(); std::string name = line(); push(global(mod, name)); break; }  // GLOBAL
      case 0x93: {  // STACK_GLOBAL
        PyValue name = pop(), mod = pop();
        if (!name.is_str() || !mod.is_str()) bad("STACK_GLOBAL needs two strings");
        push(global(mod.as_str(), name.as_str()));
        break;
      }
      case 'R': { PyValue args = pop(), fn = pop(); push(call(fn, args)); break; }  // REDUCE
      case 0x81: { PyValue args = pop(), cls = pop(); push(call(cls, args)); break; }  // NEWOBJ
      case 0x92: {  // NEWOBJ_EX (cls, args, kwargs): kwargs kept as the object's state
        PyValue kwargs = pop(), args = pop(), cls = pop();
        PyValue v = call(cls, args);
        if (v.is_object() && kwargs.is_dict() && !kwargs.as_dict().empty()) v.as_object().state = kwargs;
        push(v);
        break;
      }
      case 'o': {  // OBJ: MARK cls args... OBJ
        std::vector<PyValue> v = pop_mark();
        if (v.empty()) bad("OBJ without a class");
        PyValue cls = v[0];
        push(call(cls, PyValue::tuple(std::vector<PyValue>(v.begin() + 1, v.end()))));
        break;
      }
      case 'i': {  // INST: module\nname\n after MARK args...
        std::string mod = line(), name = line();
        std::vector<PyValue> v = pop_mark();
        push(call(global(mod, name), PyValue::tuple(std::move(v))));
        break;
      }
      case 'b': {  // BUILD: set state on the object below
        PyValue state = pop();
        PyValue& target = top();
        if (target.is_object()) {
          PyObject& o = target.as_object();
          if (o.state.is_dict() && state.is_dict())
            for (const auto& kv : state.as_dict()) o.state.as_dict().set(kv.first, kv.second);
          else o.state = state;
        }
        // Dict subclasses (OrderedDict._metadata), tensors (Parameter state): attributes we do not need.
        break;
      }
      case 'Q': {  // BINPERSID
        PyValue pid = pop();
        if (!persistent_load_) bad("persistent id " + pid.repr() + " but no storage loader");
        push(persistent_load_(pid));
        break;
      }
      case 'P': {  // PERSID (text)
        PyValue pid = PyValue::str(line());
        if (!persistent_load_) bad("persistent id " + pid.repr() + " but no storage loader");
        push(persistent_load_(pid));
        break;
      }
      default: {
        pos_ = op_at;
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", op);
        bad(std::string("unsupported pickle opcode ") + buf +
            (op == 0x97 ? " (NEXT_BUFFER: out-of-band buffers)" : op >= 0x82 && op <= 0x84 ? " (EXT: copyreg extension registry)" : ""));
      }
    }
  }
}

}  // namespace

PyValue unpickle(const uint8_t* data, size_t n, const PersistentLoader& persistent_load, const std::string& label) {
  Unpickler u(data, n, persistent_load, label);
  try {
    return u.run();
  } catch (const std::invalid_argument&) {
    fail(label + ": malformed number in a text pickle opcode (corrupt file)");
  } catch (const std::out_of_range&) {
    fail(label + ": number out of range in a text pickle opcode (corrupt file)");
  }
}

// ---- pickler --------------------------------------------------------------------------------

namespace {

class Pickler {
 public:
  explicit Pickler(const StorageWriter& w) : write_storage_(w) {}
  std::string run(const PyValue& v) {
    out_ += '\x80';
    out_ += '\x02';
    put(v);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void op(char c) { out_ += c; }
  void u8(uint8_t x) { out_ += char(x); }
  void u16(uint16_t x) { u8(uint8_t(x)); u8(uint8_t(x >> 8)); }
  void u32(uint32_t x) { u16(uint16_t(x)); u16(uint16_t(x >> 16)); }
  void global(const std::string& module, const std::string& name) {
    std::string m = module == "builtins" ? "__builtin__" : module;  // protocol 2 names
    out_ += 'c' + m + '\n' + name + '\n';
  }
  void str(const std::string& s) {
    op('X');
    u32(uint32_t(s.size()));
    out_ += s;
  }
  void integer(int64_t i) {
    if (i >= 0 && i < 256) { op('K'); u8(uint8_t(i)); }
    else if (i >= 0 && i < 65536) { op('M'); u16(uint16_t(i)); }
    else if (i >= INT32_MIN && i <= INT32_MAX) { op('J'); u32(uint32_t(int32_t(i))); }
    else {  // LONG1: shortest little-endian two's complement
      std::string b;
      uint64_t u = uint64_t(i);
      for (int k = 0; k < 8; ++k) b += char(uint8_t(u >> (8 * k)));
      while (b.size() > 1 && ((b.back() == 0 && !(uint8_t(b[b.size() - 2]) & 0x80)) ||
                              (uint8_t(b.back()) == 0xFF && (uint8_t(b[b.size() - 2]) & 0x80))))
        b.pop_back();
      op('\x8a');
      u8(uint8_t(b.size()));
      out_ += b;
    }
  }
  void seq_items(const std::vector<PyValue>& items, char batch_op, char single_op) {
    for (size_t start = 0; start < items.size(); start += 1000) {  // batches, as Python does
      size_t end = std::min(items.size(), start + 1000);
      if (end - start == 1) { put(items[start]); op(single_op); continue; }
      op('(');
      for (size_t k = start; k < end; ++k) put(items[k]);
      op(batch_op);
    }
  }
  void dict_items(const PyDict& d) {
    for (size_t start = 0; start < d.size(); start += 1000) {
      size_t end = std::min(d.size(), start + 1000);
      op('(');
      for (size_t k = start; k < end; ++k) { put(d.entries[k].first); put(d.entries[k].second); }
      op('u');
    }
  }
  void tuple(const std::vector<PyValue>& items) {
    if (items.empty()) { op(')'); return; }
    if (items.size() <= 3) {
      for (const PyValue& v : items) put(v);
      op(char(0x84 + items.size()));  // TUPLE1..3
      return;
    }
    op('(');
    for (const PyValue& v : items) put(v);
    op('t');
  }
  void tensor(const torch::Tensor& t_in) {
    torch::Tensor t = t_in.detach().to(torch::kCPU).contiguous();
    std::string key = std::to_string(next_key_++);
    if (write_storage_) write_storage_(key, t);
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    // persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel)
    op('(');
    str("storage");
    global("torch", storage_class_name(t.scalar_type()));
    str(key);
    str("cpu");
    integer(t.numel());
    op('t');
    op('Q');
    integer(0);  // storage offset
    std::vector<PyValue> size, stride;
    for (int64_t s : t.sizes()) size.push_back(PyValue::integer(s));
    for (int64_t s : t.strides()) stride.push_back(PyValue::integer(s));
    tuple(size);
    tuple(stride);
    op('\x89');  // requires_grad False
    global("collections", "OrderedDict");  // backward hooks
    op(')');
    op('R');
    op('t');
    op('R');
  }
  void put(const PyValue& v) {
    using K = PyValue::Kind;
    switch (v.kind()) {
      case K::None: op('N'); break;
      case K::Bool: op(v.as_bool() ? '\x88' : '\x89'); break;
      case K::Int: integer(v.as_int()); break;
      case K::BigInt: {
        const std::string& b = v.as_bytes();
        op('\x8b');
        u32(uint32_t(b.size()));
        out_ += b;
        break;
      }
      case K::Float: {
        double f = v.as_float();
        uint64_t bits;
        std::memcpy(&bits, &f, 8);
        op('G');
        for (int k = 7; k >= 0; --k) u8(uint8_t(bits >> (8 * k)));
        break;
      }
      case K::Str: str(v.as_str()); break;
      case K::Bytes:  // protocol 2 spelling of bytes: _codecs.encode(latin1 text, 'latin1')
        global("_codecs", "encode");
        str(latin1_to_utf8(v.as_bytes()));
        str("latin1");
        op('\x86');
        op('R');
        break;
      case K::List: op(']'); seq_items(v.items(), 'e', 'a'); break;
      case K::Tuple: tuple(v.items()); break;
      case K::Set:
        global("builtins", "set");
        op(']');
        seq_items(v.items(), 'e', 'a');
        op('\x85');
        op('R');
        break;
      case K::Dict:
        if (v.as_dict().ordered) { global("collections", "OrderedDict"); op(')'); op('R'); }
        else op('}');
        dict_items(v.as_dict());
        break;
      case K::Global: global(v.as_object().module, v.as_object().name); break;
      case K::Object: {
        const PyObject& o = v.as_object();
        global(o.module, o.name);
        tuple(o.args.is_sequence() ? o.args.items() : std::vector<PyValue>{});
        op('\x81');  // NEWOBJ
        if (!o.appended.empty()) seq_items(o.appended, 'e', 'a');
        if (o.set_items.is_dict()) dict_items(o.set_items.as_dict());
        if (!o.state.is_none()) { put(o.state); op('b'); }
        break;
      }
      case K::Tensor: tensor(v.as_tensor()); break;
    }
  }

  const StorageWriter& write_storage_;
  std::string out_;
  int64_t next_key_ = 0;
};

}  // namespace

std::string pickle(const PyValue& v, const StorageWriter& write_storage) { return Pickler(write_storage).run(v); }

}  // namespace y26
