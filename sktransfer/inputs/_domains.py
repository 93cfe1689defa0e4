"""The ``X, y, sample_domain`` convention (shared with skada), read in one place.

``sample_domain`` >= 0 marks source rows and < 0 target rows; without it, rows with
``y == -1`` (NaN for regressors) are the unlabelled target rows. The adaptation
estimators and fine-tuning's deep adaptation both read the rows through
:func:`resolve_domains`, so they agree on which rows are source, target and labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.multiclass import type_of_target

#: Label of an unlabelled row for classifiers (regressors use NaN), as in skada.
UNLABELLED = -1


class NoTargetRowsWarning(UserWarning):
    """An adaptation estimator was fitted without target rows, so it did not adapt.

    Issued when no row has ``sample_domain < 0`` (or, without ``sample_domain``, no
    row has ``y == -1``, NaN for regressors). The estimator then fits its
    ``estimator`` on the source rows alone, the model a user who forgot
    ``sample_domain`` would otherwise have fitted by hand.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import NoTargetRowsWarning, SourceWeighted
    >>> X, y = np.arange(8.0).reshape(-1, 1), np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = SourceWeighted(LogisticRegression()).fit(X, y)  # no y == -1 rows
    >>> caught[0].category is NoTargetRowsWarning
    True
    """


@dataclass(frozen=True)
class Domains:
    """Boolean row masks of one data set, all of length ``n_samples``."""

    source: np.ndarray
    target: np.ndarray
    labelled_target: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return self.source | self.labelled_target


def check_sample_domain(sample_domain, n_samples: int) -> np.ndarray:
    """Return ``sample_domain`` as a 1-D integer array of length ``n_samples``."""
    sd = np.asarray(sample_domain)
    if sd.ndim != 1:
        raise ValueError(
            f"sample_domain must be 1-D (one domain id per row); got shape {sd.shape}."
        )
    if sd.shape[0] != n_samples:
        raise ValueError(
            f"sample_domain has {sd.shape[0]} entries but X has {n_samples} rows; "
            "pass one domain id per row."
        )
    if sd.dtype.kind not in "iu":
        raise ValueError(
            "sample_domain must hold integers (>= 0 for source rows, < 0 for target "
            f"rows); got dtype {sd.dtype}. Convert it, e.g. np.where(is_target, -1, 0)."
        )
    return sd


def unlabelled_mask(y, *, regression: bool) -> np.ndarray:
    """Rows of ``y`` that carry the unlabelled marker (-1, or NaN for regression)."""
    y = np.asarray(y)
    if regression:
        return np.isnan(numeric_targets(y))
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(
            "y contains NaN. Classifiers mark unlabelled (target) rows with y == -1; "
            "NaN is the marker for regressors only."
        )
    if y.dtype.kind in "USb":
        return np.zeros(y.shape[0], dtype=bool)
    return np.asarray(y == UNLABELLED, dtype=bool)


def numeric_targets(y) -> np.ndarray:
    """``y`` as floats, or a ValueError naming the first value that is not a number."""
    try:
        return np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        first = next(i for i, v in enumerate(y.ravel()) if not _is_number(v))
        value = y.ravel()[first]
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(
            f"A regressor needs numeric y; row {first} of y is {value!r} (dtype "
            f"{y.dtype}). Class labels need a classifier; unlabelled rows are NaN."
        ) from None


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def guess_unlabelled_mask(y) -> np.ndarray:
    """Unlabelled rows of ``y`` when the task is not known (splitters, scorers).

    Float targets that contain NaN or look continuous use the regression
    marker; everything else uses -1.
    """
    y = np.asarray(y)
    if y.dtype.kind == "f":
        nan = np.isnan(y)
        if nan.any() or type_of_target(y) == "continuous":
            return nan
    return unlabelled_mask(y, regression=False)


def _check_minus_one_is_not_a_class(labelled_y) -> None:
    """A ValueError when reading y == -1 as unlabelled leaves one class (y in {-1, 1})."""
    classes = np.unique(labelled_y)
    if classes.size == 1:
        only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
        raise ValueError(
            f"Without sample_domain, rows with y == -1 are read as unlabelled target rows, "
            f"which leaves the labelled rows only one class: {only!r}. If -1 is one of your "
            "classes (labels in {-1, 1}), recode it, e.g. y = np.where(y == -1, 0, y), and "
            "say which rows are target rows with sample_domain (>= 0 source, < 0 target), "
            "setting y = -1 only on the target rows without a label: "
            "fit(X, y, sample_domain=sample_domain)."
        )


def resolve_domains(
    y, sample_domain, n_samples: int, *, regression: bool, allow_no_target: bool = False
) -> Domains:
    """Source, target and labelled-target masks of a training set.

    With ``sample_domain``, rows with a negative id are target rows, and a
    target row whose label is not the unlabelled marker is a labelled
    target row. Without it, the unlabelled rows are the target rows and
    there are no labelled target rows. No target rows is an error unless
    ``allow_no_target`` (the caller then warns, see :func:`validate_fit`).
    """
    unlabelled = unlabelled_mask(y, regression=regression)
    marker = "NaN" if regression else "-1"
    if sample_domain is None:
        target, labelled_target = unlabelled, np.zeros(n_samples, dtype=bool)
        how = f"pass sample_domain (< 0 for target rows) or set y = {marker} on target rows"
        if not regression and unlabelled.any():
            _check_minus_one_is_not_a_class(np.asarray(y)[~unlabelled])
    else:
        target = check_sample_domain(sample_domain, n_samples) < 0
        labelled_target = target & ~unlabelled
        how = "sample_domain must hold ids >= 0 for source rows and < 0 for target rows"
        bad = np.flatnonzero(~target & unlabelled)
        if bad.size:
            raise ValueError(
                f"{bad.size} source rows are unlabelled (y == {marker}), e.g. row "
                f"{bad[0]}. Source rows need labels; y == {marker} is reserved for "
                "unlabelled rows, so recode a class named -1 before fitting."
            )
    source = ~target
    if not source.any():
        raise ValueError(f"No source rows: every row is a target row; {how}.")
    if not target.any() and not allow_no_target:
        raise ValueError(f"No target rows: every row is a source row; {how}.")
    return Domains(source=source, target=target, labelled_target=labelled_target)
