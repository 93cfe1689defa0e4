"""Seeded fits over the fine-tuning estimators' options, shared by the fixture maker
(``tests/fixtures/fitted/make_fixtures.py``) and ``tests/test_fitted_fixtures.py``.

The fixtures were written by the code before the engine moved to ``sktransfer/training/``;
the test holds every later version to the same numbers and to loading those pickles.
Bodies are plain ``nn.Sequential`` so a pickle names no class of the test suite.

Each case fits with 0.1.0's behaviour (``V010``: ``wise=None``, ``freeze="none"``; the
transformer-family case also ``contrastive=False``, a phase 0.1.0 did not have), so that it
still measures the same fit; "guard" (``wise="auto"``, which came later and is opt-in) was
recorded since (``make_fixtures.py --refit``).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits, load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune


def wine():
    """178 real wines, standardised: 150 to fit, 28 to predict."""
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X[:150], y[:150], X[150:]


def digit_images():
    """60 real 8x8 digits (4 classes) as 16x16 RGB uint8: 48 to fit, 12 to predict."""
    d = load_digits(n_class=4)
    X = np.kron((d.images[:60] * (255 / 16)).round().astype(np.uint8), np.ones((2, 2), np.uint8))
    X = np.stack([X, np.roll(X, 1, axis=1), np.roll(X, 1, axis=2)], axis=-1)
    return X[:48], d.target[:48], X[48:]


def mlp(width=16):
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU())


def two_block_mlp():
    return nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())


def conv():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


# 0.1.0's defaults where they have changed since.
V010 = {"wise": None, "freeze": "none"}


def _clf(fit_params=None, **params):
    def fit():
        X, y, X_new = wine()
        est = FineTuneClassifier(mlp(), random_state=0, **{**V010, **params})
        return est.fit(X, y, **(fit_params or {})), X_new

    return fit


def _shifted():
    """Source: the wines; target: the same wines shifted and unlabelled (y = -1)."""
    X, y, X_new = wine()
    rng = np.random.RandomState(1)
    Xt = (X[:60] + 0.8 + 0.1 * rng.randn(60, X.shape[1])).astype(np.float32)
    return np.vstack([X, Xt]), np.concatenate([y, -np.ones(60, int)]), X_new + 0.8


def _adapt(kind):
    def fit():
        X, y, X_new = _shifted()
        est = FineTuneClassifier(mlp(), adaptation=kind, random_state=0, **V010)
        return est.fit(X, y), X_new

    return fit


def _regressor():
    X, _, X_new = wine()
    est = FineTuneRegressor(mlp(), random_state=0, **V010).fit(X[:, 1:], X[:, 0])
    return est, X_new[:, 1:]


def _freeze_one():
    X, y, X_new = wine()
    est = FineTuneClassifier(two_block_mlp(), random_state=0, **{**V010, "freeze": 1})
    return est.fit(X, y), X_new


def _layernorm_body():
    """A LayerNorm makes the body the "transformer" family: its rate and budget."""
    X, y, X_new = wine()
    body = nn.Sequential(nn.LazyLinear(16), nn.LayerNorm(16), nn.ReLU())
    # the fixtures predate the contrastive phase, a transformer body's default now
    est = FineTuneClassifier(body, random_state=0, contrastive=False, **V010)
    return est.fit(X, y), X_new


def _conv():
    X, y, X_new = digit_images()
    return FineTuneClassifier(conv(), random_state=0, **V010).fit(X, y), X_new


def _multilabel():
    X, y, X_new = wine()
    Y = np.column_stack([y == 0, X[:, 1] > 0, y == 2]).astype(int)
    return FineTuneClassifier(mlp(), random_state=0, **V010).fit(X, Y), X_new


def _multioutput():
    X, y, X_new = wine()
    Y = np.column_stack([y, (X[:, 1] > 0).astype(int)])
    return FineTuneClassifier(mlp(), random_state=0, **V010).fit(X, Y), X_new


def _tasks_y():
    X, y, X_new = wine()
    Y = np.column_stack([y.astype(float), X[:, 0].astype(float)])
    Y[::3, 0] = np.nan  # a third of the rows miss their class
    return X[:, 1:], Y, X_new[:, 1:]


def _multitask_hidden():
    X, Y, X_new = _tasks_y()
    return MultiTaskFineTune(mlp(), task_hidden=8, random_state=0, **V010).fit(X, Y), X_new


def _multitask_shared():
    X, Y, X_new = _tasks_y()
    est = MultiTaskFineTune(two_block_mlp(), shared_blocks=1, random_state=0, **V010)
    return est.fit(X, Y), X_new


def _warm_start():
    X, y, X_new = wine()
    est = FineTuneClassifier(mlp(), max_epochs=5, warm_start=True, random_state=0, **V010)
    return est.fit(X, y).fit(X, y), X_new


def _partial_fit():
    X, y, X_new = wine()
    est = FineTuneClassifier(mlp(), random_state=0, **V010)
    est.partial_fit(X, y, classes=[0, 1, 2])
    return est.partial_fit(X, y), X_new


CASES = {
    "default": _clf(),
    "no probe": _clf(linear_probe=False),
    "frozen body": _clf(freeze="backbone"),
    "frozen body, no probe": _clf(freeze="backbone", linear_probe=False),
    "first block frozen": _freeze_one,
    "l2sp": _clf(l2sp=10.0),
    "wise": _clf(wise=0.5),
    "early stopping": _clf(early_stopping=True, n_iter_no_change=2),
    "class weight, sample weight": _clf(
        {"sample_weight": np.linspace(0.5, 2.0, 150)}, class_weight="balanced"
    ),
    "dann": _adapt("dann"),
    "coral": _adapt("coral"),
    "lora": _clf(adapter="lora"),
    "bitfit": _clf(adapter="bitfit"),
    "regressor": _regressor,
    "transformer family": _layernorm_body,
    "conv family": _conv,
    "multilabel": _multilabel,
    "multioutput": _multioutput,
    "multitask, task_hidden": _multitask_hidden,
    "multitask, shared_blocks": _multitask_shared,
    "warm start": _warm_start,
    "partial_fit": _partial_fit,
    # Today's default: the guard holds out rows and keeps a point of WiSE-FT's line.
    "guard": _clf(wise="auto"),
}


def _fit_in_group(rank, world, port, out):
    """One process of a gloo group fitting as a torchrun script would; rank 0 keeps it."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}"
    )
    try:
        X, y, _ = wine()
        est = FineTuneClassifier(mlp(), strategy="ddp", random_state=0, **V010).fit(X, y)
        if rank == 0:
            import joblib

            joblib.dump(est, out)
    finally:
        dist.destroy_process_group()


def ddp_fit(path):
    """``strategy="ddp"`` on two gloo processes; returns rank 0's estimator, unpickled in
    this process (where no process group exists), and the rows to predict."""
    import socket

    import joblib
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fit_in_group, args=(2, port, str(path)), nprocs=2)
    return joblib.load(path), wine()[2]


def fit_case(name):
    """Fit ``CASES[name]`` from a fixed global torch stream: bodies built with eager
    layers draw their initial weights before ``fit`` seeds anything, and partial_fit's
    later epochs shuffle from the global stream."""
    import torch

    torch.manual_seed(0)
    return CASES[name]()


def outputs(est, X_new) -> dict[str, np.ndarray]:
    """What a user reads off a fitted estimator, as arrays."""
    out = {}
    if isinstance(est, FineTuneRegressor):
        out["predict"] = np.asarray(est.predict(X_new), dtype=np.float64)
    elif isinstance(est, MultiTaskFineTune):
        out["predict"] = np.asarray(est.predict(X_new), dtype=np.float64)
        out["proba"] = np.hstack(est.predict_proba(X_new))
    else:
        proba = est.predict_proba(X_new)
        out["proba"] = np.hstack(proba) if isinstance(proba, list) else proba
        out["predict"] = np.asarray(est.predict(X_new)).astype(np.float64)
    out["train_loss"] = np.array([h["train_loss"] for h in est.history_], dtype=np.float64)
    out["resolved"] = np.array(
        [float(est.lr_), float(est.max_epochs_), float(est.n_trainable_params_)]
    )
    return out
