"""Model-based adaptation: minimise L_target + λ·L_source with any estimator."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context, clone, is_classifier, is_regressor
from sklearn.metrics import check_scoring, log_loss, make_scorer
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ._base import (
    WrappingAdapter,
    check_accepts_sample_weight,
    fit_weighted,
    validate_fit,
)

# Candidate total source weight relative to the total target weight.
_AUTO_SOURCE_MASS = (0.1, 0.3, 1.0, 3.0, 10.0)


class SourceWeighted(WrappingAdapter):
    """Fit on labelled target rows plus source rows down-weighted by λ.

    The joint objective L_T + λ·L_S, with L_T summed over the labelled target
    rows and L_S over the source rows, is a weighted fit: weight 1 on target
    rows and λ on source rows. λ = 1 pools the domains, λ = 0 ignores the
    source. When the target has a few labels and the domains disagree in
    p(y | x) (a conditional shift), the best λ lies in between and is found
    by cross-validation on the labelled target rows.

    The weights are rescaled to mean 1 before fitting, so the estimator's
    regularisation means what it means without weights.

    Parameters
    ----------
    estimator : estimator object
        Its ``fit`` must take ``sample_weight``.
    source_weight : float, "auto" or array-like of float, default="auto"
        λ, the weight of each source row relative to a labelled target row.
        ``"auto"``: chosen by cross-validation on the labelled target rows
        among λ = 0 (target only), the λ that give the source a total weight
        of 0.1, 0.3, 1, 3 and 10 times the target's, and λ = 1 (pooling).
        An array: chosen by cross-validation among its values. Source rows
        stay in every fit, with weight λ, so even λ = 0 knows every class.
    cv : int or cross-validation generator, default=5
        Splits of the labelled target rows when λ is chosen. An int gives
        stratified folds for classifiers, as many as the rarest class
        allows (at most ``cv``); shuffled K folds for regressors and when a
        class has a single labelled target row.
    scoring : str, callable or None, default=None
        Score on the held-out target rows when λ is chosen. None: log-loss
        for classifiers with ``predict_proba``, squared error for regressors
        (both grade every prediction, where accuracy on a fold of a few rows
        moves in steps of a whole row), else the estimator's ``score``.

    Attributes
    ----------
    estimator_ : estimator object
        The clone of ``estimator`` fitted with the chosen λ.
    source_weight_ : float
        The λ used.
    cv_results_ : dict or None
        ``{"source_weight", "mean_test_score", "std_test_score"}`` over the
        candidates, when λ was chosen by cross-validation.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    See Also
    --------
    TrAdaBoostClassifier : learns a weight per source row instead of one λ.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import SourceWeighted
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     shift="conditional", n_target_labelled=30, random_state=0)
    >>> model = SourceWeighted(LogisticRegression()).fit(X, y, sample_domain=sample_domain)
    >>> model.source_weight_ < 1
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "source_weight": [
            Interval(Real, 0, None, closed="left"),
            StrOptions({"auto"}),
            "array-like",
        ],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object"],
        "scoring": [str, callable, None],
    }

    def __init__(self, estimator, *, source_weight="auto", cv=5, scoring=None):
        self.estimator = estimator
        self.source_weight = source_weight
        self.cv = cv
        self.scoring = scoring

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_domain=None):
        """Choose λ if asked, then fit on target rows and λ-weighted source rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source and target rows, passed to the estimator as given.
        y : array-like of shape (n_samples,)
            Labels; -1 (NaN for regressors) on unlabelled target rows, which
            this estimator does not use.
        sample_domain : array-like of int of shape (n_samples,)
            >= 0 for source rows, < 0 for target rows. Required in practice:
            without it no target row can be labelled.

        Returns
        -------
        self : SourceWeighted

        Warns
        -----
        NoTargetRowsWarning
            When no row is a target row: ``estimator`` is then fitted on the source
            rows alone (``source_weight_`` 1.0).
        """
        X, y, domains = validate_fit(self, X, y, sample_domain)
        if domains.target.any() and not domains.labelled_target.any():
            raise ValueError(
                "SourceWeighted needs labelled target rows (sample_domain < 0 and a label "
                "in y); got none. With unlabelled target rows only, use "
                "ImportanceWeighting or CORAL."
            )
        check_accepts_sample_weight(self.estimator, type(self).__name__)
        source_idx = np.flatnonzero(domains.source)
        target_idx = np.flatnonzero(domains.labelled_target)

        candidates = self._candidates(source_idx.size, target_idx.size)
        if not target_idx.size:
            # No target rows (validate_fit warned): the source alone, every row weighing 1.
            self.source_weight_ = 1.0
            self.cv_results_ = None
        elif candidates is None:
            self.source_weight_ = float(self.source_weight)
            self.cv_results_ = None
        else:
            scores = self._cross_validate(X, y, source_idx, target_idx, candidates)
            self.cv_results_ = {
                "source_weight": candidates,
                "mean_test_score": scores.mean(axis=1),
                "std_test_score": scores.std(axis=1),
            }
            self.source_weight_ = float(candidates[np.argmax(scores.mean(axis=1))])
        self.estimator_ = self._fit_weighted(X, y, source_idx, target_idx, self.source_weight_)
        return self

    def _candidates(self, n_source, n_target):
        if isinstance(self.source_weight, Real):
            return None
        if isinstance(self.source_weight, str):
            grid = np.minimum(np.array(_AUTO_SOURCE_MASS) * n_target / n_source, 1.0)
            return np.unique(np.r_[0.0, grid, 1.0])
        grid = np.asarray(self.source_weight, dtype=float).ravel()
        if grid.size == 0 or (grid < 0).any() or not np.isfinite(grid).all():
            raise ValueError(
                f"source_weight candidates must be finite and >= 0; got {self.source_weight!r}."
            )
        return grid

    def _fit_weighted(self, X, y, source_idx, target_idx, source_weight):
        rows = np.r_[source_idx, target_idx]
        weights = np.r_[np.full(source_idx.size, source_weight), np.ones(target_idx.size)]
        return fit_weighted(
            clone(self.estimator), _safe_indexing(X, rows), y[rows], weights / weights.mean()
        )

    def _cross_validate(self, X, y, source_idx, target_idx, candidates) -> np.ndarray:
        y_target = y[target_idx]
        splitter = self._splitter(y_target)
        scorer = self._scorer(np.unique(y[np.r_[source_idx, target_idx]]))
        splits = list(splitter.split(np.zeros((target_idx.size, 1)), y_target))
        scores = np.empty((len(candidates), len(splits)))
        for i, weight in enumerate(candidates):
            for j, (train, test) in enumerate(splits):
                model = self._fit_weighted(X, y, source_idx, target_idx[train], weight)
                held_out = target_idx[test]
                scores[i, j] = scorer(model, _safe_indexing(X, held_out), y[held_out])
        return scores

    def _scorer(self, classes):
        # Accuracy and R² on a fold of a few target rows jump by a whole row's
        # worth; log-loss and squared error grade every prediction, so they pick λ
        # with less noise.
        if self.scoring is not None:
            return check_scoring(self.estimator, scoring=self.scoring)
        if is_classifier(self.estimator) and hasattr(self.estimator, "predict_proba"):
            # All classes named: a fold of a skewed target may hold only one.
            return make_scorer(
                log_loss, greater_is_better=False, response_method="predict_proba", labels=classes
            )
        if is_regressor(self.estimator):
            return check_scoring(self.estimator, scoring="neg_mean_squared_error")
        return check_scoring(self.estimator)

    def _splitter(self, y_target):
        if not isinstance(self.cv, Integral):
            return check_cv(self.cv, y_target, classifier=is_classifier(self.estimator))
        if y_target.size < 2:
            raise ValueError(
                "Choosing source_weight by cross-validation needs at least 2 labelled "
                "target rows; pass a float source_weight."
            )
        if is_classifier(self.estimator):
            smallest_class = np.unique(y_target, return_counts=True)[1].min()
            if smallest_class >= 2:
                return StratifiedKFold(n_splits=min(self.cv, smallest_class))
        # Every training fold holds all source rows, so a class seen once
        # among the target rows (a skewed site) is still learnt in every fold.
        return KFold(n_splits=min(self.cv, y_target.size), shuffle=True, random_state=0)
