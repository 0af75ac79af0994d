#!/usr/bin/env bash
# The tests: set-up, build everything, then run CTest. Extra arguments go to ctest
# (e.g. `scripts/test.sh -R Config`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh"
cd "${SCENIC_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure -j2 "$@"
