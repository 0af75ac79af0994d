#!/usr/bin/env python3
"""The tables `bench/compare.sh` prints, from its JSON lines (one per run of an
implementation: `scenic bench --json`, bench/reference/*_torch.py, *_jax.py, each with
the case and mode added).

    python3 bench/compare_table.py ROWS.jsonl

Speed: per (case, mode), each implementation's best round (the least disturbed; scenic
once per gemm_backend), examples/s and scenic / other (> 1: scenic faster), the
parameter counts (MISMATCH if they differ), scenic's step-time spread and achieved
GFLOP/s. Memory: the peak RSS of the same rounds and scenic / other (< 1: scenic uses
less), and on a GPU the allocators' peaks. Standard library only.
"""
import json
import sys


def impl_key(r):
    """One key per implementation; scenic once per gemm_backend."""
    return r["impl"] + (":" + r["gemm_backend"] if r["impl"] == "scenic" else "")


def best_rounds(rows):
    """{(case, mode): {impl key: its fastest row}}, and {(case, mode): torch rounds}."""
    by, rounds = {}, {}
    for r in rows:
        k = (r["case"], r["mode"])
        d = by.setdefault(k, {})
        rounds[k] = rounds.get(k, 0) + (r["impl"] == "torch_eager")
        if impl_key(r) not in d or r["examples_per_sec"] > d[impl_key(r)]["examples_per_sec"]:
            d[impl_key(r)] = r
    return by, rounds


def speed_table(by, rounds):
    out = [f"{'case':<11}{'mode':<6}{'gemm':<11}{'batch':>6}{'params':>12}{'scenic ex/s':>13}{'torch ex/s':>12}"
           f"{'jax ex/s':>10}{'vs torch':>10}{'vs jax':>8}{'scenic ms p10/50/p90':>24}{'GFLOP/s (peak %)':>18}"
           f"{'load':>6}{'rounds':>7}"]
    for (case, mode), d in by.items():
        t, j = d.get("torch_eager"), d.get("jax_jit")
        params = {r["num_params"] for r in d.values()}
        ptxt = str(next(iter(params))) if len(params) == 1 else "MISMATCH " + "/".join(
            str(r["num_params"]) for r in d.values())
        for key in sorted(k for k in d if k.startswith("scenic")) or ["scenic:-"]:
            s = d.get(key)
            f = lambda r: f"{r['examples_per_sec']:.1f}" if r else "-"
            ratio = lambda r: f"{s['examples_per_sec'] / r['examples_per_sec']:.2f}" if (r and s) else "-"
            ms = f"{s['ms_p10']:.1f}/{s['ms_median']:.1f}/{s['ms_p90']:.1f}" if s else "-"
            gf = f"{s['achieved_gflops']:.1f} ({100 * s.get('peak_fraction', 0):.0f}%)" if s else "-"
            out.append(f"{case:<11}{mode:<6}{key.split(':')[1]:<11}{s['batch_size'] if s else '-':>6}{ptxt:>12}"
                       f"{f(s):>13}{f(t):>12}{f(j):>10}{ratio(t):>10}{ratio(j):>8}{ms:>24}{gf:>18}"
                       f"{(s or t or j)['load']:>6}{rounds[(case, mode)]:>7}")
    return out


def memory_table(by):
    """Peak RSS of each process over the timed steps (VmHWM, reset after the warm-up in
    all three) and, where any row ran on a GPU, the allocator peaks."""
    gpu_of = lambda r: r.get("gpu_peak_allocated_mib", -1) if r else -1
    gpu = any(gpu_of(r) >= 0 for d in by.values() for r in d.values())
    out = ["peak memory, MiB (scenic / other < 1: scenic uses less)",
           f"{'case':<11}{'mode':<6}{'gemm':<11}{'scenic RSS':>12}{'torch RSS':>11}{'jax RSS':>9}{'vs torch':>10}"
           f"{'vs jax':>8}" + (f"{'scenic GPU':>12}{'torch GPU':>11}{'jax GPU*':>10}{'vs torch':>10}" if gpu else "")]
    for (case, mode), d in by.items():
        t, j = d.get("torch_eager"), d.get("jax_jit")
        for key in sorted(k for k in d if k.startswith("scenic")):
            s = d[key]
            rss = lambda r: f"{r['peak_rss_mib']:.0f}" if r else "-"
            ratio = lambda r: f"{s['peak_rss_mib'] / r['peak_rss_mib']:.2f}" if r and r["peak_rss_mib"] > 0 else "-"
            line = (f"{case:<11}{mode:<6}{key.split(':')[1]:<11}{rss(s):>12}{rss(t):>11}{rss(j):>9}"
                    f"{ratio(t):>10}{ratio(j):>8}")
            if gpu:
                g = lambda r: f"{gpu_of(r):.0f}" if gpu_of(r) >= 0 else "-"
                gr = f"{gpu_of(s) / gpu_of(t):.2f}" if gpu_of(s) > 0 and gpu_of(t) > 0 else "-"
                line += f"{g(s):>12}{g(t):>11}{g(j):>10}{gr:>10}"
            out.append(line)
    if gpu:
        out.append("* JAX's GPU peak covers the whole run (XLA's allocator cannot reset it); ours and PyTorch's "
                   "the timed steps")
    return out


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    if not rows:
        sys.exit(f"compare_table: no rows in {path}")
    by, rounds = best_rounds(rows)
    lines = speed_table(by, rounds) + [""] + memory_table(by)
    if any(r.get("autocast") == "bf16" for r in rows):
        lines.append("autocast bf16: scenic and torch run the forward in bfloat16 (float32 weights, gradients, "
                     "optimizer)")
    for g in sorted({r["gemm_backend"] for r in rows if r["impl"] == "scenic"}):
        s = next(r for r in rows if r["impl"] == "scenic" and r["gemm_backend"] == g)
        lines.append(f"scenic ({g}): {s['threads']} threads; fp32 matmul peak measured on {g} "
                     f"{s['matmul_gflops']:.1f} GFLOP/s (multiply-add = 1 FLOP); every row is in {path}")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: compare_table.py ROWS.jsonl")
    main(sys.argv[1])
