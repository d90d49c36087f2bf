// Precompiled for every core translation unit: libtorch headers cost ~16 s per unit on 2 cores.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <stdexcept>
