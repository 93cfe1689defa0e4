"""Turn whatever the user holds into rows a backbone can eat.

This package is the only code that inspects raw ``X``. Each kind of input becomes a
*source* (``Source``): ``len()``, ``row_keys(rows=None)`` (content hashes for the
feature cache) and ``load(indices)`` (a batch). An estimator builds one source per
``fit``/``transform`` call (:func:`as_source`) and passes it to every phase, so each row
is validated once. Errors name the offending row, path or parameter.

It also reads the ``X, y, sample_domain`` convention (:func:`resolve_domains`), shared by
the adaptation estimators and fine-tuning's deep adaptation.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from ._common import (
    _IMAGE_SUFFIXES,
    FeatureRows,
    Source,
    Subset,
    _is_pathlike,
    _is_pil,
    _unwrap_pandas,
)
from ._domains import (
    UNLABELLED,
    Domains,
    NoTargetRowsWarning,
    check_sample_domain,
    guess_unlabelled_mask,
    numeric_targets,
    resolve_domains,
    unlabelled_mask,
)
from ._images import (
    AmbiguousChannelsWarning,
    ArrayImages,
    ArrayListImages,
    ImagePreprocess,
    PathImages,
    PILImages,
    as_images,
    short_side,
)
from ._tables import TabularRows
from ._text import TextRows, as_text

__all__ = [
    "UNLABELLED",
    "AmbiguousChannelsWarning",
    "ArrayImages",
    "ArrayListImages",
    "Domains",
    "FeatureRows",
    "ImagePreprocess",
    "NoTargetRowsWarning",
    "PILImages",
    "PathImages",
    "Source",
    "Subset",
    "TabularRows",
    "TextRows",
    "as_images",
    "as_source",
    "as_text",
    "check_sample_domain",
    "guess_unlabelled_mask",
    "looks_like_images",
    "numeric_targets",
    "resolve_domains",
    "short_side",
    "unlabelled_mask",
]


def as_source(estimator, modality: str, X, *, reset: bool) -> Source:
    """The validated source of ``X`` for ``modality``; a source passes through unchanged.

    Tabular ``X`` goes through scikit-learn's ``validate_data`` under ``estimator``'s
    name (``reset=True`` records ``n_features_in_``); text reads ``estimator.missing``.
    """
    if isinstance(X, Source):
        return X
    if modality == "image":
        return as_images(X)
    if modality == "text":
        return as_text(X, missing=getattr(estimator, "missing", "raise"))
    try:
        X = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64])
    except ValueError:
        message = _non_numeric_column(X)
        if message is None:
            raise
        raise ValueError(message) from None
    return TabularRows(X)


def _non_numeric_column(X) -> str | None:
    """What "could not convert string to float: 'red'" means, with the column and the
    fix; None when every column is numeric (the error was about something else)."""
    columns = getattr(X, "columns", None)
    if columns is not None:  # a DataFrame: the first column that is not numeric
        col = next((c for c in columns if not _numeric(X[c])), None)
        values = None if col is None else X[col]
        where = f"column {col!r}"
    else:
        try:
            arr = np.asarray(X, dtype=object)
        except (TypeError, ValueError):
            return None
        if arr.ndim != 2:
            return None
        col = next((j for j in range(arr.shape[1]) if not _numeric(arr[:, j])), None)
        values = None if col is None else arr[:, col]
        where = f"column {col}"
    if col is None:
        return None
    example = next((v for v in values if isinstance(v, str)), None)
    name = col if isinstance(col, str) else "cat"
    return (
        f"X {where} holds strings"
        + (f" (e.g. {example!r})" if example is not None else "")
        + "; a tabular backbone takes numbers. Encode that column first, e.g. in a Pipeline "
        f"before this estimator: ColumnTransformer([({name!r}, OneHotEncoder(), [{col!r}])], "
        "remainder='passthrough')."
    )


def _numeric(values) -> bool:
    """False for a column of strings that do not read as numbers (complex numbers and
    other non-floats are sklearn's to explain)."""
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return not any(isinstance(v, (str, bytes)) for v in values)
    return True


def looks_like_images(X) -> bool:
    """True when ``X`` holds images (>= 3-D numeric arrays, PIL images, paths)."""
    if type(X).__name__ == "DataFrame" and X.shape[1] != 1:
        return False
    X = _unwrap_pandas(X, name="X")
    if isinstance(X, torch.Tensor):
        return X.ndim >= 3
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        return X.ndim >= 3
    if isinstance(X, (list, tuple, np.ndarray)) and len(X) > 0:
        first = X[0]
        if _is_pil(first):
            return True
        if isinstance(first, np.ndarray):
            return first.ndim >= 2
        if _is_pathlike(first):
            return str(first).lower().endswith(_IMAGE_SUFFIXES)
    return False
