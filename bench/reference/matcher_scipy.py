#!/usr/bin/env python3
"""scipy reference for bench/matcher_bench.cc: the same B cost matrices of 100 x m_b
(m_b in 1..100, same splitmix64 recipe and seed), timed two ways:

  scipy_lsa_loop      for each element: scipy.optimize.linear_sum_assignment(c_b) on a
                      prepared contiguous float64 [100, m_b] array (scipy's best case);
  scipy_scenic_path   what Scenic's hungarian_matcher does on the host for a padded
                      [B, 100, 100] batch with n_cols: slice the real columns, run
                      linear_sum_assignment on the transposed slice, pair the padded
                      columns with unmatched rows, stack.

With --check FILE (one optimal cost a line, written by matcher_bench --costs_out) it
asserts that scipy's optimal costs equal the C++ ones, so both solved the same problems.
Prints "RESULT name=... ms=..." lines (median over reps, and the minimum).
"""
import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def uniform(seed, n, start=0):
  with np.errstate(over='ignore'):
    k = np.arange(start + 1, start + n + 1, dtype=np.uint64)
    z = np.uint64(seed) + k * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    z = z ^ (z >> np.uint64(31))
  return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def timed(reps, fn):
  for _ in range(3):
    fn()
  ms = []
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    ms.append((time.perf_counter() - t0) * 1e3)
  ms.sort()
  return ms[len(ms) // 2], ms[0]


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--rows', type=int, default=100)
  p.add_argument('--max_cols', type=int, default=100)
  p.add_argument('--reps', type=int, default=200)
  p.add_argument('--seed', type=int, default=2024)
  p.add_argument('--check', default=None)
  a = p.parse_args()

  ms_per = (1 + np.floor(uniform(a.seed, a.batch) * a.max_cols)).astype(np.int64)
  mats = [uniform(a.seed + 1 + b, a.rows * m).reshape(a.rows, m) for b, m in enumerate(ms_per)]
  padded = np.full((a.batch, a.rows, a.max_cols), 10.0)
  for b, c in enumerate(mats):
    padded[b, :, :c.shape[1]] = c

  if a.check:
    want = [float(line) for line in open(a.check)]
    for b, c in enumerate(mats):
      r, col = linear_sum_assignment(c)
      got = float(c[r, col].sum())
      assert abs(got - want[b]) <= 1e-5, (b, got, want[b])  # C++ prints 6 decimals

  def lsa_loop():
    for c in mats:
      linear_sum_assignment(c)

  def scenic_path():
    eye = np.eye(a.rows, dtype=bool)
    out = []
    for b in range(a.batch):
      present = max(int(ms_per[b]), 1)
      col_ind, row_ind = linear_sum_assignment(padded[b, :, :present].T)
      unmatched = np.where(~eye[row_ind].max(axis=0))[0][:a.max_cols - present]
      out.append(np.stack([np.concatenate([row_ind, unmatched]),
                           np.concatenate([col_ind, np.arange(present, a.max_cols)])]))
    return np.stack(out)

  for name, fn in (('scipy_lsa_loop', lsa_loop), ('scipy_scenic_path', scenic_path)):
    med, mn = timed(a.reps, fn)
    print(f'RESULT name={name} threads=1 ms={med:.4f} min_ms={mn:.4f}', flush=True)


if __name__ == '__main__':
  main()
