"""Writes the side-by-side data set: N random-shape JPEGs (640 px, 1-8 rectangles/ellipses/triangles on noisy
gradients, YOLO labels) plus N/10 val images, and a data.yaml readable by both trainers. Several processes.

  python3 make_dataset.py DIR [--images 2000] [--size 640] [--procs 8]
"""
import argparse
import os
from multiprocessing import Pool

import cv2
import numpy as np

NAMES = ["rectangle", "ellipse", "triangle"]


def one(args):
    path, label_path, size, seed = args
    rng = np.random.default_rng(seed)
    h = w = size
    base = rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * rng.integers(-80, 80, 3)
    img = np.clip(base + ramp + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    lines = []
    for _ in range(int(rng.integers(1, 9))):
        c = int(rng.integers(0, 3))
        bw, bh = (rng.uniform(0.08, 0.4, 2) * size).astype(int)
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if c == 0:
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), color, -1)
        elif c == 1:
            cv2.ellipse(img, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, color, -1)
        else:
            pts = np.array([[x0 + bw // 2, y0], [x0, y0 + bh], [x0 + bw, y0 + bh]], np.int32)
            cv2.fillPoly(img, [pts], color)
        lines.append(f"{c} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    with open(label_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--procs", type=int, default=8)
    a = ap.parse_args()
    root = os.path.abspath(a.dir)
    jobs = []
    for split, n, off in (("train", a.images, 0), ("val", max(8, a.images // 10), 10**6)):
        os.makedirs(f"{root}/images/{split}", exist_ok=True)
        os.makedirs(f"{root}/labels/{split}", exist_ok=True)
        for i in range(n):
            jobs.append((f"{root}/images/{split}/{i:05d}.jpg", f"{root}/labels/{split}/{i:05d}.txt", a.size, off + i))
    with Pool(a.procs) as p:
        p.map(one, jobs, chunksize=16)
    with open(f"{root}/data.yaml", "w") as f:
        f.write(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n")
        f.writelines(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
    print(f"make_dataset: {len(jobs)} images in {root}")


if __name__ == "__main__":
    main()
