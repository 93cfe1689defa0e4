"""Input checks shared by the transferability scores and the domain distances.

Each check raises a ``ValueError`` that names the argument, what was expected and the
first offending row.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

_EPS = np.finfo(np.float64).eps


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
