"""Throughput against cores: images per second at 1 and 2 torch threads (issue 24, item 4).

Three things a user waits for, on real Fashion-MNIST images (sklearn's digits when Debian's
``dataset-fashion-mnist`` is absent), EfficientNet-Lite0 at the default 160 px for small
images:

``extract``  ``PretrainedFeatures(backbone, cache=False).transform`` of N arrays
``epoch``    one epoch of the unfrozen phase, ``FineTuneClassifier.partial_fit`` on N rows
             (the estimator fitted once beforehand, not timed)
``files``    ``PretrainedFeatures(cache=False, num_workers=w).transform`` of N PNG paths at
             w = 0 and 2 data-loader workers (decoding in other processes), at the most
             threads asked for

Each is timed at every thread count in turn, ``--rounds`` times, interleaved in one process
(1, 2, 1, 2, ...), so the ratios share the machine's state; the table gives the median
images per second and the speed-up over the first thread count. Quote the ratios: they
are only as good as the machine is quiet (look at the load average printed first).

    python benchmarks/bench_threads.py [--n 256] [--threads 1,2] [--rounds 3] [--quick]

``--quick``: 32 images at 32 px, one round (the test suite checks that it runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scaling import images, write_pngs  # noqa: E402

from sktransfer import FineTuneClassifier, PretrainedFeatures  # noqa: E402

BACKBONE = "efficientnet_lite0"


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def measure(n: int, threads: list[int], rounds: int, quick: bool) -> dict:
    """{(what, setting): [seconds per round]} and the data set's name."""
    X, y, name = images(n)
    size = {"image_size": 32} if quick else {}
    extractor = PretrainedFeatures(BACKBONE, cache=False, **size).fit(X[:2])
    clf = FineTuneClassifier(BACKBONE, max_epochs=1, random_state=0, **size).fit(X, y)
    times: dict = {}
    with tempfile.TemporaryDirectory() as root:
        paths = write_pngs(n, root)  # the same n images, as PNG files
        loaders = {
            w: PretrainedFeatures(BACKBONE, cache=False, num_workers=w, **size).fit(paths[:2])
            for w in (0, 2)
        }
        for _ in range(rounds):
            for t in threads:
                torch.set_num_threads(t)
                times.setdefault(("extract", t), []).append(_timed(extractor.transform, X))
                times.setdefault(("epoch", t), []).append(_timed(clf.partial_fit, X, y))
            torch.set_num_threads(max(threads))
            for w, pf in loaders.items():
                times.setdefault(("files", w), []).append(_timed(pf.transform, paths))
    return {"times": times, "dataset": name, "n": n}


def table(result: dict, threads: list[int]) -> str:
    n, times = result["n"], result["times"]
    lines = [
        "| what | setting | images/s (median) | speed-up | seconds per round |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for what, settings, label in (
        ("extract", threads, "{} thread(s)"),
        ("epoch", threads, "{} thread(s)"),
        ("files", (0, 2), f"{{}} workers, {max(threads)} thread(s)"),
    ):
        base = None
        for s in settings:
            secs = times[(what, s)]
            rate = n / statistics.median(secs)
            base = base or rate
            lines.append(
                f"| {what} | {label.format(s)} | {rate:.1f} | {rate / base:.2f}x | "
                + " / ".join(f"{v:.2f}" for v in secs)
                + " |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t]
    if args.quick:
        args.n, args.rounds = 32, 1
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores", flush=True)
    result = measure(args.n, threads, args.rounds, args.quick)
    print(f"{result['dataset']}, N={result['n']}, {BACKBONE}, {args.rounds} rounds")
    print(table(result, threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
