#!/bin/bash
# Device check for the loss (run from the repo root on a GPU machine with Python torch 2.x): builds the train/ core
# and bench_loss against that torch with plain g++ (no OpenCV/yaml-cpp needed) and runs fixture parity + timings.
set -u
TP=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
ABI=$(python3 -c 'import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
g++ --version | head -1
nvidia-smi --query-gpu=name --format=csv,noheader
B=/tmp/b; mkdir -p $B
STD=${STD:-c++17}
SRCS="native/core/geometry/box_ops.cpp native/core/train/assigner.cpp native/core/train/detection_loss.cpp native/core/train/e2e_loss.cpp native/core/train/pose_loss.cpp native/core/model/anchors.cpp native/core/util/npy.cpp native/bench/bench_loss.cpp"
t0=$(date +%s)
for f in $SRCS; do
  g++ -std=$STD -O2 -w -D_GLIBCXX_USE_CXX11_ABI=$ABI -Inative/core -I$TP/include -I$TP/include/torch/csrc/api/include \
      -c $f -o $B/$(basename $f).o > $B/$(basename $f).log 2>&1 &
done
wait
ok=1
for f in $SRCS; do
  if [ ! -f $B/$(basename $f).o ]; then ok=0; echo "COMPILE FAILED: $f"; head -30 $B/$(basename $f).log; fi
done
echo "compile $(( $(date +%s) - t0 )) s, std $STD"
[ $ok = 1 ] || exit 3
g++ $B/*.o -o $B/bench_loss -L$TP/lib -Wl,--no-as-needed -ltorch -ltorch_cpu -ltorch_cuda -lc10 -lc10_cuda -Wl,-rpath,$TP/lib || exit 4
$B/bench_loss --device cpu --fixtures test/fixtures/loss --batch 4 --imgsz 320 --nc 3 --gts 3 --iters 2 --threads 1
$B/bench_loss --device cuda --fixtures test/fixtures/loss --batch 16 --imgsz 640 --nc 80 --gts 50 --iters 20
$B/bench_loss --device cpu --batch 16 --imgsz 640 --nc 80 --gts 50 --iters 3 --threads 16
$B/bench_loss --device cuda --batch 16 --imgsz 640 --nc 80 --gts 300 --iters 5
$B/bench_loss --device cuda --batch 64 --imgsz 640 --nc 80 --gts 20 --iters 10
