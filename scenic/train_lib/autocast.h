// Config key `autocast_dtype` (float32 | bfloat16): the forward pass in bfloat16 under
// autocast, with float32 weights, gradients and optimizer state (issue 9's "bf16
// autocast as an option, with fp32 master weights"). The classification trainer and
// `scenic bench` run it the same way through these two pieces.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include "scenic/common_lib/config.h"

namespace scenic::train {

// Reads `autocast_dtype` (default float32); true for bfloat16. Throws scenic::Error
// naming the key for any other value.
bool read_autocast_bf16(const common::ConfigDict& config);

// RAII: while alive, autocast to bfloat16 is on for `device` on this thread (autocast is
// thread-local: a batch slice run on another thread opens its own scope). On exit, also
// by an exception, the thread's previous autocast state (on/off, dtype) comes back and
// the cast cache is cleared. `enabled` false: does nothing.
class AutocastScope {
 public:
  AutocastScope(bool enabled, c10::DeviceType device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
  c10::DeviceType device_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace scenic::train
