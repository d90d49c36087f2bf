#!/bin/bash
# Device check for the exporter (repo root, machine with Python torch 2.x): compiles the export sources against
# that torch (syntax only when yaml-cpp headers are absent there) to prove the libtorch 1.13/2.x portability.
set -u
TP=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
ABI=$(python3 -c 'import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
python3 -c 'import torch;print("torch", torch.__version__)'
INC="-Inative/core -I$TP/include -I$TP/include/torch/csrc/api/include"
FLAGS="-std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI=$ABI"
ok=0
g++ $FLAGS $INC -fsyntax-only native/core/export/onnx_proto.cpp && echo "onnx_proto.cpp OK" || ok=1
if [ -f /usr/include/yaml-cpp/yaml.h ]; then
  g++ $FLAGS $INC -fsyntax-only native/core/export/onnx_export.cpp && echo "onnx_export.cpp OK" || ok=1
else
  echo "no yaml-cpp headers: checking the libtorch-facing parts of onnx_export.cpp in isolation"
  cat > /tmp/pad_check.cpp <<'CPP'
#include <torch/torch.h>
#include <optional>
int main() {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3).stride(2).padding(1).groups(1));
  const auto& o = conv->options;
  using std::get;
  const auto& pad = get<torch::ExpandingArray<2>>(o.padding());
  std::optional<torch::ScalarType> as = std::nullopt;
  auto t = torch::full({}, 0.5, torch::kDouble).to(as ? *as : torch::kHalf).contiguous();
  int64_t v = (*pad)[0] + (*o.stride())[1] + (*o.dilation())[0] + o.groups() + (int64_t)t.nbytes();
  torch::nn::BatchNorm2d bn(8);
  double eps = bn->options.eps();
  std::printf("pad %lld eps %g sum %lld\n", (long long)(*pad)[0], eps, (long long)v);
  return (*pad)[0] == 1 ? 0 : 2;
}
CPP
  g++ $FLAGS -I$TP/include -I$TP/include/torch/csrc/api/include /tmp/pad_check.cpp -o /tmp/pad_check -L$TP/lib \
      -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,-rpath,$TP/lib && /tmp/pad_check || ok=1
fi
exit $ok
