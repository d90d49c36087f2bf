"""Times the official predictor (a .pt checkpoint, batch 1, streamed) over a folder of images, after a two-image
warm-up that loads the model, as ours_predict.mjs times ours. One JSON object last.

  python3 official_predict.py --src DIR --model M.pt --source FOLDER [--imgsz 640]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.src))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    files = sorted(os.path.join(a.source, f) for f in os.listdir(a.source) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    model = YOLO(os.path.abspath(a.model))
    for _ in model.predict(files[:2], imgsz=a.imgsz, batch=1, device="cpu", verbose=False, stream=True):
        pass
    t0, c0 = time.perf_counter(), time.process_time()
    n = dets = 0
    speed = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    for r in model.predict(os.path.abspath(a.source), imgsz=a.imgsz, batch=1, device="cpu", verbose=False, stream=True):
        n += 1
        dets += len(r.boxes)
        for k in speed:
            speed[k] += r.speed[k]
    dt = time.perf_counter() - t0
    out = {"ms_per_image": dt * 1000 / n, "cpu_ms_per_image": (time.process_time() - c0) * 1000 / n, "images": n,
           "detections": dets, **{k + "_ms": v / n for k, v in speed.items()}}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
