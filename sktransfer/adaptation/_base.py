"""Plumbing shared by the adaptation estimators.

The rows' domains are read by ``sktransfer.inputs`` (``resolve_domains``), which
fine-tuning shares; here is what every adaptation estimator does with them.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, MetaEstimatorMixin, is_regressor
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _assert_all_finite,
    _num_samples,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from .._log import caller_stacklevel
from ..inputs import (  # noqa: F401 - the adaptation estimators read them from here
    UNLABELLED,
    Domains,
    NoTargetRowsWarning,
    check_sample_domain,
    guess_unlabelled_mask,
    numeric_targets,
    resolve_domains,
    unlabelled_mask,
)


def final_step(estimator):
    """The estimator that receives ``sample_weight`` (the last step of pipelines)."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def check_accepts_sample_weight(estimator, owner: str) -> None:
    final = final_step(estimator)
    params = inspect.signature(final.fit).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "sample_weight" not in params and not takes_kwargs:
        raise ValueError(
            f"{owner} trains its estimator with sample_weight, but "
            f"{type(final).__name__}.fit does not accept sample_weight. Use an estimator "
            "that does (LogisticRegression, Ridge, SVC, HistGradientBoosting*, ...)."
        )


def fit_weighted(estimator, X, y, sample_weight):
    """Fit ``estimator`` with ``sample_weight``, reaching into pipelines.

    Without metadata routing a Pipeline only accepts ``<step>__sample_weight``;
    with routing on, the user's ``set_fit_request(sample_weight=True)`` on a
    step decides where the weights go, as everywhere else in scikit-learn.
    """
    if not isinstance(estimator, Pipeline) or get_config()["enable_metadata_routing"]:
        return estimator.fit(X, y, sample_weight=sample_weight)
    path, step = [], estimator
    while isinstance(step, Pipeline):
        name, step = step.steps[-1]
        path.append(name)
    return estimator.fit(X, y, **{"__".join([*path, "sample_weight"]): sample_weight})


def seed_estimator(estimator, random_state) -> None:
    """Give every ``random_state`` parameter of ``estimator`` a draw of ``random_state``."""
    rng = check_random_state(random_state)
    seeds = {
        key: int(rng.randint(np.iinfo(np.int32).max))
        for key in sorted(estimator.get_params(deep=True))
        if key == "random_state" or key.endswith("__random_state")
    }
    if seeds:
        estimator.set_params(**seeds)


def numeric_table(X) -> bool:
    """Whether scikit-learn's checks of a numeric table apply to ``X``.

    Sparse matrices, and numeric arrays, frames and nested lists of at most 2
    dimensions do (a 1-D one is a mistake the checks name). Images (3-D and 4-D
    arrays, PIL images), file paths and strings are passed to the wrapped
    estimator as given: a Pipeline that begins with ``PretrainedFeatures`` reads them.
    """
    if sp.issparse(X):
        return True
    if isinstance(X, (list, tuple)):
        probe = np.asarray(X[0]) if len(X) else np.zeros(0)
        ndim = probe.ndim + 1
    else:
        probe = np.asarray(X)
        ndim = probe.ndim
    return ndim <= 2 and probe.dtype.kind in "biufc"


def validate_X(estimator, X, *, reset: bool, dtype=None):
    """``X`` checked as its ``estimator``'s tags say, as scikit-learn's estimators do.

    A numeric table goes through ``validate_data``: 1-D X, NaN or inf where the
    tags do not allow them, sparse X where they do not allow it (COO, DIA, BSR and
    the rest become CSR where they do), complex values and a wrong number of
    features get scikit-learn's own messages. A DataFrame keeps its columns for
    the wrapped estimator (a ``ColumnTransformer`` may select them by name). Other
    inputs are passed through (see :func:`numeric_table`) unless ``dtype`` asks
    for numbers.
    """
    if dtype is None and not numeric_table(X):
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        return X
    tags = get_tags(estimator).input_tags
    checked = validate_data(
        estimator,
        X,
        reset=reset,
        accept_sparse=["csr", "csc"] if tags.sparse else False,
        ensure_all_finite="allow-nan" if tags.allow_nan else True,
        dtype=dtype,
    )
    return X if dtype is None and hasattr(X, "columns") else checked


def validate_fit(estimator, X, y, sample_domain):
    """``(X, y, domains)`` of an adaptation estimator's fit call, checked before any work.

    With no target rows the estimator warns (:class:`NoTargetRowsWarning`) and the
    caller fits on the source rows alone: what a user who forgot ``sample_domain``
    can recover from.
    """
    name = type(estimator).__name__
    regression = is_regressor(estimator)
    if y is None:
        marker = "NaN" if regression else "-1"
        raise ValueError(
            f"{name} requires y to be passed, but the target y is None. Pass the labels, "
            f"with y == {marker} on unlabelled target rows."
        )
    X = validate_X(estimator, X, reset=True, dtype=getattr(estimator, "_input_dtype", None))
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    if regression or y.dtype.kind == "f":
        # NaN is a marker (of unlabelled rows for regressors, of a mistake for classifiers,
        # which resolve_domains names); infinity is never meant.
        _assert_all_finite(numeric_targets(y), allow_nan=True, input_name="y")
    n_samples = _num_samples(X)
    domains = resolve_domains(
        y, sample_domain, n_samples, regression=regression, allow_no_target=True
    )
    if not regression:
        check_classification_targets(y[domains.labelled])
    if not domains.target.any():
        warnings.warn(
            f"{name} got no target rows, so it fits its estimator on the source rows alone, "
            "without adapting. Mark target rows with sample_domain < 0, or, without "
            f"sample_domain, with y == {'NaN' if regression else '-1'} on unlabelled rows.",
            NoTargetRowsWarning,
            stacklevel=caller_stacklevel(),
        )
    return X, y, domains


def adapter_tags(tags, estimator):
    """Tags of an adaptation estimator ending in ``estimator``: its input tags."""
    inner = get_tags(estimator).input_tags
    tags.input_tags.sparse = inner.sparse
    tags.input_tags.allow_nan = inner.allow_nan
    return tags


def _estimator_has(attr: str):
    def check(self) -> bool:
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        return hasattr(self.estimator, attr)

    return check


class WrappingAdapter(MetaEstimatorMixin, BaseEstimator):
    """Base of adaptation estimators that end in one fitted clone of ``estimator``.

    Subclasses set ``estimator_`` in ``fit``; prediction and scoring are the
    wrapped estimator's, on rows transformed by :meth:`_prepare_predict`.
    """

    # Routed to fit by default: a domain adaptation estimator has no use
    # for a Pipeline that drops the domains on the floor.
    __metadata_request__fit = {"sample_domain": True}

    def _is_regression(self) -> bool:
        return is_regressor(self.estimator)

    def _prepare_predict(self, X):
        check_is_fitted(self)
        return validate_X(self, X, reset=False, dtype=getattr(self, "_input_dtype", None))

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of the fitted classifier."""
        return self.estimator_.classes_

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the fitted estimator."""
        X = self._prepare_predict(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the fitted estimator."""
        X = self._prepare_predict(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the fitted estimator."""
        X = self._prepare_predict(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the fitted estimator."""
        X = self._prepare_predict(X)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("score"))
    def score(self, X, y, sample_weight=None):
        """Score of the fitted estimator on labelled (target) rows.

        Accuracy for classifiers and R² for regressors, as the wrapped
        estimator defines it.
        """
        X = self._prepare_predict(X)
        if sample_weight is None:
            return self.estimator_.score(X, y)
        return self.estimator_.score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        return adapter_tags(tags, self.estimator)
