"""Times the official trainer (Ultralytics, imported from the folder given with --src) on one data set, the same
way bench_trainer times ours: the last epoch is measured (the first warms up), validation is not part of it, the
GPU is sampled through NVML at --hz, and one JSON object is printed last (and written to --json-out).

  python3 official_train.py --src DIR --data data.yaml --model yolo26n.yaml --imgsz 640 --batch 128 --epochs 2 \
      --workers 8 [--cache ram] [--device 0] [--hz 20] [--json-out FILE] [--project DIR]

Data wait = time from the end of one batch to the start of the next (the trainer's loader iteration), as a share
of the epoch's time.
"""
import argparse
import json
import os
import shutil
import sys
import threading
import time


class GpuSampler:
    """Utilisation and memory of one GPU, sampled in a thread while recording is on (no NVML: no samples)."""

    def __init__(self, index, hz):
        self.util, self.mem_peak_gb, self.recording, self.quit = [], 0.0, False, False
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as e:  # no driver, no pynvml
            print(f"official_train: no NVML ({e}); no GPU samples", file=sys.stderr)
            self.nvml = None
            return
        self.period = 1.0 / max(hz, 1.0)
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        nxt = time.perf_counter()
        while not self.quit:
            nxt += self.period
            if self.recording:
                u = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
                m = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
                self.util.append(u.gpu)
                self.mem_peak_gb = max(self.mem_peak_gb, m.used / 1e9)
            time.sleep(max(0.0, nxt - time.perf_counter()))

    def summary(self):
        n = len(self.util)
        return {"gpu_util_mean": sum(self.util) / n if n else 0.0, "gpu_util_samples": n, "gpu_mem_peak_gb": self.mem_peak_gb}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="yolo26n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cache", default="")
    ap.add_argument("--device", default="0")
    ap.add_argument("--hz", type=float, default=20)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--project", default="/tmp/official_runs")
    ap.add_argument("--amp-weights", default="", help="a yolo26n checkpoint for the official AMP check (offline)")
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.src))
    a.data = os.path.abspath(a.data)
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no download attempts: the GPU machine has no network
    # The official AMP check loads "yolo26n.pt" from the working folder before it would download one.
    os.makedirs(a.project, exist_ok=True)
    if a.amp_weights:
        shutil.copyfile(a.amp_weights, os.path.join(a.project, "yolo26n.pt"))
    os.chdir(a.project)

    from ultralytics import YOLO

    gpu = int(a.device) if a.device.isdigit() else 0
    sampler = GpuSampler(gpu, a.hz) if a.device != "cpu" else None
    st = {"epoch_start": 0.0, "last_end": None, "wait": 0.0, "images": 0, "end": 0.0}

    def on_epoch_start(trainer):
        if trainer.epoch == a.epochs - 1:
            st.update(epoch_start=time.perf_counter(), last_end=time.perf_counter(), wait=0.0, images=0)
            if sampler:
                sampler.recording = True

    def on_batch_start(trainer):
        if trainer.epoch == a.epochs - 1 and st["last_end"] is not None:
            st["wait"] += time.perf_counter() - st["last_end"]

    def on_batch_end(trainer):
        if trainer.epoch == a.epochs - 1:
            st["images"] += trainer.batch_size  # the last batch may be smaller: capped below
            st["dataset"] = len(trainer.train_loader.dataset)
            st["last_end"] = st["end"] = time.perf_counter()

    def on_epoch_end(trainer):
        if trainer.epoch == a.epochs - 1 and sampler:
            sampler.recording = False

    model = YOLO(a.model)
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_batch_start", on_batch_start)
    model.add_callback("on_train_batch_end", on_batch_end)
    model.add_callback("on_train_epoch_end", on_epoch_end)
    t0 = time.perf_counter()
    kw = dict(data=a.data, imgsz=a.imgsz, batch=a.batch, epochs=a.epochs, workers=a.workers, device=a.device,
              amp=True, plots=False, project=a.project, name="run", exist_ok=True, verbose=False)
    if a.cache:
        kw["cache"] = a.cache
    model.train(**kw)
    wall = time.perf_counter() - t0
    secs = max(st["end"] - st["epoch_start"], 1e-9)
    images = min(st["images"], st.get("dataset", st["images"]))
    out = {"images_per_second": images / secs, "epoch_seconds": secs, "data_wait_fraction": st["wait"] / secs,
           "batch": a.batch, "epochs": a.epochs, "workers": a.workers, "cache": a.cache or None,
           "wall_seconds": wall}
    out.update(sampler.summary() if sampler else {"gpu_util_mean": 0.0, "gpu_util_samples": 0, "gpu_mem_peak_gb": 0.0})
    line = json.dumps(out)
    print(line, flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
