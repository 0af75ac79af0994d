#!/usr/bin/env bash
# The main job: set-up, build, then train the default config (ViT on Fashion-MNIST)
# and print the final test accuracy. Extra arguments go to `scenic train`, e.g.
#   scripts/run.sh --config.num_training_epochs=1
# CONFIG and WORKDIR may be set in the environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${CONFIG:-$ROOT/scenic/projects/baselines/configs/fashion_mnist/vit.yaml}"
WORKDIR="${WORKDIR:-$ROOT/runs/fashion_mnist_vit_$(date +%Y%m%d_%H%M%S)}"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh" --target scenic
start=$(date +%s)
"$ROOT/build/scenic" train --config "$CONFIG" --workdir "$WORKDIR" "$@"
end=$(date +%s)
acc=$(grep '"split":"test"' "$WORKDIR/metrics.jsonl" | tail -n 1 | sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/')
printf 'test accuracy: %.4f  (training took %d s; workdir %s)\n' "$acc" "$((end - start))" "$WORKDIR"
