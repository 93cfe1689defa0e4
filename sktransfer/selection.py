"""Choosing the source model: transferability scores and domain distances.

Transferability scores estimate, without fine-tuning, how well a pretrained
model will do on a target task: LogME and H-score from the features it
produces, LEEP and NCE from its source-task predictions. Higher is better for
all four. ``mmd`` and ``proxy_a_distance`` measure how far apart two domains
are (lower is closer). ``rank_backbones`` extracts features with every
candidate backbone and sorts them by a score.

Only numpy and scipy are imported here; scikit-learn, torch and pandas are
imported inside the functions that need them.
"""

from __future__ import annotations

import numbers
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.special import expit

__all__ = [
    "hscore",
    "leep_score",
    "logme_score",
    "mmd",
    "nce_score",
    "proxy_a_distance",
    "rank_backbones",
]

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------
# input validation


def _check_matrix(X: ArrayLike, name: str, *, min_rows: int = 2) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a dense numeric array of shape (n_samples, n_features); "
            f"it could not be converted to float64 ({exc})."
        ) from None
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, of shape (n_samples, n_features); got shape {X.shape}. "
            f"For a single feature pass {name}.reshape(-1, 1)."
        )
    if X.shape[0] < min_rows or X.shape[1] < 1:
        raise ValueError(
            f"{name} needs at least {min_rows} rows and 1 column; got shape {X.shape}."
        )
    finite = np.isfinite(X)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(
            f"{name} contains NaN or infinity (first in row {row}); "
            "impute or drop those rows before scoring."
        )
    return X


def _check_same_length(n: int, m: int, name: str, other: str) -> None:
    if n != m:
        raise ValueError(
            f"{name} has {m} entries but {other} has {n} rows; "
            "they must describe the same samples, in the same order."
        )


def _encode_labels(
    y: ArrayLike, n_samples: int, *, name: str = "y", other: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Return (classes, codes) for 1-D labels, with codes in range(len(classes))."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D labels of shape (n_samples,); got shape {y.shape}.")
    _check_same_length(n_samples, y.shape[0], name, other)
    if y.dtype.kind == "f":
        missing = np.isnan(y)
    elif y.dtype == object:
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in y])
    else:
        missing = np.zeros(y.shape[0], dtype=bool)
    if missing.any():
        raise ValueError(
            f"{name} has a missing label (NaN or None) in row {int(np.flatnonzero(missing)[0])}; "
            "drop unlabelled rows before scoring."
        )
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:
        raise ValueError(
            f"{name} mixes label types that cannot be sorted (e.g. str and int); "
            "use one type for all labels."
        ) from None
    return classes, codes.ravel()


def _require_two_classes(classes: np.ndarray, name: str = "y") -> None:
    if classes.shape[0] < 2:
        raise ValueError(
            f"{name} has a single class ({classes[0]!r}); "
            "a transferability score needs at least 2 classes."
        )


def _indicator(codes: np.ndarray, n_classes: int) -> sp.csr_array:
    """Sparse (n_classes, n_samples) one-hot matrix: ``ind @ X`` gives per-class sums."""
    n = codes.shape[0]
    return sp.csr_array((np.ones(n), (codes, np.arange(n))), shape=(n_classes, n))


# --------------------------------------------------------------------------
# LogME


def _logme_targets(y: ArrayLike, n: int, regression: bool | None) -> tuple[Any, np.ndarray]:
    """Targets as a (n_targets, n_samples) matrix and their squared norms."""
    y_arr = np.asarray(y)
    if regression is None:
        # Float labels that are all whole numbers (0., 1., 2.) are class labels
        # that went through a float array; anything fractional is a quantity. NaN
        # decides nothing: it is reported as a missing label or value below.
        regression = (y_arr.ndim == 2 and y_arr.shape[1] > 1) or (
            y_arr.dtype.kind == "f"
            and bool(np.any(np.isfinite(y_arr) & (y_arr != np.round(y_arr))))
        )
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
    >>> from sktransfer.selection import logme_score
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
    shrinkage: float | Literal["auto"] | None = None,
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
    shrinkage : "auto" or float in [0, 1], default=None
        None: the pseudo-inverse of the sample covariance (eigenvalues below
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
    >>> from sktransfer.selection import hscore
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
    if not (
        shrinkage is None or is_fraction or (isinstance(shrinkage, str) and shrinkage == "auto")
    ):
        raise ValueError(f"shrinkage must be None, 'auto' or a float in [0, 1]; got {shrinkage!r}.")

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

    if shrinkage is None:
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


# --------------------------------------------------------------------------
# domain distances


def _check_domains(Xs: ArrayLike, Xt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    Xs = _check_matrix(Xs, "Xs")
    Xt = _check_matrix(Xt, "Xt")
    if Xs.shape[1] != Xt.shape[1]:
        raise ValueError(
            f"Xs has {Xs.shape[1]} features but Xt has {Xt.shape[1]}; "
            "both domains must be described by the same features."
        )
    return Xs, Xt


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    D = (
        np.einsum("ij,ij->i", A, A)[:, None]
        + np.einsum("ij,ij->i", B, B)[None, :]
        - 2.0 * (A @ B.T)
    )
    return np.maximum(D, 0.0, out=D)


def mmd(
    Xs: ArrayLike,
    Xt: ArrayLike,
    *,
    kernel: Literal["rbf", "linear"] | Callable[[np.ndarray, np.ndarray], ArrayLike] = "rbf",
    gamma: float | None = None,
    max_samples: int | None = 2000,
    random_state: int | np.random.RandomState | None = None,
) -> float:
    r"""Unbiased estimate of the squared maximum mean discrepancy between two samples.

    .. math::

        \widehat{\text{MMD}}^2_u = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{n(n-1)}\sum_{i \ne j} k(x'_i, x'_j)
        - \frac{2}{mn}\sum_{i, j} k(x_i, x'_j)

    (Gretton et al., 2012). It is 0 in expectation when both samples come from
    one distribution, so it can be slightly negative; with a characteristic
    kernel such as the RBF it is positive in the limit for any two different
    distributions.

    Parameters
    ----------
    Xs, Xt : array-like of shape (m, n_features) and (n, n_features)
        Source and target samples (raw inputs or features), at least 2 rows each.
    kernel : "rbf", "linear" or callable, default="rbf"
        "rbf": :math:`k(a, b) = \exp(-\gamma \|a - b\|^2)`. "linear":
        :math:`a^\top b`, for which the estimate is the squared distance between
        the means, debiased. A callable takes two arrays and returns their
        kernel matrix.
    gamma : float, default=None
        RBF bandwidth. None uses the median heuristic on the pooled sample
        (after subsampling): :math:`\gamma = 1 / (2 \operatorname{median}\,
        \|a - b\|^2)` over all distinct pairs of rows of ``Xs`` and ``Xt``
        stacked, i.e. :math:`k = \exp(-\|a-b\|^2 / 2\ell^2)` with
        :math:`\ell^2` the median squared distance. If that median is 0,
        :math:`\gamma = 1`.
    max_samples : int or None, default=2000
        Each sample larger than this is replaced by ``max_samples`` rows drawn
        without replacement, which bounds the cost to O(max_samples^2 *
        n_features) time and three max_samples^2 kernel blocks in memory. None
        uses every row.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsampling.

    Returns
    -------
    float

    References
    ----------
    Gretton, Borgwardt, Rasch, Schölkopf, Smola. "A Kernel Two-Sample Test", JMLR
    13, 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import mmd
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(0.0, 1.0, (200, 2))
    >>> target = rng.normal(1.0, 1.0, (200, 2))  # shifted by 1 in both features
    >>> same = rng.normal(0.0, 1.0, (200, 2))  # a second draw from the source's law
    >>> round(mmd(source, target), 2), round(mmd(source, same), 3)
    (0.22, -0.002)
    """
    from sklearn.utils import check_random_state

    Xs, Xt = _check_domains(Xs, Xt)
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2
    ):
        raise ValueError(f"max_samples must be an int >= 2 or None; got {max_samples!r}.")
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be a positive float or None; got {gamma!r}.")
    rng = check_random_state(random_state)
    if max_samples is not None:
        if Xs.shape[0] > max_samples:
            Xs = Xs[np.sort(rng.choice(Xs.shape[0], max_samples, replace=False))]
        if Xt.shape[0] > max_samples:
            Xt = Xt[np.sort(rng.choice(Xt.shape[0], max_samples, replace=False))]
    m, n = Xs.shape[0], Xt.shape[0]

    if kernel == "rbf":
        Kss, Ktt, Kst = _sq_dists(Xs, Xs), _sq_dists(Xt, Xt), _sq_dists(Xs, Xt)
        if gamma is None:
            pooled = np.concatenate(
                [Kss[np.triu_indices(m, 1)], Ktt[np.triu_indices(n, 1)], Kst.ravel()]
            )
            median = np.median(pooled)
            gamma = 1.0 / (2.0 * median) if median > 0 else 1.0
        for K in (Kss, Ktt, Kst):
            np.exp(-gamma * K, out=K)
    elif kernel == "linear":
        Kss, Ktt, Kst = Xs @ Xs.T, Xt @ Xt.T, Xs @ Xt.T
    elif callable(kernel):
        Kss, Ktt, Kst = (
            np.asarray(kernel(A, B), dtype=np.float64) for A, B in ((Xs, Xs), (Xt, Xt), (Xs, Xt))
        )
    else:
        raise ValueError(f"kernel must be 'rbf', 'linear' or a callable; got {kernel!r}.")

    within_s = (Kss.sum() - np.trace(Kss)) / (m * (m - 1))
    within_t = (Ktt.sum() - np.trace(Ktt)) / (n * (n - 1))
    return float(within_s + within_t - 2.0 * Kst.mean())


def proxy_a_distance(
    Xs: ArrayLike,
    Xt: ArrayLike,
    *,
    estimator: Any = None,
    cv: Any = 5,
    random_state: int | np.random.RandomState | None = None,
) -> float:
    r"""Proxy A-distance: how well a classifier tells the two domains apart.

    .. math::

        \hat d_{\mathcal A} = 2(1 - 2\epsilon)

    with :math:`\epsilon` the cross-validated balanced error of a classifier
    trained to predict the domain (Ben-David et al., 2007). 0 means the domains
    are indistinguishable to that classifier, 2 that they are perfectly
    separable. The balanced error (mean of the per-domain error rates) equals
    the plain error when both samples have the same size and otherwise keeps a
    majority-domain guess at 0.5, so unequal sizes do not inflate the distance.
    Below-chance errors give negative values, which are clipped to 0.

    Parameters
    ----------
    Xs, Xt : array-like of shape (m, n_features) and (n, n_features)
        Source and target samples (raw inputs or features).
    estimator : sklearn classifier, default=None
        The domain classifier. None uses
        ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``,
        a linear separator; a more flexible classifier gives a larger distance.
    cv : int or cross-validation splitter, default=5
        An int means a ``StratifiedKFold`` with that many shuffled folds.
    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffling when ``cv`` is an int.

    Returns
    -------
    float
        In [0, 2].

    References
    ----------
    Ben-David, Blitzer, Crammer, Pereira. "Analysis of Representations for Domain
    Adaptation", NeurIPS 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import proxy_a_distance
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(0.0, 1.0, (200, 2))
    >>> target = rng.normal(1.0, 1.0, (200, 2))
    >>> same = rng.normal(0.0, 1.0, (200, 2))
    >>> round(proxy_a_distance(source, target, random_state=0), 2)
    1.05
    >>> proxy_a_distance(source, same, random_state=0)
    0.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, Xt = _check_domains(Xs, Xt)
    if estimator is None:
        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if cv < 2 or cv > min(Xs.shape[0], Xt.shape[0]):
            raise ValueError(
                f"cv must be between 2 and the size of the smaller domain "
                f"({min(Xs.shape[0], Xt.shape[0])}); got {cv}."
            )
        cv = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    X = np.concatenate([Xs, Xt])
    domain = np.r_[np.zeros(Xs.shape[0], dtype=int), np.ones(Xt.shape[0], dtype=int)]
    accuracy = cross_val_score(estimator, X, domain, cv=cv, scoring="balanced_accuracy").mean()
    return float(np.clip(2.0 * (1.0 - 2.0 * (1.0 - accuracy)), 0.0, 2.0))


# --------------------------------------------------------------------------
# ranking candidate backbones


_METRICS: dict[str, Callable[[np.ndarray, ArrayLike], float]] = {
    "logme": logme_score,
    "hscore": hscore,
}


def _candidate_names(candidates: Sequence[Any]) -> list[str]:
    names = [c if isinstance(c, str) else type(c).__name__ for c in candidates]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    return [f"{name}_{i}" if name in repeated else name for i, name in enumerate(names)]


def rank_backbones(
    X: Any,
    y: ArrayLike,
    candidates: Sequence[Any] | Mapping[str, Any],
    *,
    metric: Literal["logme", "hscore"] | Callable[[np.ndarray, ArrayLike], float] = "logme",
    **feature_params: Any,
):
    """Rank pretrained backbones for a target task by a transferability score.

    Each candidate's features for ``X`` are extracted with
    ``PretrainedFeatures`` and scored against ``y``; no fine-tuning happens,
    so ranking a handful of backbones costs one forward pass each.

    Parameters
    ----------
    X : array-like
        Target inputs in any form ``PretrainedFeatures`` accepts (images, paths,
        strings, tables), typically a few hundred to a few thousand labelled
        samples.
    y : array-like of shape (n_samples,)
        Target labels (or real values for ``metric="logme"``, see
        ``logme_score``).
    candidates : list of backbone specs, or dict of name -> spec or PretrainedFeatures
        A list of specs (registered names such as ``"resnet18"``, ``nn.Module``
        instances, fitted sktransfer estimators) is named by ``str(spec)`` for
        strings and the class name for other objects, suffixed with
        ``_<position>`` when a name repeats. A dict gives the names; its values
        are specs or configured ``PretrainedFeatures`` (cloned before fitting).
    metric : "logme", "hscore" or callable, default="logme"
        A callable is called as ``metric(features, y)`` and must return a float,
        higher meaning better.
    **feature_params
        Passed to every ``PretrainedFeatures`` (e.g. ``batch_size``,
        ``device``); for dict values that already are ``PretrainedFeatures``
        they are applied with ``set_params``.

    Returns
    -------
    pandas.DataFrame or list of dict
        One row per candidate, best first, indexed by name, with columns
        ``score``, ``n_features`` and ``seconds`` (feature extraction plus
        scoring). Without pandas installed, a list of dicts with a ``name`` key
        in the same order.

    Examples
    --------
    Two candidate bodies for 300 real digits (as 64-pixel rows): the wider one keeps
    more of what tells the digits apart, and LogME ranks it first.

    >>> from sklearn.datasets import load_digits
    >>> from torch import nn
    >>> from sktransfer import rank_backbones
    >>> X, y = load_digits(return_X_y=True)
    >>> X, y = X[:300] / 16, y[:300]
    >>> candidates = {
    ...     "narrow": nn.Sequential(nn.LazyLinear(4), nn.ReLU()),
    ...     "wide": nn.Sequential(nn.LazyLinear(64), nn.ReLU()),
    ... }
    >>> ranking = rank_backbones(X, y, candidates, random_state=0)
    >>> list(ranking.index), list(ranking.n_features)
    (['wide', 'narrow'], [64, 4])
    >>> ranking.score.round(2).tolist()
    [0.28, -0.22]
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(
                f"metric must be one of {sorted(_METRICS)} or a callable; got {metric!r}."
            )
        score_fn = _METRICS[metric]
    elif callable(metric):
        score_fn = metric
    else:
        raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable; got {metric!r}.")
    if isinstance(candidates, Mapping):
        names, specs = [str(k) for k in candidates], list(candidates.values())
    elif isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise ValueError(
            "candidates must be a list of backbone specs or a dict of name -> spec; "
            f"got {type(candidates).__name__}. Wrap a single backbone in a list."
        )
    else:
        specs = list(candidates)
        names = _candidate_names(specs)
    if not specs:
        raise ValueError("candidates is empty; pass at least one backbone.")

    from sklearn.base import clone

    from sktransfer.features import PretrainedFeatures

    rows = []
    for name, spec in zip(names, specs):
        start = time.perf_counter()
        if isinstance(spec, PretrainedFeatures):
            extractor = clone(spec).set_params(**feature_params)
        else:
            extractor = PretrainedFeatures(spec, **feature_params)
        features = np.asarray(extractor.fit(X).transform(X))
        score = float(score_fn(features, y))
        rows.append(
            {
                "name": name,
                "score": score,
                "n_features": int(features.shape[1]),
                "seconds": time.perf_counter() - start,
            }
        )
    # NaN scores (possible from a user metric) sort last rather than scrambling the order.
    rows.sort(key=lambda row: -row["score"] if row["score"] == row["score"] else np.inf)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows).set_index("name")
