// Data-parallel training over libtorch's c10d: a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT, then a process group
// (Gloo for CPU tensors, NCCL for CUDA tensors where libtorch has it). Ranks come from the torchrun environment
// contract, so a cluster scheduler or the package's own launcher starts them the same way.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace y26 {

struct DistEnv {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool active() const { return world > 1; }
};

// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Without WORLD_SIZE (or with 1): one
// process. Throws y26::Error naming the variable that is missing or out of range.
DistEnv dist_env_from_environment();

// True when this build has c10d with Gloo (libtorch built with USE_DISTRIBUTED and USE_C10D_GLOO).
bool distributed_available();

// The device of this rank: "0,1,2,3" gives the LOCAL_RANK-th index; "cuda"/"0"-style single devices keep theirs
// only with one rank per node, else cuda:LOCAL_RANK; "cpu" stays "cpu".
std::string rank_device(const std::string& device, const DistEnv& env);

// Seconds a rendezvous or a collective may wait for the other ranks before failing: YOLO26_DIST_TIMEOUT, else 1800.
std::chrono::seconds dist_timeout();

// One process group. Every collective is called in the same order on every rank; a failure (a rank died, hung past
// the timeout, or left) throws y26::Error naming the rank(s) that stopped responding where they can be told.
class Distributed {
 public:
  // Rendezvous: rank 0 serves the store; the others connect to it. Fails within `timeout` when a rank is missing,
  // with a clear error for a port in use, an unreachable master or a WORLD_SIZE that differs between ranks.
  Distributed(const DistEnv& env, const torch::Device& device, std::chrono::seconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return env_.rank; }
  int world() const { return env_.world; }
  const std::string& backend() const { return backend_; }

  // In place: every rank ends with rank 0's values.
  void broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // In place sum over the ranks, in flat buckets of about 25 MB whose all-reduces run concurrently. Undefined
  // entries count as zeros (they become defined tensors of zeros when `zeros_like` gives their shape).
  void allreduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // A small CPU float64 vector summed over the ranks (flags, counters); returns the sum.
  std::vector<double> allreduce_small(const std::vector<double>& values, const std::string& what);
  // A string from rank 0 (through the store).
  std::string share_from_main(const std::string& key, const std::string& value);
  void barrier(const std::string& what);

 private:
  friend class GradientSync;
  struct Impl;
  [[noreturn]] void fail_collective(const std::string& what, const std::string& error);
  DistEnv env_;
  std::string backend_;
  std::chrono::seconds timeout_;
  std::unique_ptr<Impl> impl_;
};

// The gradient all-reduce overlapped with the backward pass, as c10d's DDP reducer does it: a hook on every trainable
// parameter copies its gradient (plus what .grad has accumulated so far) into a flat bucket, and a full bucket's
// all-reduce starts at once, while backward goes on. Buckets follow the parameters in reverse (the order backward
// produces their gradients) and start in bucket order, which is the same on every rank.
class GradientSync {
 public:
  GradientSync(Distributed& dist, const std::vector<torch::Tensor>& params);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;
  // The next backward is the last before an optimizer step: its hooks start the all-reduces.
  void arm();
  // After that backward (or with none armed, on .grad as it is): starts the buckets still waiting (a parameter without a gradient this step), waits for all,
  // and leaves the sum over the ranks in every .grad. Undefined gradients count as zeros.
  void finish();
  // Buckets whose all-reduce started during backward in the last step (the overlap actually achieved).
  int started_in_backward() const;
  int buckets() const;

 private:
  struct State;
  Distributed& dist_;
  std::shared_ptr<State> s_;  // shared with the hooks
};

}  // namespace y26
