#include "train/distributed.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "util/error.h"

// c10d where libtorch was built with it (its CMake targets define USE_C10D_GLOO / USE_C10D_NCCL); Gloo's headers
// come with libtorch (pip, archives) or libgloo-dev (Debian).
#if defined(USE_C10D_GLOO) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && \
    __has_include(<gloo/algorithm.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#define Y26_C10D 1
#endif
#if defined(Y26_C10D) && defined(USE_C10D_NCCL) && defined(YOLO26_CUDA) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && __has_include(<nccl.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define Y26_NCCL 1
#endif

namespace y26 {

namespace {

bool env_int(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end || x < 0 || x > 1 << 20) fail(std::string(name) + "=" + v + " is not a non-negative integer");
  *out = (int)x;
  return true;
}

std::string lower(std::string s) {
  for (auto& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

// c10d's DDP bucket sizes: 25 MB, and 1 MB for the first gradient bucket so that its all-reduce starts early in backward
constexpr int64_t kBucketBytes = 25 << 20;
constexpr int64_t kFirstGradBucketBytes = 1 << 20;

// Consecutive runs of tensors of one dtype and device, each at most kBucketBytes (`first` for the first bucket); a
// larger tensor is a bucket alone.
std::vector<std::vector<size_t>> buckets_of(const std::vector<torch::Tensor>& ts, int64_t first = kBucketBytes) {
  std::vector<std::vector<size_t>> out;
  int64_t bytes = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t b = ts[i].numel() * (int64_t)ts[i].element_size();
    const bool same = !out.empty() && ts[out.back().front()].scalar_type() == ts[i].scalar_type() &&
                      ts[out.back().front()].device() == ts[i].device();
    if (out.empty() || !same || bytes + b > (out.size() == 1 ? first : kBucketBytes)) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(i);
    bytes += b;
  }
  return out;
}

torch::Tensor flatten(const std::vector<torch::Tensor>& ts, const std::vector<size_t>& idx) {
  std::vector<torch::Tensor> parts;
  parts.reserve(idx.size());
  for (size_t i : idx) parts.push_back(ts[i].reshape(-1));
  return torch::cat(parts);
}

void unflatten(const torch::Tensor& flat, const std::vector<torch::Tensor>& ts, const std::vector<size_t>& idx) {
  int64_t off = 0;
  torch::NoGradGuard ng;
  for (size_t i : idx) {
    const int64_t n = ts[i].numel();
    ts[i].copy_(flat.narrow(0, off, n).view(ts[i].sizes()));
    off += n;
  }
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  if (!env_int("WORLD_SIZE", &e.world) || e.world <= 1) {
    e.world = 1;
    return e;
  }
  if (!env_int("RANK", &e.rank)) fail("WORLD_SIZE=" + std::to_string(e.world) + " is set but RANK is not: set RANK to 0.." + std::to_string(e.world - 1));
  if (e.rank >= e.world)
    fail("RANK=" + std::to_string(e.rank) + " is outside WORLD_SIZE=" + std::to_string(e.world) + ": ranks go 0.." + std::to_string(e.world - 1));
  if (!env_int("LOCAL_RANK", &e.local_rank)) e.local_rank = e.rank;
  if (!env_int("LOCAL_WORLD_SIZE", &e.local_world)) e.local_world = e.world;
  if (e.local_world < 1 || e.local_rank >= e.local_world)
    fail("LOCAL_RANK=" + std::to_string(e.local_rank) + " is outside LOCAL_WORLD_SIZE=" + std::to_string(e.local_world));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  else fail("WORLD_SIZE=" + std::to_string(e.world) + " is set but MASTER_ADDR is not: set it to rank 0's address (127.0.0.1 on one machine)");
  if (!env_int("MASTER_PORT", &e.master_port))
    fail("WORLD_SIZE=" + std::to_string(e.world) + " is set but MASTER_PORT is not: set it to a free TCP port on rank 0's machine");
  if (e.master_port < 1 || e.master_port > 65535) fail("MASTER_PORT=" + std::to_string(e.master_port) + " is not a TCP port (1..65535)");
  return e;
}

bool distributed_available() {
#ifdef Y26_C10D
  return true;
#else
  return false;
#endif
}

std::string rank_device(const std::string& device, const DistEnv& env) {
  std::string d = lower(device);
  d.erase(std::remove_if(d.begin(), d.end(), [](char c) { return std::isspace((unsigned char)c); }), d.end());
  if (d.empty() || d == "cpu") return "cpu";
  std::string idx = d.rfind("cuda", 0) == 0 ? (d.size() > 5 ? d.substr(5) : "") : d;
  if (idx.find(',') != std::string::npos) {
    std::vector<std::string> list;
    std::stringstream ss(idx);
    for (std::string s; std::getline(ss, s, ',');) list.push_back(s);
    if (env.local_rank >= (int)list.size())
      fail("device '" + device + "' lists " + std::to_string(list.size()) + " GPUs but LOCAL_RANK=" +
           std::to_string(env.local_rank) + ": list one GPU per rank of this node");
    return "cuda:" + list[(size_t)env.local_rank];
  }
  return env.local_world > 1 ? "cuda:" + std::to_string(env.local_rank) : device;
}

std::chrono::seconds dist_timeout() {
  int s = 1800;
  env_int("YOLO26_DIST_TIMEOUT", &s);
  return std::chrono::seconds(std::max(1, s));
}

#ifdef Y26_C10D

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::TCPStore> hb_store;  // the heartbeat thread's own connection
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef Y26_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  bool cuda = false;
  bool failed = false;  // a collective failed: its worker may be stuck in a receive until the op timeout
  std::thread heartbeat;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;

  void wait_watching(Distributed& d, const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);

  template <class F>
  c10::intrusive_ptr<c10d::Work> run(F&& f) {
#ifdef Y26_NCCL
    if (cuda) return f(*nccl);
#endif
    return f(*gloo);
  }
};

namespace {
using Clock = std::chrono::steady_clock;
std::string hb_key(int r) { return "y26/heartbeat/" + std::to_string(r); }
}  // namespace

Distributed::Distributed(const DistEnv& env, const torch::Device& device, std::chrono::seconds timeout)
    : env_(env), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const std::string me = "rank " + std::to_string(env.rank) + "/" + std::to_string(env.world);
  c10d::TCPStoreOptions so;
  so.port = (uint16_t)env.master_port;
  so.isServer = env.rank == 0;
  so.numWorkers = env.world;
  so.waitWorkers = false;  // the world-size check below names the rank that is missing
  so.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    so.isServer = false;
    impl_->hb_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    const std::string what = lower(e.what());
    if (env.rank == 0 && (what.find("in use") != std::string::npos || what.find("bind") != std::string::npos))
      fail(me + ": cannot serve the rendezvous on " + where + " (" + e.what() +
           "): MASTER_PORT " + std::to_string(env.master_port) + " is in use or not bindable; choose a free port");
    fail(me + ": cannot reach the master at " + where + " within " + std::to_string(timeout.count()) + " s (" +
         e.what() + "): check that rank 0 is running, MASTER_ADDR/MASTER_PORT name its machine and port, and no "
         "firewall blocks it");
  }
  // Every rank says which world it was started for; a rank of another job or a different WORLD_SIZE is named.
  try {
    impl_->store->set("y26/world/" + std::to_string(env.rank), std::vector<uint8_t>(1, 0));
    const auto mine = std::to_string(env.world);
    impl_->store->set("y26/world_size/" + std::to_string(env.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
    if (env.rank == 0) {
      for (int r = 1; r < env.world; ++r) {
        const std::string key = "y26/world_size/" + std::to_string(r);
        try {
          impl_->store->wait({key});
        } catch (const std::exception&) {
          fail(me + ": rank " + std::to_string(r) + " did not join the rendezvous at " + where + " within " +
               std::to_string(timeout.count()) + " s: start every rank 0.." + std::to_string(env.world - 1) +
               " with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE");
        }
        const auto v = impl_->store->get(key);
        const std::string theirs(v.begin(), v.end());
        if (theirs != mine)
          fail(me + ": rank " + std::to_string(r) + " was started with WORLD_SIZE=" + theirs + " but rank 0 with " +
               "WORLD_SIZE=" + mine + ": give every rank the same WORLD_SIZE");
      }
      impl_->store->set("y26/world_ok", std::vector<uint8_t>(mine.begin(), mine.end()));
    } else {
      try {
        impl_->store->wait({"y26/world_ok"});
      } catch (const std::exception&) {
        fail(me + ": the rendezvous at " + where + " did not complete within " + std::to_string(timeout.count()) +
             " s: rank 0 rejected the world (see its error) or another rank is missing; start every rank 0.." +
             std::to_string(env.world - 1) + " with the same WORLD_SIZE");
      }
      const auto v = impl_->store->get("y26/world_ok");
      const std::string theirs(v.begin(), v.end());
      if (theirs != mine)
        fail(me + ": rank 0 was started with WORLD_SIZE=" + theirs + " but this rank with WORLD_SIZE=" + mine +
             ": give every rank the same WORLD_SIZE");
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(me + ": the rendezvous at " + where + " failed: " + e.what());
  }

  // A heartbeat per rank in the store: when a collective fails, the ranks whose counter stopped are the dead ones.
  impl_->heartbeat = std::thread([impl = impl_.get(), r = env.rank] {
    std::unique_lock<std::mutex> lk(impl->mu);
    while (!impl->stop) {
      try {
        impl->hb_store->add(hb_key(r), 1);
      } catch (...) {
        // the master is gone; the next collective reports it
      }
      impl->cv.wait_for(lk, std::chrono::milliseconds(500));
    }
  });

  try {
    impl_->cuda = device.is_cuda();
    if (impl_->cuda) {
#ifdef Y26_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world, opts);
      backend_ = "nccl";
#else
      fail(me + ": device " + device.str() + " needs NCCL, but the libtorch this package was built against has no "
           "c10d NCCL support; build against a CUDA libtorch with NCCL (pip torch), or train on device=cpu");
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
      // GLOO_SOCKET_IFNAME picks the interface (as in PyTorch); a loopback master means every rank is on this host.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world, opts);
      backend_ = "gloo";
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(me + ": creating the process group failed: " + e.what());
  }
}

Distributed::~Distributed() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->heartbeat.joinable()) impl_->heartbeat.join();
  if (impl_->failed) {
    // Destroying the group joins its workers, which wait out the collective timeout (30 min by default) on a peer
    // that froze: leave them to the process's exit instead, so the error reaches the caller now.
    (void)impl_->gloo.release();
#ifdef Y26_NCCL
    (void)impl_->nccl.release();
#endif
  }
}

void Distributed::fail_collective(const std::string& what, const std::string& error) {
  impl_->failed = true;
  const std::string me = "rank " + std::to_string(env_.rank) + "/" + std::to_string(env_.world);
  // Which ranks stopped beating: two readings of every counter ~2 s apart (beats come every 0.5 s).
  std::vector<int> dead;
  bool master_gone = false;
  try {
    impl_->store->setTimeout(std::chrono::seconds(5));  // the heartbeat thread owns hb_store's connection
    auto read = [&] {
      std::vector<int64_t> v;
      for (int r = 0; r < env_.world; ++r) v.push_back(impl_->store->add(hb_key(r), 0));
      return v;
    };
    const auto a = read();
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));
    const auto b = read();
    for (int r = 0; r < env_.world; ++r)
      if (r != env_.rank && a[r] == b[r]) dead.push_back(r);
  } catch (...) {
    master_gone = env_.rank != 0;
  }
  std::string who;
  if (master_gone) {
    who = "rank 0 (the master at " + env_.master_addr + ":" + std::to_string(env_.master_port) + ") is gone";
  } else if (!dead.empty()) {
    for (size_t i = 0; i < dead.size(); ++i) who += (i ? ", " : "") + std::to_string(dead[i]);
    who = (dead.size() == 1 ? "rank " : "ranks ") + who + " stopped (the process died, was killed or failed)";
  } else {
    who = "every rank is alive, so one is stuck or failed inside training (see the other ranks' output)";
  }
  fail(me + ": " + what + " with the other ranks failed: " + who + ". Underlying error: " + error.substr(0, error.find('\n')));
}

// Waits for a collective; a peer whose heartbeat stops meanwhile fails it within ~20 s, named, instead of after the
// collective timeout. NCCL's wait only orders streams (its own watchdog catches hangs); Gloo's blocks this thread.
void Distributed::Impl::wait_watching(Distributed& d, const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  const DistEnv& env_ = d.env_;
  if (cuda) {
    work->wait();
    return;
  }
  constexpr auto kSlice = std::chrono::seconds(2);
  constexpr double kSilentSeconds = 15;  // beats come every 0.5 s
  std::vector<int64_t> seen(env_.world, -1);
  std::vector<Clock::time_point> changed(env_.world, Clock::now());
  while (true) {
    try {
      work->wait(std::chrono::duration_cast<std::chrono::milliseconds>(kSlice));
      return;
    } catch (const std::exception&) {
      if (work->isCompleted()) throw;  // the collective failed (the caller names who); else this slice timed out
    }
    for (int r = 0; r < env_.world; ++r) {
      if (r == env_.rank) continue;
      const int64_t beats = store->add(hb_key(r), 0);
      if (beats != seen[r]) seen[r] = beats, changed[r] = Clock::now();
      const double silent = std::chrono::duration<double>(Clock::now() - changed[r]).count();
      if (silent > kSilentSeconds)
        d.fail_collective(what, "rank " + std::to_string(r) + " sent no heartbeat for " +
                                  std::to_string((int)silent) + " s (frozen, stopped or swapped out?)");
    }
  }
}

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  try {
    for (const auto& idx : buckets_of(tensors)) {
      std::vector<torch::Tensor> flat{flatten(tensors, idx)};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      impl_->wait_watching(*this, impl_->run([&](auto& pg) { return pg.broadcast(flat, o); }), what);
      if (env_.rank != 0) unflatten(flat[0], tensors, idx);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
}

void Distributed::allreduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  try {
    const auto buckets = buckets_of(tensors);
    std::vector<std::vector<torch::Tensor>> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    flats.reserve(buckets.size());
    for (const auto& idx : buckets) {  // every bucket in flight at once; then wait in order
      flats.push_back({flatten(tensors, idx)});
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      works.push_back(impl_->run([&](auto& pg) { return pg.allreduce(flats.back(), o); }));
    }
    for (size_t k = 0; k < works.size(); ++k) {
      impl_->wait_watching(*this, works[k], what);
      unflatten(flats[k][0], tensors, buckets[k]);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail_collective(what, e.what());
  }
}

std::vector<double> Distributed::allreduce_small(const std::vector<double>& values, const std::string& what) {
  auto t = torch::tensor(values, torch::kFloat64);
  if (impl_->cuda) t = t.cuda();
  allreduce_sum({t}, what);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::string Distributed::share_from_main(const std::string& key, const std::string& value) {
  const std::string k = "y26/shared/" + key;
  try {
    if (env_.rank == 0) {
      impl_->store->set(k, std::vector<uint8_t>(value.begin(), value.end()));
      return value;
    }
    impl_->store->wait({k});
    const auto v = impl_->store->get(k);
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    fail_collective("waiting for rank 0's " + key, e.what());
  }
}

void Distributed::barrier(const std::string& what) {
  // A one-element all-reduce: same guarantees as a barrier, and it runs on the device's backend.
  allreduce_small({0.0}, what);
}

struct GradientSync::State {
  struct Bucket {
    std::vector<size_t> params;  // indices into State::params
    torch::Tensor flat;
    std::vector<torch::Tensor> slots;  // views of flat, one per parameter
    int pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  Distributed::Impl* impl = nullptr;
  std::vector<torch::Tensor> params;
  std::vector<std::pair<size_t, size_t>> where;  // parameter -> (bucket, slot)
  std::vector<Bucket> buckets;
  std::vector<std::pair<size_t, unsigned>> hooks;  // (parameter, hook handle) for the trainable ones
  std::vector<bool> hooked;
  std::mutex mu;
  bool armed = false;
  size_t next = 0;  // the next bucket to start: buckets start in order on every rank
  int started_early = 0;
  std::string error;

  void start_ready() {  // with mu held
    while (next < buckets.size() && buckets[next].pending == 0) start(next++);
  }
  void start(size_t b) {
    if (!error.empty()) return;
    try {
      std::vector<torch::Tensor> t{buckets[b].flat};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      buckets[b].work = impl->run([&](auto& pg) { return pg.allreduce(t, o); });
    } catch (const std::exception& e) {
      error = e.what();  // reported by finish(), which names the rank that stopped
    }
  }
  void on_grad(size_t i, const torch::Tensor& g) {
    std::lock_guard<std::mutex> lk(mu);
    if (!armed) return;
    auto [b, k] = where[i];
    torch::NoGradGuard ng;
    const auto& acc = params[i].grad();
    if (acc.defined()) torch::add_out(buckets[b].slots[k], acc, g);
    else buckets[b].slots[k].copy_(g);
    if (--buckets[b].pending == 0) {
      const size_t before = next;
      start_ready();
      started_early += (int)(next - before);
    }
  }
};

GradientSync::GradientSync(Distributed& dist, const std::vector<torch::Tensor>& params)
    : dist_(dist), s_(std::make_shared<State>()) {
  s_->impl = dist.impl_.get();
  s_->params = params;
  std::vector<torch::Tensor> reversed(params.rbegin(), params.rend());
  s_->where.resize(params.size());
  for (const auto& idx : buckets_of(reversed, kFirstGradBucketBytes)) {
    State::Bucket bk;
    int64_t n = 0;
    for (size_t r : idx) {
      bk.params.push_back(params.size() - 1 - r);
      n += reversed[r].numel();
    }
    bk.flat = torch::zeros({n}, reversed[idx.front()].options().requires_grad(false));
    int64_t off = 0;
    for (size_t k = 0; k < bk.params.size(); ++k) {
      const auto& p = params[bk.params[k]];
      bk.slots.push_back(bk.flat.narrow(0, off, p.numel()).view(p.sizes()));
      s_->where[bk.params[k]] = {s_->buckets.size(), k};
      off += p.numel();
    }
    s_->buckets.push_back(std::move(bk));
  }
  s_->hooked.assign(params.size(), false);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;
    s_->hooked[i] = true;
    std::weak_ptr<State> w = s_;
    s_->hooks.emplace_back(i, params[i].register_hook([w, i](const torch::Tensor& g) {
      if (auto s = w.lock()) s->on_grad(i, g);
    }));
  }
}

GradientSync::~GradientSync() {
  for (auto [i, h] : s_->hooks) s_->params[i].remove_hook(h);
}

void GradientSync::arm() {
  std::lock_guard<std::mutex> lk(s_->mu);
  torch::NoGradGuard ng;
  for (auto& bk : s_->buckets) {
    bk.pending = 0;
    bk.work.reset();
    for (size_t k = 0; k < bk.params.size(); ++k) {
      const auto& p = s_->params[bk.params[k]];
      // what the slot holds if no gradient arrives this backward: the accumulated one, else zeros
      if (p.grad().defined()) bk.slots[k].copy_(p.grad());
      else bk.slots[k].zero_();
      if (s_->hooked[bk.params[k]]) ++bk.pending;
    }
  }
  s_->next = 0;
  s_->started_early = 0;
  s_->error.clear();
  s_->armed = true;
  s_->start_ready();  // buckets with no trainable parameter
}

void GradientSync::finish() {
  bool armed;
  {
    std::lock_guard<std::mutex> lk(s_->mu);
    armed = s_->armed;
  }
  if (!armed) arm();  // no backward armed: reduce the gradients as they are
  {
    std::lock_guard<std::mutex> lk(s_->mu);
    s_->armed = false;
    while (s_->next < s_->buckets.size()) s_->start(s_->next++);
  }
  const std::string what = "the gradient all-reduce";
  if (!s_->error.empty()) dist_.fail_collective(what, s_->error);
  try {
    for (auto& bk : s_->buckets) s_->impl->wait_watching(dist_, bk.work, what);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    dist_.fail_collective(what, e.what());
  }
  torch::NoGradGuard ng;
  for (auto& bk : s_->buckets)
    for (size_t k = 0; k < bk.params.size(); ++k) {
      auto& p = s_->params[bk.params[k]];
      if (p.grad().defined()) p.mutable_grad().copy_(bk.slots[k]);
      else p.mutable_grad() = bk.slots[k].clone();
    }
}

int GradientSync::started_in_backward() const { return s_->started_early; }
int GradientSync::buckets() const { return (int)s_->buckets.size(); }

#else  // no c10d in this libtorch

struct Distributed::Impl {};

Distributed::Distributed(const DistEnv& env, const torch::Device&, std::chrono::seconds timeout)
    : env_(env), timeout_(timeout) {
  fail("WORLD_SIZE=" + std::to_string(env.world) + " asks for distributed training, but the libtorch " TORCH_VERSION
       " this package was built against has no c10d Gloo process group (built without USE_DISTRIBUTED); build "
       "against a libtorch with distributed support (pip torch, the pytorch.org archives, or Debian's "
       "libtorch-dev with libgloo-dev), or unset WORLD_SIZE to train in one process");
}
Distributed::~Distributed() = default;
void Distributed::fail_collective(const std::string& what, const std::string& error) { fail(what + ": " + error); }
void Distributed::broadcast(const std::vector<torch::Tensor>&, const std::string&) {}
void Distributed::allreduce_sum(const std::vector<torch::Tensor>&, const std::string&) {}
std::vector<double> Distributed::allreduce_small(const std::vector<double>& v, const std::string&) { return v; }
std::string Distributed::share_from_main(const std::string&, const std::string& value) { return value; }
void Distributed::barrier(const std::string&) {}

struct GradientSync::State {};
GradientSync::GradientSync(Distributed& dist, const std::vector<torch::Tensor>&) : dist_(dist) {}
GradientSync::~GradientSync() = default;
void GradientSync::arm() {}
void GradientSync::finish() {}
int GradientSync::started_in_backward() const { return 0; }
int GradientSync::buckets() const { return 0; }

#endif

}  // namespace y26
