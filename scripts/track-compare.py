"""Runs the reference trackers (upstream's BYTETracker and BOTSORT, imported from an ultralytics source tree) on the
detection sequence written by `bench_track_compare --write DIR`, and writes DIR/reference_tracks.csv.

    python3 scripts/track-compare.py --upstream <dir holding the ultralytics package> DIR

Needs numpy, scipy and opencv (BoT-SORT's camera-motion compensation reads DIR/frames). Upstream's matching module
imports `lap`; where that package cannot be installed, a stand-in that solves the same extended assignment problem
(lap.lapjv with extend_cost=True and cost_limit) with scipy is used, and the script says so.
"""

import argparse
import csv
import os
import sys
import tempfile
import types
from collections import defaultdict


def lap_stand_in():
    """A `lap` module with lapjv(cost, extend_cost=True, cost_limit=L): the (n+m) square problem where leaving a row
    or a column unassigned costs L/2, solved exactly by scipy; returns (total, x, y) with -1 for unassigned."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    def lapjv(cost, extend_cost=False, cost_limit=np.inf, return_cost=True):
        cost = np.asarray(cost, dtype=np.float64)
        n, m = cost.shape
        x, y = -np.ones(n, dtype=np.int64), -np.ones(m, dtype=np.int64)
        if n == 0 or m == 0:
            return 0.0, x, y
        if np.isfinite(cost_limit):
            ext = np.full((n + m, n + m), cost_limit / 2.0)
            ext[:n, :m] = cost
            ext[n:, m:] = 0.0
            rows, cols = linear_sum_assignment(ext)
        else:
            rows, cols = linear_sum_assignment(cost)
        total = 0.0
        for r, c in zip(rows, cols):
            if r < n and c < m:
                x[r], y[c] = c, r
                total += cost[r, c]
        return total, x, y

    mod = types.ModuleType("lap")
    mod.__version__ = "scipy-stand-in"
    mod.lapjv = lapjv
    return mod


class Detections:
    """The slice of upstream's Boxes that its trackers read: conf, cls, xywh, xyxy, len() and boolean indexing."""

    def __init__(self, xyxy, conf, cls):
        import numpy as np

        self.xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, dtype=np.float32)
        self.cls = np.asarray(cls, dtype=np.float32)

    @property
    def xywh(self):
        import numpy as np

        b = self.xyxy
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)

    def __len__(self):
        return len(self.conf)

    def __getitem__(self, mask):
        return Detections(self.xyxy[mask], self.conf[mask], self.cls[mask])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="directory that holds the ultralytics package (its source tree)")
    ap.add_argument("dir", help="the directory written by bench_track_compare --write")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.upstream, "ultralytics", "trackers")):
        sys.exit(f"track-compare: {a.upstream} has no ultralytics/trackers; pass the directory holding the ultralytics package")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="track-compare-cfg-"))
    try:
        import lap  # noqa: F401
    except ImportError:
        print("track-compare: the lap package is missing; using a scipy stand-in for lap.lapjv", file=sys.stderr)
        sys.modules["lap"] = lap_stand_in()
    sys.path.insert(0, os.path.abspath(a.upstream))
    import cv2
    import yaml
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker

    scenes = {}
    with open(os.path.join(a.dir, "scenes.csv")) as f:
        for row in csv.DictReader(f):
            scenes[row["scene"]] = int(row["frames"])
    dets = defaultdict(list)
    with open(os.path.join(a.dir, "sequence.csv")) as f:
        for row in csv.DictReader(f):
            if row["kind"] == "det":
                box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
                dets[(row["scene"], int(row["frame"]))].append((box, float(row["conf"]), float(row["cls"])))

    out = open(os.path.join(a.dir, "reference_tracks.csv"), "w")
    out.write("tracker,scene,frame,id,x1,y1,x2,y2\n")
    for name, cls in (("bytetrack", BYTETracker), ("botsort", BOTSORT)):
        with open(os.path.join(a.upstream, "ultralytics", "cfg", "trackers", f"{name}.yaml")) as f:
            args = types.SimpleNamespace(**yaml.safe_load(f))
        for scene, frames in scenes.items():
            tracker = cls(args=args)  # a new tracker restarts ids at 1
            for fr in range(frames):
                d = dets.get((scene, fr), [])
                det = Detections([x[0] for x in d], [x[1] for x in d], [x[2] for x in d])
                img = cv2.imread(os.path.join(a.dir, "frames", f"{scene}_{fr}.png")) if name == "botsort" else None
                for t in tracker.update(det, img):
                    x1, y1, x2, y2, tid = t[:5]
                    out.write(f"upstream-{name},{scene},{fr},{int(tid)},{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f}\n")
    out.close()
    print(f"track-compare: wrote {os.path.join(a.dir, 'reference_tracks.csv')}")


if __name__ == "__main__":
    main()
