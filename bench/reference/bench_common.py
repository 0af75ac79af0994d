"""Timing and reporting shared by the bench/reference scripts (no framework imports).

Every reference times its step the way `scenic bench` does: `warmup` untimed steps, then
each of `steps` steps timed on its own (the caller's `step` blocks until its results are
ready); examples/s = steps x batch / total time; the peak RSS is the VmHWM after
resetting it once the warm-up is done. `report` prints one JSON object (the fields
compare.sh reads) or a short table.
"""
import json
import os
import time


def add_common_args(p):
    """The flags every reference takes from compare.sh (input, batch, step counts, optimizer basics)."""
    ints = lambda s: tuple(int(v) for v in s.split(","))
    p.add_argument("--image", type=ints, default=(3, 224, 224), help="C,H,W")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--label_smoothing", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max_grad_norm", type=float, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mode", choices=["train", "eval"], default="train")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (JAX: set by XLA_FLAGS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def percentile(sorted_values, q):  # numpy's linear percentile
    pos = q / 100.0 * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def time_steps(step, warmup, steps, after_warmup=None):
    """Runs `step` warmup times, then `steps` times each timed alone; returns (ms list, peak RSS MiB).

    `after_warmup`, if given, runs once between the two (a framework resetting its own
    peak-memory counter, as the RSS one is reset there)."""
    for _ in range(warmup):
        step()
    reset_peak_rss()
    if after_warmup is not None:
        after_warmup()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times, peak_rss_mib()


def report(impl, mode, batch, num_params, times, rss, as_json, **extra):
    total = sum(times)
    times = sorted(times)
    result = {"impl": impl, "mode": mode, "batch_size": batch, "steps": len(times), "num_params": num_params,
              "examples_per_sec": batch * len(times) / (total / 1000.0), "ms_median": percentile(times, 50),
              "ms_p10": percentile(times, 10), "ms_p90": percentile(times, 90), "peak_rss_mib": rss}
    result.update(extra)
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:18s} {v}")
    return result
