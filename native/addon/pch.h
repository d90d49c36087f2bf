// Precompiled for the addon's units: libtorch and node-addon-api headers are the bulk of their compile time.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <yaml-cpp/yaml.h>
#include "addon.h"
