#!/usr/bin/env bash
# Installs everything the build, the tests and the default run need. Idempotent:
# a second run checks and returns in seconds.
#
# Torch pin: LibTorch comes from the `torch` wheel on PyPI. From 2.11 on PyPI serves
# the CUDA 13.0 build, and this machine's CUDA toolkit is 13.0 (nvcc 13.0.88), so
# torch 2.11.0 is the release whose CUDA build matches the toolkit: its CMake config
# (Caffe2/public/cuda.cmake) finds our nvcc/cuBLAS/cuDNN and the CUDA code paths compile
# and link here. Newer releases may move the default CUDA to 13.2 (pytorch#190355).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="${SCENIC_TORCH_VERSION:-2.11.0}"
NUMPY_VERSION="2.2.6"

APT_PACKAGES=(
  build-essential cmake ninja-build ccache git pkg-config
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libopencv-imgcodecs-dev libopencv-imgproc-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist python3-venv
  libgloo-dev  # headers for c10d's ProcessGroupGloo (the torch wheel ships none)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3
  "$PY" -m venv "$VENV"
fi
# torch (LibTorch for the build) and the light Python references the tests call or
# compare against: numpy, scipy (linear_sum_assignment), torchvision + pillow (data
# pipeline reference), tensorboard (reads our event files back), pycocotools (COCO AP).
PY_PINS=(
  "torch==$TORCH_VERSION" "numpy==$NUMPY_VERSION" "torchvision==0.26.0" "scipy==1.17.1"
  "tensorboard==2.21.0" "pycocotools==2.0.11" "pillow==13.0.0"
)
have="$("$VENV/bin/python" - "${PY_PINS[@]}" <<'PY' 2>/dev/null || true
import importlib.metadata as m, sys
out = []
for pin in sys.argv[1:]:
    name = pin.split("==")[0]
    try:
        out.append(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        out.append(f"{name}==missing")
print(" ".join(out))
PY
)"
if [ "$have" != "${PY_PINS[*]}" ]; then
  echo "[setup] installing ${PY_PINS[*]} into .venv (the first time downloads ~3 GB)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PINS[@]}"
fi
echo "[setup] ok: $("$VENV/bin/python" -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda)')"
