"""Estimates of the density ratio p_target(x) / p_source(x) on source rows.

Two estimators: a probabilistic domain classifier, cross-fitted so that no
row is weighted by a classifier that was trained on it, and kernel mean
matching (Huang et al., 2007). Both return raw ratios; `cap_and_normalise`
turns them into sample weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import brentq
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.utils import _safe_indexing, check_array, check_random_state
from sklearn.utils.validation import _num_features

# A probability this close to 0 or 1 would turn into an infinite ratio.
_PROBA_CLIP = 1e-6


# Above this many features the quadratic candidate (n² / 2 columns) is not tried.
MAX_QUADRATIC_FEATURES = 30


def default_discriminators(n_features: int, *, sparse: bool = False, missing: bool = False) -> dict:
    """The candidate domain classifiers tried when none is given.

    A linear logit gives w = exp(linear): a shift of the mean. A quadratic one
    also represents a bump-shaped shift (the target where the source is
    densest, or around it): exact for Gaussian domains of any covariances.
    Sparse rows get the linear one only: standardising them would make them dense.
    With NaN in X (``missing``) each starts by imputing the median and adding a
    0/1 column per feature with NaN: where a value is missing is itself
    something that can tell the domains apart (a site that never measures it).
    """
    impute = [SimpleImputer(strategy="median", add_indicator=True)] if missing else []
    candidates = {
        "linear": make_pipeline(*impute, LogisticRegression()) if missing else LogisticRegression()
    }
    if n_features <= MAX_QUADRATIC_FEATURES and not sparse:
        candidates["quadratic"] = make_pipeline(
            *impute, StandardScaler(), PolynomialFeatures(2), LogisticRegression()
        )
    return candidates


def nan_position(X):
    """(row, column) of the first NaN of a numeric table, or None."""
    if sp.issparse(X):
        X = X.tocsr()
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        bad = np.flatnonzero(np.isnan(X.data))
        return (int(rows[bad[0]]), int(X.indices[bad[0]])) if bad.size else None
    try:
        values = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.ndim != 2:
        return None
    where = np.argwhere(np.isnan(values))
    return (int(where[0, 0]), int(where[0, 1])) if where.size else None


def discriminator_ratios(
    X, source_idx, target_idx, *, discriminator=None, cv=5, random_state=None
) -> tuple[np.ndarray, object]:
    """Density ratios of the source rows from a cross-fitted domain classifier.

    Bayes' rule gives p_t(x) / p_s(x) = P(t | x) / P(s | x) * n_s / n_t. Each
    source row's P(t | x) comes from the fold model that did not see it:
    in-sample probabilities of a flexible classifier are pushed towards 0
    on the source rows it memorised, which would zero out exactly the rows
    that look like the target. Without ``discriminator``, the candidate of
    ``default_discriminators`` with the lowest out-of-fold log-loss is used.
    Returns the ratios and the (unfitted) discriminator that gave them.
    """
    n_source, n_target = len(source_idx), len(target_idx)
    n_splits = min(cv, n_source, n_target)
    if n_splits < 2:
        raise ValueError(
            "Cross-fitting the domain classifier needs at least 2 source and 2 target "
            f"rows (and cv >= 2); got {n_source} source rows, {n_target} target rows, "
            f"cv={cv}."
        )
    pooled = _safe_indexing(X, np.concatenate([source_idx, target_idx]))
    is_target = np.r_[np.zeros(n_source, dtype=int), np.ones(n_target, dtype=int)]
    if discriminator is None:
        found = default_discriminators(
            _num_features(pooled),
            sparse=sp.issparse(pooled),
            missing=nan_position(pooled) is not None,
        )
        candidates = list(found.values())
    else:
        candidates = [clone(discriminator)]
    # One seed for every candidate: they are compared on the same folds.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    best = None
    for model in candidates:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        proba = cross_val_predict(model, pooled, is_target, cv=splitter, method="predict_proba")
        loss = log_loss(is_target, proba[:, 1]) if len(candidates) > 1 else 0.0
        if best is None or loss < best[0]:
            best = (loss, proba, model)
    _, proba, model = best
    p_target = np.clip(proba[:n_source, 1], _PROBA_CLIP, 1 - _PROBA_CLIP)
    return p_target / (1 - p_target) * (n_source / n_target), model


def kmm_ratios(
    X_source,
    X_target,
    *,
    gamma=None,
    B=1000.0,
    eps=None,
    max_samples=1000,
    random_state=None,
) -> np.ndarray:
    """Density ratios of the source rows by kernel mean matching.

    NaN is imputed with the pooled median, plus a 0/1 column per feature with
    NaN. Features are standardised on the pooled rows first, since an RBF kernel
    on raw features lets the widest feature decide every distance; the
    default width, ``gamma = 1 / n_features`` on standardised features, is
    the peers' (skada, ADAPT), and matched the target better on real data
    than the median heuristic, which is narrower. The QP
    has one variable per source row and an O(n²) kernel, so source rows are
    split into random chunks of at most ``max_samples`` rows, each matched
    against the same (sub-sampled) target rows; each chunk's weights then
    have mean about 1 on their own, as the full problem's would.
    """
    X_source = check_array(X_source, dtype=np.float64, ensure_all_finite="allow-nan")
    X_target = check_array(X_target, dtype=np.float64, ensure_all_finite="allow-nan")
    rng = check_random_state(random_state)
    pooled = np.vstack([X_source, X_target])
    if np.isnan(pooled).any():
        # A kernel needs every coordinate: the median where a value is missing, and
        # a 0/1 column per feature with NaN, so that a row's missing values count
        # in its distances (a site that never measures a feature is far from one
        # that always does).
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        pooled = imputer.fit_transform(pooled)
        X_source, X_target = pooled[: X_source.shape[0]], pooled[X_source.shape[0] :]
    scaler = StandardScaler().fit(pooled)
    Xs, Xt = scaler.transform(X_source), scaler.transform(X_target)
    if gamma is None:
        gamma = 1.0 / Xs.shape[1]
    if Xt.shape[0] > max_samples:
        Xt = Xt[rng.choice(Xt.shape[0], max_samples, replace=False)]

    n_source = Xs.shape[0]
    n_chunks = -(-n_source // max_samples)
    ratios = np.empty(n_source)
    for chunk in np.array_split(rng.permutation(n_source), n_chunks):
        m = chunk.size
        K = rbf_kernel(Xs[chunk], gamma=gamma)
        kappa = m / Xt.shape[0] * rbf_kernel(Xs[chunk], Xt, gamma=gamma).sum(axis=1)
        chunk_eps = (np.sqrt(m) - 1) / np.sqrt(m) if eps is None else eps
        ratios[chunk] = solve_kmm(K, kappa, B=B, eps=chunk_eps)
    return ratios


def solve_kmm(K, kappa, *, B, eps, max_iter=20_000, tol=1e-8) -> np.ndarray:
    """Solve min f(β) = ½ βᵀKβ − κᵀβ  s.t. 0 ≤ β ≤ B, |Σβ − m| ≤ m·eps.

    Accelerated projected gradient (FISTA with adaptive restart): each step
    costs one matrix-vector product, where a general QP solver (SLSQP) is
    cubic in the number of source rows. The step size comes from the
    Gershgorin bound on the largest eigenvalue of the non-negative kernel.
    It stops when 100 steps lower f by less than ``tol``·|f| (measured: within
    1e-7 to 4e-6 of cvxopt's optimum, relative, on 2-D sets of 300-800 rows); at
    ``max_iter`` steps short of that it raises a ``ConvergenceWarning``.
    """
    m = kappa.shape[0]
    lower, upper = max(m * (1 - eps), 0.0), m * (1 + eps)
    if lower > m * B:
        raise ValueError(f"KMM is infeasible: B={B} is below 1 - eps={1 - eps}.")
    step = 1.0 / max(K.sum(axis=1).max(), np.finfo(float).tiny)
    beta = _project_box_sum(np.ones(m), B, lower, upper)
    z, t = beta.copy(), 1.0
    # Momentum makes f non-monotone from step to step: compare the best f so far.
    best_f, best_beta, window_f = np.inf, beta, np.inf
    for i in range(max_iter):
        if i % 10 == 0:
            objective = 0.5 * beta @ (K @ beta) - kappa @ beta
            if objective < best_f:
                best_f, best_beta = objective, beta
        if i % 100 == 0:
            decrease, window_f = window_f - best_f, best_f
            if decrease <= tol * max(abs(best_f), np.finfo(float).tiny):
                return best_beta
        beta_next = _project_box_sum(z - step * (K @ z - kappa), B, lower, upper)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        change = beta_next - beta
        # Restart the momentum when it points uphill (O'Donoghue & Candès, 2015).
        if np.dot(z - beta_next, change) > 0:
            t_next = 1.0
        z = beta_next + (t - 1) / t_next * change
        beta, t = beta_next, t_next
    warnings.warn(
        f"KMM stopped after max_iter={max_iter} steps while its objective still fell by "
        f"{decrease / max(abs(best_f), np.finfo(float).tiny):.1e} (relative) every 100 "
        f"steps, more than tol={tol}; the weights may be short of the optimum. A larger "
        "gamma (a narrower kernel) makes the problem easier.",
        ConvergenceWarning,
        stacklevel=2,
    )
    return best_beta


def _project_box_sum(v, B, lower, upper) -> np.ndarray:
    """Euclidean projection onto {0 ≤ β ≤ B, lower ≤ Σβ ≤ upper}.

    The projection is clip(v − τ, 0, B) for the scalar τ that puts the sum
    on the violated bound; the sum is monotone in τ, so a root finder
    gets it exactly.
    """
    clipped = np.clip(v, 0.0, B)
    total = clipped.sum()
    if lower <= total <= upper:
        return clipped
    bound = upper if total > upper else lower

    def excess(tau):
        return np.clip(v - tau, 0.0, B).sum() - bound

    # Every entry is at B below the bracket and at 0 above it, so the sum runs from
    # m·B to 0 across it; the margins keep that true after rounding when |v| >> B.
    margin = 1.0 + np.abs(v).max() * 1e-12
    tau = brentq(excess, v.min() - B - margin, v.max() + margin, xtol=1e-12)
    return np.clip(v - tau, 0.0, B)


def cap_and_normalise(ratios, max_weight) -> np.ndarray:
    """Scale ``ratios`` to mean 1, capping them at ``max_weight``.

    Finds the scale s with mean(min(s * ratios, max_weight)) == 1, so the
    weights have mean exactly 1 and none exceeds ``max_weight`` (clipping
    then renormalising would push the capped rows back above the cap).
    """
    ratios = np.asarray(ratios, dtype=float)
    if not np.isfinite(ratios).all() or (ratios < 0).any():
        raise ValueError("Density ratios must be finite and non-negative.")
    if ratios.max() == 0:
        return np.ones_like(ratios)
    weights = ratios / ratios.mean()
    if max_weight is None or weights.max() <= max_weight:
        return weights

    def mean_excess(scale):
        return np.minimum(scale * weights, max_weight).mean() - 1.0

    # A cap below 1 / (share of non-zero rows) cannot reach mean 1 (KMM zeros
    # many rows); it is lifted to exactly that, which weighs the non-zero
    # rows equally.
    max_weight = max(max_weight, 1.0 / np.mean(weights > 0))
    if weights.max() <= max_weight:  # one non-zero value: lifting the cap was enough
        return weights
    # At scale 1 the mean is below 1 (some rows were capped); at the scale
    # that lifts the smallest non-zero weight to the cap it is at least 1.
    top = max_weight / weights[weights > 0].min()
    if mean_excess(top) <= 0:
        # Every non-zero row sits at the cap, and the cap was lifted to exactly
        # 1 / share: the mean is 1 up to rounding, which can put it just below.
        capped = np.where(weights > 0, max_weight, 0.0)
        return capped / capped.mean()
    scale = brentq(mean_excess, 1.0, top, xtol=1e-12)
    return np.minimum(scale * weights, max_weight)


def effective_sample_size(weights) -> float:
    """Kish's effective number of rows, (Σw)² / Σw²."""
    weights = np.asarray(weights, dtype=float)
    return float(weights.sum() ** 2 / np.square(weights).sum())
