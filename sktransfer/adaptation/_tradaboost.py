"""Instance-based transfer with a few labelled target rows: TrAdaBoost and TrAdaBoost.R2."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from ._base import (
    check_accepts_sample_weight,
    check_fit_inputs,
    fit_weighted,
    resolve_domains,
    seed_estimator,
)

# A round with no target error would get an infinite vote; this bounds it
# at log(1 / 1e-10) ≈ 23, which still outvotes any imperfect round.
_MIN_ERROR = 1e-10


class _BaseTrAdaBoost(MetaEstimatorMixin, BaseEstimator):
    """The boosting loop shared by the classifier and the regressor.

    Each round fits the estimator on source + labelled target rows with the
    current weights. Target rows it gets wrong gain weight, as in AdaBoost;
    source rows it gets wrong lose weight by the fixed factor
    β = 1 / (1 + √(2 ln n_source / n_estimators)), since a source row that
    disagrees with the target-fitted model is evidence it follows another
    p(y | x). Only the rounds in the second half vote, as in Dai et al.

    Dai et al. require each round's weighted target error to be below 1/2; a
    round at 1/2 or more gets no vote. Under a strong conditional shift the
    pooled first rounds follow the source and miss the target that badly, and
    error / (1 - error) >= 1 would never raise the target weights: until a
    round does better than chance on the target, each round doubles the
    weight of the target rows it gets wrong instead, until they weigh enough
    to be fitted.
    """

    __metadata_request__fit = {"sample_domain": True}

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, n_estimators=10, random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.random_state = random_state

    def _boost(self, X, y, sample_domain, *, regression):
        y, n_samples = check_fit_inputs(self, X, y, sample_domain)
        domains = resolve_domains(y, sample_domain, n_samples, regression=regression)
        if not domains.labelled_target.any():
            raise ValueError(
                f"{type(self).__name__} needs labelled target rows (sample_domain < 0 and "
                "a label in y); got none. With unlabelled target rows only, use "
                "ImportanceWeighting or CORAL."
            )
        check_accepts_sample_weight(self.estimator, type(self).__name__)
        rows = np.r_[np.flatnonzero(domains.source), np.flatnonzero(domains.labelled_target)]
        X_fit, y_fit = _safe_indexing(X, rows), y[rows]
        n_source = int(domains.source.sum())
        is_source = np.arange(rows.size) < n_source
        source_factor = 1.0 / (1.0 + np.sqrt(2.0 * np.log(n_source) / self.n_estimators))
        self._prepare_targets(y_fit)

        rng = check_random_state(self.random_state)
        weights = np.ones(rows.size)
        self.estimators_, self.estimator_errors_, self.estimator_weights_ = [], [], []
        beats_chance = False
        for _ in range(self.n_estimators):
            model = clone(self.estimator)
            seed_estimator(model, rng)
            fit_weighted(model, X_fit, y_fit, weights / weights.mean())
            loss = self._row_loss(model.predict(X_fit), y_fit)
            target_w = weights[~is_source]
            error = np.dot(target_w, loss[~is_source]) / target_w.sum()
            beats_chance = beats_chance or error < 0.5
            if beats_chance:
                clipped = np.clip(error, _MIN_ERROR, 0.5)
                target_factor = clipped / (1.0 - clipped)
                target_update = target_factor ** (-loss)
                vote = np.log(1.0 / target_factor)
            else:
                # Dai et al. require error < 1/2. Until one round meets it, the source
                # rows outweigh the few target rows (the pooled model follows the source),
                # and error / (1 - error) >= 1 would leave the target weights where they
                # are, so every later round would repeat this one. Shift weight towards
                # the target rows it gets wrong instead, as Pardoe & Stone's first stage
                # shifts it towards the target; no vote.
                target_update = 2.0**loss
                vote = 0.0
            weights = weights * np.where(is_source, source_factor**loss, target_update)
            # Keep the weights in floating-point range over many rounds.
            weights /= weights.max()
            self.estimators_.append(model)
            self.estimator_errors_.append(error)
            self.estimator_weights_.append(vote)
        self.estimator_errors_ = np.array(self.estimator_errors_)
        self.estimator_weights_ = np.array(self.estimator_weights_)
        self.source_weights_ = weights[is_source] / weights[is_source].mean()
        return self

    def _voters(self):
        """The second-half rounds and their vote weights (equal if all are 0)."""
        check_is_fitted(self)
        start = (self.n_estimators + 1) // 2 - 1
        votes = self.estimator_weights_[start:]
        if votes.sum() == 0:
            votes = np.ones_like(votes)
        return self.estimators_[start:], votes / votes.sum()


class TrAdaBoostClassifier(ClassifierMixin, _BaseTrAdaBoost):
    """TrAdaBoost (Dai et al., 2007): boosting that learns which source rows to trust.

    For many labelled source rows and a few labelled target rows whose
    p(y | x) differs (a conditional shift). Source rows the target-led
    ensemble keeps misclassifying fade out; target rows it misclassifies
    gain weight, as in AdaBoost.

    The error of each round is measured on the labelled target rows only.
    Multiclass labels are handled by the same rule (0/1 loss, weighted
    majority vote), which for two classes is exactly Dai et al.'s.

    Parameters
    ----------
    estimator : classifier
        Base learner; its ``fit`` must take ``sample_weight``. A weak learner
        (a shallow tree, a regularised linear model) boosts best.
    n_estimators : int, default=10
        Boosting rounds; the last ⌊n_estimators / 2⌋ + 1 of them (Dai et al.'s
        rounds ⌈N/2⌉ to N) vote.
    random_state : int, RandomState instance or None, default=None
        Seeds the ``random_state`` of each round's clone.

    Attributes
    ----------
    estimators_ : list of classifiers
        The fitted clone of every round.
    estimator_errors_ : ndarray of shape (n_estimators,)
        Weighted error of each round on the labelled target rows.
    estimator_weights_ : ndarray of shape (n_estimators,)
        Each round's vote: log((1 - error) / error), the error clipped to
        [1e-10, 1/2] (so 0 for a round no better than chance).
    source_weights_ : ndarray of shape (n_source_rows,)
        Final weights of the source rows (mean 1): low means "does not
        follow the target's labelling".
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    References
    ----------
    Dai, Yang, Xue, Yu, "Boosting for transfer learning", ICML 2007.

    Examples
    --------
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from sktransfer.adaptation import TrAdaBoostClassifier
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     shift="conditional", n_target_labelled=20, random_state=0)
    >>> model = TrAdaBoostClassifier(DecisionTreeClassifier(max_depth=2), random_state=0)
    >>> model.fit(X, y, sample_domain=sample_domain).predict(X[:3]).shape
    (3,)
    """

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_domain=None):
        """Boost on source rows and labelled target rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source and target rows, passed to the base learner as given.
        y : array-like of shape (n_samples,)
            Labels; -1 on unlabelled target rows (ignored).
        sample_domain : array-like of int of shape (n_samples,)
            >= 0 for source rows, < 0 for target rows; needed to mark
            labelled target rows.

        Returns
        -------
        self : TrAdaBoostClassifier
        """
        return self._boost(X, y, sample_domain, regression=False)

    def _prepare_targets(self, y_fit):
        self.classes_ = np.unique(y_fit)
        if self.classes_.size < 2:
            raise ValueError(
                f"TrAdaBoostClassifier needs at least 2 classes; got {self.classes_.tolist()}."
            )

    @staticmethod
    def _row_loss(pred, y):
        return (pred != y).astype(float)

    def predict_proba(self, X):
        """Share of the weighted vote of the voting rounds for each class.

        Vote shares, not calibrated probabilities: with the default 10 rounds
        they take few distinct values.
        """
        estimators, votes = self._voters()
        X = validate_data(self, X, reset=False, skip_check_array=True)
        shares = np.zeros((_num_samples(X), self.classes_.size))
        for model, vote in zip(estimators, votes):
            pred = np.searchsorted(self.classes_, model.predict(X))
            shares[np.arange(pred.size), pred] += vote
        return shares

    def predict(self, X):
        """Class with the largest weighted vote of the voting rounds."""
        shares = self.predict_proba(X)
        return self.classes_[np.argmax(shares, axis=1)]


class TrAdaBoostR2(RegressorMixin, _BaseTrAdaBoost):
    """TrAdaBoost.R2 (Pardoe & Stone, 2010): TrAdaBoost for regression.

    Each round's per-row loss is the absolute error scaled by the round's
    largest error (``loss`` shapes it, as in AdaBoost.R2); the prediction
    is the weighted median of the voting rounds' predictions.

    Parameters
    ----------
    estimator : regressor
        Base learner; its ``fit`` must take ``sample_weight``.
    n_estimators : int, default=10
    loss : {"linear", "square", "exponential"}, default="linear"
        Per-row loss in [0, 1] from the scaled absolute error e: e, e² or
        1 - exp(-e).
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    estimators_ : list of regressors
    estimator_errors_ : ndarray of shape (n_estimators,)
        Weighted mean loss of each round on the labelled target rows.
    estimator_weights_ : ndarray of shape (n_estimators,)
    source_weights_ : ndarray of shape (n_source_rows,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    References
    ----------
    Pardoe, Stone, "Boosting for regression transfer", ICML 2010.

    Examples
    --------
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> from sktransfer.adaptation import TrAdaBoostR2
    >>> from sktransfer.datasets import make_shifted_regression
    >>> X, y, sample_domain, y_true = make_shifted_regression(
    ...     shift="conditional", n_target_labelled=20, random_state=0)
    >>> model = TrAdaBoostR2(DecisionTreeRegressor(max_depth=3), random_state=0)
    >>> model.fit(X, y, sample_domain=sample_domain).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **_BaseTrAdaBoost._parameter_constraints,
        "loss": [StrOptions({"linear", "square", "exponential"})],
    }

    def __init__(self, estimator, *, n_estimators=10, loss="linear", random_state=None):
        super().__init__(estimator, n_estimators=n_estimators, random_state=random_state)
        self.loss = loss

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_domain=None):
        """Boost on source rows and labelled target rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Targets; NaN on unlabelled target rows (ignored).
        sample_domain : array-like of int of shape (n_samples,)
            >= 0 for source rows, < 0 for target rows.

        Returns
        -------
        self : TrAdaBoostR2
        """
        return self._boost(X, y, sample_domain, regression=True)

    def _prepare_targets(self, y_fit):
        pass

    def _row_loss(self, pred, y):
        error = np.abs(pred - y)
        largest = error.max()
        if largest == 0:
            return np.zeros_like(error)
        error = error / largest
        if self.loss == "square":
            return error**2
        if self.loss == "exponential":
            return 1.0 - np.exp(-error)
        return error

    def predict(self, X):
        """Weighted median of the voting rounds' predictions."""
        estimators, votes = self._voters()
        X = validate_data(self, X, reset=False, skip_check_array=True)
        preds = np.column_stack([model.predict(X) for model in estimators])
        order = np.argsort(preds, axis=1)
        cumulative = np.cumsum(votes[order], axis=1)
        median = np.argmax(cumulative >= 0.5 * cumulative[:, -1:], axis=1)
        return preds[np.arange(preds.shape[0]), order[np.arange(preds.shape[0]), median]]
