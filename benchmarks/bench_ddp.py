"""Data-parallel fine-tuning (``strategy="ddp"``): two gloo processes on the CPU vs one.

The same fit (same data, seed and global batch) in one process and in a process group of
two started by ``torch.multiprocessing.spawn`` (what ``torchrun`` does), one thread per
process. Reported: the mean epoch time of the unfrozen phase (skorch's ``dur``, rank 0),
the whole ``fit`` (probe included), their ratios, and how far the two loss curves lie
apart. Two workloads: EfficientNet-Lite0 (ImageNet weights, packaged) on 256 real
Fashion-MNIST images at 64 px (compute-bound), and a small MLP on sklearn's wine table
(communication-bound: a step is a few microseconds of arithmetic). ``cache=False``, so
that neither run reads features the other extracted.

    OMP_NUM_THREADS=1 python benchmarks/bench_ddp.py [--quick]

On a machine with idle cores, the images' epoch should take about half as long with two
processes; on 2 cores shared with other jobs it will not.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import socket
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bench_scaling import images  # the same stratified Fashion-MNIST sample
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier


def workload(name: str, quick: bool):
    """(X, y, estimator parameters, description) of a named workload."""
    if name == "images":
        n = 64 if quick else 256
        X, y, data = images(n)
        params = dict(backbone="efficientnet_lite0", image_size=64, max_epochs=1 if quick else 3)
        return X, y, params, f"EfficientNet-Lite0, {n} {data} images at 64 px"
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    params = dict(backbone=nn.Sequential(nn.LazyLinear(16), nn.ReLU()))
    if quick:
        params["max_epochs"] = 5
    return X, y, params, f"MLP(16) on wine, {len(X)} rows"


def fit(name: str, quick: bool, strategy=None) -> dict:
    X, y, params, _ = workload(name, quick)
    if strategy == "ddp":
        dist.barrier()  # the clock starts when both processes are ready, not at spawn
    t0 = time.perf_counter()
    clf = FineTuneClassifier(random_state=0, cache=False, strategy=strategy, **params).fit(X, y)
    wall = time.perf_counter() - t0
    epochs = [h for h in clf.history_ if h["phase"] == "all"]
    return {
        "fit": wall,
        "epoch": float(np.mean([h["dur"] for h in epochs])),
        "losses": np.array([h["train_loss"] for h in epochs]),
        "rows": len(X),
    }


def _rank(rank: int, world: int, port: int, name: str, quick: bool, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}"
    )
    try:
        result = fit(name, quick, strategy="ddp")
    finally:
        dist.destroy_process_group()
    if rank == 0:
        with open(out, "wb") as f:
            pickle.dump(result, f)


def in_group(name: str, quick: bool, world: int = 2) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pkl")
        t0 = time.perf_counter()
        mp.spawn(_rank, args=(world, port, name, quick, out), nprocs=world)
        total = time.perf_counter() - t0
        with open(out, "rb") as f:
            result = pickle.load(f)
    result["with start-up"] = total
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread per process, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    header = [
        "workload",
        "processes",
        "epoch s",
        "epoch ratio 2/1",
        "fit s",
        "fit ratio 2/1",
        "wall s incl. start-up",
        "max rel. loss gap",
    ]
    rows = []
    for name in ("images", "mlp"):
        one = fit(name, args.quick)
        two = in_group(name, args.quick)
        gap = float(np.max(np.abs(two["losses"] - one["losses"]) / np.abs(one["losses"])))
        desc = workload(name, args.quick)[3]
        rows.append([desc, "1", f"{one['epoch']:.3f}", "", f"{one['fit']:.1f}", "", "", ""])
        rows.append(
            [
                "",
                "2 (gloo)",
                f"{two['epoch']:.3f}",
                f"{two['epoch'] / one['epoch']:.2f}",
                f"{two['fit']:.1f}",
                f"{two['fit'] / one['fit']:.2f}",
                f"{two['with start-up']:.1f}",
                f"{gap:.1e}",
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for i, r in enumerate([header, *rows]):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.exit(main())
