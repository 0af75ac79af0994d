#!/usr/bin/env bash
# Configures (once) and builds everything into build/. Extra arguments go to
# `cmake --build` (e.g. `--target scenic`). Builds are serialized with a lock so that
# several shells (or helpers) never compile at once on a small machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SCENIC_BUILD_DIR:-$ROOT/build}"
exec 9>"/tmp/scenic-build-$(echo "$ROOT" | md5sum | cut -c1-8).lock"
flock 9
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" "$@"
