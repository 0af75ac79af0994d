#!/usr/bin/env bash
# Packs what the GPU checks need onto a lent device machine (the `device` tool's `run`),
# which has PyTorch, JAX, nvcc and CMake but none of our Debian packages and no registry:
# here, builds the binaries, then writes .device/ (git-ignored):
#   kit.tar.xz   build/{scenic,scenic_train_tests,scenic_e2e_tests}, and under lib/ every
#                shared library they load that is neither glibc's, the C++ runtime's nor
#                LibTorch's (OpenCV and what it pulls in, yaml-cpp, the CUDA runtime),
#                flat, under their sonames;
#   root.txt     this checkout's path, compiled into the tests (fixtures, the binary);
#   torch.txt    the LibTorch version the binaries were linked against.
# It checks that every library the binaries and those libraries need resolves inside the
# pack, LibTorch's folder or the base set, and that the working tree plus the carried
# paths stay under the tool's 64 MiB. Then, on the device:
#   run(command="scripts/device_check.sh", timeout_s=560, carry=[".device"])
# (scripts/device_check.sh says what it runs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BINARIES=(build/scenic build/scenic_train_tests build/scenic_e2e_tests)
"$ROOT/scripts/setup.sh" >/dev/null
"$ROOT/scripts/build.sh" --target scenic scenic_train_tests scenic_e2e_tests >/dev/null

TORCH_LIB="$(.venv/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
# Present on any Linux with a C++ toolchain's runtime: not carried (the device's own are
# newer than Debian 12's, and a second glibc cannot be loaded beside the first).
BASE='^(linux-vdso|ld-linux-x86-64|libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s)\.so'

rm -rf .device && mkdir -p .device/lib
# Every library ldd resolves outside LibTorch's folder, followed through the libraries.
ldd "${BINARIES[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r soname path; do
    [[ "$soname" =~ $BASE ]] && continue
    [[ "$path" == "$TORCH_LIB"/* ]] && continue
    cp -L "$path" ".device/lib/$soname"
  done
# The check: with only the pack and LibTorch on the search path, every needed library
# of every carried file resolves there or in the base set.
bad=0
for f in "${BINARIES[@]}" .device/lib/*; do
  while read -r soname path; do
    [[ "$soname" =~ $BASE ]] && continue
    case "$path" in
      "$ROOT/.device/lib/"* | "$TORCH_LIB/"*) ;;
      *) echo "device_kit: $f needs $soname, found at $path, outside the pack" >&2; bad=1 ;;
    esac
  done < <(LD_LIBRARY_PATH="$ROOT/.device/lib:$TORCH_LIB" ldd "$f" | awk '$2 == "=>" {print $1, $3}')
done
[ "$bad" = 0 ] || { echo "device_kit: the pack is incomplete" >&2; exit 1; }

n_libs=$(ls .device/lib | wc -l)
mkdir -p .device/build && cp "${BINARIES[@]}" .device/build/
tar -C .device -cf - lib build | xz -T2 -6 >.device/kit.tar.xz
rm -rf .device/lib .device/build
echo "$ROOT" >.device/root.txt
.venv/bin/python -c 'import torch; print(torch.__version__, torch.version.git_version)' >.device/torch.txt

tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb .device | tail -1 | cut -f1)
total=$((tree + carried))
echo "device_kit: ${#BINARIES[@]} binaries and $n_libs libraries, packed; working tree $tree + carried" \
     "$carried = $total bytes of the 64 MiB limit"
[ "$total" -lt $((64 * 1024 * 1024)) ] || { echo "device_kit: over the 64 MiB the device tool carries" >&2; exit 1; }
echo 'device_kit: now run(command="scripts/device_check.sh", timeout_s=560, carry=[".device"])'
