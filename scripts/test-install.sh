#!/usr/bin/env bash
# npm run test:install: the package as a user meets it, on this machine (after scripts/setup.sh):
#  1. npm run prebuildify && npm pack: the tarball holds dist/, the prebuilt, the sources a build needs, no tests;
#  2. npm i <tarball> in an empty folder: under a minute, nothing compiled, predict() runs, doctor names the variant;
#  3. the prebuilt removed: npm rebuild builds from source, and that build works;
#  4. LIBTORCH at an empty folder: the install fails with one clear paragraph;
#  5. --ignore-scripts without a matching prebuilt: the first import says how to build;
#  6. onnxruntime-node added as an optional dependency: a .pt and an .onnx model run on ONNX Runtime's C API inside
#     the native pipeline (stream.ortRunner 'native'); an unloadable library falls back to the worker with a
#     warning; with the package removed, the .pt runs on libtorch and the .onnx fails with the install advice.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { echo "test:install [$(( $(date +%s) - start )) s] $*"; }
fail() { echo "test:install: FAIL: $*" >&2; exit 1; }
npm_i() { npm install --no-audit --no-fund --prefer-offline "$@"; }
fresh_app() { rm -rf "$tmp/app" && mkdir "$tmp/app" && (cd "$tmp/app" && npm init -y >/dev/null); }
model=$repo/test/fixtures/det/yolo26n-coco-random.pt
image=$repo/test/fixtures/images/jpeg_originals/s11_val_0000.jpg
predict_js="import { predict } from 'yolo26-native';
const r = await predict({ model: '$model', source: '$image', imgsz: 320, conf: 0.001 });
if (r.length !== 1 || !r[0].boxes) throw new Error('unexpected result ' + JSON.stringify(r).slice(0, 200));
console.log('predict ok');"
# runs MODEL (argument 1) and prints how: backend, ONNX Runtime runner, the cached export, the warnings
how_js="import { predict } from 'yolo26-native';
const s = predict({ model: process.argv[1], source: '$image', imgsz: 320, conf: 0.001, verbose: false });
const r = await s;
if (r.length !== 1 || !r[0].boxes) throw new Error('unexpected result ' + JSON.stringify(r).slice(0, 200));
console.log(JSON.stringify({ backend: s.backend, runner: s.ortRunner, onnx: s.onnxFile, warnings: s.warnings }));"
how() { (cd "$tmp/app" && YOLO26_CACHE_DIR=$tmp/cache node --input-type=module -e "$how_js" "$@"); }
field() { node -e 'const o=JSON.parse(process.argv[1]); const v=o[process.argv[2]]; console.log(typeof v === "string" || v === null ? String(v) : JSON.stringify(v))' "$1" "$2"; }
variant_of() { (cd "$tmp/app" && node_modules/.bin/yolo26 doctor --json) | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).addon.variant))'; }

step "1. prebuild and pack"
bash scripts/prebuild.sh | tail -n1
want=$(ls prebuilds/linux-*/ | grep "$(sh scripts/find-libtorch.sh | sed -n "s/^TORCH_VERSION='\([0-9]*\.[0-9]*\).*/torch\1/p")" | head -n1)
[ -n "$want" ] || fail "prebuild wrote no variant for this libtorch"
tgz=$tmp/$(npm pack --silent --pack-destination "$tmp" | tail -n1)
listing=$(tar tzf "$tgz")
for f in package/dist/index.js package/dist/cli.js package/CMakeLists.txt package/native/core/pch.h package/native/addon/pch.h \
    package/scripts/find-libtorch.sh package/scripts/install.mjs "package/prebuilds/linux-x64/$want"; do
  grep -qx "$f" <<<"$listing" || fail "the tarball lacks $f"
done
if grep -qE '^package/(test|ts|native/tests|native/bench)/' <<<"$listing"; then fail "the tarball ships tests or TypeScript sources"; fi
step "tarball $(du -h "$tgz" | cut -f1), $(wc -l <<<"$listing") files, variant $want"

step "2. install the tarball in an empty folder"
fresh_app
t0=$(date +%s)
(cd "$tmp/app" && npm_i "$tgz" >"$tmp/install.log" 2>&1) || { cat "$tmp/install.log"; fail "npm install failed"; }
took=$(( $(date +%s) - t0 ))
[ "$took" -lt 60 ] || fail "the install took $took s (limit 60)"
[ ! -e "$tmp/app/node_modules/yolo26-native/build" ] || fail "the install compiled the addon although a prebuilt matches"
(cd "$tmp/app" && node --input-type=module -e "$predict_js")
got=$(variant_of)
[ "$got.node" = "${want#yolo26_native.}" ] || fail "doctor names variant '$got', expected ${want#yolo26_native.}"
step "installed in $took s, prebuilt $got loaded, predict ran"

step "3. prebuilt removed: npm rebuild builds from source"
rm "$tmp/app/node_modules/yolo26-native/prebuilds/linux-x64/"*.node
(cd "$tmp/app" && npm rebuild yolo26-native >"$tmp/rebuild.log" 2>&1) || { tail -n 30 "$tmp/rebuild.log"; fail "the source build failed"; }
[ -f "$tmp/app/node_modules/yolo26-native/build/Release/yolo26_native.node" ] || fail "npm rebuild left no build/Release addon"
(cd "$tmp/app" && node --input-type=module -e "$predict_js")
[ "$(variant_of)" = "source build" ] || fail "doctor does not name the source build"
step "source build works"

step "4. LIBTORCH at an empty folder"
fresh_app
mkdir -p "$tmp/empty"
if (cd "$tmp/app" && LIBTORCH=$tmp/empty npm_i "$tgz" >"$tmp/bad.log" 2>&1); then fail "the install succeeded with LIBTORCH at an empty folder"; fi
grep -q "LIBTORCH=$tmp/empty holds no libtorch" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "no clear LIBTORCH error"; }
grep -q "CMake Error" "$tmp/bad.log" && fail "the LIBTORCH error came with a CMake trace"
step "clear error: $(grep -o 'LIBTORCH=.*holds no libtorch[^.]*' "$tmp/bad.log" | head -n1)"

step "5. --ignore-scripts"
fresh_app
(cd "$tmp/app" && npm_i --ignore-scripts "$tgz" >/dev/null 2>&1)
(cd "$tmp/app" && node --input-type=module -e "$predict_js") || fail "the prebuilt does not load without install scripts"
rm "$tmp/app/node_modules/yolo26-native/prebuilds/linux-x64/"*.node
if msg=$(cd "$tmp/app" && node --input-type=module -e "import { doctor } from 'yolo26-native'; doctor()" 2>&1); then fail "import worked with no addon"; fi
grep -q "npm rebuild yolo26-native" <<<"$msg" || { echo "$msg"; fail "the advice does not name npm rebuild yolo26-native"; }
step "advice: $(grep -o 'Build it from source with[^.]*' <<<"$msg" | head -n1)"

step "6. onnxruntime-node as an optional dependency"
fresh_app
(cd "$tmp/app" && npm_i "$tgz" >/dev/null 2>&1) || fail "npm install of the tarball failed"
t0=$(date +%s)
# the documented configuration (the command the advice prints): its install script downloads no CUDA providers
(cd "$tmp/app" && ONNXRUNTIME_NODE_INSTALL=skip npm_i --save-optional onnxruntime-node@1.30 >"$tmp/ort.log" 2>&1) || { cat "$tmp/ort.log"; fail "installing onnxruntime-node failed"; }
ort_took=$(( $(date +%s) - t0 ))
pt=$(how "$model") || fail "predict on the .pt with onnxruntime-node failed"
[ "$(field "$pt" backend)/$(field "$pt" runner)" = onnxruntime/native ] || fail "the .pt did not run on the native ONNX Runtime runner: $pt"
onnx=$(field "$pt" onnx)
[ -f "$onnx" ] || fail "no cached ONNX export: $pt"
o=$(how "$onnx") || fail "predict on the .onnx failed"
[ "$(field "$o" runner)" = native ] || fail "the .onnx did not run on the native runner: $o"
o=$(YOLO26_ORT_LIB=$tmp/empty/libonnxruntime.so how "$onnx") || fail "predict with an unloadable ONNX Runtime library failed instead of falling back"
[ "$(field "$o" runner)" = worker ] && grep -q "worker thread" <<<"$(field "$o" warnings)" || fail "no worker fallback with a warning: $o"
(cd "$tmp/app" && npm uninstall --no-audit --no-fund onnxruntime-node >/dev/null 2>&1) || fail "npm uninstall onnxruntime-node failed"
o=$(how "$model") || fail "predict on the .pt without onnxruntime-node failed"
[ "$(field "$o" backend)/$(field "$o" runner)" = torch/null ] || fail "without onnxruntime-node the .pt did not run on libtorch: $o"
if msg=$(how "$onnx" 2>&1); then fail "the .onnx ran without onnxruntime-node: $msg"; fi
grep -q "ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30" <<<"$msg" || { echo "$msg"; fail "the .onnx error does not give the offline-safe install command"; }
step "onnxruntime-node installed in $ort_took s; .pt and .onnx ran natively, worker fallback warned, libtorch without it"
step "all install checks passed"
