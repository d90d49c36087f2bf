// Distributed data parallel on Gloo ranks over loopback: the sampler's shards (detection and classify), a two-rank run
// (one run folder, by rank 0), weights equal to a one-process run with the same data order (detection and classify),
// and the faults (port in use, world-size mismatch, a killed rank) ending in clear errors within a bounded time. The
// ranks are this program re-executed with the torchrun variables set.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "data/classify_loader.h"
#include "data/dataset.h"
#include "data/synthetic.h"
#include "data/loader.h"
#include "eval/classify_val.h"
#include "io/checkpoint.h"
#include "scratch.h"
#include "testing.h"
#include "train/distributed.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/system.h"

using namespace y26;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string temp_dir(const std::string& name) { return y26test::scratch_dir("test_distributed", name); }

std::string g_data;  // the parent's set, passed to the ranks so that every process reads the same files

std::string tiny_dataset() {
  if (g_data.empty()) g_data = y26test::write_tiny_set(temp_dir("data"));
  return g_data;
}

// A port nothing listens on right now (the kernel's pick).
int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, (sockaddr*)&a, sizeof a);
  socklen_t n = sizeof a;
  getsockname(s, (sockaddr*)&a, &n);
  close(s);
  return ntohs(a.sin_port);
}

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Training arguments with augmentation off, so that runs can be compared number for number.
YAML::Node plain_args(const std::string& project, const std::string& name, int batch, int epochs) {
  YAML::Node a;
  a["model"] = "yolo26n.yaml";
  a["data"] = tiny_dataset();
  a["epochs"] = epochs;
  a["imgsz"] = 64;
  a["batch"] = batch;
  a["nbs"] = 2;
  a["workers"] = 1;
  a["threads"] = 1;
  a["project"] = project;
  a["name"] = name;
  a["plots"] = false;
  a["val"] = false;
  a["optimizer"] = "SGD";
  a["lr0"] = 0.02;
  a["warmup_epochs"] = 0;
  a["close_mosaic"] = 0;
  for (const char* k : {"hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud",
                        "fliplr", "bgr", "mosaic", "mixup", "cutmix"})
    a[k] = 0.0;
  return a;
}

// The classify counterpart: a -cls model on a classification folder, augmentation off (plain_args' zeros plus the
// classify-only policy and erasing).
YAML::Node classify_args(const std::string& data, const std::string& project, const std::string& name, int batch) {
  YAML::Node a = plain_args(project, name, batch, 1);
  a["model"] = "yolo26n-cls.yaml";
  a["data"] = data;
  a["auto_augment"] = "none";
  a["erasing"] = 0.0;
  a["dropout"] = 0.0;
  return a;
}

// A small MLP with 2.1 MB of parameters (two gradient buckets: the first holds 1 MB), the same weights in every process.
torch::nn::Sequential grad_sync_net() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(512, 512), torch::nn::ReLU(), torch::nn::Linear(512, 512),
                               torch::nn::ReLU(), torch::nn::Linear(512, 16));
}

// Rank r's k-th accumulated micro-batch.
void grad_sync_backward(torch::nn::Sequential& net, int rank, int k) {
  torch::manual_seed(100 + 10 * rank + k);
  net->forward(torch::randn({8, 512})).pow(2).mean().backward();
}

// ---- rank processes ----------------------------------------------------------------------------------------------
// Two accumulated backwards, the second armed: writes the synced gradients, and how many buckets started in backward.
int grad_sync_main(const std::string& dir, const std::string& r) {
  const DistEnv env = dist_env_from_environment();
  Distributed d(env, torch::Device(torch::kCPU), std::chrono::seconds(30));
  auto net = grad_sync_net();
  GradientSync sync(d, net->parameters());
  grad_sync_backward(net, env.rank, 0);
  sync.arm();
  grad_sync_backward(net, env.rank, 1);
  sync.finish();
  std::vector<torch::Tensor> grads;
  for (const auto& p : net->parameters()) grads.push_back(p.grad());
  torch::save(grads, dir + "/grads" + r + ".pt");
  std::ofstream(dir + "/rank" + r + ".sync") << sync.started_in_backward() << " " << sync.buckets();
  return 0;
}

// argv: --rank <mode> <dir> <data.yaml>. Writes <dir>/rank<R>.result (the save dir) or <dir>/rank<R>.err, exits 0 or 1.
int rank_main(const std::string& mode, const std::string& dir) {
  const std::string r = std::getenv("RANK") ? std::getenv("RANK") : "0";
  std::atomic<bool> stop{false};
  try {
    if (mode == "grad-sync") return grad_sync_main(dir, r);
    if (mode == "cls-run") {  // classify, global batch 2; cache='ram' must be warned about once, by rank 0
      YAML::Node a = classify_args(read_file(dir + "/data_path"), dir, "run", 2);
      a["cache"] = "ram";
      int warned = 0;
      TrainCallbacks cb;
      cb.on_event = [&](const TrainEvent& e) {
        if (e.type == "log" && e.str.at("text").find("no effect on classify") != std::string::npos) ++warned;
      };
      auto res = run_training(a, cb, stop);
      std::ofstream(dir + "/rank" + r + ".cachewarn") << warned;
      std::ofstream(dir + "/rank" + r + ".result") << res.save_dir;
      return 0;
    }
    YAML::Node a = plain_args(dir, "run", 2, 1);
    a["cache"] = "ram";  // shared by the two ranks of this machine; the one-process reference decodes every time
    TrainCallbacks cb;
    cb.on_event = [&](const TrainEvent& e) {
      if (e.type == "log" && e.str.at("text").find("shared by its 2 ranks") != std::string::npos)
        std::ofstream(dir + "/shared_cache");
    };
    if (mode == "stop") {  // rank 0 alone is asked to stop: every rank must end at the same batch
      a["epochs"] = 3;
      cb.on_event = [&](const TrainEvent& e) {
        if (e.type == "batch" && e.num.at("iteration") == 2) stop = true;
      };
    }
    if (mode == "resume") a["resume"] = dir + "/run/weights/last.pt";
    if (mode == "cache") {  // a larger set at 320, cached; stopped at the first batch: the cache log line is the point
      a["data"] = read_file(dir + "/data_path");
      a["imgsz"] = 320;
      cb.on_event = [&](const TrainEvent& e) {
        if (e.type == "log" && e.str.at("text").find("shared by its") != std::string::npos)
          std::ofstream(dir + "/rank" + r + ".cachelog") << e.str.at("text");
        if (e.type == "batch") stop = true;
      };
    }
    if (mode == "long") {  // long enough to be killed mid-epoch; rank 0 says when batches flow
      a["epochs"] = 50;
      cb.on_event = [&](const TrainEvent& e) {
        if (e.type == "batch") std::ofstream(dir + "/batches_started");
      };
    }
    auto res = run_training(a, cb, stop);
    std::ofstream(dir + "/rank" + r + ".result") << res.save_dir;
    std::ofstream(dir + "/rank" + r + "." + mode) << res.stopped << " " << res.epochs_completed;
    return 0;
  } catch (const std::exception& e) {
    std::ofstream(dir + "/rank" + r + ".err") << e.what();
    return 1;
  }
}

struct Rank {
  pid_t pid = -1;
  int status = -1;
};

// Starts this program as one rank with the torchrun variables.
Rank start_rank(const std::string& mode, const std::string& dir, int rank, int world, int port, int timeout_s = 30) {
  tiny_dataset();
  Rank k;
  k.pid = fork();
  if (k.pid == 0) {
    setenv("RANK", std::to_string(rank).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
    setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    setenv("LOCAL_WORLD_SIZE", std::to_string(world).c_str(), 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    setenv("YOLO26_DIST_TIMEOUT", std::to_string(timeout_s).c_str(), 1);
    const char* argv[] = {"test_distributed", "--rank", mode.c_str(), dir.c_str(), g_data.c_str(), nullptr};
    execv("/proc/self/exe", (char* const*)argv);
    _exit(127);
  }
  return k;
}

// Waits for the rank to exit, at most `seconds`; kills it and returns false past that.
bool wait_rank(Rank& k, double seconds) {
  const auto t0 = Clock::now();
  while (true) {
    if (waitpid(k.pid, &k.status, WNOHANG) == k.pid) return true;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds) {
      kill(k.pid, SIGKILL);
      waitpid(k.pid, &k.status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool exited_ok(const Rank& k) { return WIFEXITED(k.status) && WEXITSTATUS(k.status) == 0; }

// EMA weights (parameters; BatchNorm running statistics are each rank's own, as in PyTorch DDP, so rank 0's differ
// from a one-process run's) of a checkpoint, by name.
std::map<std::string, torch::Tensor> ema_weights(const std::string& path) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, t] : load_checkpoint(path).ema)
    if (k.find("running_") == std::string::npos && k.find("num_batches") == std::string::npos) m[k] = t;
  return m;
}

// The largest |a - ref| over the tensors of ref that a also holds.
double max_abs_diff(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& ref) {
  double worst = 0;
  for (auto& [k, t] : ref)
    if (auto it = a.find(k); it != a.end()) worst = std::max(worst, (it->second - t).abs().max().item<double>());
  return worst;
}

// The train split of the 12-image tiny detection set at imgsz 64, without index messages.
std::shared_ptr<Dataset> open_tiny_train() {
  DatasetOptions dso;
  dso.imgsz = 64;
  dso.verbose = false;
  IndexOptions io;
  io.verbose = false;
  return Dataset::open(load_data_yaml(tiny_dataset()), "train", dso, io);
}

DatasetOptions cache_options(const std::string& shared, bool owner) {
  DatasetOptions o;
  o.imgsz = 320;
  o.cache = CacheMode::Ram;
  o.verbose = false;
  o.shared_cache = shared;
  o.shared_cache_owner = owner;
  return o;
}

std::shared_ptr<Dataset> open_cache_set(const std::string& yaml, const DatasetOptions& o) {
  IndexOptions io;
  io.verbose = false;
  return Dataset::open(load_data_yaml(yaml), "train", o, io);
}

// argv: --cache-peer <name> <data.yaml> <out>: maps the shared cache as a second rank of the machine would, reads
// every image, and writes "<private growth> <private growth of an own cache> <images equal>".
int cache_peer_main(const std::string& name, const std::string& yaml, const std::string& out) {
  const uint64_t before = private_memory_bytes();
  auto shared = open_cache_set(yaml, cache_options(name, false));
  uint64_t sum = 0;
  for (size_t i = 0; i < shared->size(); ++i) sum += (uint64_t)cv::sum(shared->load_image(i))[0];
  const uint64_t grew_shared = private_memory_bytes() - before;
  const uint64_t before_own = private_memory_bytes();
  auto own = open_cache_set(yaml, cache_options("", false));
  const uint64_t grew_own = private_memory_bytes() - before_own;
  bool equal = sum > 0;
  for (size_t i = 0; i < shared->size(); ++i) equal = equal && cv::norm(shared->load_image(i), own->load_image(i), cv::NORM_INF) == 0;
  std::ofstream(out) << grew_shared << " " << grew_own << " " << equal;
  return 0;
}

}  // namespace

TEST_CASE("cache='ram' shared by a machine's ranks: a peer maps the images without a private copy") {
  SyntheticOptions o;
  o.train_images = 40;
  o.val_images = 1;
  o.width = o.height = 320;
  const std::string yaml = write_synthetic_dataset(temp_dir("cache_set"), o);
  const std::string name = "/yolo26-test-" + std::to_string(getpid());
  auto owner = open_cache_set(yaml, cache_options(name, true));
  const uint64_t need = 40ull * 320 * 320 * 3;
  const std::string out = temp_dir("cache_peer") + "/result";
  pid_t pid = fork();
  if (pid == 0) {
    const char* argv[] = {"test_distributed", "--cache-peer", name.c_str(), yaml.c_str(), out.c_str(), nullptr};
    execv("/proc/self/exe", (char* const*)argv);
    _exit(127);
  }
  Rank peer{pid};
  EXPECT(wait_rank(peer, 120) && exited_ok(peer));
  owner->unlink_shared_cache();
  EXPECT(!fs::exists("/dev/shm" + name));
  uint64_t grew_shared = 0, grew_own = 0;
  int equal = 0;
  std::ifstream(out) >> grew_shared >> grew_own >> equal;
  std::cout << "  peer's private memory: +" << (grew_shared >> 20) << " MiB mapping the shared cache, +" << (grew_own >> 20)
            << " MiB for its own copy (" << (need >> 20) << " MiB of images)\n";
  EXPECT(equal == 1);
  EXPECT_MSG(grew_shared < need / 4, "mapping grew private memory by " << grew_shared);
  EXPECT_MSG(grew_own > need * 3 / 4, "an own copy grew private memory by only " << grew_own);
}

TEST_CASE("cache='ram' in a live two-rank run: the second rank's private memory does not grow by the cache") {
  SyntheticOptions o;
  o.train_images = 40;
  o.val_images = 1;
  o.width = o.height = 320;
  const std::string dir = temp_dir("live_cache");
  std::ofstream(dir + "/data_path") << write_synthetic_dataset(dir + "/set", o);
  const int port = free_port();
  Rank r0 = start_rank("cache", dir, 0, 2, port), r1 = start_rank("cache", dir, 1, 2, port);
  EXPECT(wait_rank(r0, 300) && wait_rank(r1, 300));
  EXPECT_MSG(exited_ok(r0) && exited_ok(r1), read_file(dir + "/rank0.err") << read_file(dir + "/rank1.err"));
  const std::string line = read_file(dir + "/rank0.cachelog");  // rank 0 reports every rank's growth
  std::cout << "  " << line << "\n";
  int shared = -1, grew = -1;
  std::smatch m;
  if (std::regex_search(line, m, std::regex(R"((\d+) MiB in shared memory)"))) shared = std::stoi(m[1]);
  if (std::regex_search(line, m, std::regex(R"(by rank: \d+ MiB, (\d+) MiB)"))) grew = std::stoi(m[1]);
  EXPECT_MSG(shared >= 10, line);  // 40 images of 320x320x3
  EXPECT_MSG(grew >= 0 && grew < shared / 4, line);
}

TEST_CASE("distributed sampler: same order on every rank, rank r takes its slice, padded so ranks step together") {
  auto ds = open_tiny_train();  // 12 images
  auto shard = [&](int rank, int world, int epoch) {
    LoaderOptions lo;
    lo.batch = 2;
    lo.workers = 1;
    lo.augment = false;
    lo.seed = 7;
    lo.rank = rank;
    lo.world = world;
    DataLoader dl(ds, lo);
    dl.set_epoch(epoch);
    std::vector<int64_t> idx;
    Batch b;
    while (dl.next(b)) idx.insert(idx.end(), b.indices.begin(), b.indices.end());
    return std::make_pair(idx, dl.batches_per_epoch());
  };
  auto [all, nb1] = shard(0, 1, 0);
  EXPECT(all.size() == 12 && nb1 == 6);
  // 12 images over 5 ranks: 3 each (15 positions, the first 3 of the order again as padding), 2 batches each.
  std::vector<int64_t> seen;
  for (int r = 0; r < 5; ++r) {
    auto [idx, nb] = shard(r, 5, 0);
    EXPECT(idx.size() == 3 && nb == 2);
    for (size_t p = 0; p < idx.size(); ++p) EXPECT(idx[p] == all[(p * 5 + r) % 12]);  // strided, as DistributedSampler
    seen.insert(seen.end(), idx.begin(), idx.end());
  }
  EXPECT(std::set<int64_t>(seen.begin(), seen.end()).size() == 12);
  auto [e1, nbe] = shard(1, 2, 1);
  auto [all1, nbx] = shard(0, 1, 1);
  for (size_t p = 0; p < e1.size(); ++p) EXPECT(e1[p] == all1[p * 2 + 1]);  // the epoch's own shuffle
  EXPECT(all1 != all);
  EXPECT_THROWS({
    LoaderOptions lo;
    lo.rank = 2;
    lo.world = 2;
    DataLoader dl(ds, lo);
  });
}

TEST_CASE("classify loader: the detection loader's seeded order and shards, padded so ranks step together") {
  const std::string root = y26test::write_tiny_classify_set(temp_dir("cls_shards"), 3, 1);  // 9 train images
  const ClassifySplit split = open_classify_split(root, "train");
  ClassifyAugment off;
  off.scale = off.fliplr = off.hsv_h = off.hsv_s = off.hsv_v = 0;
  auto shard = [&](int rank, int world, int epoch, int batch = 2, const ClassifyAugment& aug = ClassifyAugment()) {
    ClassifyLoader cl(split, 32, batch, 1, 7, aug, rank, world);
    cl.set_epoch(epoch);
    std::vector<int64_t> idx;
    std::vector<torch::Tensor> imgs;
    Batch b;
    while (cl.next(b)) {
      idx.insert(idx.end(), b.indices.begin(), b.indices.end());
      for (int64_t j = 0; j < b.size(); ++j) imgs.push_back(b.img[j]);
    }
    EXPECT(cl.shard_size() == (int64_t)idx.size());
    return std::make_tuple(idx, cl.batches_per_epoch(), imgs);
  };
  auto [all, nb1, all_imgs] = shard(0, 1, 0, 2, off);
  EXPECT(all.size() == 9 && nb1 == 5 && std::set<int64_t>(all.begin(), all.end()).size() == 9);
  // 9 images over 2 ranks: 5 each (10 positions, the first of the order again as padding), 3 batches each.
  for (int r = 0; r < 2; ++r) {
    auto [idx, nb, imgs] = shard(r, 2, 0, 2, off);
    EXPECT(idx.size() == 5 && nb == 3);
    for (size_t p = 0; p < idx.size(); ++p) EXPECT(idx[p] == all[(p * 2 + r) % 9]);
  }
  auto [e1, nbe, i1] = shard(1, 2, 1, 2, off);
  auto [all1, nbx, a1] = shard(0, 1, 1, 2, off);
  EXPECT(all1 != all);  // each epoch its own shuffle, the same on every rank
  for (size_t p = 0; p < e1.size(); ++p) EXPECT(e1[p] == all1[(p * 2 + 1) % 9]);
  // With augmentation on, a sample's draws follow its position in the epoch order, not the rank.
  auto [aug_all, nba, aug_imgs] = shard(0, 1, 0, 1);
  auto [aug_r1, nbr, aug_r1_imgs] = shard(1, 2, 0, 1);
  EXPECT(aug_imgs.size() == 9 && aug_r1_imgs.size() == 5);
  for (size_t p = 0; p + 1 < aug_r1_imgs.size(); ++p) EXPECT(torch::equal(aug_r1_imgs[p], aug_imgs[p * 2 + 1]));
  bool augmented = false;  // the check above can fail: the draws do change the images
  for (size_t p = 0; p < aug_imgs.size(); ++p) augmented = augmented || !torch::equal(aug_imgs[p], all_imgs[p]);
  EXPECT(augmented);
  EXPECT_THROWS(ClassifyLoader(split, 32, 2, 1, 7, off, 2, 2));
  // One sampler for both tasks: 12 classify images draw the order of the 12-image detection set.
  const ClassifySplit split12 = open_classify_split(y26test::write_tiny_classify_set(temp_dir("cls_12"), 4, 1), "train");
  auto ds = open_tiny_train();
  EXPECT(ds->size() == 12 && split12.files.size() == 12);
  for (int epoch : {0, 1}) {
    LoaderOptions lo;
    lo.batch = 3;
    lo.workers = 1;
    lo.augment = false;
    lo.seed = 7;
    DataLoader dl(ds, lo);
    dl.set_epoch(epoch);
    ClassifyLoader cl(split12, 32, 3, 1, 7, off);
    cl.set_epoch(epoch);
    std::vector<int64_t> det, cls;
    Batch b;
    while (dl.next(b)) det.insert(det.end(), b.indices.begin(), b.indices.end());
    while (cl.next(b)) cls.insert(cls.end(), b.indices.begin(), b.indices.end());
    EXPECT(det.size() == 12 && det == cls);
  }
}

TEST_CASE("gradient all-reduce during backward: the sum of every rank's accumulated gradients; buckets start early") {
  const std::string dir = temp_dir("grad_sync");
  const int port = free_port();
  Rank r0 = start_rank("grad-sync", dir, 0, 2, port), r1 = start_rank("grad-sync", dir, 1, 2, port);
  EXPECT(wait_rank(r0, 120) && wait_rank(r1, 120));
  EXPECT_MSG(exited_ok(r0) && exited_ok(r1), read_file(dir + "/rank0.err") << read_file(dir + "/rank1.err"));
  auto net = grad_sync_net();  // the reference: all four micro-batches in one process
  for (int rank : {0, 1})
    for (int k : {0, 1}) grad_sync_backward(net, rank, k);
  const auto want = net->parameters();
  for (const char* r : {"0", "1"}) {
    std::vector<torch::Tensor> got;
    torch::load(got, dir + "/grads" + r + ".pt");
    EXPECT(got.size() == want.size());
    double worst = 0;
    for (size_t i = 0; i < got.size() && i < want.size(); ++i)
      worst = std::max(worst, (got[i] - want[i].grad()).abs().max().item<double>());
    EXPECT_MSG(worst < 1e-5, "rank " << r << ": max |synced - reference| = " << worst);
    int early = 0, buckets = 0;
    std::ifstream(dir + "/rank" + r + ".sync") >> early >> buckets;
    std::cout << "  rank " << r << ": " << early << " of " << buckets << " buckets started during backward, max diff "
              << worst << "\n";
    EXPECT(buckets == 2 && early >= 1);
  }
}

TEST_CASE("torchrun variables: parsed, and bad values are clear errors") {
  unsetenv("WORLD_SIZE");
  EXPECT(!dist_env_from_environment().active());
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "1", 1);
  unsetenv("LOCAL_RANK");
  unsetenv("LOCAL_WORLD_SIZE");
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "29511", 1);
  auto e = dist_env_from_environment();
  EXPECT(e.active() && e.rank == 1 && e.world == 2 && e.local_rank == 1 && e.master_port == 29511);
  EXPECT(rank_device("0,1", e) == "cuda:1" && rank_device("cpu", e) == "cpu");
  setenv("RANK", "2", 1);
  try {
    dist_env_from_environment();
    EXPECT(false);
  } catch (const Error& err) {
    EXPECT(std::string(err.what()).find("RANK=2 is outside WORLD_SIZE=2") != std::string::npos);
  }
  setenv("RANK", "0", 1);
  unsetenv("MASTER_PORT");
  EXPECT_THROWS(dist_env_from_environment());
  for (const char* k : {"WORLD_SIZE", "RANK", "MASTER_ADDR"}) unsetenv(k);
  EXPECT(distributed_available());
}

std::string g_pair_save;  // the two-rank run, compared with one process below

TEST_CASE("two Gloo ranks finish a run: one run folder, written by rank 0; its weights load") {
  const std::string dir = temp_dir("pair");
  const int port = free_port();
  Rank r0 = start_rank("run", dir, 0, 2, port), r1 = start_rank("run", dir, 1, 2, port);
  EXPECT(wait_rank(r0, 600) && wait_rank(r1, 120));
  EXPECT_MSG(exited_ok(r0) && exited_ok(r1), "rank 0: " << read_file(dir + "/rank0.err") << " rank 1: " << read_file(dir + "/rank1.err"));
  const std::string save = read_file(dir + "/rank0.result");
  g_pair_save = save;
  EXPECT(fs::exists(dir + "/shared_cache"));  // the ranks shared one RAM cache
  EXPECT(read_file(dir + "/rank1.result") == save);  // rank 1 reports rank 0's folder
  int runs = 0;
  for (auto& p : fs::directory_iterator(dir)) runs += p.is_directory();
  EXPECT(runs == 1);
  EXPECT(fs::exists(save + "/results.csv") && fs::exists(save + "/args.yaml"));
  for (const char* w : {"/weights/last.pt", "/weights/best.pt"}) {
    auto ck = load_checkpoint(save + w);
    EXPECT(!ck.ema.empty() && ck.epoch == 0 && ck.train_args["batch"].as<int>() == 2);
  }
}

TEST_CASE("two ranks with the same global batch and data order end with a one-process run's weights (1e-4)") {
  // Two ranks of batch 1 each (global batch 2, one step per batch) see the same images as one process with batch 1
  // and accumulation 2 (nbs 2): the gradient of each step is the sum of the same two per-image gradients, and
  // BatchNorm normalises each image alone in both.
  EXPECT(!g_pair_save.empty());
  if (g_pair_save.empty()) return;
  std::atomic<bool> stop{false};
  auto one = run_training(plain_args(temp_dir("one"), "run", 1, 1), {}, stop);
  auto ddp = ema_weights(g_pair_save + "/weights/last.pt");
  auto ref = ema_weights(one.last);
  EXPECT(ddp.size() == ref.size() && !ref.empty());
  const double worst = max_abs_diff(ddp, ref);
  EXPECT_MSG(worst <= 1e-4, "max |ddp - one process| = " << worst);
  std::cout << "  max |two ranks - one process| = " << worst << "\n";
  EXPECT(load_checkpoint(one.last).updates == 6);  // 12 images, 2 per step: the runs did train
  // The comparison can tell runs apart: one process with both images of a step in one batch of 2 (BatchNorm then
  // normalises them together) ends elsewhere.
  auto two = ema_weights(run_training(plain_args(temp_dir("two"), "run", 2, 1), {}, stop).last);
  const double apart = max_abs_diff(two, ref);
  EXPECT_MSG(apart > 1e-3, "batch 2 in one process is as close as " << apart);
}

TEST_CASE("classify: two ranks with the same global batch and data order end with a one-process run's weights (1e-4)") {
  // As for detection: two ranks of batch 1 (global batch 2) against one process of batch 1 with accumulation 2. The
  // classify loss is a per-rank mean, summed over the ranks as upstream's loss * world under DDP's average.
  const std::string dir = temp_dir("cls_pair");
  const std::string data = y26test::write_tiny_classify_set(dir + "/set", 4, 1);  // 12 train images: 6 steps
  std::ofstream(dir + "/data_path") << data;
  const int port = free_port();
  Rank r0 = start_rank("cls-run", dir, 0, 2, port), r1 = start_rank("cls-run", dir, 1, 2, port);
  EXPECT(wait_rank(r0, 600) && wait_rank(r1, 120));
  EXPECT_MSG(exited_ok(r0) && exited_ok(r1), "rank 0: " << read_file(dir + "/rank0.err") << " rank 1: " << read_file(dir + "/rank1.err"));
  const std::string save = read_file(dir + "/rank0.result");
  EXPECT(!save.empty() && read_file(dir + "/rank1.result") == save);
  // cache='ram' does nothing for classify: rank 0 says so once, the other ranks stay quiet
  EXPECT(read_file(dir + "/rank0.cachewarn") == "1" && read_file(dir + "/rank1.cachewarn") == "0");
  if (save.empty()) return;
  auto ck = load_checkpoint(save + "/weights/last.pt");
  EXPECT(ck.task == "classify" && ck.epoch == 0 && ck.train_args["batch"].as<int>() == 2 && ck.updates == 6);
  std::atomic<bool> stop{false};
  auto one = run_training(classify_args(data, temp_dir("cls_one"), "run", 1), {}, stop);
  auto ddp = ema_weights(save + "/weights/last.pt");
  auto ref = ema_weights(one.last);
  EXPECT(ddp.size() == ref.size() && !ref.empty());
  const double worst = max_abs_diff(ddp, ref);
  EXPECT_MSG(worst <= 1e-4, "max |ddp - one process| = " << worst);
  std::cout << "  classify: max |two ranks - one process| = " << worst << "\n";
  EXPECT(load_checkpoint(one.last).updates == 6);
  // The comparison can tell runs apart: one process with both images of a step in one batch of 2 (BatchNorm over
  // both, the mean of their losses) ends elsewhere.
  auto two = ema_weights(run_training(classify_args(data, temp_dir("cls_two"), "run", 2), {}, stop).last);
  const double apart = max_abs_diff(two, ref);
  EXPECT_MSG(apart > 1e-3, "batch 2 in one process is as close as " << apart);
}

TEST_CASE("stop() on rank 0 ends every rank at the same batch; resume with the same world size finishes") {
  const std::string dir = temp_dir("resume");
  auto both = [&](const std::string& mode) {
    const int port = free_port();
    Rank r0 = start_rank(mode, dir, 0, 2, port), r1 = start_rank(mode, dir, 1, 2, port);
    EXPECT(wait_rank(r0, 600) && wait_rank(r1, 120));
    EXPECT_MSG(exited_ok(r0) && exited_ok(r1), mode << ": rank 0: " << read_file(dir + "/rank0.err") << " rank 1: " << read_file(dir + "/rank1.err"));
  };
  both("stop");
  EXPECT(read_file(dir + "/rank0.stop") == "1 1" && read_file(dir + "/rank1.stop") == "1 1");
  EXPECT(load_checkpoint(dir + "/run/weights/last.pt").epoch == 0);
  both("resume");
  EXPECT(read_file(dir + "/rank0.resume") == "0 3" && read_file(dir + "/rank1.resume") == "0 3");
  EXPECT(load_checkpoint(dir + "/run/weights/last.pt").epoch == 2);
}

TEST_CASE("a port in use, a world-size mismatch and a killed rank are clear errors within a bounded time") {
  {  // rank 0 cannot serve the rendezvous on a port another socket holds
    const std::string dir = temp_dir("busy");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = 0;
    bind(s, (sockaddr*)&a, sizeof a);
    listen(s, 4);
    socklen_t n = sizeof a;
    getsockname(s, (sockaddr*)&a, &n);
    Rank r0 = start_rank("run", dir, 0, 2, ntohs(a.sin_port));
    EXPECT(wait_rank(r0, 120));
    close(s);
    const std::string err = read_file(dir + "/rank0.err");
    EXPECT(!exited_ok(r0));
    EXPECT_MSG(err.find("in use") != std::string::npos && err.find("MASTER_PORT") != std::string::npos, err);
  }
  {  // rank 1 believes in a world of 3
    const std::string dir = temp_dir("mismatch");
    const int port = free_port();
    Rank r0 = start_rank("run", dir, 0, 2, port), r1 = start_rank("run", dir, 1, 3, port);
    EXPECT(wait_rank(r0, 120) && wait_rank(r1, 120));
    EXPECT(!exited_ok(r0) && !exited_ok(r1));
    const std::string e0 = read_file(dir + "/rank0.err"), e1 = read_file(dir + "/rank1.err");
    EXPECT_MSG(e0.find("rank 1 was started with WORLD_SIZE=3") != std::string::npos, e0);
    EXPECT_MSG(e1.find("WORLD_SIZE") != std::string::npos, e1);
  }
  {  // kill -9 of rank 1 mid-epoch: rank 0 fails naming it, within 120 s
    const std::string dir = temp_dir("killed");
    const int port = free_port();
    Rank r0 = start_rank("long", dir, 0, 2, port), r1 = start_rank("long", dir, 1, 2, port);
    const auto t0 = Clock::now();
    while (!fs::exists(dir + "/batches_started") && std::chrono::duration<double>(Clock::now() - t0).count() < 300)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT(fs::exists(dir + "/batches_started"));
    kill(r1.pid, SIGKILL);
    waitpid(r1.pid, &r1.status, 0);
    const auto t1 = Clock::now();
    EXPECT(wait_rank(r0, 120));
    const double took = std::chrono::duration<double>(Clock::now() - t1).count();
    EXPECT(!exited_ok(r0) && took < 120);
    const std::string err = read_file(dir + "/rank0.err");
    EXPECT_MSG(err.find("rank 1 stopped") != std::string::npos, err);
    std::cout << "  rank 0 failed " << took << " s after rank 1 was killed: " << err << "\n";
  }
  {  // rank 1 frozen (SIGSTOP) with a 600 s collective timeout: its silent heartbeat fails rank 0 long before that
    const std::string dir = temp_dir("frozen");
    const int port = free_port();
    Rank r0 = start_rank("long", dir, 0, 2, port, 600), r1 = start_rank("long", dir, 1, 2, port, 600);
    const auto t0 = Clock::now();
    while (!fs::exists(dir + "/batches_started") && std::chrono::duration<double>(Clock::now() - t0).count() < 300)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT(fs::exists(dir + "/batches_started"));
    kill(r1.pid, SIGSTOP);
    const auto t1 = Clock::now();
    const bool ended = wait_rank(r0, 90);
    const double took = std::chrono::duration<double>(Clock::now() - t1).count();
    kill(r1.pid, SIGKILL);
    waitpid(r1.pid, &r1.status, 0);
    EXPECT(ended && !exited_ok(r0));
    const std::string err = read_file(dir + "/rank0.err");
    EXPECT_MSG(err.find("rank 1 stopped") != std::string::npos && err.find("no heartbeat") != std::string::npos, err);
    std::cout << "  rank 0 failed " << took << " s after rank 1 was frozen: " << err << "\n";
  }
}

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--cache-peer") return cache_peer_main(argv[2], argv[3], argv[4]);
  if (argc == 5 && std::string(argv[1]) == "--rank") {
    g_data = argv[4];
    return rank_main(argv[2], argv[3]);
  }
  return y26test::run_all();
}
