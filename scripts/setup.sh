#!/usr/bin/env bash
# One-command set-up on Debian 12 / Ubuntu: system libraries, npm dependencies, the TypeScript
# facade and the native addon (core, tests and benchmarks). Safe and fast to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config
  libopencv-dev libturbojpeg0-dev libyaml-cpp-dev zlib1g-dev
  libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx)
# libtorch: the one scripts/find-libtorch.sh finds (LIBTORCH, Torch_DIR, python3's torch, the system's), as the
# build does; Debian's CPU libtorch-dev only when there is none (or it is the one found).
if found=$(sh scripts/find-libtorch.sh 2>/dev/null); then
  eval "$found"
  echo "setup: libtorch $TORCH_VERSION (CUDA: $TORCH_CUDA) at $TORCH_LIB_DIR: $TORCH_WHY"
  [ "$TORCH_RULE" = system ] && APT_PACKAGES+=(libtorch-dev libopenblas0-pthread libgloo-dev)
elif [ $? -eq 2 ]; then
  sh scripts/find-libtorch.sh >/dev/null  # repeats its message about LIBTORCH / Torch_DIR
  exit 1
else
  echo "setup: no libtorch found: installing Debian's CPU libtorch-dev"
  APT_PACKAGES+=(libtorch-dev libopenblas0-pthread libgloo-dev)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: system packages present"
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("setup: Node >= 20.19 is required, found "+process.version); process.exit(1) }'

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.yolo26-lock.sha
want=$(sha1sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # --ignore-scripts: our own install script would build the addon a second time below, and
  # onnxruntime-node's would try to download GPU providers; ONNXRUNTIME_NODE_INSTALL=skip stops that download
  # too, should anyone drop the flag or run its script later (npm rebuild).
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit --no-fund
  echo "$want" > "$stamp"
fi

start=$(date +%s)
npm run --silent build
echo "setup: build finished in $(( $(date +%s) - start )) s"
