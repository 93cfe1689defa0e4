"""Scaling out: parallel searches that share one extraction, and embedding on a Dask cluster.

(a) ``GridSearchCV`` over ``FeatureTransferClassifier("efficientnet_lite0", image_size=64)``
    on 300 real Fashion-MNIST images (sklearn's digits when Debian's
    ``dataset-fashion-mnist`` is absent), 3 candidates x 3 folds, at ``n_jobs=1`` and
    ``n_jobs=2``, each from a cold cache (a fresh cache directory, fresh worker
    processes, empty memory). Also ``n_jobs=2`` with the cache in memory only, which is
    what every worker had before the shared disk cache. Once with the default head
    (LogisticRegression, cheap), once with ``HistGradientBoostingClassifier`` (expensive).
(b) 5,000 image files (PNG, written to a temporary directory) embedded by
    ``PretrainedFeatures`` over a Dask Bag on a 2-worker ``LocalCluster`` vs one process:
    wall time and peak resident memory of each worker process.

    python benchmarks/bench_scaling.py [--quick] [--only ab]

Run with OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 for stable figures on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from joblib.externals.loky import get_reusable_executor
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV

from sktransfer import FeatureTransferClassifier, PretrainedFeatures, feature_cache
from sktransfer.datasets import load_fashion_mnist
from sktransfer.features import _templates


def images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` real grey images (N, 28, 28) uint8, stratified by class, and their labels."""
    try:
        X, y = load_fashion_mnist("train")
        name = "Fashion-MNIST"
    except FileNotFoundError:
        from sklearn.datasets import load_digits

        d = load_digits()
        X, y = (d.images * (255 / 16)).round().astype(np.uint8), d.target
        name = "digits (Fashion-MNIST not installed)"
    rng = np.random.RandomState(0)
    per_class = -(-n // 10)  # enough for any n; the same rows as n // 10 when n is a multiple
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
    idx = rng.permutation(idx)[:n]
    return X[idx], y[idx], name


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate([header, *rows]):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _cold(cache_dir: str) -> None:
    """A cold start: no worker processes, an empty memory cache, an empty cache directory."""
    get_reusable_executor().shutdown(wait=True)
    feature_cache.clear()
    _templates.clear()
    os.environ["SKTRANSFER_CACHE_DIR"] = cache_dir  # inherited by the workers started next


# --------------------------------------------------------------------------- (a)


def _import_all() -> None:
    import sklearn.ensemble  # noqa: F401
    import timm  # noqa: F401

    import sktransfer  # noqa: F401

    time.sleep(0.5)  # long enough that every worker gets one


def _start_workers(n_jobs: int) -> list:
    """Start the loky workers (importing torch, timm, sktransfer) before the clock runs;
    their psutil handles, for their CPU time."""
    import psutil
    from joblib import Parallel, delayed

    if n_jobs == 1:
        return []
    Parallel(n_jobs=n_jobs)(delayed(_import_all)() for _ in range(2 * n_jobs))
    return [p for p in psutil.Process().children() if "LokyProcess" in " ".join(p.cmdline())]


def _cpu_seconds(workers) -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime + sum(sum(w.cpu_times()[:2]) for w in workers)


def bench_search(n: int, cv: int, repeats: int) -> None:
    X, y, name = images(n)
    heads = {
        "LogisticRegression (default)": (None, {"head__C": [0.1, 1.0, 10.0]}, repeats),
        "HistGradientBoosting": (
            HistGradientBoostingClassifier(max_iter=50, random_state=0),
            {"head__learning_rate": [0.05, 0.1, 0.2]},
            1,
        ),
    }
    runs = (
        ("1 process", 1, "fresh"),
        ("2 processes, shared disk cache", 2, "fresh"),
        # An unwritable directory: each worker caches in its own memory only, as before.
        ("2 processes, memory cache only", 2, "blocked"),
    )
    rows = []
    with tempfile.TemporaryDirectory() as root:
        blocked = os.path.join(root, "a-file")
        open(blocked, "w").close()
        for head_name, (head, grid, reps) in heads.items():
            scores, first = {}, True
            for rep in range(reps):  # interleaved, so that the machine's load hits all runs
                for i, (label, n_jobs, where) in enumerate(runs):
                    fresh = os.path.join(root, f"{head_name[:4]}-{rep}-{i}")
                    _cold(fresh if where == "fresh" else os.path.join(blocked, "cache"))
                    t_start = time.perf_counter()
                    workers = _start_workers(n_jobs)
                    clf = FeatureTransferClassifier("efficientnet_lite0", image_size=64, head=head)
                    search = GridSearchCV(clf, grid, cv=cv, n_jobs=n_jobs)
                    cpu0, t0 = _cpu_seconds(workers), time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # the unwritable directory
                        search.fit(X, y)
                    wall = time.perf_counter() - t0
                    cpu = _cpu_seconds(workers) - cpu0
                    scores[label] = search.cv_results_["mean_test_score"]
                    rows.append(
                        [
                            head_name if first else "",
                            label,
                            str(rep + 1),
                            f"{wall + t0 - t_start:.1f}",
                            f"{wall:.1f}",
                            f"{cpu:.1f}",
                            f"{search.best_score_:.3f}",
                        ]
                    )
                    first = False
            same = all(np.allclose(v, scores["1 process"]) for v in scores.values())
            print(f"  {head_name}: all runs give the same CV scores: {same}", flush=True)
    get_reusable_executor().shutdown(wait=True)
    table(
        f"(a) GridSearchCV, {n} {name} images at 64 px, EfficientNet-Lite0, 3 candidates x "
        f"{cv} folds; every run from a cold cache (fresh directory, fresh worker processes)",
        [
            "head",
            "run",
            "repeat",
            "wall s, incl. worker start",
            "wall s, search only",
            "CPU s, all processes",
            "best CV accuracy",
        ],
        rows,
    )


# --------------------------------------------------------------------------- (b)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def _embed(paths, features):
    return [features.transform(list(paths))]


def write_pngs(n: int, root: str) -> list[str]:
    X, _, name = images(max(n, 10))
    X = np.concatenate([X] * (n // len(X) + 1))[:n]
    paths = []
    for i, img in enumerate(X):
        p = os.path.join(root, f"{i:05d}.png")
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def in_one_process(paths_file: str, image_size: int) -> None:
    """Child process: embed the files, print seconds and memory as JSON."""
    with open(paths_file) as fh:
        paths = fh.read().split("\n")
    pf = PretrainedFeatures("efficientnet_lite0", image_size=image_size, cache=False)
    pf.fit(paths[:1])
    before = _rss_mb()
    t0 = time.perf_counter()
    Z = pf.transform(paths)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "before": before,
                "peak": _peak_rss_mb(),
                "shape": list(Z.shape),
                "sum": float(Z.sum()),
            }
        )
    )


def _on_cluster(paths, image_size, partition_size):
    """Embed ``paths`` on a fresh 2-worker LocalCluster: seconds, RSS before, peak RSS, Z."""
    import dask.bag as db
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    with cluster, Client(cluster) as client:
        pf = PretrainedFeatures("efficientnet_lite0", image_size=image_size, cache=False)
        pf.fit(paths[:1])
        client.run(lambda: __import__("sktransfer") and None)  # import torch there first
        # On every worker: a delayed(pf) would live on one worker, and the scheduler would
        # run every partition there, next to its 18 MB of weights.
        pf_d = client.scatter(pf, broadcast=True)
        # Warm-up on one partition each, so that both columns leave out start-up.
        db.from_sequence(paths[:4], npartitions=2).map_partitions(_embed, pf_d).compute()
        before = client.run(_rss_mb)
        t0 = time.perf_counter()
        bag = db.from_sequence(paths, partition_size=partition_size)
        Z = np.concatenate(bag.map_partitions(_embed, pf_d).compute())
        seconds = time.perf_counter() - t0
        peaks = client.run(_peak_rss_mb)
    return seconds, before, peaks, Z


def bench_dask(n: int, image_size: int, partition_size: int) -> None:
    import dask
    import distributed  # noqa: F401 - loads its config defaults before dask.config.set

    with tempfile.TemporaryDirectory() as root:
        paths = write_pngs(n, root)
        paths_file = os.path.join(root, "paths.txt")
        with open(paths_file, "w") as fh:
            fh.write("\n".join(paths))
        out = subprocess.run(
            [sys.executable, __file__, "--_one-process", paths_file, str(image_size)],
            capture_output=True,
            text=True,
            check=True,
        )
        one = json.loads(out.stdout.strip().splitlines()[-1])

        rows = [
            [
                "one process",
                f"{one['seconds']:.1f}",
                "1.00x",
                f"{one['peak']:.0f} (after loading: {one['before']:.0f})",
            ]
        ]
        # distributed's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; glibc then
        # maps and unmaps every large tensor, which slows torch down on the CPU.
        for label, trim in (("default nanny env", 65536), ("MALLOC_TRIM_THRESHOLD_ unset", None)):
            key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
            with dask.config.set({key: trim}):
                seconds, before, peaks, Z = _on_cluster(paths, image_size, partition_size)
            assert list(Z.shape) == one["shape"]
            print(
                f"  {label}: sum of features, one process vs cluster: "
                f"{one['sum']:.4f} vs {Z.sum():.4f}"
            )
            rows.append(
                [
                    f"2-worker LocalCluster, {label}",
                    f"{seconds:.1f}",
                    f"{one['seconds'] / seconds:.2f}x",
                    "",
                ]
            )
            for addr in sorted(peaks):
                rows.append(
                    [
                        f"  worker :{addr.rsplit(':', 1)[-1]}",
                        "",
                        "",
                        f"{peaks[addr]:.0f} (after loading: {before[addr]:.0f})",
                    ]
                )
    table(
        f"(b) {n} PNG files, EfficientNet-Lite0 at {image_size} px, cache=False, "
        f"Dask Bag of {partition_size}-file partitions",
        ["run", "seconds", "speed-up", "peak RSS per process, MiB"],
        rows,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_one-process":
        in_one_process(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default="ab", help="which comparisons to run, e.g. 'a'")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    quick = {"a": dict(n=100, cv=3, repeats=1), "b": dict(n=400, image_size=32, partition_size=100)}
    full = {"a": dict(n=300, cv=3, repeats=2), "b": dict(n=5000, image_size=64, partition_size=250)}
    config = quick if args.quick else full
    benches = {"a": bench_search, "b": bench_dask}
    for key in args.only:
        benches[key](**config[key])


if __name__ == "__main__":
    main()
