"""Domain distances: how far apart a source and a target sample lie (lower is closer).

``mmd`` needs only numpy (and scikit-learn's ``check_random_state`` to seed its
subsampling). ``proxy_a_distance`` is defined by a classifier trained to tell the domains
apart, so it imports scikit-learn's logistic regression and cross-validation; nothing here
imports torch or an sktransfer estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state, get_tags

from ._checks import _check_matrix

__all__ = ["mmd", "proxy_a_distance"]


def _check_domains(
    Xs: ArrayLike, Xt: ArrayLike, *, allow_nan: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    checked = []
    for X, name in ((Xs, "Xs"), (Xt, "Xt")):
        if allow_nan and not isinstance(X, str):
            try:
                values = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError):
                values = None  # _check_matrix names the problem
            if values is not None:
                # NaN passes (the classifier takes it); infinity and bad shapes do not.
                missing = np.isnan(values)
                _check_matrix(np.where(missing, 0.0, values), name)
                checked.append(values)
                continue
        checked.append(_check_matrix(X, name))
    Xs, Xt = checked
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
        NaN in Xs or Xt is passed to an estimator that takes it
        (``HistGradientBoostingClassifier``); the default then first imputes
        the median and adds a 0/1 column per feature with NaN.
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
    takes_nan = estimator is None or get_tags(estimator).input_tags.allow_nan
    Xs, Xt = _check_domains(Xs, Xt, allow_nan=True)
    if not takes_nan:
        for X, name in ((Xs, "Xs"), (Xt, "Xt")):
            rows = np.flatnonzero(np.isnan(X).any(axis=1))
            if rows.size:
                raise ValueError(
                    f"{name} has NaN (first in row {rows[0]}) and the estimator, "
                    f"{type(estimator).__name__}, does not take NaN. Impute it, pass an "
                    "estimator that takes NaN (HistGradientBoostingClassifier), or leave "
                    "estimator=None (the default imputes and adds missing-value indicators)."
                )
    if estimator is None:
        impute = []
        if np.isnan(Xs).any() or np.isnan(Xt).any():
            # Where a value is missing can itself tell the domains apart (a site that
            # never measures it): the median and a 0/1 column per feature with NaN.
            impute = [SimpleImputer(strategy="median", add_indicator=True)]
        estimator = make_pipeline(*impute, StandardScaler(), LogisticRegression(max_iter=1000))
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
