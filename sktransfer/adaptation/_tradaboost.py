"""Instance-based transfer with a few labelled target rows: TrAdaBoost and TrAdaBoost.R2."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy.optimize import brentq
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from ._base import (
    adapter_tags,
    check_accepts_sample_weight,
    fit_weighted,
    seed_estimator,
    validate_fit,
    validate_X,
)

# A round with no target error would get an infinite vote; this bounds it
# at log(1 / 1e-10) ≈ 23, which still outvotes any imperfect round.
_MIN_ERROR = 1e-10


def _training_rows(estimator, X, y, sample_domain):
    """Source rows then labelled target rows of a fit call, and which are source.

    With no target rows at all (``validate_fit`` warned) every row is a source row.
    """
    X, y, domains = validate_fit(estimator, X, y, sample_domain)
    if domains.target.any() and not domains.labelled_target.any():
        raise ValueError(
            f"{type(estimator).__name__} needs labelled target rows (sample_domain < 0 and "
            "a label in y); got none. With unlabelled target rows only, use "
            "ImportanceWeighting or CORAL."
        )
    check_accepts_sample_weight(estimator.estimator, type(estimator).__name__)
    rows = np.r_[np.flatnonzero(domains.source), np.flatnonzero(domains.labelled_target)]
    is_source = np.arange(rows.size) < domains.source.sum()
    return _safe_indexing(X, rows), y[rows], is_source


class _BaseTrAdaBoost(MetaEstimatorMixin, BaseEstimator):
    """Dai et al.'s boosting loop (the classifier's).

    Each round fits the estimator on source + labelled target rows with the
    current weights and scores every row by |h(x) - c(x)|, Dai et al.'s loss
    for a hypothesis with values in [0, 1]: one minus the probability the
    round gives the row's label (0/1 if the estimator has no
    ``predict_proba``). Target rows it gets wrong gain weight, as in AdaBoost;
    source rows it gets wrong lose weight by the fixed factor
    β = 1 / (1 + √(2 ln n_source / n_estimators)), since a source row that
    disagrees with the target-fitted model is evidence it follows another
    p(y | x). Only the rounds in the second half vote, as in Dai et al.

    Dai et al. require each round to beat chance on the target. A round whose
    weighted 0/1 target error is not one standard error below 1/2 (the
    standard error of a proportion over the target rows' effective number,
    (Σw)² / Σw²) has not shown that it does: it gets no vote, and since
    error / (1 - error) ≈ 1 would barely move the target weights, every later
    round would repeat it (the source outweighs the few target rows, so a
    pooled model that follows a contradicting source sits there for good).
    Such a round doubles the weight of every target row instead, as Pardoe &
    Stone's first stage shifts weight from the source to the target, whenever
    it happens (not only before the first round that beats chance).
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

    def _boost(self, X, y, sample_domain):
        X_fit, y_fit, is_source = _training_rows(self, X, y, sample_domain)
        n_source = int(is_source.sum())
        source_factor = 1.0 / (1.0 + np.sqrt(2.0 * np.log(n_source) / self.n_estimators))
        self._prepare_targets(y_fit)

        rng = check_random_state(self.random_state)
        if is_source.all():
            return self._fit_source_only(X_fit, y_fit, rng)
        weights = np.ones(is_source.size)
        self.estimators_, self.estimator_errors_, self.estimator_weights_ = [], [], []
        for _ in range(self.n_estimators):
            model = clone(self.estimator)
            seed_estimator(model, rng)
            fit_weighted(model, X_fit, y_fit, weights / weights.mean())
            missed = (model.predict(X_fit) != y_fit).astype(float)
            loss = self._soft_loss(model, X_fit, y_fit, missed)
            target_w = weights[~is_source]
            error = np.dot(target_w, loss[~is_source]) / target_w.sum()
            missed_share = np.dot(target_w, missed[~is_source]) / target_w.sum()
            n_effective = target_w.sum() ** 2 / np.dot(target_w, target_w)
            if missed_share < 0.5 - np.sqrt(0.25 / n_effective) and error < 0.5:
                clipped = max(error, _MIN_ERROR)
                target_factor = clipped / (1.0 - clipped)
                target_update = target_factor ** (-loss)
                vote = np.log(1.0 / target_factor)
            else:
                # No better than chance, as far as these few target rows can tell:
                # shift weight from the source to the whole target, not to the rows
                # it missed (once AdaBoost has piled the target weight on a few noisy
                # rows, doubling those again fits the noise).
                target_update = np.full(loss.shape, 2.0)
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

    @staticmethod
    def _soft_loss(model, X, y, missed):
        """1 - P(label) per row from ``predict_proba``; the 0/1 loss without it."""
        if not hasattr(model, "predict_proba"):
            return missed
        proba = model.predict_proba(X)
        columns = np.searchsorted(model.classes_, y)
        return np.clip(1.0 - proba[np.arange(y.shape[0]), columns], 0.0, 1.0)

    def _fit_source_only(self, X_fit, y_fit, rng):
        """One round on the source rows: no target rows to boost against or to score."""
        model = clone(self.estimator)
        seed_estimator(model, rng)
        fit_weighted(model, X_fit, y_fit, np.ones(y_fit.shape[0]))
        self.estimators_ = [model]
        self.estimator_errors_ = np.array([np.nan])
        self.estimator_weights_ = np.array([1.0])
        self.source_weights_ = np.ones(y_fit.shape[0])
        return self

    def _voters(self):
        """The second-half rounds and their vote weights (equal if all are 0)."""
        check_is_fitted(self)
        start = (len(self.estimators_) + 1) // 2 - 1
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
        Weighted error of each round on the labelled target rows: the mean of
        1 - P(label) (of the 0/1 loss if the estimator has no
        ``predict_proba``).
    estimator_weights_ : ndarray of shape (n_estimators,)
        Each round's vote: log((1 - error) / error), the error floored at
        1e-10; 0 for a round whose weighted 0/1 target error is not one
        standard error below 1/2 (no better than chance).
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

        Warns
        -----
        NoTargetRowsWarning
            When no row is a target row: one round, on the source rows alone, with
            no target error to measure (``estimator_errors_`` NaN).
        """
        return self._boost(X, y, sample_domain)

    def _prepare_targets(self, y_fit):
        self.classes_ = np.unique(y_fit)
        if self.classes_.size < 2:
            raise ValueError(
                "TrAdaBoostClassifier needs at least 2 classes; got one class, "
                f"{self.classes_.tolist()}."
            )

    def predict_proba(self, X):
        """Share of the weighted vote of the voting rounds for each class.

        Vote shares, not calibrated probabilities: with the default 10 rounds
        they take few distinct values.
        """
        estimators, votes = self._voters()
        X = validate_X(self, X, reset=False)
        shares = np.zeros((_num_samples(X), self.classes_.size))
        for model, vote in zip(estimators, votes):
            pred = np.searchsorted(self.classes_, model.predict(X))
            shares[np.arange(pred.size), pred] += vote
        return shares

    def predict(self, X):
        """Class with the largest weighted vote of the voting rounds."""
        shares = self.predict_proba(X)
        return self.classes_[np.argmax(shares, axis=1)]

    def __sklearn_tags__(self):
        return adapter_tags(super().__sklearn_tags__(), self.estimator)


class TrAdaBoostR2(RegressorMixin, MetaEstimatorMixin, BaseEstimator):
    """Two-stage TrAdaBoost.R2 (Pardoe & Stone, 2010): TrAdaBoost for regression.

    Stage 1 lowers the source rows' share of the total weight in ``n_steps``
    even steps, from pooling (every row weighs 1) to none (the labelled target
    rows alone). At each step the base learner, fitted with the current
    weights, scores every row; the source rows it predicts worst lose the
    most weight (each is multiplied by β^error, β set so the source keeps
    the step's share). The step is chosen by the ``cv``-fold cross-validated
    squared error, on the labelled target rows, of stage 2 run at that step.

    Stage 2 is AdaBoost.R2 (Drucker, 1997) with the source weights frozen:
    target rows it predicts badly gain weight; each round votes
    log(1 / β) with β = error / (1 - error); boosting stops at the first
    round whose weighted loss reaches 1/2. The prediction is the weighted
    median of the rounds' predictions.

    So however far the target's p(y | x) is from the source's, the last
    step (target only) is a candidate, and the source is used exactly as
    much as it lowers the target's cross-validated error.

    Parameters
    ----------
    estimator : regressor
        Base learner; its ``fit`` must take ``sample_weight``.
    n_estimators : int, default=10
        Boosting rounds of stage 2 (fewer if a round's loss reaches 1/2).
    n_steps : int, default=10
        Steps of stage 1, from pooling to target only (at least 2). Stage 2
        runs ``cv`` times per step and once more at the chosen step, so fit
        time grows with ``n_steps * cv * n_estimators``.
    cv : int, default=5
        Cross-validation folds of the labelled target rows (fewer if there
        are fewer rows; at least 2 labelled target rows are needed).
    loss : {"linear", "square", "exponential"}, default="linear"
        Per-row loss in [0, 1] from the absolute error e scaled by a fit's
        largest one: e, e² or 1 - exp(-e).
    random_state : int, RandomState instance or None, default=None
        Seeds the folds and the ``random_state`` of each fit's clone.

    Attributes
    ----------
    estimators_ : list of regressors
        Stage 2's rounds at the chosen step.
    estimator_errors_ : ndarray of shape (n_rounds,)
        Weighted mean loss of each round of ``estimators_`` on the rows it
        was fitted on.
    estimator_weights_ : ndarray of shape (n_rounds,)
        Each round's vote, log((1 - error) / error).
    cv_errors_ : ndarray of shape (n_steps,)
        Cross-validated mean squared error of each step on the labelled
        target rows; its smallest entry decides ``best_step_``.
    best_step_ : int
        The chosen step: 0 is pooling, ``n_steps - 1`` target only.
    source_weights_ : ndarray of shape (n_source_rows,)
        Stage-1 weight of each source row at the chosen step, where a
        labelled target row weighs 1: low means "does not follow the
        target's labelling" (or that the source as a whole did not help).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    References
    ----------
    Pardoe, Stone, "Boosting for regression transfer", ICML 2010 (Algorithm 3).
    Drucker, "Improving regressors using boosting techniques", ICML 1997.

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

    __metadata_request__fit = {"sample_domain": True}

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 2, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "loss": [StrOptions({"linear", "square", "exponential"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        n_estimators=10,
        n_steps=10,
        cv=5,
        loss="linear",
        random_state=None,
    ):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.n_steps = n_steps
        self.cv = cv
        self.loss = loss
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_domain=None):
        """Choose how much to trust each source row, then boost on the target rows.

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

        Warns
        -----
        NoTargetRowsWarning
            When no row is a target row: one round, on the source rows alone
            (``best_step_`` 0, ``cv_errors_`` NaN).
        """
        X_fit, y_fit, is_source = _training_rows(self, X, y, sample_domain)
        y_fit = y_fit.astype(float)
        n_target = int((~is_source).sum())
        rng = check_random_state(self.random_state)
        if not n_target:
            # No target rows (validate_fit warned): one round on the source rows, the
            # pooling step, with nothing to cross-validate the steps on.
            self.cv_errors_ = np.full(self.n_steps, np.nan)
            self.best_step_ = 0
            self.source_weights_ = np.ones(y_fit.shape[0])
            model = clone(self.estimator)
            seed_estimator(model, rng)
            fit_weighted(model, X_fit, y_fit, self.source_weights_)
            self.estimators_ = [model]
            self.estimator_errors_ = np.array([self._row_loss(model.predict(X_fit), y_fit).mean()])
            self.estimator_weights_ = np.array([1.0])
            return self
        if n_target < 2:
            raise ValueError(
                "TrAdaBoostR2 chooses how much to use the source by cross-validation on "
                f"the labelled target rows and needs at least 2 of them; got {n_target}."
            )
        folds = KFold(min(self.cv, n_target), shuffle=True, random_state=rng.randint(2**31 - 1))
        target_rows = np.flatnonzero(~is_source)
        splits = [(target_rows[a], target_rows[b]) for a, b in folds.split(target_rows)]

        # Stage 1. Target rows weigh 1 throughout; the source's total goes from
        # n_source (pooling) to 0 (target only) as the target's share of the total
        # rises evenly from n_target / n_rows to 1.
        weights = np.ones(is_source.size)
        start = n_target / is_source.size
        cv_errors, step_weights = [], []
        for step in range(self.n_steps):
            if step:
                share = start + step / (self.n_steps - 1) * (1.0 - start)
                model = clone(self.estimator)
                seed_estimator(model, rng)
                used = weights > 0
                fit_weighted(
                    model,
                    _safe_indexing(X_fit, used),
                    y_fit[used],
                    weights[used] / weights[used].mean(),
                )
                loss = self._row_loss(model.predict(X_fit), y_fit, used)
                weights[is_source] = _shrink(
                    weights[is_source], loss[is_source], n_target * (1.0 - share) / share
                )
            step_weights.append(weights.copy())
            cv_errors.append(self._cv_error(X_fit, y_fit, weights, is_source, splits, rng))

        self.cv_errors_ = np.array(cv_errors)
        self.best_step_ = int(np.argmin(self.cv_errors_))
        weights = step_weights[self.best_step_]
        self.estimators_, self.estimator_errors_, self.estimator_weights_ = self._adaboost_r2(
            X_fit, y_fit, weights, is_source, rng
        )
        self.source_weights_ = weights[is_source]
        return self

    def _cv_error(self, X, y, weights, is_source, splits, rng):
        """Stage 2's squared error on held-out target rows, the source always in."""
        squared = []
        for train_target, test in splits:
            train = np.r_[np.flatnonzero(is_source), train_target]
            fold_weights = weights[train].copy()
            # The fold's target rows carry the whole target's weight, so the
            # source keeps the step's share.
            fold_weights[~is_source[train]] *= (
                weights[~is_source].sum() / weights[train_target].sum()
            )
            ensemble = self._adaboost_r2(
                _safe_indexing(X, train), y[train], fold_weights, is_source[train], rng
            )
            pred = _weighted_median(ensemble[0], ensemble[2], _safe_indexing(X, test))
            squared.append((pred - y[test]) ** 2)
        return float(np.mean(np.concatenate(squared)))

    def _adaboost_r2(self, X, y, weights, is_source, rng):
        """AdaBoost.R2 that reweights the target rows only; (rounds, errors, votes)."""
        weights = weights.copy()
        used = weights > 0
        X_used, y_used = _safe_indexing(X, used), y[used]
        target_total = weights[~is_source].sum()
        estimators, errors, votes = [], [], []
        for _ in range(self.n_estimators):
            model = clone(self.estimator)
            seed_estimator(model, rng)
            fit_weighted(model, X_used, y_used, weights[used] / weights[used].mean())
            loss = self._row_loss(model.predict(X_used), y_used)
            error = np.dot(weights[used], loss) / weights[used].sum()
            if error >= 0.5 and estimators:
                break  # Drucker: a round this weak is dropped and boosting stops.
            estimators.append(model)
            errors.append(error)
            clipped = np.clip(error, _MIN_ERROR, 0.5)
            factor = clipped / (1.0 - clipped)
            votes.append(np.log(1.0 / factor))
            if error <= _MIN_ERROR or error >= 0.5:
                break  # nothing left to boost, or nothing to boost with
            target = used & ~is_source
            weights[target] *= factor ** (1.0 - loss[~is_source[used]])
            weights[target] *= target_total / weights[target].sum()
        return estimators, np.array(errors), np.array(votes)

    def _row_loss(self, pred, y, used=None):
        """Per-row loss in [0, 1]: the absolute error over the largest one among ``used``."""
        error = np.abs(pred - y)
        largest = error.max() if used is None else error[used].max()
        if largest == 0:
            return np.zeros_like(error)
        error = np.minimum(error / largest, 1.0)
        if self.loss == "square":
            return error**2
        if self.loss == "exponential":
            return 1.0 - np.exp(-error)
        return error

    def predict(self, X):
        """Weighted median of stage 2's predictions."""
        check_is_fitted(self)
        X = validate_X(self, X, reset=False)
        return _weighted_median(self.estimators_, self.estimator_weights_, X)

    def __sklearn_tags__(self):
        return adapter_tags(super().__sklearn_tags__(), self.estimator)


def _shrink(weights, loss, total):
    """``weights * β ** loss``, β in [0, 1] chosen so that they sum to ``total``.

    Pardoe & Stone's stage-1 update: the worse a source row is predicted, the
    more weight it loses. Solved for the rate -ln β, on losses shifted to start
    at 0 (which the rescaling to ``total`` makes no difference to), because
    when every source row is predicted about equally well β underflows.
    """
    if total <= 0:
        return np.zeros_like(weights)
    loss = loss - loss.min()
    best = loss == 0
    if weights.sum() <= total:
        shrunk = weights
    elif weights[best].sum() >= total:
        shrunk = np.where(best, weights, 0.0)  # β = 0: only the best-predicted rows keep weight
    else:

        def excess(rate):
            return np.dot(weights, np.exp(-rate * loss)) - total

        high = 1.0
        while excess(high) > 0:
            high *= 2.0
        shrunk = weights * np.exp(-brentq(excess, 0.0, high) * loss)
    return shrunk * (total / shrunk.sum())


def _weighted_median(estimators, votes, X):
    """Per row, the prediction at which the cumulative vote reaches half the total."""
    if votes.sum() <= 0:
        votes = np.ones_like(votes)
    preds = np.column_stack([model.predict(X) for model in estimators])
    order = np.argsort(preds, axis=1)
    cumulative = np.cumsum(votes[order], axis=1)
    median = np.argmax(cumulative >= 0.5 * cumulative[:, -1:], axis=1)
    rows = np.arange(preds.shape[0])
    return preds[rows, order[rows, median]]
