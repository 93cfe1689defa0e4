"""Time the transferability scores at the scale of a real model comparison.

N = 10,000 target samples and D = 2,048 features (a ResNet-50's pooled output),
10 classes, random float32 features as a backbone would return them. Prints the
median of 3 runs per score, plus the BLAS thread count, which the timings scale
with.

    python benchmarks/bench_logme.py [--n 10000] [--d 2048] [--classes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from sktransfer.transferability import hscore, logme_score


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    return ", ".join(
        f"{pool['internal_api']} x{pool['num_threads']}"
        for pool in threadpool_info()
        if pool["user_api"] == "blas"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=2_048)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    features = rng.standard_normal((args.n, args.d), dtype=np.float32)
    y = rng.integers(0, args.classes, args.n)

    cases = [
        ("logme_score", lambda: logme_score(features, y)),
        ("hscore", lambda: hscore(features, y)),
        ("hscore(shrinkage='auto')", lambda: hscore(features, y, shrinkage="auto")),
    ]
    print(
        f"N={args.n}, D={args.d}, {args.classes} classes, median of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"BLAS {_blas_threads()}"
    )
    print(f"{'score':<26}{'seconds':>10}{'value':>12}")
    for name, fn in cases:
        seconds, value = _median_seconds(fn, args.repeats)
        print(f"{name:<26}{seconds:>10.3f}{value:>12.4f}")


if __name__ == "__main__":
    main()
