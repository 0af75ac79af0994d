#!/usr/bin/env bash
# The tests under sanitizers, our code instrumented (LibTorch, MKL, OpenCV as shipped).
#
#   scripts/sanitize.sh [ctest args]   AddressSanitizer + UndefinedBehaviorSanitizer +
#                                      LeakSanitizer, every test, in build-sanitize/
#                                      (e.g. `scripts/sanitize.sh -R BiasGelu`)
#   scripts/sanitize.sh --thread       ThreadSanitizer, the data pipeline's tests
#                                      (scenic_dataset_tests), in build-tsan/
#
# Why --thread covers the data pipeline only: its threads (workers, prefetching) are
# std::threads whose hand-offs (mutexes, condition variables) TSan sees. The model and
# train libraries hand work to OpenMP teams and LibTorch's threads, whose
# synchronization lives in uninstrumented libgomp and LibTorch, so every tensor a team
# reads after the main thread wrote it reads as a race (tried: hundreds of such reports
# in scenic_train_tests, none with two of our accesses in one parallel region).
#
# Not part of CI: each first build is a full one (its objects differ from build/'s, so
# ccache starts cold for them; 34 min here for build-sanitize/), and tests run slower.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=address
if [ "${1:-}" = "--thread" ]; then
  MODE=thread
  shift
fi
"$ROOT/scripts/setup.sh"
configure() {  # build dir, -fsanitize= list
  if [ ! -f "$1/build.ninja" ]; then
    cmake -S "$ROOT" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSCENIC_SANITIZE="$2"
  fi
}
if [ "$MODE" = thread ]; then
  export SCENIC_BUILD_DIR="${SCENIC_TSAN_BUILD_DIR:-$ROOT/build-tsan}"
  configure "$SCENIC_BUILD_DIR" thread
  "$ROOT/scripts/build.sh" --target scenic_dataset_tests
  export TSAN_OPTIONS="suppressions=$ROOT/scripts/tsan.supp:halt_on_error=0:${TSAN_OPTIONS:-}"
  cd "$SCENIC_BUILD_DIR"
  # One process for all of them (TSan exits 66 at the end if it reported anything).
  exec env OMP_NUM_THREADS=1 ./scenic_dataset_tests "$@"
fi
export SCENIC_BUILD_DIR="${SCENIC_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
configure "$SCENIC_BUILD_DIR" address,undefined
"$ROOT/scripts/build.sh"
# protect_shadow_gap=0: the CUDA runtime, loaded with LibTorch, maps memory where ASan's
# shadow gap would be. No container-overflow check: LibTorch's uninstrumented code
# resizes std::vectors that our instrumented code reads. Leaks are checked at each exit,
# less LibTorch's own (lsan.supp).
export ASAN_OPTIONS="protect_shadow_gap=0:detect_leaks=1:detect_container_overflow=0:halt_on_error=1:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
cd "$SCENIC_BUILD_DIR"
ctest --output-on-failure -j2 "$@"
