#include "io/checkpoint.h"
#include "io/checkpoint_temps.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unordered_set>

#include "io/zip.h"
#include "util/error.h"
#include "util/timestamp.h"

namespace y26 {

// ---- torch.save archives ------------------------------------------------------------------------

PyValue load_torch_file(const std::string& path) {
  ZipReader zip(path);
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    const std::string& n = e.name;
    if (n == "data.pkl" || (n.size() > 9 && n.compare(n.size() - 9, 9, "/data.pkl") == 0 &&
                            n.find('/') == n.size() - 9)) {
      pkl = &e;
      break;
    }
  }
  if (!pkl)
    fail(path + ": the zip archive has no <name>/data.pkl record, so it is not a torch.save checkpoint "
                "(export the model with torch.save or use an official .pt file)");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);  // keeps the trailing '/'
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    std::vector<uint8_t> b = zip.read(*bo);
    if (std::string(b.begin(), b.end()) != "little")
      fail(path + ": tensors are stored big-endian; re-save the checkpoint on a little-endian machine");
  }

  std::unordered_map<std::string, PyValue> storages;  // one tensor per storage record, shared by views
  std::vector<uint8_t> scratch;
  PersistentLoader load_storage = [&](const PyValue& pid) -> PyValue {
    if (!pid.is_tuple() || pid.items().size() < 5 || !pid.items()[0].is_str() || pid.items()[0].as_str() != "storage")
      fail(path + ": unsupported persistent id " + pid.repr() + " in data.pkl (expected a torch storage)");
    const auto& t = pid.items();
    const std::string& key = t[2].as_str();
    auto it = storages.find(key);
    if (it != storages.end()) return it->second;
    std::string cls = t[1].is_global() ? t[1].as_object().name : "";
    torch::ScalarType dtype = cls == "UntypedStorage" ? torch::kByte : storage_class_dtype(cls);
    int64_t numel = t[4].as_int();
    const std::string record = prefix + "data/" + key;
    const ZipEntry* e = zip.find(record);
    if (!e) fail(path + ": missing storage record " + record + " (the checkpoint is truncated or corrupt)");
    const uint64_t nbytes = uint64_t(numel) * c10::elementSize(dtype);
    if (numel < 0 || e->size < nbytes)
      fail(path + ": storage record " + record + " holds " + std::to_string(e->size) + " bytes, expected " +
           std::to_string(nbytes) + " (corrupt checkpoint)");
    const uint8_t* src = zip.view(*e, scratch);
    torch::Tensor s = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    if (nbytes) std::memcpy(s.data_ptr(), src, size_t(nbytes));
    PyValue v = PyValue::tensor(s);
    storages.emplace(key, v);
    return v;
  };
  std::vector<uint8_t> data = zip.read(*pkl);
  return unpickle(data.data(), data.size(), load_storage, path + " (" + pkl->name + ")");
}

// ---- state dicts --------------------------------------------------------------------------------

static void collect_module(const PyValue& m, const std::string& prefix, NamedTensors& out, int depth = 0) {
  if (depth > 256) fail("modules nested deeper than 256 levels at " + prefix + " (a cyclic module tree?)");
  if (!m.is_object()) fail("module " + (prefix.empty() ? std::string("<root>") : prefix) + " is a " + m.kind_name() + ", not an nn.Module");
  std::unordered_set<std::string> non_persistent;
  if (const PyValue* np = m.get("_non_persistent_buffers_set"))
    if (np->is_sequence())
      for (const PyValue& name : np->items())
        if (name.is_str()) non_persistent.insert(name.as_str());
  auto take = [&](const char* field, bool buffers) {
    const PyValue* d = m.get(field);
    if (!d || !d->is_dict()) return;
    for (const auto& kv : d->as_dict()) {
      if (kv.second.is_none()) continue;
      const std::string& name = kv.first.as_str();
      if (buffers && non_persistent.count(name)) continue;
      if (!kv.second.is_tensor()) fail("module entry " + prefix + name + " is a " + kv.second.kind_name() + ", not a tensor");
      out.emplace_back(prefix + name, kv.second.as_tensor());
    }
  };
  take("_parameters", false);
  take("_buffers", true);
  if (const PyValue* mods = m.get("_modules"))
    if (mods->is_dict())
      for (const auto& kv : mods->as_dict())
        if (!kv.second.is_none()) collect_module(kv.second, prefix + kv.first.as_str() + ".", out, depth + 1);
}

NamedTensors module_state_dict(const PyValue& module) {
  NamedTensors out;
  collect_module(module, "", out);
  return out;
}

static void collect_libtorch(const torch::nn::Module& m, const std::string& prefix, NamedTensors& out) {
  for (const auto& p : m.named_parameters(/*recurse=*/false))
    if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false))
    if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collect_libtorch(*c.value(), prefix + c.key() + ".", out);
}

NamedTensors state_dict_of(const torch::nn::Module& module) {
  NamedTensors out;
  collect_libtorch(module, "", out);
  return out;
}

static std::string first_few(const std::vector<std::string>& v) {
  std::string s;
  for (size_t k = 0; k < v.size() && k < 5; ++k) s += (k ? ", " : "") + v[k];
  if (v.size() > 5) s += ", ...";
  return s;
}

void load_state_dict(torch::nn::Module& module, const NamedTensors& state, bool strict, const std::string& source) {
  NamedTensors targets = state_dict_of(module);
  std::unordered_map<std::string, const torch::Tensor*> given;
  for (const auto& kv : state) given[kv.first] = &kv.second;
  std::vector<std::string> missing, mismatched, unexpected;
  std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
  std::unordered_set<std::string> known;
  for (const auto& kv : targets) {
    known.insert(kv.first);
    auto it = given.find(kv.first);
    if (it == given.end()) { missing.push_back(kv.first); continue; }
    if (it->second->sizes() != kv.second.sizes()) {
      mismatched.push_back(kv.first + " (checkpoint " + c10::str(it->second->sizes()) + ", model " + c10::str(kv.second.sizes()) + ")");
      continue;
    }
    copies.emplace_back(kv.second, it->second);
  }
  for (const auto& kv : state)
    if (!known.count(kv.first)) unexpected.push_back(kv.first);
  std::string problems;
  if (!mismatched.empty()) problems += std::to_string(mismatched.size()) + " shape mismatches: " + first_few(mismatched) + "; ";
  if (strict && !missing.empty()) problems += std::to_string(missing.size()) + " missing: " + first_few(missing) + "; ";
  if (strict && !unexpected.empty()) problems += std::to_string(unexpected.size()) + " unexpected: " + first_few(unexpected) + "; ";
  if (!problems.empty())
    fail(source + ": the weights do not fit the model (" + problems.substr(0, problems.size() - 2) +
         "); check that the model YAML, scale, nc and task match the checkpoint");
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(*c.second);
}

// Floating tensors -> contiguous float32 (fp16/bf16 widen exactly); integer tensors keep their dtype.
static torch::Tensor to_engine(const torch::Tensor& t) {
  torch::Tensor c = t.is_floating_point() ? t.to(torch::kFloat) : t;
  return c.contiguous();
}

static NamedTensors dict_to_tensors(const PyValue& d, const std::string& what, const std::string& path) {
  NamedTensors out;
  if (!d.is_dict()) fail(path + ": " + what + " is a " + d.kind_name() + ", expected a dict of tensors");
  for (const auto& kv : d.as_dict()) {
    if (!kv.second.is_tensor()) fail(path + ": " + what + " entry " + kv.first.repr() + " is not a tensor");
    out.emplace_back(kv.first.is_str() ? kv.first.as_str() : kv.first.repr(), to_engine(kv.second.as_tensor()));
  }
  return out;
}

// ---- YAML conversion ----------------------------------------------------------------------------

static YAML::Node scalar_node(const std::string& text) { return YAML::Node(text); }

static YAML::Node tensor_to_yaml(const torch::Tensor& t) {
  if (t.numel() > 4096) return scalar_node(PyValue::tensor(t).repr());  // metadata, not weights
  if (t.dim() == 0) {
    if (t.is_floating_point()) return to_yaml(PyValue::real(t.item<double>()));
    if (t.scalar_type() == torch::kBool) return to_yaml(PyValue::boolean(t.item<bool>()));
    return to_yaml(PyValue::integer(t.item<int64_t>()));
  }
  YAML::Node seq(YAML::NodeType::Sequence);
  for (int64_t k = 0; k < t.size(0); ++k) seq.push_back(tensor_to_yaml(t[k]));
  return seq;
}

// Pickles may hold reference cycles (a list inside itself): cut them off at a generous depth.
static YAML::Node to_yaml_at(const PyValue& v, int depth);

YAML::Node to_yaml(const PyValue& v) { return to_yaml_at(v, 0); }

static YAML::Node to_yaml_at(const PyValue& v, int depth) {
  using K = PyValue::Kind;
  if (depth > 100) return scalar_node("<nested too deep>");
  switch (v.kind()) {
    case K::None: return YAML::Node(YAML::NodeType::Null);
    case K::Bool: return scalar_node(v.as_bool() ? "true" : "false");
    case K::Int: return scalar_node(std::to_string(v.as_int()));
    case K::BigInt: return scalar_node(v.repr());
    case K::Float: {
      double f = v.as_float();
      if (std::isnan(f)) return scalar_node(".nan");
      if (std::isinf(f)) return scalar_node(f > 0 ? ".inf" : "-.inf");
      return scalar_node(format_double(f));
    }
    case K::Str: case K::Bytes: {
      YAML::Node n(v.is_str() ? v.as_str() : v.as_bytes());
      n.SetTag("!");  // a string even if it reads like a number
      return n;
    }
    case K::List: case K::Tuple: case K::Set: {
      YAML::Node seq(YAML::NodeType::Sequence);
      for (const PyValue& e : v.items()) seq.push_back(to_yaml_at(e, depth + 1));
      return seq;
    }
    case K::Dict: {
      YAML::Node map(YAML::NodeType::Map);
      for (const auto& kv : v.as_dict()) {
        YAML::Node key = kv.first.is_str() || kv.first.is_number() || kv.first.is_none() ? to_yaml(kv.first) : scalar_node(kv.first.repr());
        map[key] = to_yaml_at(kv.second, depth + 1);
      }
      return map;
    }
    case K::Global: return scalar_node(v.qualname());
    case K::Object: {
      const PyObject& o = v.as_object();
      if (o.state.is_dict()) return to_yaml_at(o.state, depth + 1);
      if (o.set_items.is_dict()) return to_yaml_at(o.set_items, depth + 1);
      return scalar_node("<" + v.qualname() + ">");
    }
    case K::Tensor: return tensor_to_yaml(v.as_tensor());
  }
  return {};
}

static bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  size_t k = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (k == s.size()) return false;
  for (size_t j = k; j < s.size(); ++j)
    if (s[j] < '0' || s[j] > '9') return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno == ERANGE) return false;
  out = v;
  return true;
}

static bool parse_float(const std::string& s, double& out) {
  if (s == ".nan" || s == ".NaN" || s == ".NAN" || s == "nan") { out = NAN; return true; }
  if (s == ".inf" || s == "+.inf" || s == ".Inf" || s == "inf") { out = INFINITY; return true; }
  if (s == "-.inf" || s == "-.Inf" || s == "-inf") { out = -INFINITY; return true; }
  if (s.empty() || s.find_first_of("0123456789") == std::string::npos) return false;
  if (s.find_first_not_of("0123456789+-.eE") != std::string::npos) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

PyValue from_yaml(const YAML::Node& n) {
  if (!n || n.IsNull()) return PyValue();
  if (n.IsSequence()) {
    std::vector<PyValue> items;
    for (const auto& e : n) items.push_back(from_yaml(e));
    return PyValue::list(std::move(items));
  }
  if (n.IsMap()) {
    PyValue d = PyValue::dict();
    for (const auto& kv : n) d.as_dict().set(from_yaml(kv.first), from_yaml(kv.second));
    return d;
  }
  const std::string& s = n.Scalar();
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str" || tag == "!!str") return PyValue::str(s);
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return PyValue();
  if (s == "true" || s == "True" || s == "TRUE") return PyValue::boolean(true);
  if (s == "false" || s == "False" || s == "FALSE") return PyValue::boolean(false);
  int64_t i;
  if (parse_int(s, i)) return PyValue::integer(i);
  double f;
  if (parse_float(s, f)) return PyValue::real(f);
  return PyValue::str(s);
}

// ---- metadata helpers ---------------------------------------------------------------------------

static std::vector<int64_t> int_list(const PyValue& v) {
  std::vector<int64_t> out;
  if (v.is_int()) out.push_back(v.as_int());
  else if (v.is_sequence()) for (const PyValue& e : v.items()) out.push_back(e.as_int());
  else if (v.is_tensor()) for (int64_t k = 0; k < v.as_tensor().numel(); ++k) out.push_back(v.as_tensor().reshape(-1)[k].item<int64_t>());
  return out;
}

static std::vector<float> float_list(const PyValue& v) {
  std::vector<float> out;
  if (v.is_tensor()) {
    torch::Tensor t = v.as_tensor().to(torch::kFloat).contiguous().reshape(-1);
    out.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  } else if (v.is_sequence()) {
    for (const PyValue& e : v.items()) out.push_back(float(e.as_float()));
  }
  return out;
}

static std::vector<std::string> names_list(const PyValue& v) {
  std::vector<std::string> out;
  if (v.is_sequence()) {
    for (const PyValue& e : v.items()) out.push_back(e.is_str() ? e.as_str() : e.repr());
  } else if (v.is_dict()) {  // {0: 'person', ...}; gaps get the index as name
    for (const auto& kv : v.as_dict()) {
      int64_t idx;
      if (kv.first.is_int()) idx = kv.first.as_int();
      else if (!kv.first.is_str() || !parse_int(kv.first.as_str(), idx)) continue;
      if (idx < 0 || idx > 1000000) continue;
      if (size_t(idx) >= out.size()) {
        size_t old = out.size();
        out.resize(size_t(idx) + 1);
        for (size_t k = old; k < out.size(); ++k) out[k] = std::to_string(k);
      }
      out[size_t(idx)] = kv.second.is_str() ? kv.second.as_str() : kv.second.repr();
    }
  }
  return out;
}

static std::string task_from_class(const std::string& cls) {
  if (cls == "SegmentationModel") return "segment";
  if (cls == "PoseModel") return "pose";
  if (cls == "OBBModel") return "obb";
  if (cls == "ClassificationModel") return "classify";
  if (cls.find("DetectionModel") != std::string::npos || cls == "WorldModel" || cls == "YOLOEModel") return "detect";
  return "";
}

// Official metadata: model attributes first, then the YAML, then the head's attributes.
static void read_official_metadata(const PyValue& model, const PyValue& top, Checkpoint& ck) {
  PyValue yaml = model.get_or_none("yaml");
  PyValue head;
  if (const PyValue* seq = model.get("_modules"))
    if (const PyValue* layers = seq->get("model"))
      if (const PyValue* mods = layers->get("_modules"))
        if (mods->is_dict() && !mods->as_dict().empty()) head = mods->as_dict().entries.back().second;
  auto attr = [&](const std::string& key) -> PyValue {
    for (const PyValue* src : std::initializer_list<const PyValue*>{&model, &yaml, &head})
      if (const PyValue* v = src->get(key))
        if (!v->is_none()) return *v;
    return PyValue();
  };

  ck.model_class = model.qualname();
  PyValue args = top.get_or_none("train_args");
  if (!args.is_dict()) args = model.get_or_none("args");
  ck.task = task_from_class(model.as_object().name);
  if (ck.task.empty()) {
    PyValue t = args.get_or_none("task");
    ck.task = t.is_str() ? t.as_str() : "detect";
  }
  ck.names = names_list(model.get_or_none("names"));
  PyValue nc = attr("nc");
  ck.nc = nc.is_none() ? int64_t(ck.names.size()) : nc.as_int();
  if (ck.names.empty())
    for (int64_t k = 0; k < ck.nc; ++k) ck.names.push_back(std::to_string(k));
  ck.kpt_shape = int_list(attr("kpt_shape"));
  ck.stride = float_list(model.get_or_none("stride"));
  if (ck.stride.empty()) ck.stride = float_list(head.get_or_none("stride"));
  PyValue e2e = yaml.get_or_none("end2end");
  if (e2e.is_none()) e2e = head.get_or_none("end2end");
  if (e2e.is_none()) {  // YOLO26/v10 heads are end-to-end when they carry the one2one branch
    PyValue hm = head.get_or_none("_modules");
    e2e = PyValue::boolean(hm.is_dict() && hm.has("one2one_cv2"));
  }
  ck.end2end = e2e.as_bool();
  PyValue rm = head.get_or_none("reg_max");
  if (rm.is_none()) rm = yaml.get_or_none("reg_max");
  ck.reg_max = rm.is_none() ? 16 : rm.as_int();
  ck.imgsz = int_list(args.get_or_none("imgsz"));
  ck.yaml = to_yaml(yaml);
  ck.train_args = to_yaml(args);
}

// Tensors out of a nested optimizer state (torch's {'state': {...}, 'param_groups': [...]}).
static YAML::Node split_tensors(const PyValue& v, const std::string& prefix, NamedTensors& tensors) {
  if (v.is_tensor()) {
    tensors.emplace_back(prefix, to_engine(v.as_tensor()));
    return YAML::Node(YAML::NodeType::Null);
  }
  if (v.is_dict()) {
    YAML::Node map(YAML::NodeType::Map);
    for (const auto& kv : v.as_dict()) {
      std::string key = kv.first.is_str() ? kv.first.as_str() : kv.first.repr();
      std::string child = prefix.empty() ? key : prefix + "." + key;
      if (kv.second.is_tensor()) split_tensors(kv.second, child, tensors);
      else map[to_yaml(kv.first)] = split_tensors(kv.second, child, tensors);
    }
    return map;
  }
  return to_yaml(v);
}

static std::string str_or_empty(const PyValue& v) { return v.is_str() ? v.as_str() : std::string(); }

// ---- load ---------------------------------------------------------------------------------------

static Checkpoint load_checkpoint_unchecked(const std::string& path);

Checkpoint load_checkpoint(const std::string& path) {
  // Accessor errors deep in the metadata do not know the file: prefix it.
  try {
    return load_checkpoint_unchecked(path);
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind(path, 0) == 0) throw;
    fail(path + ": unexpected checkpoint content: " + m);
  } catch (const std::exception&) {
    fail(path + ": " + describe_exception(std::current_exception()));
  }
}

static Checkpoint load_checkpoint_unchecked(const std::string& path) {
  Checkpoint ck;
  ck.path = path;
  ck.raw = load_torch_file(path);
  const PyValue& top = ck.raw;
  if (!top.is_dict())
    fail(path + ": the checkpoint holds a " + std::string(top.kind_name()) + ", expected a dict with 'model' or 'ema'");
  ck.date = str_or_empty(top.get_or_none("date"));
  ck.version = str_or_empty(top.get_or_none("version"));
  PyValue epoch = top.get_or_none("epoch");
  ck.epoch = epoch.is_number() ? epoch.as_int() : -1;
  PyValue bf = top.get_or_none("best_fitness");
  if (bf.is_number()) ck.best_fitness = bf.as_float();
  else if (bf.is_tensor()) ck.best_fitness = bf.as_tensor().item<double>();
  PyValue updates = top.get_or_none("updates");
  ck.updates = updates.is_number() ? updates.as_int() : 0;
  ck.train_results = to_yaml(top.get_or_none("train_results"));

  PyValue model = top.get_or_none("model"), ema = top.get_or_none("ema");
  PyValue format = top.get_or_none("format");
  if (format.is_str() && format.as_str() == kCheckpointFormat) {
    ck.format = kCheckpointFormat;
    ck.format_version = top.get_or_none("format_version").as_int();
    if (ck.format_version > kCheckpointFormatVersion)
      fail(path + ": checkpoint format version " + std::to_string(ck.format_version) +
           " is newer than this build reads (" + std::to_string(kCheckpointFormatVersion) + "); update yolo26-native");
    if (model.is_none() && ema.is_none()) fail(path + ": the checkpoint has neither 'model' nor 'ema' weights");
    ck.state_dict = dict_to_tensors(model.is_none() ? ema : model, "'model'", path);
    if (!ema.is_none()) ck.ema = dict_to_tensors(ema, "'ema'", path);
    ck.task = str_or_empty(top.get_or_none("task"));
    ck.nc = top.get_or_none("nc").as_int();
    ck.names = names_list(top.get_or_none("names"));
    ck.kpt_shape = int_list(top.get_or_none("kpt_shape"));
    ck.stride = float_list(top.get_or_none("stride"));
    ck.end2end = top.get_or_none("end2end").is_none() ? false : top.get_or_none("end2end").as_bool();
    PyValue rm = top.get_or_none("reg_max");
    ck.reg_max = rm.is_none() ? 16 : rm.as_int();
    ck.imgsz = int_list(top.get_or_none("imgsz"));
    ck.yaml = to_yaml(top.get_or_none("yaml"));
    ck.train_args = to_yaml(top.get_or_none("train_args"));
    PyValue opt = top.get_or_none("optimizer");
    if (opt.is_dict()) {
      if (const PyValue* t = opt.get("tensors")) ck.optimizer.tensors = dict_to_tensors(*t, "'optimizer.tensors'", path);
      ck.optimizer.scalars = to_yaml(opt.get_or_none("scalars"));
    }
    ck.extra = to_yaml(top.get_or_none("extra"));
    return ck;
  }

  // Official Ultralytics: pickled nn.Module objects; training files keep the EMA model in 'ema'.
  ck.format = "ultralytics";
  const PyValue& chosen = !ema.is_none() ? ema : model;
  if (chosen.is_none())
    fail(path + ": the checkpoint has neither 'model' nor 'ema' (both are None); it holds no weights");
  if (chosen.is_dict()) {  // a bare state_dict saved under 'model'
    ck.state_dict = dict_to_tensors(chosen, "'model'", path);
  } else {
    if (!chosen.is_object()) fail(path + ": 'model' is a " + std::string(chosen.kind_name()) + ", expected a pickled model");
    for (auto& kv : module_state_dict(chosen)) ck.state_dict.emplace_back(kv.first, to_engine(kv.second));
    read_official_metadata(chosen, top, ck);
  }
  PyValue opt = top.get_or_none("optimizer");
  if (!opt.is_none()) ck.optimizer.scalars = split_tensors(opt, "", ck.optimizer.tensors);
  // Everything else at the top level (train_metrics, git, license, ...) as metadata.
  YAML::Node extra(YAML::NodeType::Map);
  static const std::unordered_set<std::string> consumed = {"model", "ema", "optimizer", "train_args", "train_results",
                                                           "date", "version", "epoch", "best_fitness", "updates"};
  for (const auto& kv : top.as_dict())
    if (kv.first.is_str() && !consumed.count(kv.first.as_str())) extra[kv.first.as_str()] = to_yaml(kv.second);
  ck.extra = extra;
  return ck;
}

// ---- save ---------------------------------------------------------------------------------------

static PyValue tensors_to_dict(const NamedTensors& tensors, bool half) {
  PyValue d = PyValue::dict();
  d.as_dict().ordered = true;  // state dicts are OrderedDicts in torch
  for (const auto& kv : tensors) {
    torch::Tensor t = kv.second.detach();
    if (half && t.is_floating_point()) t = t.to(torch::kHalf);
    d.as_dict().set(PyValue::str(kv.first), PyValue::tensor(t));
  }
  return d;
}

static PyValue int_list_value(const std::vector<int64_t>& v) {
  std::vector<PyValue> items;
  for (int64_t x : v) items.push_back(PyValue::integer(x));
  return PyValue::list(std::move(items));
}

static PyValue build_top(const CheckpointData& d, const CheckpointSaveOptions& opts) {
  PyValue top = PyValue::dict();
  PyDict& t = top.as_dict();
  auto put = [&](const char* k, PyValue v) { t.set(PyValue::str(k), std::move(v)); };
  put("format", PyValue::str(kCheckpointFormat));
  put("format_version", PyValue::integer(kCheckpointFormatVersion));
  put("date", PyValue::str(d.date.empty() ? iso_now() : d.date));
  put("version", PyValue::str(d.version));
  put("task", PyValue::str(d.task));
  put("nc", PyValue::integer(d.nc));
  PyValue names = PyValue::dict();
  for (size_t k = 0; k < d.names.size(); ++k) names.as_dict().set(PyValue::integer(int64_t(k)), PyValue::str(d.names[k]));
  put("names", names);
  put("kpt_shape", d.kpt_shape.empty() ? PyValue() : int_list_value(d.kpt_shape));
  std::vector<PyValue> stride;
  for (float s : d.stride) stride.push_back(PyValue::real(s));
  put("stride", PyValue::list(std::move(stride)));
  put("end2end", PyValue::boolean(d.end2end));
  put("reg_max", PyValue::integer(d.reg_max));
  put("imgsz", d.imgsz.empty() ? PyValue() : d.imgsz.size() == 1 ? PyValue::integer(d.imgsz[0]) : int_list_value(d.imgsz));
  put("yaml", from_yaml(d.yaml));
  put("train_args", from_yaml(d.train_args));
  put("epoch", PyValue::integer(d.epoch));
  put("best_fitness", d.best_fitness ? PyValue::real(*d.best_fitness) : PyValue());
  put("updates", PyValue::integer(d.updates));
  // No model weights (a training checkpoint keeping only the EMA, as Ultralytics does): None, and readers use ema.
  put("model", d.state_dict.empty() ? PyValue() : tensors_to_dict(d.state_dict, opts.half));
  put("ema", d.ema.empty() ? PyValue() : tensors_to_dict(d.ema, opts.half));
  if (d.optimizer.empty()) {
    put("optimizer", PyValue());
  } else {
    PyValue opt = PyValue::dict();
    opt.as_dict().set(PyValue::str("tensors"), tensors_to_dict(d.optimizer.tensors, false));
    opt.as_dict().set(PyValue::str("scalars"), from_yaml(d.optimizer.scalars));
    put("optimizer", opt);
  }
  put("train_results", from_yaml(d.train_results));
  put("extra", from_yaml(d.extra));
  return top;
}

static std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

int remove_stale_checkpoint_temps(const std::string& path) {
  const std::string dir = dir_of(path);
  const size_t slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = opendir(dir.c_str());
  if (!d) return 0;
  int removed = 0;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (end == name.c_str() + prefix.size() || *end != '-' || pid <= 0) continue;  // not one of ours
    const bool alive = pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
    if (!alive && std::remove((dir + "/" + name).c_str()) == 0) ++removed;
  }
  closedir(d);
  return removed;
}

void save_checkpoint(const std::string& path, const CheckpointData& data, const CheckpointSaveOptions& opts) {
  if (data.state_dict.empty() && data.ema.empty())
    fail(path + ": refusing to save a checkpoint with neither model nor EMA weights");
  // Pickle first: tensors are collected, nothing touches the disk until the payload is complete.
  std::vector<std::pair<std::string, torch::Tensor>> storages;
  std::string pkl;
  try {
    pkl = pickle(build_top(data, opts), [&](const std::string& key, const torch::Tensor& t) {
      storages.emplace_back(key, t);
    });
  } catch (const std::exception&) {
    fail(path + ": cannot save: " + describe_exception(std::current_exception()));
  }

  const std::string dir = dir_of(path);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail(path + ": the directory " + dir + " does not exist; create it first");
  remove_stale_checkpoint_temps(path);
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  try {
    ZipWriter zip(tmp);  // its errors name the temporary file; the catch below adds the target
    const std::string prefix = "archive/";
    zip.add(prefix + "data.pkl", pkl.data(), pkl.size());
    static const std::string byteorder = "little";
    zip.add(prefix + "byteorder", byteorder.data(), byteorder.size());
    for (const auto& s : storages)
      zip.add(prefix + "data/" + s.first, s.second.data_ptr(), s.second.numel() * s.second.element_size());
    static const std::string version = "3\n";
    zip.add(prefix + "version", version.data(), version.size());
    zip.finish();  // fsyncs the file
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail(path + ": could not move the new checkpoint into place (" + std::strerror(errno) + ")");
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    std::string m = e.what();
    if (m.rfind(path + ":", 0) == 0) throw;
    fail(path + ": saving failed, the previous file (if any) is unchanged: " + m);
  }
  // Make the rename itself durable.
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

}  // namespace y26
