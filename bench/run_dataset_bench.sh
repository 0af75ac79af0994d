#!/usr/bin/env bash
# Runs the C++ input-pipeline bench and its PyTorch reference on the same files and
# prints a ratio table (scenic / torch; > 1 means scenic is faster).
#   bench/run_dataset_bench.sh [--workers 1,2] [--batches 24] [--images 256]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKERS=1,2; BATCHES=24; IMAGES=256
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
JPEGS=/tmp/scenic_bench/jpeg
PY="$ROOT/.venv/bin/python"
BIN="$ROOT/build/scenic_dataset_bench"
[ -x "$BIN" ] || "$ROOT/scripts/build.sh" --target scenic_dataset_bench
"$PY" "$ROOT/bench/reference/dataset_torch.py" --jpeg_dir "$JPEGS" --make_jpegs "$IMAGES" --skip_run
OUT=$(mktemp)
OMP_NUM_THREADS=1 "$BIN" --jpeg_dir "$JPEGS" --workers "$WORKERS" --batches "$BATCHES" | tee "$OUT"
OMP_NUM_THREADS=1 "$PY" "$ROOT/bench/reference/dataset_torch.py" --jpeg_dir "$JPEGS" \
  --workers "$WORKERS" --batches "$BATCHES" | tee -a "$OUT"
"$PY" - "$OUT" <<'PYEOF'
import sys
rows = []
for line in open(sys.argv[1]):
  if line.startswith('RESULT '):
    rows.append(dict(kv.split('=', 1) for kv in line.split()[1:]))
def get(impl, bench, key, **kw):
  for r in rows:
    if r['impl'] == impl and r['bench'] == bench and all(r.get(k) == str(v) for k, v in kw.items()):
      return float(r[key])
print()
print(f"{'measurement':<38}{'scenic':>10}{'torch':>10}{'ratio':>8}")
for r in rows:
  if r['impl'] == 'scenic' and r['bench'] == 'jpeg224':
    w = r['workers']
    s, t = float(r['per_worker']), get('torch', 'jpeg224', 'per_worker', workers=w)
    print(f"{'jpeg224 examples/s per worker, w=' + w:<38}{s:>10.1f}{t:>10.1f}{s / t:>8.2f}")
s = get('scenic', 'fashion_mnist', 'batches_per_s')
for w in (0, 1):
  t = get('torch', 'fashion_mnist', 'batches_per_s', workers=w)
  print(f"{'fashion_mnist batches/s (torch w=' + str(w) + ')':<38}{s:>10.1f}{t:>10.1f}{s / t:>8.2f}")
PYEOF
rm -f "$OUT"
