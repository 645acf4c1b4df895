"""False decisions of `tfxline release compare`'s sequential test under peeking, beside a naive repeated z-test.

10,000 simulated A/A experiments (stable and canary equally good: each request right with probability 0.8,
routed 50/50), each checked every 1,000 requests up to 10,000: how often does a test ever say "canary
differs"? The mSPRT (monitoring/sequential.py, the command's own code, with its 100-per-arm minimum) is
checked at the same looks and also after every request (the command's always-valid p-value, which takes the
minimum over every request so far); the naive test is a two-proportion z-test at alpha 0.05 at each look;
the fixed-horizon z-test looks once, at the end. The same tests on A/B experiments (0.80 against 0.83) give
how often each finds a real difference within the 10,000 requests.

    .venv/bin/python -m benchmarks.ab_benchmark [--experiments 10000] [--no-write]
"""
import argparse
import math
import time
from pathlib import Path
from typing import Dict

import numpy as np
from scipy import stats

from benchmarks.report import write_section
from monitoring import sequential

ALPHA = 0.05
LOOK_EVERY, REQUESTS = 1_000, 10_000
MIN_EACH = 100


def _experiment(rng, p_stable: float, p_canary: float):
    stable_first = rng.random(REQUESTS) < 0.5
    right = rng.random(REQUESTS) < np.where(stable_first, p_stable, p_canary)
    return stable_first, right.astype(np.float64)


def _decisions(stable_first: np.ndarray, right: np.ndarray) -> Dict[str, bool]:
    """Whether each test ever said "differs" in this experiment."""
    stable, canary = right[stable_first], right[~stable_first]
    looks = np.arange(LOOK_EVERY, REQUESTS + 1, LOOK_EVERY)
    n_s = np.cumsum(stable_first)[looks - 1].astype(np.float64)
    n_c = looks - n_s
    hits_s = np.cumsum(right * stable_first)[looks - 1]
    hits_c = np.cumsum(right * ~stable_first)[looks - 1]
    mean_s, mean_c = hits_s / n_s, hits_c / n_c
    var_s, var_c = mean_s * (1 - mean_s) * n_s / (n_s - 1), mean_c * (1 - mean_c) * n_c / (n_c - 1)
    pooled = (hits_s + hits_c) / looks
    ready = (n_s >= MIN_EACH) & (n_c >= MIN_EACH)
    # mSPRT at the looks, with the command's mixture: (MIXTURE_SD x the pooled SD so far)^2.
    variance = var_s / n_s + var_c / n_c
    tau2 = sequential.MIXTURE_SD ** 2 * pooled * (1 - pooled) * looks / (looks - 1)
    valid = ready & (variance > 0)
    log_lambda = sequential.log_mixture_ratio(mean_c[valid] - mean_s[valid], variance[valid], tau2[valid])
    msprt_looks = bool(valid.any() and log_lambda.max() >= math.log(1 / ALPHA))
    # Two-proportion z-test (pooled variance) at each look, and once at the end.
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_s + 1 / n_c))
    z = np.where(se > 0, (mean_c - mean_s) / np.where(se > 0, se, 1), 0.0)
    critical = stats.norm.ppf(1 - ALPHA / 2)
    every_request = sequential.always_valid_p(stable, canary, stable_first, min_each=MIN_EACH) < ALPHA
    return {"msprt_looks": msprt_looks, "msprt_every": bool(every_request),
            "naive": bool((np.abs(z[ready]) > critical).any()), "fixed": bool(abs(z[-1]) > critical)}


def _rates(experiments: int, p_stable: float, p_canary: float, seed: int) -> Dict[str, float]:
    rng = np.random.default_rng(seed)
    counts = {"msprt_looks": 0, "msprt_every": 0, "naive": 0, "fixed": 0}
    for _ in range(experiments):
        for name, differs in _decisions(*_experiment(rng, p_stable, p_canary)).items():
            counts[name] += differs
    return {name: count / experiments for name, count in counts.items()}


def _interval(rate: float, n: int) -> str:
    low, high = stats.beta.ppf([0.025, 0.975], rate * n + 0.5, (1 - rate) * n + 0.5)
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    null = _rates(args.experiments, 0.8, 0.8, seed=1)
    power = _rates(max(args.experiments // 10, 100), 0.80, 0.83, seed=2)
    seconds = time.perf_counter() - started
    names = {"msprt_looks": "mSPRT (tfxline), every 1,000 requests",
             "msprt_every": "mSPRT (tfxline), after every request",
             "naive": "naive z-test, every 1,000 requests", "fixed": "z-test once, at 10,000 requests"}
    rows = ["| test | false \"canary differs\" in A/A [95% CI] | 0.80 vs 0.83 found within 10,000 requests |",
            "|---|---:|---:|"]
    for key, label in names.items():
        rows.append(f"| {label} | {100 * null[key]:.2f}% {_interval(null[key], args.experiments)} | "
                    f"{100 * power[key]:.1f}% |")
    body = (f"{args.experiments:,} simulated A/A experiments (both versions right on 80% of requests, a 50/50 "
            f"split), each looked at every {LOOK_EVERY:,} requests up to {REQUESTS:,}, alpha {ALPHA:g}; the "
            f"last column from {max(args.experiments // 10, 100):,} A/B experiments (80% against 83%). "
            f"Simulation only (no server): {seconds:.0f} s.\n\n" + "\n".join(rows) + "\n")
    print(body)
    if not args.no_write:
        write_section(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "ab",
                      "A/B decisions under peeking", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
