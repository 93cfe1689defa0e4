"""The linear probe: a head solved to convergence on frozen features (the LP of LP-FT)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import StratifiedKFold

from ._loss import task_loss

# The probe's inverse L2 strengths, on standardised features, chosen by cross-validated
# log-loss. A fixed C cannot serve every body: C=1 fits 300 Fashion-MNIST images to a
# training loss of 0.0025 (the body then gets almost no gradient and Adam's normalised
# steps are noise), while on MiniLM sentence features C=0.05 already overfits 1,000
# reviews (0.701 held-out vs 0.739 at the C that cross-validation picks, 0.001).
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
PROBE_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# Below this many labelled rows in the rarest class, no 3-fold CV: a fixed C.
PROBE_FALLBACK_C = 0.05
# The probe's folds are shuffled (with a fixed seed): unshuffled folds of rows sorted by a
# column (auto MPG is sorted by model year) picked another C and cost the region task 3
# points (0.767 vs 0.799 on 242 cars, bench_multitask).
PROBE_CV = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
# scikit-learn 1.9 announces new defaults for 1.10 (l1_ratios, the fitted attributes);
# ask for the plain L2 penalty and the new attributes where they exist.
_LRCV_PARAMS = inspect.signature(LogisticRegressionCV).parameters
PROBE_LRCV_OPTIONS = {
    **({"l1_ratios": (0.0,)} if "l1_ratios" in _LRCV_PARAMS else {}),
    **({"use_legacy_attributes": False} if "use_legacy_attributes" in _LRCV_PARAMS else {}),
}


def fit_linear_probe(
    Z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    task: str,
    n_outputs: int,
    class_weight=None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(weight, bias, training loss, regularisation) of a linear head fitted to convergence
    on features Z.

    A convex solver on centred features scaled by their mean spread, folded back into one
    ``nn.Linear`` acting on the raw features: L-BFGS multinomial logistic regression for
    classes, its ``C`` chosen from ``PROBE_CS`` by 3-fold cross-validated log-loss
    (``PROBE_FALLBACK_C`` when a class has fewer than 3 rows); ridge for standardised
    targets, its alpha chosen from ``PROBE_ALPHAS`` by leave-one-out. ``w`` are sample
    weights; ``class_weight``
    multiplies them per class, as the fine-tuning loss does.
    """
    Z = np.asarray(Z, dtype=np.float64)
    mu = Z.mean(0)
    # One scale for all features, not one per feature: dividing a nearly constant feature
    # by its tiny spread gives it a huge weight, and training-time noise the probe never saw
    # (dropout in a text encoder) then swings the logits (MiniLM: loss 0.31 -> 5.7 at the
    # first unfrozen step with per-feature scaling).
    sd = np.full(Z.shape[1], max(float(Z.std(0).mean()), 1e-12))
    Zs = (Z - mu) / sd
    sw = np.asarray(w, dtype=np.float64).copy()
    if task == "classification":
        y = np.asarray(y, dtype=np.int64)
        if class_weight is not None:
            sw = sw * np.asarray(class_weight, dtype=np.float64)[y]
        weight, bias, reg = _logistic(Zs, y, sw, n_outputs)
    else:
        Y = np.asarray(y, dtype=np.float64).reshape(len(Z), -1)
        ridge = RidgeCV(alphas=list(PROBE_ALPHAS)).fit(Zs, Y, sample_weight=sw)
        reg = float(np.atleast_1d(ridge.alpha_)[0])
        weight = ridge.coef_.reshape(n_outputs, Zs.shape[1])
        bias = np.atleast_1d(ridge.intercept_).reshape(n_outputs)
    # Fold the standardisation in: w·(z - mu)/sd + b = (w/sd)·z + (b - w·mu/sd).
    weight = weight / sd
    bias = bias - weight @ mu
    logits = Z @ weight.T + bias
    if task == "classification":
        logits = logits - logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        per = -logp[np.arange(len(y)), y]
    else:
        per = ((logits - Y) ** 2).mean(1)
    loss = float((per * sw).sum() / max(sw.sum(), 1e-12))
    return weight.astype(np.float32), bias.astype(np.float32), loss, reg


def _logistic(Zs, y, sw, n_outputs):
    """(weight, bias, C) of multinomial logistic regression on standardised features;
    classes absent from the rows get a bias of -1e3 (never predicted)."""
    present, counts = np.unique(y[sw > 0], return_counts=True)
    weight = np.zeros((n_outputs, Zs.shape[1]))
    bias = np.full(n_outputs, -1e3 if len(present) < n_outputs else 0.0)
    reg = PROBE_FALLBACK_C
    if len(present) == 1:  # one class seen: predict it
        bias[present[0]] = 0.0
        return weight, bias, reg
    keep = sw > 0
    with warnings.catch_warnings():
        # An unconverged L-BFGS head is still a good start for fine-tuning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if counts.min() >= 3:
            lr = LogisticRegressionCV(
                Cs=list(PROBE_CS),
                cv=PROBE_CV,
                scoring="neg_log_loss",
                max_iter=1000,
                **PROBE_LRCV_OPTIONS,
            ).fit(Zs[keep], y[keep], sample_weight=sw[keep])
            reg = float(np.ravel(lr.C_)[0])
        else:
            lr = LogisticRegression(C=reg, max_iter=1000)
            lr.fit(Zs[keep], y[keep], sample_weight=sw[keep])
    coef, icpt = lr.coef_, lr.intercept_
    if len(present) == 2:  # one logit z: softmax over [-z/2, z/2] is sigmoid(z)
        coef = np.vstack([-coef / 2, coef / 2])
        icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
    weight[present] = coef
    bias[present] = icpt
    return weight, bias, reg


def fit_task_probes(Z, y, w, tasks, n_outputs):
    """The linear probe of every task of a net's loss: ``fit_linear_probe`` on each task's
    labelled rows and outputs, assembled into one (weight, bias) for the whole head.

    Returns (weight, bias, training loss as ``task_loss`` computes it, the per-task
    regularisation strengths).
    """
    Z = np.asarray(Z)
    weight = np.zeros((n_outputs, Z.shape[1]), np.float32)
    bias = np.zeros(n_outputs, np.float32)
    regs = []
    for t in tasks:
        a, b = t.outputs
        target = y if t.columns is None else y[:, t.columns[0] : t.columns[1]]
        target = np.asarray(target).reshape(len(target), -1)
        present = ~np.isnan(target.astype(np.float64)).any(1)
        rows = present & (np.asarray(w) > 0)
        if not rows.any():  # nothing to fit this task on: its head starts at zero
            regs.append(None)
            continue
        kind = "regression" if t.kind == "mse" else "classification"
        tt = target[rows] if kind == "regression" else target[rows, 0].astype(np.int64)
        n_out = 2 if t.kind == "sigmoid" else b - a
        W, B, _, reg = fit_linear_probe(
            Z[rows],
            tt,
            np.asarray(w)[rows],
            task=kind,
            n_outputs=n_out,
            class_weight=t.class_weight,
        )
        if t.kind == "sigmoid":  # softmax over [z0, z1] is sigmoid(z1 - z0)
            W, B = W[1:] - W[:1], B[1:] - B[:1]
        weight[a:b], bias[a:b] = W, B
        regs.append(reg)
    with torch.no_grad():
        logits = torch.from_numpy(Z.astype(np.float32)) @ torch.from_numpy(weight).T
        logits = logits + torch.from_numpy(bias)
        target = torch.as_tensor(np.asarray(y))
        loss = task_loss(logits, target, torch.as_tensor(np.asarray(w, np.float32)), tasks)
    return weight, bias, float(loss), regs
