#!/usr/bin/env bash
# The tests under AddressSanitizer and UndefinedBehaviorSanitizer: our code instrumented
# (LibTorch, MKL, OpenCV as shipped), built in build-sanitize/ beside the normal build/.
# Extra arguments go to ctest (e.g. `scripts/sanitize.sh -R BiasGelu`). Not part of CI:
# the first build is a full one (its objects differ from build/'s, so ccache starts
# cold for them) and the tests run 2-3x slower.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
export SCENIC_BUILD_DIR="${SCENIC_SANITIZE_BUILD_DIR:-$ROOT/build-sanitize}"
if [ ! -f "$SCENIC_BUILD_DIR/build.ninja" ]; then
  cmake -S "$ROOT" -B "$SCENIC_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSCENIC_SANITIZE=address,undefined
fi
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
