#!/usr/bin/env bash
# Side-by-side step speed: `scenic bench` against a PyTorch Python eager reference
# (bench/reference/{vit,resnet,mixer}_torch.py, .venv) and a JAX/Flax jit reference
# (bench/reference/{vit,resnet,mixer}_jax.py, .venv-bench), same model, same optimizer,
# same batch size, one after the other on this machine; prints a table of examples/s
# and ratios, then one of peak memory (RSS; GPU allocator peaks on a GPU) and ratios
# (bench/compare_table.py). The default cases are the small ViTs; the 224x224 ones
# (vit_s16, resnet50, mixer_s16) take minutes per mode on a 2-core CPU.
#
#   bench/compare.sh [--cases vit_fmnist,vit_ti4,vit_s16,resnet50,mixer_s16] [--modes train,eval]
#                    [--steps N] [--warmup N] [--threads N] [--repeat R] [--no-jax] [--out F.jsonl]
#                    [--gemm_backend auto|aten,onednn]   (scenic once per backend; default auto)
#                    [--autocast bf16]   (the forward in bfloat16 under autocast: scenic's
#                                         autocast_dtype, torch.autocast; no JAX reference)
#                    [--cuda_graph]      (on a GPU: train rows of the AdamW cases, ViT and
#                                         Mixer, run scenic once more with cuda_graph: true,
#                                         shown as gemm "<backend>+graph")
#
# JAX is not in .venv (the build's and tests' environment stays torch-only): on first
# use this script makes a separate virtual environment .venv-bench and installs
# jax[cpu], flax and optax from PyPI into it. Each run's JSON lines go to --out
# (default /tmp/scenic_compare.jsonl). Other processes on the machine change the
# figures: the load average is printed before and after; compare rows of one run only.
# On a shared machine use --repeat R: every (case, mode) runs R rounds of scenic, torch,
# jax in turn and the table keeps each one's best round (the least disturbed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CASES=vit_fmnist,vit_ti4
MODES=train,eval
STEPS=10
WARMUP=3
THREADS=$(nproc)
JAX=1
REPEAT=1
OUT=/tmp/scenic_compare.jsonl
GEMM=auto
AUTOCAST=none
CUDA_GRAPH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) CASES=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --no-jax) JAX=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    --gemm_backend) GEMM=$2; shift 2 ;;
    --autocast) AUTOCAST=$2; shift 2 ;;
    --cuda_graph) CUDA_GRAPH=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

case "$AUTOCAST" in
  none) ;;
  bf16) if [ "$JAX" = 1 ]; then echo "--autocast bf16: the JAX references run float32 only; skipping JAX" >&2; JAX=0; fi ;;
  *) echo "--autocast: expected none or bf16, got '$AUTOCAST'" >&2; exit 2 ;;
esac
if [ "$CUDA_GRAPH" = 1 ] && ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "--cuda_graph: no GPU here (CUDA graphs capture CUDA work only)" >&2; exit 2
fi
[ -x build/scenic ] || scripts/build.sh --target scenic
# XLA's CPU backend sizes its own thread pool; --threads 1 pins it to one thread too
# (for other counts it keeps XLA's default, all cores). An XLA_FLAGS in the environment wins.
JAX_XLA_FLAGS=""
[ "$THREADS" = 1 ] && JAX_XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
if [ "$JAX" = 1 ] && ! .venv-bench/bin/python -c "import jax, flax, optax" 2>/dev/null; then
  echo "installing jax[cpu], flax, optax into .venv-bench (first use)" >&2
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q "jax[cpu]" flax optax
fi

# One case: the model kind, the input, the batch and the kind's sizes.
#   ViT (configs/fashion_mnist/vit.yaml's optimizer for every ViT case: AdamW wd 0.1 with
#   1-D params exempt, label smoothing 0.1, global-norm clip 1.0, lr 0.002; no dropout):
#     vit   image classes batch | patch hidden mlp heads layers stochastic-depth
#   ResNet (configs/fashion_mnist/resnet.yaml's: SGD momentum 0.9, L2 5e-4, lr 0.1):
#     resnet image classes batch | depth filters
#   Mixer (configs/fashion_mnist/mixer.yaml's: AdamW wd 0.05, label smoothing 0.1, clip
#   1.0, lr 0.002; no dropout):
#     mixer image classes batch | patch hidden layers tokens-mlp channels-mlp stochastic-depth
case_def() {
  case "$1" in
    vit_fmnist) echo "vit    1,28,28   10   128  7  128  256  4  4  0.1" ;;  # the config as it is
    vit_ti4)    echo "vit    1,28,28   10    64  4  192  768  3 12  0.0" ;;  # ViT-Ti/4 on Fashion-MNIST size
    vit_s16)    echo "vit    3,224,224 1000   8 16  384 1536  6 12  0.0" ;;  # ViT-S/16 at 224 (22,050,664 params)
    resnet50)   echo "resnet 3,224,224 1000   8 50   64" ;;                   # ResNet-50 at 224 (25,557,032)
    # Mixer-S/16 with Scenic's S sizes (imagenet_augreg_mixer_config.py: 384 / 1536 / 192,
    # 12 blocks; 15,786,136 params at 224 with 1000 classes).
    mixer_s16)  echo "mixer  3,224,224 1000   8 16  384   12 192 1536  0.0" ;;
    *) echo "unknown case '$1' (vit_fmnist, vit_ti4, vit_s16, resnet50, mixer_s16)" >&2; return 1 ;;
  esac
}

CONFIGS=scenic/projects/baselines/configs/fashion_mnist
run_case() {  # name mode
  local name=$1 mode=$2 def kind image classes batch a b c d e f
  def=$(case_def "$name") || exit 2
  read -r kind image classes batch a b c d e f <<<"$def"
  local scenic=(--json --input_shape "$image" --num_classes "$classes" --batch_size "$batch" --steps "$STEPS"
                --warmup_steps "$WARMUP" --mode "$mode" --config.num_threads="$THREADS")
  local ref=(--image "$image" --classes "$classes" --batch "$batch" --steps "$STEPS" --warmup "$WARMUP"
             --mode "$mode" --json)
  local torch_extra=()
  if [ "$AUTOCAST" = bf16 ]; then scenic+=(--config.autocast_dtype=bfloat16); torch_extra=(--autocast bf16); fi
  case "$kind" in
    vit)
      scenic+=(--config "$CONFIGS/vit.yaml" --config.model.patches.size="[$a, $a]" --config.model.hidden_size="$b"
               --config.model.mlp_dim="$c" --config.model.num_heads="$d" --config.model.num_layers="$e"
               --config.model.stochastic_depth="$f" --config.model.dropout_rate=0.0
               --config.model.attention_dropout_rate=0.0)
      ref+=(--patch "$a" --hidden "$b" --mlp "$c" --heads "$d" --layers "$e" --stochastic_depth "$f"
            --label_smoothing 0.1 --weight_decay 0.1 --max_grad_norm 1.0 --lr 0.002) ;;
    resnet)
      scenic+=(--config "$CONFIGS/resnet.yaml" --config.num_layers="$a" --config.num_filters="$b")
      ref+=(--depth "$a" --filters "$b" --momentum 0.9 --l2_decay_factor 0.0005 --lr 0.1) ;;
    mixer)
      scenic+=(--config "$CONFIGS/mixer.yaml" --config.model.patch_size="[$a, $a]" --config.model.hidden_size="$b"
               --config.model.num_layers="$c" --config.model.sequence_mlp_dim="$d"
               --config.model.channels_mlp_dim="$e" --config.model.stochastic_depth="$f"
               --config.model.dropout_rate=0.0)
      ref+=(--patch "$a" --hidden "$b" --layers "$c" --tokens_mlp "$d" --channels_mlp "$e" --stochastic_depth "$f"
            --label_smoothing 0.1 --weight_decay 0.05 --max_grad_norm 1.0 --lr 0.002) ;;
  esac
  local tag="{\"case\": \"$name\", \"mode\": \"$mode\", \"autocast\": \"$AUTOCAST\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\"}"
  echo "== $name $mode (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  for g in ${GEMM//,/ }; do
    build/scenic bench "${scenic[@]}" --config.gemm_backend="$g" |
      python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads('$tag')); r['impl']='scenic'; print(json.dumps(r))" >>"$OUT"
    # The step captured as a CUDA graph (cuda_graph_step.h; AdamW cases only).
    if [ "$CUDA_GRAPH" = 1 ] && [ "$mode" = train ] && [ "$kind" != resnet ]; then
      build/scenic bench "${scenic[@]}" --config.gemm_backend="$g" --config.cuda_graph=true |
        python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads('$tag')); r['impl']='scenic'; r['gemm_backend'] += '+graph'; print(json.dumps(r))" >>"$OUT"
    fi
  done
  .venv/bin/python "bench/reference/${kind}_torch.py" "${ref[@]}" "${torch_extra[@]}" --threads "$THREADS" |
    python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads('$tag')); print(json.dumps(r))" >>"$OUT"
  if [ "$JAX" = 1 ]; then
    XLA_FLAGS="${XLA_FLAGS:-$JAX_XLA_FLAGS}" .venv-bench/bin/python "bench/reference/${kind}_jax.py" "${ref[@]}" |
      python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(json.loads('$tag')); print(json.dumps(r))" >>"$OUT"
  fi
}

: >"$OUT"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; threads $THREADS; autocast $AUTOCAST" >&2
for c in ${CASES//,/ }; do
  for m in ${MODES//,/ }; do
    for _ in $(seq "$REPEAT"); do run_case "$c" "$m"; done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 bench/compare_table.py "$OUT"
