// Precompiled header shared by every target (see CMakeLists.txt): LibTorch's headers
// are the bulk of every translation unit's compile time.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>
