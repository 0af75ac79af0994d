#!/usr/bin/env bash
# The GPU checks, in one command for a lent device machine (scripts/device_kit.sh packs
# what they need here first and prints the `run` call). In order, each phase time-boxed
# so that the whole stays under ~9 minutes, every log copied to $OUT:
#   env.txt          nvidia-smi, the LibTorch the binaries were built against and the one here;
#   train_tests.txt  the CUDA tests of scenic_train_tests (GraphedStepCuda: captured
#                    training equals eager, replays read new batches and draw fresh
#                    dropout; PrefetchToCuda) and the graph-safe AdamW and GraphedStep ones;
#   e2e.txt          TrainerFeaturesE2E (its cuda_graph test trains eagerly and captured on
#                    the GPU and compares the checkpoints; the others train on the GPU too);
#   graph.txt        bench/compare.sh --cuda_graph: ViT-S/16 and Mixer-S/16 training,
#                    eager and captured, against PyTorch on the GPU;
#   table.txt        bench/compare.sh's cases, train and eval, with JAX (jit, on the GPU);
#   *.jsonl          the rows of both comparisons.
# Needs .device/ carried (device_kit.sh); uses this machine's python3
# (PyTorch, JAX, Flax, Optax) for the references.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/scenic-device-out}"
mkdir -p "$OUT"
START=$SECONDS
phase() { echo "== $* (${SECONDS}s)"; }
left() {  # seconds left of a budget of $1 from the start, at least 1 (timeout 0 would wait forever)
  local s=$(($1 - (SECONDS - START)))
  echo $((s < 1 ? 1 : s))
}

[ -f .device/kit.tar.xz ] || { echo "no .device/kit.tar.xz: run scripts/device_kit.sh first and carry .device" >&2; exit 2; }

# The tests have the build machine's checkout path compiled in (fixtures, the scenic
# binary): point that path here.
BUILT_AT="$(cat .device/root.txt)"
if [ "$BUILT_AT" != "$ROOT" ]; then
  if [ -e "$BUILT_AT" ] && [ ! -L "$BUILT_AT" ]; then
    echo "$BUILT_AT exists on this machine: cannot point it at $ROOT" >&2
    exit 2
  fi
  mkdir -p "$(dirname "$BUILT_AT")" && ln -sfn "$ROOT" "$BUILT_AT"
fi

KIT=/tmp/scenic-device-kit
rm -rf "$KIT" && mkdir -p "$KIT" build && tar -C "$KIT" -xJf .device/kit.tar.xz && cp "$KIT"/build/* build/ || exit 2
PY="$(command -v python3)"
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$KIT/lib:$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# compare.sh calls .venv/bin/python (torch) and .venv-bench/bin/python (JAX): this
# machine's python3 has both. Wrappers, not links: a link would lose its environment.
for v in .venv .venv-bench; do
  mkdir -p "$v/bin"
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" >"$v/bin/python"
  chmod +x "$v/bin/python"
done

phase env
{
  nvidia-smi
  echo "binaries built against LibTorch $(cat .device/torch.txt)"
  "$PY" -c 'import torch, jax; print("here: torch", torch.__version__, torch.version.git_version, "| jax", jax.__version__, jax.devices())'
  nproc
  if ! build/scenic --help >/dev/null; then
    ldd build/scenic | grep "not found"
    exit 3
  fi
} 2>&1 | tee "$OUT/env.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "the binaries do not load here (env.txt)"; exit 3; }

phase tests
timeout "$(left 150)" build/scenic_train_tests \
  --gtest_filter='GraphedStepCuda.*:*PrefetchToCuda*:GraphedStep.*:FusedAdamW.*:EnableCudaGraph*' 2>&1 |
  tee "$OUT/train_tests.txt" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests? ran"
timeout "$(left 260)" build/scenic_e2e_tests --gtest_filter='TrainerFeaturesE2E.*' 2>&1 |
  tee "$OUT/e2e.txt" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |tests? ran"

phase "captured step vs eager vs PyTorch"
timeout "$(left 380)" bench/compare.sh --cases vit_s16,mixer_s16 --modes train --steps 30 --warmup 5 \
  --no-jax --cuda_graph 2>&1 | tee "$OUT/graph.txt" | tail -6
cp /tmp/scenic_compare.jsonl "$OUT/graph.jsonl" 2>/dev/null

phase "table with JAX"
timeout "$(left 520)" bench/compare.sh --cases vit_fmnist,vit_ti4,vit_s16,resnet50,mixer_s16 --steps 30 \
  --warmup 5 2>&1 | tee "$OUT/table.txt" | tail -14
cp /tmp/scenic_compare.jsonl "$OUT/table.jsonl" 2>/dev/null
phase done
