"""Transferability scores: how well a pretrained model should transfer to a target task.

LogME and H-score read the features the model produces, LEEP and NCE its source-task
predictions; higher is better for all four. Only numpy and scipy are imported.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from ._checks import (
    _EPS,
    _check_matrix,
    _check_same_length,
    _encode_labels,
    _indicator,
    _require_two_classes,
)

__all__ = ["hscore", "leep_score", "logme_score", "nce_score"]


# --------------------------------------------------------------------------
# LogME


def infers_regression(y: ArrayLike) -> bool:
    """What ``logme_score(regression=None)`` reads ``y`` as: real targets or class labels."""
    y_arr = np.asarray(y)
    # Float labels that are all whole numbers (0., 1., 2.) are class labels that went
    # through a float array; anything fractional is a quantity. NaN decides nothing: it
    # is reported as a missing label or value.
    return bool(
        (y_arr.ndim == 2 and y_arr.shape[1] > 1)
        or (y_arr.dtype.kind == "f" and np.any(np.isfinite(y_arr) & (y_arr != np.round(y_arr))))
    )


def _logme_targets(y: ArrayLike, n: int, regression: bool | None) -> tuple[Any, np.ndarray]:
    """Targets as a (n_targets, n_samples) matrix and their squared norms."""
    y_arr = np.asarray(y)
    if regression is None:
        regression = infers_regression(y_arr)
    if regression:
        Y = _check_matrix(y_arr.reshape(-1, 1) if y_arr.ndim == 1 else y_arr, "y", min_rows=1)
        _check_same_length(n, Y.shape[0], "y", "features")
        yy = np.einsum("ij,ij->j", Y, Y)
        if np.any(yy == 0):
            raise ValueError(
                f"y column {int(np.flatnonzero(yy == 0)[0])} is all zeros; "
                "its evidence is unbounded. Drop constant-zero targets."
            )
        return Y.T, yy
    if y_arr.ndim == 2 and y_arr.shape[1] > 1:
        raise ValueError(
            f"y has {y_arr.shape[1]} columns, which is a regression target; "
            "pass regression=True, or 1-D class labels for classification."
        )
    classes, codes = _encode_labels(y_arr, n)
    _require_two_classes(classes)
    return _indicator(codes, classes.shape[0]), np.bincount(codes).astype(np.float64)


def _spectrum(F: np.ndarray, Yt: Any, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues sigma of F F^T restricted to its range, squared projections z2 of
    each target on the matching eigenvectors, and each target's energy delta outside
    the range of F."""
    n, d = F.shape
    if n > d:
        # N x D with N > D: the D x D Gram matrix is far cheaper than an SVD of F and
        # has the same nonzero spectrum; u_i^T y = v_i^T F^T y / sqrt(lambda_i).
        lam, V = np.linalg.eigh(F.T @ F)
        keep = lam > max(n, d) * _EPS * max(lam[-1], 0.0)
        proj = np.asarray(Yt @ F) @ V[:, keep]
        sigma = lam[keep]
        z2 = proj**2 / sigma
        delta = yy - z2.sum(axis=1)
    else:
        # N <= D: U is a complete basis of R^N, so the energy outside range(F) is
        # exactly that on the null singular vectors, with no cancellation.
        U, s, _ = np.linalg.svd(F, full_matrices=False)
        keep = s > max(n, d) * _EPS * s[0]
        proj = np.asarray(Yt @ U)
        sigma = s[keep] ** 2
        z2 = proj[:, keep] ** 2
        delta = (proj[:, ~keep] ** 2).sum(axis=1)
    if sigma.shape[0] < n:
        # Below rounding level, "no residual" is indistinguishable from "tiny residual";
        # the floor keeps the evidence of features that encode y exactly finite and
        # reproducible instead of driven by round-off.
        delta = np.maximum(delta, max(n, d) * _EPS * yy)
    return sigma, z2, delta


def _profile(s: np.ndarray, c: np.ndarray, z2: np.ndarray, delta: np.ndarray, n: int):
    """Profile log evidence g(s) = -N log Q - sum log(1 + t sigma), t = e^s, with
    its first two derivatives, for one s per target (rows of z2)."""
    x = s[:, None] + c[None, :]
    w = expit(x)
    a = w * (1.0 - w)
    q = (z2 * (1.0 - w)).sum(axis=1) + delta
    p = (z2 * a).sum(axis=1)
    dp = (z2 * (1.0 - 2.0 * w) * a).sum(axis=1)
    g = -n * np.log(q) - np.logaddexp(0.0, x).sum(axis=1)
    g1 = n * p / q - w.sum(axis=1)
    g2 = n * (dp / q + (p / q) ** 2) - a.sum(axis=1)
    return g, g1, g2


def _max_profile(sigma: np.ndarray, z2: np.ndarray, delta: np.ndarray, n: int) -> np.ndarray:
    """sup over s of the profile log evidence, per target."""
    n_targets = z2.shape[0]
    if sigma.shape[0] == 0:
        return -n * np.log(delta)
    c = np.log(sigma)
    # The evidence only changes where t * sigma_i ~ 1; 25 nats beyond both ends of
    # the spectrum every logistic weight is within 1e-11 of its limit.
    grid = np.arange(-c.max() - 25.0, -c.min() + 25.0 + 0.25, 0.25)
    x = grid[:, None] + c[None, :]
    G = -n * np.log(z2 @ expit(-x).T + delta[:, None]) - np.logaddexp(0.0, x).sum(axis=1)
    best = G.argmax(axis=1)
    value = G[np.arange(n_targets), best]

    # Limits of the bracket: s -> -inf (alpha -> inf, features ignored) and, when F
    # has full row rank, s -> +inf (beta -> inf, noise-free interpolation).
    limits = [-n * np.log(z2.sum(axis=1) + delta)]
    if sigma.shape[0] == n:
        limits.append(-n * np.log((z2 / sigma).sum(axis=1)) - c.sum())
    limit = np.max(limits, axis=0)

    interior = (best > 0) & (best < grid.shape[0] - 1) & (value >= limit)
    if interior.any():
        idx = np.flatnonzero(interior)
        lo, hi = grid[best[idx] - 1], grid[best[idx] + 1]
        s = grid[best[idx]]
        zi, di = z2[idx], delta[idx]
        # Safeguarded Newton on g'(s) = 0 -- the same stationarity condition as the
        # MacKay fixed point alpha = gamma/|m|^2, beta = (N - gamma)/|Fm - y|^2 --
        # falling back to bisection whenever a step leaves the bracket.
        for _ in range(100):
            _, g1, g2 = _profile(s, c, zi, di, n)
            lo = np.where(g1 > 0, s, lo)
            hi = np.where(g1 > 0, hi, s)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = s - g1 / g2
            ok = (g2 < 0) & (newton > lo) & (newton < hi)
            s_new = np.where(ok, newton, 0.5 * (lo + hi))
            done = np.abs(s_new - s) <= 1e-12 * np.maximum(1.0, np.abs(s))
            s = s_new
            if done.all():
                break
        g, _, _ = _profile(s, c, zi, di, n)
        value[idx] = np.maximum(value[idx], g)
    return np.maximum(value, limit)


def logme_score(features: ArrayLike, y: ArrayLike, *, regression: bool | None = None) -> float:
    r"""LogME: the maximised log marginal evidence of a Bayesian linear model.

    Fits ``y = F w + noise`` with prior :math:`w \sim \mathcal N(0, \alpha^{-1} I_D)`
    and noise :math:`\mathcal N(0, \beta^{-1} I_N)`, maximises the marginal
    likelihood over :math:`\alpha, \beta` and returns it per sample, averaged
    over the targets (You et al., 2021). Higher means the features explain the
    labels more simply; compare scores of different models on the same ``y``.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features of the target data from the candidate model (e.g. the output of
        ``PretrainedFeatures``). Used as given: no centering or scaling.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Class labels (any type) for classification, each class becoming a
        one-hot target column; real values for regression, each column a target.
    regression : bool, default=None
        None infers it: regression when ``y`` is 2-D or is a float array with a
        non-integer value, classification otherwise.

    Returns
    -------
    float
        :math:`\frac{1}{K}\sum_{k=1}^{K} \max_{\alpha,\beta} \frac{1}{N}
        \log \mathcal N(y_k;\, 0,\, \beta^{-1} I_N + \alpha^{-1} F F^\top)`
        over the K target columns. Typical values lie in [-2, 2].

    Notes
    -----
    With :math:`F = U S V^\top`, :math:`\sigma_i = s_i^2` the nonzero squared
    singular values, :math:`z = U^\top y`, :math:`\delta = \|y\|^2 - \|z\|^2`
    and :math:`t = \beta / \alpha`, the covariance has eigenvalues
    :math:`\beta^{-1}(1 + t\sigma_i)` and :math:`\beta^{-1}` (N - k times), so
    the maximum over :math:`\beta` is closed-form, :math:`\beta = N / Q(t)` with
    :math:`Q(t) = \sum_i z_i^2 / (1 + t\sigma_i) + \delta`, leaving

    .. math::

        2 \log p(y) = N \log\frac{N}{2\pi e} - N \log Q(t) - \sum_i \log(1 + t\sigma_i),

    maximised over :math:`\log t` by a grid over the spectrum's range followed by
    safeguarded Newton steps to machine precision. Setting its derivative to
    zero is exactly the fixed point :math:`\alpha = \gamma/\|m\|^2,\ \beta =
    (N-\gamma)/\|Fm - y\|^2`, :math:`\gamma = \sum_i \beta\sigma_i/(\alpha +
    \beta\sigma_i)`, that the reference implementation iterates 11 times to a
    1% tolerance. Two departures from that implementation, both making the value
    the exact evidence: when N < D it adds :math:`D/2 \log\alpha` for all D
    prior dimensions but :math:`\log\det A` only over the k = rank(F) nonzero
    singular values, overstating the evidence by :math:`(D-k)/2N \cdot
    \log\alpha`; and it adds 1e-5 to the residuals.

    The spectrum comes from :math:`F^\top F` when N > D (O(N D^2 + D^3)) and
    from the thin SVD of F otherwise. Singular directions below
    :math:`\max(N, D)\,\epsilon` relative to the largest count as zero, and a
    residual :math:`\delta` below :math:`\max(N, D)\,\epsilon \|y\|^2` is
    raised to it, so features that encode ``y`` exactly score high but finite.

    References
    ----------
    You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.transferability import logme_score
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 200)
    >>> informative = np.eye(3)[y] + 0.3 * rng.standard_normal((200, 3))
    >>> noise = rng.standard_normal((200, 3))
    >>> bool(logme_score(informative, y) > logme_score(noise, y))
    True
    """
    F = _check_matrix(features, "features")
    n = F.shape[0]
    Yt, yy = _logme_targets(y, n, regression)
    sigma, z2, delta = _spectrum(F, Yt, yy)
    g = _max_profile(sigma, z2, delta, n)
    evidence = 0.5 * (n * np.log(n / (2.0 * np.pi)) - n + g)
    return float(evidence.mean() / n)


# --------------------------------------------------------------------------
# H-score


def _ledoit_wolf_shrinkage(Fc: np.ndarray, lam: np.ndarray) -> float:
    """Ledoit-Wolf (2004) optimal shrinkage towards mu*I, from the centered data and
    the eigenvalues of its covariance (the same estimate as sklearn's, in O(N D))."""
    n, d = Fc.shape
    mu = lam.sum() / d
    frob2 = (lam**2).sum()
    delta = frob2 / d - mu**2
    row_norms2 = np.einsum("ij,ij->i", Fc, Fc)
    beta = ((row_norms2**2).sum() / n - frob2) / (d * n)
    beta = min(beta, delta)
    return 0.0 if beta <= 0 else float(beta / delta)


def hscore(
    features: ArrayLike,
    y: ArrayLike,
    *,
    shrinkage: float | Literal["auto", "none"] | None = None,
) -> float:
    r"""H-score: how much feature variance lies between the classes.

    .. math::

        H(f) = \operatorname{tr}\!\left(\operatorname{cov}(f)^{+}\,
               \operatorname{cov}(\mathbb E[f \mid y])\right)

    (Bao et al., 2019), the trace of the between-class covariance whitened by
    the total covariance, both with the 1/N normalisation. It ranges from 0
    (class means coincide) to at most ``min(n_classes - 1, rank)``; higher is
    better.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Features of the target data from the candidate model.
    y : array-like of shape (n_samples,)
        Class labels, any type, at least two classes.
    shrinkage : None, "auto", "none" or float in [0, 1], default=None
        None: "auto" when there are no more samples than features (N <= D), "none"
        otherwise. With N <= D the sample covariance has rank below D, and its
        pseudo-inverse whitens the class means perfectly: the plain score is then
        ``n_classes - 1`` for any features, random ones included (200 MNIST digits
        on 1,280 EfficientNet features: 9.0000 for every candidate). "none": the
        pseudo-inverse of the sample covariance (eigenvalues below
        :math:`\max(N, D)\,\epsilon\,\lambda_{\max}` are dropped). A float
        :math:`a`: the regularised H-score of Ibrahim et al. (2022),
        :math:`\operatorname{tr}(\Sigma_a^{-1} (1-a)
        \operatorname{cov}(\mathbb E[f \mid y]))` with
        :math:`\Sigma_a = (1-a)\Sigma + a\,\mu I`,
        :math:`\mu = \operatorname{tr}\Sigma / D`. "auto" picks :math:`a` by the
        Ledoit-Wolf lemma, as in that paper; prefer it when N is not much larger
        than D, where the plain score is dominated by noise in small eigenvalues.

    Returns
    -------
    float

    References
    ----------
    Bao, Li, Huang, Zhang, Zheng, Tan, Lin. "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019.
    Ibrahim, Ponomareva, Mazumder. "Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance",
    ECML-PKDD 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.transferability import hscore
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 500)
    >>> f = np.c_[y + 0.5 * rng.standard_normal(500), rng.standard_normal(500)]
    >>> round(hscore(f, y), 1)
    0.5
    """
    F = _check_matrix(features, "features")
    n, d = F.shape
    classes, codes = _encode_labels(y, n)
    _require_two_classes(classes)
    is_fraction = (
        isinstance(shrinkage, numbers.Real)
        and not isinstance(shrinkage, bool)
        and 0 <= shrinkage <= 1
    )
    if not (shrinkage is None or is_fraction or shrinkage in ("auto", "none")):
        raise ValueError(
            f"shrinkage must be None, 'auto', 'none' or a float in [0, 1]; got {shrinkage!r}."
        )
    if shrinkage is None:
        shrinkage = "auto" if n <= d else "none"

    mean = F.mean(axis=0)
    Fc = F - mean
    counts = np.bincount(codes).astype(np.float64)
    class_dev = np.asarray(_indicator(codes, classes.shape[0]) @ Fc) / counts[:, None]
    if n > d:
        lam, V = np.linalg.eigh(Fc.T @ Fc / n)
    else:
        # Rank <= N - 1 < D: the class means lie in the row space of Fc, so the
        # thin SVD's right singular vectors are the only directions that matter.
        _, s, Vt = np.linalg.svd(Fc, full_matrices=False)
        lam, V = s**2 / n, Vt.T
    lam = np.maximum(lam, 0.0)
    # diag(V^T cov(E[f|y]) V), i.e. the between-class variance along each eigenvector
    between = (counts / n) @ (class_dev @ V) ** 2

    if shrinkage == "none":
        keep = lam > max(n, d) * _EPS * lam.max()
        return float((between[keep] / lam[keep]).sum())
    a = _ledoit_wolf_shrinkage(Fc, lam) if shrinkage == "auto" else float(shrinkage)
    mu = lam.sum() / d
    if mu == 0:
        return 0.0
    return float((1.0 - a) * (between / ((1.0 - a) * lam + a * mu)).sum())


# --------------------------------------------------------------------------
# LEEP and NCE


def leep_score(source_probs: ArrayLike, y: ArrayLike) -> float:
    r"""LEEP: log expected empirical prediction of the source model's classifier.

    From the source model's probabilities :math:`\theta(x_i)` over its Z source
    classes on the target data, build the empirical joint
    :math:`\hat P(y, z) = \frac1N \sum_{i: y_i = y} \theta(x_i)_z` and conditional
    :math:`\hat P(y \mid z) = \hat P(y, z) / \hat P(z)`; then

    .. math::

        \text{LEEP} = \frac1N \sum_i \log \sum_z \hat P(y_i \mid z)\,\theta(x_i)_z,

    the mean log-likelihood of a classifier that re-maps source classes to
    target classes (Nguyen et al., 2020). It is at most 0; higher is better.

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes)
        Softmax outputs of the source model on the target data; every row must
        be nonnegative and sum to 1 (within 1e-3; rows are then renormalised).
    y : array-like of shape (n_samples,)
        Target labels, any type, at least two classes.

    Returns
    -------
    float

    References
    ----------
    Nguyen, Hassner, Seeger, Archambeau. "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020.

    Examples
    --------
    A source model (three source classes) whose first two classes track the two
    target classes scores higher than one that guesses:

    >>> import numpy as np
    >>> from sktransfer import leep_score
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> tracks = np.where(y[:, None] == 1, [0.1, 0.8, 0.1], [0.8, 0.1, 0.1])
    >>> guesses = rng.dirichlet(np.ones(3), 300)
    >>> round(leep_score(tracks, y), 2), round(leep_score(guesses, y), 2)
    (-0.26, -0.69)
    """
    P = _check_matrix(source_probs, "source_probs")
    n = P.shape[0]
    if (P < 0).any():
        raise ValueError(
            "source_probs must be probabilities; it has a negative entry in row "
            f"{int(np.flatnonzero((P < 0).any(axis=1))[0])}. If these are logits, apply a softmax."
        )
    row_sums = P.sum(axis=1)
    bad = np.abs(row_sums - 1.0) > 1e-3
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"source_probs rows must sum to 1; row {row} sums to {row_sums[row]:.6g}. "
            "Pass softmax outputs over the source classes."
        )
    P = P / row_sums[:, None]
    classes, codes = _encode_labels(y, n, other="source_probs")
    _require_two_classes(classes)
    joint = np.asarray(_indicator(codes, classes.shape[0]) @ P) / n
    marginal = joint.sum(axis=0)
    # A source class the model never predicts carries no mass in any row, so its
    # undefined conditional can be anything; 0 keeps the division finite.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = np.einsum("iz,iz->i", P, conditional[codes])
    return float(np.log(eep).mean())


def nce_score(source_labels: ArrayLike, y: ArrayLike) -> float:
    r"""NCE: negative conditional entropy of target labels given source labels.

    .. math::

        \text{NCE} = -H(Y \mid Z) = \sum_{y, z} \hat P(y, z) \log \hat P(y \mid z),

    with :math:`\hat P` the empirical joint of the target labels and the source
    model's hard predictions Z on the same samples (Tran et al., 2019). It is at
    most 0, reached when each source class maps to a single target class;
    higher is better.

    Parameters
    ----------
    source_labels : array-like of shape (n_samples,)
        The source model's predicted class per sample (argmax), any type.
    y : array-like of shape (n_samples,)
        Target labels, any type, at least two classes.

    Returns
    -------
    float

    References
    ----------
    Tran, Nguyen, Hassner. "Transferability and Hardness of Supervised
    Classification Tasks", ICCV 2019.

    Examples
    --------
    Source labels that determine the target label reach the maximum, 0; unrelated
    ones give about -log(2) on two balanced classes:

    >>> import numpy as np
    >>> from sktransfer import nce_score
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> source_labels = np.where(y == 1, "dog", "cat")
    >>> unrelated = rng.choice(["cat", "dog", "car"], 300)
    >>> round(nce_score(source_labels, y), 2), round(nce_score(unrelated, y), 1)
    (0.0, -0.7)
    """
    source = np.asarray(source_labels)
    if source.ndim == 2 and source.shape[1] == 1:
        source = source.ravel()
    if source.ndim != 1:
        raise ValueError(
            "source_labels must be 1-D hard labels of shape (n_samples,); "
            f"got shape {source.shape}. For probabilities use leep_score, "
            "or take source_probs.argmax(axis=1)."
        )
    _, z = _encode_labels(source, source.shape[0], name="source_labels", other="source_labels")
    classes, codes = _encode_labels(y, z.shape[0], other="source_labels")
    _require_two_classes(classes)
    n, n_source = z.shape[0], int(z.max()) + 1
    # Only the observed (y, z) pairs: a dense n_classes x n_source table can be huge.
    pairs, pair_counts = np.unique(codes.astype(np.int64) * n_source + z, return_counts=True)
    z_counts = np.bincount(z)[pairs % n_source]
    return float((pair_counts / n * np.log(pair_counts / z_counts)).sum())
