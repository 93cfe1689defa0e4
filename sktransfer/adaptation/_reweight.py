"""Instance-based adaptation: reweight source rows by p_target(x) / p_source(x)."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ._base import (
    WrappingAdapter,
    check_accepts_sample_weight,
    fit_weighted,
    numeric_table,
    validate_fit,
)
from ._density_ratio import (
    cap_and_normalise,
    discriminator_ratios,
    effective_sample_size,
    kmm_ratios,
    nan_position,
)


class LowCoverageWarning(UserWarning):
    """The source rows cover little of the target: reweighting cannot reach the rest.

    Issued by ``ImportanceWeighting`` when ``target_coverage_``, the estimated
    share of the target's mass where the source has rows, is below 0.5.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import ImportanceWeighting, LowCoverageWarning
    >>> X = np.r_[np.linspace(0, 1, 20), np.linspace(5, 6, 20)].reshape(-1, 1)
    >>> y = np.r_[np.arange(20) % 2, -np.ones(20, int)]  # the target: far away, unlabelled
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = ImportanceWeighting(LogisticRegression(), random_state=0).fit(X, y)
    >>> any(w.category is LowCoverageWarning for w in caught), model.target_coverage_ < 0.5
    (True, True)
    """


# Below this share of the target's mass under the source's rows, warn.
_LOW_COVERAGE = 0.5


class ImportanceWeighting(WrappingAdapter):
    """Fit an estimator on source rows weighted by estimated density ratios.

    Under covariate shift (p(y | x) shared, p(x) different) the target risk
    equals the source risk with each source row weighted by
    w(x) = p_target(x) / p_source(x). This estimator estimates w on the
    source rows, then fits ``estimator`` on the labelled rows: source rows
    with weight w, labelled target rows (if any) with weight 1.

    Reweighting matters most when the model is misspecified (a linear model
    for a curved boundary): the weights make it fit well where the target
    data lies instead of where the source data lies. A well-specified model
    gains little, and strongly non-overlapping domains give a few huge
    weights; check ``effective_sample_size_``.

    Parameters
    ----------
    estimator : estimator object
        Fitted on the labelled rows; its ``fit`` must take ``sample_weight``
        (for a Pipeline, its last step's; with metadata routing on, the step
        must request it with ``set_fit_request(sample_weight=True)``).
    method : {"discriminator", "kmm"}, default="discriminator"
        ``"discriminator"``: a probabilistic classifier tells target rows from
        source rows, w = P(t | x) / P(s | x) · n_s / n_t, each source row's
        probability from a ``cv``-fold cross-fit model that did not see it.
        ``"kmm"``: kernel mean matching (Huang et al., 2007), a quadratic
        program that matches the weighted source mean to the target mean in
        an RBF feature space; numeric X only.
    discriminator : classifier with predict_proba, default=None
        Domain classifier for ``method="discriminator"``. None: of
        ``LogisticRegression()`` (ratio exp(linear): a shifted mean) and, up
        to 30 features, the same on standardised degree-2 features (ratio
        exp(quadratic): also a bump-shaped shift; exact for Gaussian domains),
        the one with the lower cross-validated log-loss. With NaN in X both
        first impute the median and add a 0/1 column per feature with NaN, so
        ``ImportanceWeighting`` takes NaN wherever ``estimator`` does (KMM
        too, imputed the same way).
    cv : int, default=5
        Folds of the cross-fitting of ``discriminator``.
    max_weight : float or None, default=20.0
        Cap on a source row's weight after normalising the weights to mean
        1, so no row counts more than ``max_weight`` average rows; None
        leaves the ratios uncapped.
    gamma : float, default=None
        RBF kernel coefficient for ``method="kmm"``, on features
        standardised over all rows; None: 1 / n_features, as in skada and
        ADAPT.
    B : float, default=1000.0
        Upper bound on each KMM weight (before normalisation).
    eps : float, default=None
        KMM tolerance on the mean weight, |mean(β) - 1| <= eps; None:
        (√m - 1) / √m for m source rows, as in Huang et al.
    max_samples : int, default=1000
        KMM solves on chunks of at most this many source rows (and as many
        target rows), keeping memory and time at O(max_samples²) per chunk.
    random_state : int, RandomState instance or None, default=None
        Seeds the cross-fitting folds and the KMM sub-sampling.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``.
    weights_ : ndarray of shape (n_source_rows,)
        Weights of the source rows, in the order they appear in X; mean 1.
    discriminator_ : classifier or None
        The (unfitted) domain classifier whose cross-fitted probabilities
        gave the weights; None for ``method="kmm"``.
    effective_sample_size_ : float
        (Σw)² / Σw²: how many equally weighted source rows the weights are
        worth. Far below the number of source rows means the domains barely
        overlap and the weighted fit rests on a few rows. It measures how
        unequal the weights are, not how far the domains are: when every
        source row is equally unlike the target it stays at the number of
        source rows; read ``target_coverage_`` too.
    target_coverage_ : float
        Share of the target's mass that lies where the source has rows, in
        [0, 1]: the mean over source rows of the ratio p_t(x) / p_s(x) before
        normalising (E_s[p_t / p_s] = P_t(where p_s > 0)), capped at 1. About
        1 when the domains overlap; near 0 when the discriminator tells every
        row apart, and a ``LowCoverageWarning`` is raised below 0.5. NaN for
        ``method="kmm"``, whose ratios have mean 1 by construction.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when X has string column names.

    See Also
    --------
    SourceWeighted : weights source rows by one constant, for labelled target rows.
    TrAdaBoostClassifier : learns per-row weights from labelled target rows.

    References
    ----------
    Shimodaira, "Improving predictive inference under covariate shift by
    weighting the log-likelihood function", JSPI 2000.
    Huang, Smola, Gretton, Borgwardt, Schölkopf, "Correcting sample
    selection bias by unlabeled data", NeurIPS 2007.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import ImportanceWeighting
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     shift="covariate", random_state=0)
    >>> model = ImportanceWeighting(LogisticRegression(), random_state=0)
    >>> model.fit(X, y, sample_domain=sample_domain)
    ImportanceWeighting(estimator=LogisticRegression(), random_state=0)
    >>> source, target = sample_domain >= 0, sample_domain < 0
    >>> source_only = LogisticRegression().fit(X[source], y[source])
    >>> round(source_only.score(X[target], y_true[target]), 2)
    0.65
    >>> round(model.score(X[target], y_true[target]), 2)
    0.86
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "method": [StrOptions({"discriminator", "kmm"})],
        "discriminator": [HasMethods(["fit", "predict_proba"]), None],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_weight": [Interval(Real, 1, None, closed="left"), None],
        "gamma": [Interval(Real, 0, None, closed="neither"), None],
        "B": [Interval(Real, 0, None, closed="neither")],
        "eps": [Interval(Real, 0, None, closed="left"), None],
        "max_samples": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        method="discriminator",
        discriminator=None,
        cv=5,
        max_weight=20.0,
        gamma=None,
        B=1000.0,
        eps=None,
        max_samples=1000,
        random_state=None,
    ):
        self.estimator = estimator
        self.method = method
        self.discriminator = discriminator
        self.cv = cv
        self.max_weight = max_weight
        self.gamma = gamma
        self.B = B
        self.eps = eps
        self.max_samples = max_samples
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_domain=None):
        """Estimate the source weights, then fit the estimator with them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source and target rows; passed to the discriminator and the
            estimator as given.
        y : array-like of shape (n_samples,)
            Labels; -1 (NaN for regressors) on unlabelled target rows.
        sample_domain : array-like of int of shape (n_samples,), default=None
            >= 0 for source rows, < 0 for target rows. None: the unlabelled
            rows of y are the target rows.

        Returns
        -------
        self : ImportanceWeighting

        Warns
        -----
        NoTargetRowsWarning
            When no row is a target row: every source row then weighs 1, and
            ``estimator`` is fitted on the source rows alone.
        LowCoverageWarning
            When ``target_coverage_`` is below 0.5: most of the target lies
            where no source row does, and no reweighting of the source can
            stand for it.
        """
        self._check_nan_takers(X)
        X, y, domains = validate_fit(self, X, y, sample_domain)
        check_accepts_sample_weight(self.estimator, type(self).__name__)

        n_samples = y.shape[0]
        source_idx = np.flatnonzero(domains.source)
        target_idx = np.flatnonzero(domains.target)
        self.discriminator_ = None
        self.target_coverage_ = np.nan
        if not target_idx.size:
            ratios = np.ones(source_idx.size)  # no target (validate_fit warned): no reweighting
        elif self.method == "discriminator":
            ratios, self.discriminator_ = discriminator_ratios(
                X,
                source_idx,
                target_idx,
                discriminator=self.discriminator,
                cv=self.cv,
                random_state=self.random_state,
            )
        else:
            ratios = kmm_ratios(
                _safe_indexing(X, source_idx),
                _safe_indexing(X, target_idx),
                gamma=self.gamma,
                B=self.B,
                eps=self.eps,
                max_samples=self.max_samples,
                random_state=self.random_state,
            )
        if self.method == "discriminator" and target_idx.size:
            self.target_coverage_ = float(min(np.mean(ratios), 1.0))
            if self.target_coverage_ < _LOW_COVERAGE:
                warnings.warn(
                    f"ImportanceWeighting: the discriminator tells the domains apart: "
                    f"the source rows cover an estimated {self.target_coverage_:.1%} of "
                    "the target (target_coverage_); reweighting the source cannot stand "
                    "for the rest, whatever effective_sample_size_ says. Look for "
                    "features that only one domain has (a column that is always NaN "
                    "in one of them), or use target labels (SourceWeighted, TrAdaBoost).",
                    LowCoverageWarning,
                    stacklevel=2,
                )
        self.weights_ = cap_and_normalise(ratios, self.max_weight)
        self.effective_sample_size_ = effective_sample_size(self.weights_)

        sample_weight = np.ones(n_samples)
        sample_weight[source_idx] = self.weights_
        labelled = np.flatnonzero(domains.labelled)
        self.estimator_ = fit_weighted(
            clone(self.estimator),
            _safe_indexing(X, labelled),
            y[labelled],
            sample_weight[labelled],
        )
        return self

    def _check_nan_takers(self, X):
        """Name the part that refuses NaN when ``estimator`` itself would take it.

        Otherwise scikit-learn's message would recommend HistGradientBoosting to
        a user who has wrapped exactly that.
        """
        if self.method != "discriminator" or self.discriminator is None:
            return  # the default discriminators and KMM impute
        if not numeric_table(X) or get_tags(self.discriminator).input_tags.allow_nan:
            return
        if not get_tags(self.estimator).input_tags.allow_nan:
            return  # the estimator refuses it too: scikit-learn's message is right
        where = nan_position(X)
        if where is not None:
            raise ValueError(
                f"X has NaN (first in row {where[0]}, column {where[1]}), which "
                f"{type(self.estimator).__name__} takes but ImportanceWeighting's "
                f"discriminator, {type(self.discriminator).__name__}, does not. Pass a "
                "discriminator that takes NaN (HistGradientBoostingClassifier), leave "
                "discriminator=None (the default imputes the median and adds "
                "missing-value indicators), or impute X."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The density ratios read X too: KMM needs dense rows, the default
        # discriminators (LogisticRegression) take sparse rows; both impute NaN.
        if self.method == "kmm":
            tags.input_tags.sparse = False
        elif self.discriminator is not None:
            discriminator = get_tags(self.discriminator).input_tags
            tags.input_tags.sparse &= discriminator.sparse
            tags.input_tags.allow_nan &= discriminator.allow_nan
        return tags
