#!/usr/bin/env bash
# Runs the C++ exact-matcher bench and its scipy reference on the same matrices (B=64
# cost matrices of 100 x (1..100)) and prints the speed-up over scipy (> 1: faster).
#   bench/run_matcher_bench.sh [--batch 64] [--reps 200] [--seed 2024]
# Extra flags go to both programs. The C++ side uses all of ATen's intra-op threads
# (set OMP_NUM_THREADS to change that) and also reports a 1-thread run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
BIN="$ROOT/build/scenic_matcher_bench"
[ -x "$BIN" ] || "$ROOT/scripts/build.sh" --target scenic_matcher_bench
OUT=$(mktemp)
COSTS=$(mktemp)
trap 'rm -f "$OUT" "$COSTS"' EXIT
"$BIN" --costs_out "$COSTS" "$@" | tee "$OUT"
"$PY" "$ROOT/bench/reference/matcher_scipy.py" --check "$COSTS" "$@" | tee -a "$OUT"
"$PY" - "$OUT" <<'PYEOF'
import sys
res = {}
for line in open(sys.argv[1]):
  if line.startswith('RESULT '):
    kv = dict(x.split('=', 1) for x in line.split()[1:])
    res[(kv['name'], int(kv['threads']))] = float(kv['ms'])
scipy = res[('scipy_lsa_loop', 1)]
scenic_py = res[('scipy_scenic_path', 1)]
print('\nscipy linear_sum_assignment loop: %.3f ms   (Scenic host path: %.3f ms)' % (scipy, scenic_py))
print('%-42s %8s %10s %12s' % ('C++ measurement', 'ms', 'vs scipy', 'vs Scenic'))
for (name, threads), ms in sorted(res.items()):
  if name.startswith('scipy'):
    continue
  print('%-42s %8.3f %9.1fx %11.1fx' % ('%s (%d thr)' % (name, threads), ms, scipy / ms, scenic_py / ms))
PYEOF
