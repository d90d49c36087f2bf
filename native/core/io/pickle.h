// Python values as torch.save pickles them: a safe unpickler (protocols 2-5, no code execution) and a
// protocol-2 pickler whose output Python's torch.load(weights_only=True) accepts.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace y26 {

struct PyDict;
struct PyObject;

// A Python value. Containers and objects are shared by reference, as in Python (the pickle memo
// relies on that); copying a PyValue copies the reference.
class PyValue {
 public:
  enum class Kind { None, Bool, Int, BigInt, Float, Str, Bytes, List, Tuple, Set, Dict, Global, Object, Tensor };

  PyValue() = default;  // None
  static PyValue none() { return PyValue(); }
  static PyValue boolean(bool b);
  static PyValue integer(int64_t i);
  static PyValue big_integer(std::string le_twos_complement);  // LONG1 payloads wider than 64 bits
  static PyValue real(double f);
  static PyValue str(std::string s);
  static PyValue bytes(std::string b);
  static PyValue list(std::vector<PyValue> items = {});
  static PyValue tuple(std::vector<PyValue> items = {});
  static PyValue set(std::vector<PyValue> items = {});
  static PyValue dict();  // ordered, like every Python 3.7+ dict
  static PyValue global(std::string module, std::string name);  // a class or function reference
  static PyValue object(std::string module, std::string name, PyValue args);
  static PyValue tensor(torch::Tensor t);

  Kind kind() const { return kind_; }
  const char* kind_name() const;
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_str() const { return kind_ == Kind::Str; }
  bool is_bytes() const { return kind_ == Kind::Bytes; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::Tuple; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple || kind_ == Kind::Set; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_global() const { return kind_ == Kind::Global; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_tensor() const { return kind_ == Kind::Tensor; }

  // Typed access; each throws y26::Error naming the expected and actual kind.
  bool as_bool() const;             // bool or int
  int64_t as_int() const;           // int or bool
  double as_float() const;          // float, int or bool
  const std::string& as_str() const;
  const std::string& as_bytes() const;  // bytes (also the raw payload of a BigInt)
  const std::vector<PyValue>& items() const;  // list, tuple or set
  std::vector<PyValue>& items();
  const PyDict& as_dict() const;
  PyDict& as_dict();
  const PyObject& as_object() const;  // Object or Global (module and name)
  PyObject& as_object();
  const torch::Tensor& as_tensor() const;

  // Dict and object-attribute shortcuts: the value under a string key, or nullptr.
  const PyValue* get(const std::string& key) const;
  // Same, but None when absent (handy for optional fields).
  PyValue get_or_none(const std::string& key) const;
  bool has(const std::string& key) const { return get(key) != nullptr; }
  // "module.name" for objects and globals, empty otherwise.
  std::string qualname() const;

  // Short Python-like text, for messages and debugging (containers are abbreviated).
  std::string repr(int depth = 2) const;
  // Identity of the shared payload (containers/objects/tensors); used to detect shared references.
  const void* identity() const;

 private:
  static PyValue make_seq(Kind k, std::vector<PyValue> items);
  Kind kind_ = Kind::None;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<std::string> s_;
  std::shared_ptr<std::vector<PyValue>> seq_;
  std::shared_ptr<PyDict> dict_;
  std::shared_ptr<PyObject> obj_;
  std::shared_ptr<torch::Tensor> tensor_;
};

// An insertion-ordered dict. Keys may be any hashable scalar or tuple of them; lookups by string key
// are the common case and are O(1).
struct PyDict {
  std::vector<std::pair<PyValue, PyValue>> entries;
  bool ordered = false;  // a collections.OrderedDict in Python (the pickler writes it as one)

  size_t size() const { return entries.size(); }
  bool empty() const { return entries.empty(); }
  void set(const PyValue& key, PyValue value);  // replaces an existing equal key in place
  const PyValue* find(const PyValue& key) const;
  const PyValue* find(const std::string& key) const;
  PyValue* find(const std::string& key);
  auto begin() const { return entries.begin(); }
  auto end() const { return entries.end(); }

 private:
  std::unordered_map<std::string, size_t> index_;
};

// An instance of a class the loader does not interpret (for example an nn.Module): what the pickle
// said about it, inert. Also used for class references (Kind::Global), with only module and name.
struct PyObject {
  std::string module, name;
  PyValue args;     // tuple given to the class (NEWOBJ/REDUCE), None if none
  PyValue state;    // what BUILD set (usually the instance __dict__), None if none
  std::vector<PyValue> appended;    // APPEND(S) onto the object
  PyValue set_items;                // SETITEM(S) onto the object (a dict), None if none
};

// Resolves a persistent id (torch: ('storage', <storage class>, key, location, numel)) to a value.
using PersistentLoader = std::function<PyValue(const PyValue& pid)>;

// Safe unpickling: GLOBAL/STACK_GLOBAL never import anything. Known callables (OrderedDict, set,
// torch tensor rebuilds, torch.Size, torch.device, pathlib paths, numpy scalars, ...) are evaluated;
// any other class becomes an inert PyObject. `label` names the source in error messages.
PyValue unpickle(const uint8_t* data, size_t n, const PersistentLoader& persistent_load, const std::string& label);

// Shortest decimal text that reads back to the same double ("0.1", "1.0", "nan", "inf", "-inf").
std::string format_double(double f);

// A torch storage class name (e.g. "HalfStorage") -> dtype; throws y26::Error on an unknown name.
torch::ScalarType storage_class_dtype(const std::string& name);
// dtype -> torch storage class name ("FloatStorage", ...).
std::string storage_class_name(torch::ScalarType t);

// Protocol-2 pickler. Plain data (None, bool, int, float, str, list, tuple, dict, OrderedDict for
// dicts with `ordered` set, tensors) gives pickles that torch.load(weights_only=True) accepts; sets,
// bytes (as _codecs.encode), globals and objects are written too but need weights_only=False.
// Each tensor becomes torch._utils._rebuild_tensor_v2 over its own storage, whose bytes are handed
// to `write_storage(key, contiguous_cpu_tensor)`; keys are "0", "1", ... in order of appearance.
using StorageWriter = std::function<void(const std::string& key, const torch::Tensor& cpu_contiguous)>;
std::string pickle(const PyValue& v, const StorageWriter& write_storage);

}  // namespace y26
