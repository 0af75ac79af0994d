// glibc malloc settings for tensor workloads on the CPU.
//
// glibc hands blocks above its mmap threshold (128 KiB at start, raised only up to the
// size of the largest mmapped block freed so far) straight to the kernel with mmap, gives
// them back with munmap on free, and trims the heap top above 2x that threshold. A forward
// of activations of 1-5 MiB then gets fresh pages every step, each one faulted in and
// zeroed by the kernel: the Fashion-MNIST ViT's eval step spent a third of its time in
// the kernel's page clearing (perf, bench/README.md). Fixed thresholds keep freed blocks
// in the heap for reuse: the eval step ran 1.2x faster. What stays reserved is bounded by
// the peak the process reached anyway. PyTorch's CPU performance guide makes the same
// point with jemalloc/tcmalloc; this needs no extra library.
#pragma once

namespace scenic::common {

// Sets M_MMAP_THRESHOLD to 32 MiB (glibc's largest) and M_TRIM_THRESHOLD to 256 MiB,
// unless the environment already tunes malloc (GLIBC_TUNABLES, MALLOC_MMAP_THRESHOLD_ or
// MALLOC_TRIM_THRESHOLD_). Returns whether it changed the settings (false off glibc, and
// under AddressSanitizer, whose malloc replaces glibc's).
// Call once, early in main.
bool tune_malloc_for_tensors();

}  // namespace scenic::common
