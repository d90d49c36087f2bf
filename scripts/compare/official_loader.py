"""Times the official training data loader (mosaic and the default augmentation, shuffled, the given workers) over
one epoch of a data set, the first two batches untimed, as bench_loader times ours. Also prints the augmented label
statistics (boxes per image, mean normalised box width and height). One JSON object last.

  python3 official_loader.py --src DIR --data data.yaml [--imgsz 640] [--batch 16] [--workers 2]
"""
import argparse
import json
import os
import sys
import time

import psutil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.src))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(os.path.abspath(a.data))
    cfg = get_cfg(overrides={"imgsz": a.imgsz, "batch": a.batch, "workers": a.workers, "cache": False})
    ds = build_yolo_dataset(cfg, data["train"], a.batch, data, mode="train", stride=32)
    loader = build_dataloader(ds, a.batch, a.workers, shuffle=True)
    it = iter(loader)
    for _ in range(2):
        next(it)
    me = psutil.Process()

    def cpu():  # this process and its loader workers (alive until the end), user + sys
        procs = [me] + me.children(recursive=True)
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    t0, c0 = time.perf_counter(), cpu()
    n = boxes = 0
    wsum = hsum = 0.0
    for b in it:
        n += b["img"].shape[0]
        bb = b["bboxes"]
        boxes += bb.shape[0]
        wsum += float(bb[:, 2].sum())
        hsum += float(bb[:, 3].sum())
    dt, c = time.perf_counter() - t0, cpu() - c0
    out = {"images_per_second": n / dt, "images": n, "seconds": dt, "cpu_ms_per_image": c * 1000 / max(n, 1),
           "boxes_per_image": boxes / max(n, 1), "mean_w": wsum / max(boxes, 1), "mean_h": hsum / max(boxes, 1),
           "imgsz": a.imgsz, "batch": a.batch, "workers": a.workers}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
