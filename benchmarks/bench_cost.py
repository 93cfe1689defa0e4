"""What a fine-tune costs against its probe, and what each lever for a cheaper recipe gives.

Issue 24, item 1: the goal is the default fine-tune's fit time at most 3x the probe's
(cold cache, same threads) at N = 300 and 1,000 images, with the suite's accuracies held.
This measures, per cell (data set, N, seed), in one process, on the suite's draws
(``_suite_data.py``), each method's test accuracy and fit seconds and its fit time over
the probe's:

``probe``        ``FeatureTransferClassifier(backbone)``: the linear probe, the baseline
``default``      ``FineTuneClassifier(backbone, random_state=seed)``: today's recipe
                 (``freeze="auto"``: the first third of the blocks frozen, computed once)
``all_blocks``   the default with every block trained (``freeze="none"``): the recipe
                 before ``freeze="auto"``
``half_epochs``  the default with half its resolved unfrozen epochs (``max_epochs=``)
``double_epochs`` the default with twice its resolved unfrozen epochs (above the cap of 20
                 at N <= 240): whether small sets want more steps than the budget gives
``freeze_half``  the default with the first half of the body's blocks frozen (``freeze=k``;
                 their backward pass is saved, and on the CPU their forward pass is
                 computed once per row, ``training/_prefix.py``)
``freeze_half_recompute``  the same with the frozen blocks run again every epoch (the
                 cache off): what computing them once gives
``freeze_late``  the default with all but the body's last 4 blocks frozen (on
                 EfficientNet-Lite0, blocks 0-5.2 of 6: "surgical" fine-tuning of the
                 late blocks, Lee et al. 2023), the frozen blocks computed once
``size_128``     the default at ``image_size=128`` instead of the 160 px the default feeds
                 images under 96 px (a cheaper resolution for training and prediction)
``fixres_128``   trained as ``size_128``, predicting at the default's 160 px (FixRes,
                 Touvron et al. 2019: train at a lower resolution than you test at)
``budget_80``    the default with an 80-step budget for the unfrozen phase (3-20 epochs)
                 instead of 150 (5-20): N=100 keeps its 20 epochs, N=300 trains 8, N=1,000 3
``early_stop``   the default with ``early_stopping=True`` (stops on the rows the guard
                 already holds out; fewer epochs where the validation loss stalls)
``augment_crop`` the default with ``augment="crop"`` (a random resized crop of each training
                 image, no flip: a digit flipped is another glyph); the frozen blocks are then
                 computed every epoch, as augmentation changes their input
``cheap``        half the epochs at 128 px (``half_epochs`` and ``size_128`` together)

Every fit starts cold (feature cache and backbone templates emptied); seconds are wall
clock of ``fit`` only. The methods of one seed run back to back in the order given, so
their ratios share the machine's state; quote the ratios, not the seconds.

Resumable: one JSON line per (data set, N, seed, method) in ``--out``; a rerun skips
the lines already there and prints the markdown table of every line.

    python benchmarks/bench_cost.py [--datasets fashion-mnist,digits] [--sizes 300,1000]
        [--seeds 2] [--methods probe,default,half_epochs,...] [--threads 1]
        [--out PATH] [--table] [--quick]

``--quick`` runs digits, N=20, 32 px, one unfrozen epoch, 50 test rows, two methods, only
to check that everything runs (the test suite does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _suite_data  # noqa: E402
from bench_recipe import clear_caches, resolved_epochs  # noqa: E402

from sktransfer import FeatureTransferClassifier, FineTuneClassifier  # noqa: E402

BACKBONE = "efficientnet_lite0"
DEFAULT_OUT = HERE / "results" / "cost.jsonl"
METHODS = (
    "probe",
    "default",
    "all_blocks",
    "half_epochs",
    "double_epochs",
    "freeze_half",
    "freeze_half_recompute",
    "freeze_late",
    "size_128",
    "fixres_128",
    "early_stop",
    "budget_80",
    "augment_crop",
    "cheap",
)
# The levers that scale the epochs the default resolved to on the same rows.
SCALES_EPOCHS = ("half_epochs", "double_epochs", "cheap")
ABOUT = {
    "probe": "FeatureTransferClassifier (linear probe)",
    "default": "FineTuneClassifier defaults (today's recipe)",
    "all_blocks": "default with every block trained (freeze='none')",
    "half_epochs": "default, half the unfrozen epochs",
    "double_epochs": "default, twice the unfrozen epochs",
    "freeze_half": "default, first half of the blocks frozen",
    "freeze_half_recompute": "freeze_half, frozen blocks recomputed every epoch",
    "freeze_late": "default, all but the last 4 blocks frozen",
    "size_128": "default at image_size=128",
    "fixres_128": "default trained at 128 px, predicting at 160 px",
    "early_stop": "default with early_stopping=True",
    "budget_80": "default, 80 optimiser steps (3-20 epochs)",
    "augment_crop": "default with augment='crop'",
    "cheap": "half epochs + 128 px",
}


def _blocks(backbone: str) -> int:
    """How many blocks ``freeze=k`` counts on ``backbone``'s body."""
    from sktransfer.backbones import param_blocks, resolve_backbone

    return len(param_blocks(resolve_backbone(backbone).module))


def fit_method(method, X, y, *, seed, default_epochs, blocks, quick):
    """The fitted estimator of ``method`` on (X, y). ``default_epochs`` is the unfrozen
    epochs the default resolved to on the same rows (the levers halve it)."""
    if method == "probe":
        kw = {"image_size": 32} if quick else {}
        return FeatureTransferClassifier(BACKBONE, **kw).fit(X, y)
    kw = {"random_state": seed}
    if quick:
        kw.update(image_size=32, max_epochs=1)
    if method in ("half_epochs", "cheap"):
        kw["max_epochs"] = max(1, default_epochs // 2)
    if method == "double_epochs":
        kw["max_epochs"] = 2 * default_epochs
    if method in ("freeze_half", "freeze_half_recompute"):
        kw["freeze"] = blocks // 2
    if method == "all_blocks":
        kw["freeze"] = "none"
    if method == "freeze_late":
        kw["freeze"] = max(blocks - 4, 0)
    if method in ("size_128", "fixres_128", "cheap") and not quick:
        kw["image_size"] = 128
    if method == "early_stop":
        kw["early_stopping"] = True
    if method == "augment_crop":
        kw["augment"] = "crop"
    if method == "budget_80" and not quick:
        kw["max_epochs"] = budget(len(y), steps=80, low=3, high=20)
    if method != "freeze_half_recompute":
        return FineTuneClassifier(BACKBONE, **kw).fit(X, y)
    from sktransfer.training import _prefix

    cap, _prefix.MAX_CACHE_BYTES = _prefix.MAX_CACHE_BYTES, 0
    try:
        return FineTuneClassifier(BACKBONE, **kw).fit(X, y)
    finally:
        _prefix.MAX_CACHE_BYTES = cap


def budget(n_rows, *, steps, low, high, batch_size=32):
    """Epochs of a ``steps``-step budget over ``n_rows``, within [low, high] (the rule
    ``max_epochs="auto"`` applies with the family's numbers)."""
    per_epoch = -(-n_rows // batch_size)
    return min(max(-(-steps // per_epoch), low), high)


def predict_at(est, size):
    """Feed the fitted ``est``'s test images at ``size`` px (FixRes); returns
    "trained/predicted" for the record."""
    bb = est.backbone_
    bb.preprocess = bb.preprocess.with_image_size(size)
    return f"{est.image_size_}/{size}"


def _done(out: Path) -> dict:
    if not out.exists():
        return {}
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["n"], r["seed"], r["method"]): r for r in rows}


def run_cell(name, n, seeds, methods, out, *, quick):
    data = _suite_data.load(name)
    X_test, y_test = data.X_test, data.y_test
    if quick:
        X_test, y_test = X_test[:50], y_test[:50]
    blocks = _blocks(BACKBONE)
    for seed in seeds:
        done = _done(out)
        X, y = _suite_data.draw(data, n, seed)
        default = done.get((name, n, seed, "default"))
        default_epochs = default["epochs"][1] if default else None
        for method in methods:
            if (name, n, seed, method) in done:
                continue
            if method in SCALES_EPOCHS and default_epochs is None:
                raise SystemExit(
                    f"--methods: {method!r} scales the default's epochs; run 'default' first"
                )
            clear_caches()
            t0 = time.perf_counter()
            est = fit_method(
                method,
                X,
                y,
                seed=seed,
                default_epochs=default_epochs,
                blocks=blocks,
                quick=quick,
            )
            fit_s = time.perf_counter() - t0
            size = getattr(est, "image_size_", None)
            if method == "fixres_128":
                size = predict_at(est, 32 if quick else 160)
            acc = float(np.mean(est.predict(X_test) == y_test))
            epochs = list(resolved_epochs(est)) if method != "probe" else None
            if method == "default":
                default_epochs = epochs[1]
            row = {
                "dataset": name,
                "n": n,
                "seed": seed,
                "method": method,
                "acc": round(acc, 4),
                "fit_s": round(fit_s, 2),
                "epochs": epochs,
                "image_size": size,
                "n_test": len(y_test),
                "quick": quick,
                "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"  {name} N={n} seed {seed} {method}: acc {acc:.3f}, fit {fit_s:.1f} s", flush=True
            )


def table(out: Path) -> str:
    """One markdown row per (data set, N, method): accuracy and fit seconds per seed, the
    mean fit time over the probe's of the same seeds, accuracy minus the default's."""
    rows = list(_done(out).values())
    cells = sorted({(r["dataset"], r["n"]) for r in rows})
    lines = [
        "| data set | N | method | accuracy per seed | fit s per seed | fit / probe | "
        "acc − default | 1 SE |",
        "| --- | ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, n in cells:
        here = {(r["method"], r["seed"]): r for r in rows if (r["dataset"], r["n"]) == (name, n)}
        seeds = sorted({s for _, s in here})
        for method in METHODS:
            mine = [here[(method, s)] for s in seeds if (method, s) in here]
            if not mine:
                continue
            ss = [r["seed"] for r in mine]
            acc = np.mean([r["acc"] for r in mine])
            probe = [here[("probe", s)]["fit_s"] for s in ss if ("probe", s) in here]
            ratio = (
                f"{np.mean([r['fit_s'] for r in mine]) / np.mean(probe):.1f}x"
                if len(probe) == len(mine)
                else "–"
            )
            base = [here[("default", s)]["acc"] for s in ss if ("default", s) in here]
            delta = f"{acc - np.mean(base):+.3f}" if len(base) == len(mine) else "–"
            se = math.sqrt(acc * (1 - acc) / mine[0]["n_test"])
            lines.append(
                f"| {name} | {n} | {method} | "
                + " / ".join(f"{r['acc']:.3f}" for r in mine)
                + " | "
                + " / ".join(f"{r['fit_s']:.1f}" for r in mine)
                + f" | {ratio} | {delta} | {se:.3f} |"
            )
    return "\n".join(lines)


def _list(s):
    return [v for v in s.split(",") if v]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", type=_list, default=["fashion-mnist", "digits"])
    p.add_argument("--sizes", type=lambda s: [int(v) for v in _list(s)], default=[300, 1000])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--methods", type=_list, default=list(METHODS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--table", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown[0]!r}; choose from {', '.join(METHODS)}")
    out = args.out or (DEFAULT_OUT.with_name("cost-quick.jsonl") if args.quick else DEFAULT_OUT)
    if not args.table:
        import torch

        torch.set_num_threads(args.threads)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.quick:
            args.datasets, args.sizes, args.seeds = ["digits"], [20], 1
            args.methods = [m for m in args.methods if m in ("probe", "default")] or ["probe"]
        for name in args.datasets:
            for n in args.sizes:
                run_cell(name, n, range(args.seeds), args.methods, out, quick=args.quick)
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
