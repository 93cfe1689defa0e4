"""Model selection without target labels: a splitter and two scorers.

They are ordinary scikit-learn objects: pass them as ``cv=`` and
``scoring=`` to ``GridSearchCV`` or ``cross_validate``. Each finds the
source and target rows of the data it receives in one of two ways:

- metadata routing on: ``sample_domain`` is routed to them (all three
  request it by default), e.g. ``search.fit(X, y, sample_domain=sd)``;
- routing off: the unlabelled marker of ``y`` (-1, or NaN for
  regression) marks the target rows; the splitter also accepts
  ``groups=sample_domain``.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import Bunch, _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import _num_samples

from ._base import check_sample_domain, guess_unlabelled_mask
from ._density_ratio import cap_and_normalise, discriminator_ratios


def _target_rows(n_samples, y, sample_domain, *, owner, y_required=True) -> np.ndarray:
    """Boolean mask of the target rows, from sample_domain or else from y's markers."""
    if sample_domain is not None:
        return check_sample_domain(sample_domain, n_samples) < 0
    if y is None:
        if y_required:
            raise ValueError(
                f"{owner} needs sample_domain (with metadata routing) or y with -1 / NaN "
                "on the target rows to tell the domains apart."
            )
        return np.ones(n_samples, dtype=bool)
    return guess_unlabelled_mask(y)


class SourceTargetShuffleSplit(BaseCrossValidator):
    """Hold out source rows for validation; every split trains on all target rows.

    Unsupervised adaptation trains on the unlabelled target rows by design
    (that is where it learns the shift), so each split's training set is a
    random share of the source rows plus every target row, and its test set
    is the held-out source rows plus every target row. Scorers then use the
    rows they are defined on: :class:`ImportanceWeightedScorer` the
    held-out, labelled source rows, :class:`PredictionEntropyScorer` the
    target rows. Target labels are never used. Labelled target rows, if
    any, are in every training set, so do not score on them.

    The domains come from ``sample_domain`` (routed when metadata routing
    is on), else from ``groups`` (pass ``groups=sample_domain``), else from
    ``y`` (-1, or NaN, on target rows).

    Parameters
    ----------
    n_splits : int, default=5
        Number of re-shuffling and splitting iterations.
    test_size : float, default=0.2
        Share of the source rows held out in each split.
    random_state : int, RandomState instance or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.adaptation import SourceTargetShuffleSplit
    >>> sample_domain = np.array([0, 0, 0, 0, 0, -1, -1])
    >>> cv = SourceTargetShuffleSplit(n_splits=1, test_size=0.4, random_state=0)
    >>> train, test = next(cv.split(np.zeros((7, 1)), groups=sample_domain))
    >>> train.tolist(), test.tolist()
    ([1, 3, 4, 5, 6], [0, 2, 5, 6])
    """

    __metadata_request__split = {"groups": True, "sample_domain": True}

    def __init__(self, n_splits=5, *, test_size=0.2, random_state=None):
        if not isinstance(n_splits, Integral) or n_splits < 1:
            raise ValueError(f"n_splits must be a positive integer; got {n_splits!r}.")
        if not isinstance(test_size, Real) or not 0 < test_size < 1:
            raise ValueError(f"test_size must be a float in (0, 1); got {test_size!r}.")
        self.n_splits = n_splits
        self.test_size = test_size
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None, sample_domain=None):
        """Number of splits (``n_splits``)."""
        return self.n_splits

    def split(self, X, y=None, groups=None, sample_domain=None):
        """Yield (train, test) row indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            Used to find the target rows when neither ``sample_domain`` nor
            ``groups`` is given.
        groups : array-like of int of shape (n_samples,), default=None
            The sample_domain, when metadata routing is off.
        sample_domain : array-like of int of shape (n_samples,), default=None

        Yields
        ------
        train, test : ndarray of int
        """
        n_samples = _num_samples(X)
        domain = sample_domain if sample_domain is not None else groups
        target = _target_rows(n_samples, y, domain, owner=type(self).__name__)
        source_idx, target_idx = np.flatnonzero(~target), np.flatnonzero(target)
        if target_idx.size == 0:
            raise ValueError(
                f"{type(self).__name__} found no target rows: pass groups=sample_domain, "
                "route sample_domain (metadata routing on), or set y = -1 (NaN for "
                "regression) on the target rows."
            )
        n_test = int(np.ceil(self.test_size * source_idx.size))
        if not 0 < n_test < source_idx.size:
            raise ValueError(
                f"test_size={self.test_size} of {source_idx.size} source rows leaves an "
                "empty training or test share."
            )
        rng = check_random_state(self.random_state)
        for _ in range(self.n_splits):
            order = rng.permutation(source_idx)
            train = np.sort(np.r_[order[n_test:], target_idx])
            test = np.sort(np.r_[order[:n_test], target_idx])
            yield train, test

    def _iter_test_indices(self, X=None, y=None, groups=None):
        raise NotImplementedError("the split overlaps on target rows; use split().")


class _DomainScorer(BaseEstimator):
    """A scorer callable that requests ``sample_domain`` when routing is on."""

    def _get_metadata_request(self):
        request = MetadataRequest(owner=self)
        request.score.add_request(param="sample_domain", alias=True)
        return request


class PredictionEntropyScorer(_DomainScorer):
    """Unsupervised score: minus the mean entropy of the predictions on target rows.

    A model that is confident on the target is more likely to separate its
    classes there (the cluster assumption). It needs no labels, and it is
    easy to fool: a model that puts every target row in one class, far from
    its boundary, has entropy near 0 and the best score. On the affine
    shift of :func:`~sktransfer.datasets.make_shifted_classification`,
    ``CORAL(align_mean=False)`` scores -0.001 at 50% target accuracy and
    ``align_mean=True`` scores -0.34 at 95%.

    ``diversity`` adds the entropy of the mean prediction, which is high
    only when the target rows are spread over the classes; with
    ``diversity=1`` the score is the mutual information between rows and
    predicted classes (information maximisation, Gomes et al. 2010), which
    rejects such collapsed models but pulls towards balanced classes, so
    keep it at 0 under a known strong label shift.

    Either way, compare models of similar calibration (one model family, a
    parameter of the adaptation), not an unregularised model against a
    regularised one: entropy rewards over-confidence. Higher is better.

    Parameters
    ----------
    diversity : float, default=0.0
        Weight of the entropy of the mean predicted distribution.
    eps : float, default=1e-12
        Added inside the logarithms, so a probability of 0 does not give NaN.

    References
    ----------
    Gomes, Krause, Perona, "Discriminative clustering by regularized
    information maximization", NeurIPS 2010.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sktransfer.adaptation import (
    ...     CORAL, PredictionEntropyScorer, SourceTargetShuffleSplit)
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     shift="affine", random_state=0)
    >>> search = GridSearchCV(
    ...     CORAL(LogisticRegression()), {"align_mean": [True, False]},
    ...     scoring=PredictionEntropyScorer(diversity=1.0),
    ...     cv=SourceTargetShuffleSplit(3, random_state=0))
    >>> search.fit(X, y).best_params_  # target rows carry y == -1
    {'align_mean': True}
    """

    _parameter_constraints: dict = {
        "diversity": [Interval(Real, 0, None, closed="left")],
        "eps": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, diversity=0.0, eps=1e-12):
        self.diversity = diversity
        self.eps = eps

    def __call__(self, estimator, X, y=None, sample_domain=None):
        self._validate_params()
        target = _target_rows(
            _num_samples(X), y, sample_domain, owner=type(self).__name__, y_required=False
        )
        if not target.any():
            raise ValueError(
                "No target rows to score: mark them with sample_domain < 0 (routing on) "
                "or y == -1 / NaN."
            )
        proba = estimator.predict_proba(_safe_indexing(X, np.flatnonzero(target)))
        mean_entropy = -np.mean(np.sum(proba * np.log(proba + self.eps), axis=1))
        marginal = proba.mean(axis=0)
        marginal_entropy = -np.sum(marginal * np.log(marginal + self.eps))
        return float(self.diversity * marginal_entropy - mean_entropy)


class ImportanceWeightedScorer(_DomainScorer):
    """Importance-weighted validation score of labelled source rows (IWCV).

    Under covariate shift, a held-out source row weighted by
    p_target(x) / p_source(x) is an unbiased stand-in for a target row
    (Sugiyama et al., 2007), so the weighted score of the held-out source
    rows estimates the target score. The ratios come from a domain
    classifier cross-fitted on the scored fold's source and target rows,
    as in :class:`ImportanceWeighting`. Use with
    :class:`SourceTargetShuffleSplit`, whose test folds hold both.

    Parameters
    ----------
    scoring : str, callable or None, default=None
        Score to weight: a scikit-learn scorer name or a scorer callable
        accepting ``sample_weight``; None: the estimator's ``score``
        (accuracy for classifiers, R² for regressors).
    discriminator : classifier with predict_proba, default=None
        Domain classifier; None: linear or quadratic logistic regression,
        whichever has the lower cross-validated log-loss (as in
        ``ImportanceWeighting``).
    cv : int, default=5
        Folds of the cross-fitting of the discriminator.
    max_weight : float or None, default=20.0
        Cap on a row's weight after normalising the weights to mean 1.
    random_state : int, RandomState instance or None, default=None
        Seeds the cross-fitting folds.

    References
    ----------
    Sugiyama, Krauledat, Müller, "Covariate shift adaptation by importance
    weighted cross validation", JMLR 2007.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from sktransfer.adaptation import (
    ...     ImportanceWeightedScorer, ImportanceWeighting, SourceTargetShuffleSplit)
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(random_state=0)
    >>> scores = cross_val_score(
    ...     ImportanceWeighting(LogisticRegression()), X, y,
    ...     scoring=ImportanceWeightedScorer(random_state=0),
    ...     cv=SourceTargetShuffleSplit(3, random_state=0))
    >>> scores.shape
    (3,)
    """

    _parameter_constraints: dict = {
        "scoring": [str, callable, None],
        "discriminator": [HasMethods(["fit", "predict_proba"]), None],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_weight": [Interval(Real, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self, scoring=None, *, discriminator=None, cv=5, max_weight=20.0, random_state=None
    ):
        self.scoring = scoring
        self.discriminator = discriminator
        self.cv = cv
        self.max_weight = max_weight
        self.random_state = random_state

    def __call__(self, estimator, X, y, sample_domain=None):
        self._validate_params()
        if y is None:
            raise ValueError("ImportanceWeightedScorer scores labelled source rows; y is required.")
        target = _target_rows(_num_samples(X), y, sample_domain, owner=type(self).__name__)
        y = np.asarray(y)
        # Labelled target rows were trained on (see SourceTargetShuffleSplit),
        # so only source rows are scored.
        source_idx, target_idx = np.flatnonzero(~target), np.flatnonzero(target)
        if source_idx.size == 0 or target_idx.size == 0:
            raise ValueError(
                "ImportanceWeightedScorer needs held-out source rows and target rows in the "
                f"scored fold; got {source_idx.size} and {target_idx.size}. Use "
                "SourceTargetShuffleSplit as cv."
            )
        ratios, _ = discriminator_ratios(
            X,
            source_idx,
            target_idx,
            discriminator=self.discriminator,
            cv=self.cv,
            random_state=self.random_state,
        )
        weights = cap_and_normalise(ratios, self.max_weight)
        X_source, y_source = _safe_indexing(X, source_idx), y[source_idx]
        if self.scoring is None:
            return float(estimator.score(X_source, y_source, sample_weight=weights))
        scorer = get_scorer(self.scoring)
        return float(scorer(estimator, X_source, y_source, sample_weight=weights))


def estimate_adaptation_gain(
    adapted, baseline, X, y, sample_domain=None, *, scoring=None, cv=None, random_state=None
):
    """Did adapting help? ``adapted``'s target score minus ``baseline``'s, without target labels.

    Each split of ``cv`` (default ``SourceTargetShuffleSplit(5)``) fits a clone
    of ``adapted`` on its training rows (source and target, as the adaptation
    needs) and a clone of ``baseline`` on the labelled source rows among them
    (not adapting), and scores both with :class:`ImportanceWeightedScorer` on
    the held-out source rows: importance-weighted cross-validation (Sugiyama
    et al., 2007), which estimates each model's target score under covariate
    shift. The gain is the mean of the per-split differences; ``stderr`` says
    how far to trust its sign. It cannot see a change of p(y | x) (no
    unlabelled method can), and where ``ImportanceWeighting`` warns of low
    ``target_coverage_`` the weights stand for little of the target.

    It judges models that predict a source row as it is: reweighting,
    ``SourceWeighted``, TrAdaBoost. A ``CORAL`` model maps every row it
    predicts as a target row, so the held-out source rows reach it through
    the wrong map, and on a change of units and origin (where CORAL gains 0.4)
    the estimate is strongly negative: do not use it for CORAL.

    Parameters
    ----------
    adapted : estimator
        An adaptation estimator, fitted as ``fit(X, y, sample_domain=...)``.
    baseline : estimator
        A plain estimator, fitted on the labelled source rows alone.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Labels; -1 (NaN for regressors) on unlabelled target rows.
    sample_domain : array-like of int of shape (n_samples,), default=None
        >= 0 on source rows, < 0 on target rows; None: the unlabelled rows
        of ``y`` are the target rows.
    scoring : str, callable or None, default=None
        As in :class:`ImportanceWeightedScorer` (None: the estimators' ``score``).
    cv : splitter, default=None
        Yields (train, test) with source and target rows in both;
        None: ``SourceTargetShuffleSplit(5, random_state=random_state)``.
    random_state : int, RandomState instance or None, default=None
        Seeds the default splitter and the scorer's cross-fitting.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``gain`` (float: > 0 means adapting is estimated to help),
        ``gains`` (ndarray, one per split) and ``stderr`` (float).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import ImportanceWeighting, estimate_adaptation_gain
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(random_state=0)
    >>> result = estimate_adaptation_gain(
    ...     ImportanceWeighting(LogisticRegression()), LogisticRegression(),
    ...     X, y, sample_domain, random_state=0)
    >>> bool(result.gain > 0)
    True
    """
    n_samples = _num_samples(X)
    y = np.asarray(y)
    target = _target_rows(n_samples, y, sample_domain, owner="estimate_adaptation_gain")
    domain = np.where(target, -1, 0) if sample_domain is None else np.asarray(sample_domain)
    if cv is None:
        cv = SourceTargetShuffleSplit(5, random_state=random_state)
    scorer = ImportanceWeightedScorer(scoring, random_state=random_state)
    gains = []
    for train, test in cv.split(X, y, sample_domain=domain):
        X_train, y_train = _safe_indexing(X, train), y[train]
        model = clone(adapted).fit(X_train, y_train, sample_domain=domain[train])
        source = train[~target[train]]
        plain = clone(baseline).fit(_safe_indexing(X, source), y[source])
        X_test, y_test, d_test = _safe_indexing(X, test), y[test], domain[test]
        gains.append(
            scorer(model, X_test, y_test, sample_domain=d_test)
            - scorer(plain, X_test, y_test, sample_domain=d_test)
        )
    gains = np.asarray(gains)
    stderr = float(gains.std(ddof=1) / np.sqrt(gains.size)) if gains.size > 1 else np.nan
    return Bunch(gain=float(gains.mean()), gains=gains, stderr=stderr)
