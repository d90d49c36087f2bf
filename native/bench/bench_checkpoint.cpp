// Checkpoint I/O timings: zip open, CRC of every record, unpickling, full load and save.
// Usage: bench_checkpoint [file.pt] (default: test/fixtures/det/yolo26n-shapes.pt)
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/zip.h"
#include "util/error.h"
#include "util/source_dir.h"

static double best_ms(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : y26::source_dir() + "/test/fixtures/det/yolo26n-shapes.pt";
  try {
    const int reps = 5;
    double open_ms = best_ms(reps, [&] { y26::ZipReader z(path); });
    y26::ZipReader zip(path);
    double crc_ms = best_ms(reps, [&] {
      std::vector<uint8_t> scratch;
      for (const auto& e : zip.entries()) zip.view(e, scratch);
    });
    std::vector<uint8_t> pkl;
    for (const auto& e : zip.entries())
      if (e.name.size() > 9 && e.name.substr(e.name.size() - 9) == "/data.pkl") pkl = zip.read(e);
    torch::Tensor dummy = torch::empty({1 << 20});
    double unpickle_ms = best_ms(reps, [&] {
      y26::unpickle(pkl.data(), pkl.size(), [&](const y26::PyValue&) { return y26::PyValue::tensor(dummy); }, "bench");
    });
    double torch_file_ms = best_ms(reps, [&] { y26::load_torch_file(path); });
    double load_ms = best_ms(reps, [&] { y26::load_checkpoint(path); });
    y26::Checkpoint ck = y26::load_checkpoint(path);
    std::string out = "/tmp/bench_checkpoint_" + std::to_string(getpid()) + ".pt";
    double save_ms = best_ms(reps, [&] { y26::save_checkpoint(out, ck); });
    y26::CheckpointSaveOptions half;
    half.half = true;
    double save16_ms = best_ms(reps, [&] { y26::save_checkpoint(out, ck, half); });
    double reload_ms = best_ms(reps, [&] { y26::load_checkpoint(out); });
    std::remove(out.c_str());
    std::printf("%s: %zu records, %zu tensors\n", path.c_str(), zip.entries().size(), ck.state_dict.size());
    std::printf("best of %d (ms): zip open %.2f | CRC all records %.2f | unpickle data.pkl (%zu bytes) %.2f | "
                "load_torch_file %.2f | load_checkpoint %.2f\n",
                reps, open_ms, crc_ms, pkl.size(), unpickle_ms, torch_file_ms, load_ms);
    std::printf("save ours fp32 %.2f | save ours fp16 %.2f | load ours (fp16) %.2f\n", save_ms, save16_ms, reload_ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", y26::describe_exception(std::current_exception()).c_str());
    return 1;
  }
  return 0;
}
