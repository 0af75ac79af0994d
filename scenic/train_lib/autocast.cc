#include "scenic/train_lib/autocast.h"

#include <ATen/autocast_mode.h>

#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::train {

bool read_autocast_bf16(const common::ConfigDict& config) {
  const std::string dtype = config.get<std::string>("autocast_dtype", "float32");
  if (dtype != "float32" && dtype != "bfloat16")
    throw Error("config key 'autocast_dtype' must be 'float32' or 'bfloat16', not '" + dtype + "'");
  return dtype == "bfloat16";
}

AutocastScope::AutocastScope(bool enabled, c10::DeviceType device) : enabled_(enabled), device_(device) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(device_);
  was_dtype_ = at::autocast::get_autocast_dtype(device_);
  at::autocast::set_autocast_dtype(device_, at::kBFloat16);
  at::autocast::set_autocast_enabled(device_, true);
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  at::autocast::set_autocast_enabled(device_, was_enabled_);
  at::autocast::set_autocast_dtype(device_, was_dtype_);
  at::autocast::clear_cache();
}

}  // namespace scenic::train
