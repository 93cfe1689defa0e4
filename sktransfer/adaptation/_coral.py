"""Feature-based adaptation: CORrelation ALignment (Sun, Feng & Saenko, 2016)."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.covariance import ledoit_wolf
from sklearn.utils import TransformerTags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ._base import WrappingAdapter, check_sample_domain, validate_fit


class CORAL(WrappingAdapter):
    """Align source features to the target's mean and covariance, then fit.

    CORAL whitens the source features with the source covariance and
    re-colours them with the target covariance, x ↦ (x - μ_s) C_s^{-1/2}
    C_t^{1/2} + μ_t, then fits ``estimator`` on the aligned source rows
    (and the labelled target rows, unchanged). At prediction time the
    rows are target rows, which CORAL leaves as they are: the estimator
    has been moved to the target's feature space, not the other way round.

    Use it when the domains measure the same thing in different units,
    offsets or correlations (sensors, sites, scanners): second-order
    statistics carry the shift. It cannot fix a shift in p(y | x), and
    it assumes the classes are similarly placed within each domain's
    distribution, so a strong label shift misleads it.

    Parameters
    ----------
    estimator : estimator object
        Fitted on the aligned source rows plus the labelled target rows.
    reg : float or "auto", default="auto"
        Regularisation of both covariances, which are estimated on features
        standardised over all rows (so the alignment, either way, does not
        depend on the units of any feature). A float adds ``reg`` times the
        identity, as in Sun et al. (who use 1.0, on standardised features).
        ``"auto"`` shrinks each towards a scaled identity with the Ledoit-Wolf
        coefficient, which keeps the square roots well conditioned when a
        domain has few rows.
    align_mean : bool, default=True
        Also move the source mean onto the target mean. Sun et al. align
        covariances only, assuming centred features; with it, an affine
        change of units is undone exactly whenever it commutes with the
        covariances (a per-feature scale and offset does, for independent
        features).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``.
    source_mean_, target_mean_ : ndarray of shape (n_features,)
    alignment_ : ndarray of shape (n_features, n_features)
        D⁻¹ C_s^{-1/2} C_t^{1/2} D, applied to centred source rows, with C_s
        and C_t the covariances of the features divided by their standard
        deviations over all rows (the diagonal of D).
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)

    See Also
    --------
    ImportanceWeighting : for a shift in where the data lies, not in its units.

    References
    ----------
    Sun, Feng, Saenko, "Return of frustratingly easy domain adaptation",
    AAAI 2016.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sktransfer.adaptation import CORAL
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     shift="affine", random_state=0)
    >>> target = sample_domain < 0
    >>> source_only = LogisticRegression().fit(X[~target], y[~target])
    >>> coral = CORAL(LogisticRegression()).fit(X, y, sample_domain=sample_domain)
    >>> coral.score(X[target], y_true[target]) > source_only.score(X[target], y_true[target])
    True
    """

    __metadata_request__transform = {"sample_domain": True}
    # The alignment is arithmetic on dense float rows, whatever the estimator takes.
    _input_dtype = np.float64

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "reg": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "align_mean": ["boolean"],
    }

    def __init__(self, estimator, *, reg="auto", align_mean=True):
        self.estimator = estimator
        self.reg = reg
        self.align_mean = align_mean

    def fit(self, X, y, sample_domain=None):
        """Estimate the alignment and fit the estimator on aligned rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric source and target rows.
        y : array-like of shape (n_samples,)
            Labels; -1 (NaN for regressors) on unlabelled target rows.
        sample_domain : array-like of int of shape (n_samples,), default=None
            >= 0 for source rows, < 0 for target rows. None: the unlabelled
            rows of y are the target rows.

        Returns
        -------
        self : CORAL

        Warns
        -----
        NoTargetRowsWarning
            When no row is a target row: there is nothing to align to, and
            ``estimator`` is fitted on the rows as given.
        """
        self._fit_alignment(X, y, sample_domain)
        return self

    def fit_transform(self, X, y, sample_domain=None):
        """Fit, and return X with its source rows aligned to the target.

        Returns
        -------
        X_aligned : ndarray of shape (n_samples, n_features)
        """
        return self._fit_alignment(X, y, sample_domain)

    @_fit_context(prefer_skip_nested_validation=False)
    def _fit_alignment(self, X, y, sample_domain):
        X, y, domains = validate_fit(self, X, y, sample_domain)
        X_source, X_target = X[domains.source], X[domains.target]
        if not domains.target.any():
            # Nothing to align to (validate_fit warned): the identity map.
            self.source_mean_ = self.target_mean_ = X_source.mean(axis=0)
            self.alignment_ = np.eye(X.shape[1])
            self.estimator_ = clone(self.estimator).fit(X, y)
            return X.copy()
        for name, rows in (("source", X_source), ("target", X_target)):
            if rows.shape[0] < 2:
                raise ValueError(f"CORAL needs at least 2 {name} rows; got {rows.shape[0]}.")
        self.source_mean_ = X_source.mean(axis=0)
        self.target_mean_ = X_target.mean(axis=0)
        # Both covariances (and their regularisation) on features standardised over all
        # rows, so that the alignment does not depend on the units of any feature.
        scale = X[domains.source | domains.target].std(axis=0)
        scale[scale == 0] = 1.0
        source_cov = self._covariance(X_source / scale)
        target_cov = self._covariance(X_target / scale)
        standardised = _sym_power(source_cov, -0.5) @ _sym_power(target_cov, 0.5)
        self.alignment_ = standardised / scale[:, None] * scale[None, :]

        X_aligned = X.copy()
        X_aligned[domains.source] = self._align(X_source)
        labelled = domains.labelled
        self.estimator_ = clone(self.estimator).fit(X_aligned[labelled], y[labelled])
        return X_aligned

    def _covariance(self, X) -> np.ndarray:
        if self.reg == "auto":
            return ledoit_wolf(X)[0]
        return np.atleast_2d(np.cov(X, rowvar=False)) + self.reg * np.eye(X.shape[1])

    def _align(self, X_source) -> np.ndarray:
        if self.align_mean:
            return (X_source - self.source_mean_) @ self.alignment_ + self.target_mean_
        return X_source @ self.alignment_

    def transform(self, X, sample_domain=None):
        """Map source rows into the target feature space; target rows pass unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        sample_domain : array-like of int of shape (n_samples,), default=None
            Rows with ids >= 0 are aligned. None: every row is a target row,
            so X comes back unchanged (as a new array) — what the fitted
            estimator expects at prediction time.

        Returns
        -------
        X_aligned : ndarray of shape (n_samples, n_features)
        """
        X = self._prepare_predict(X)
        X_aligned = X.copy()
        if sample_domain is not None:
            source = check_sample_domain(sample_domain, X.shape[0]) >= 0
            X_aligned[source] = self._align(X[source])
        return X_aligned

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A predictor (the wrapped estimator's kind) that also transforms; its
        # arithmetic needs finite dense rows whatever the estimator accepts.
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


def _sym_power(C, power: float) -> np.ndarray:
    """C ** power for a symmetric positive semi-definite C, by eigendecomposition.

    Eigenvalues are floored at a tiny fraction of the largest one, so a
    singular covariance (a constant feature with ``reg=0``) gives a large but
    finite inverse root instead of inf.
    """
    eigvals, eigvecs = np.linalg.eigh(C)
    floor = max(eigvals.max(), np.finfo(float).tiny) * C.shape[0] * np.finfo(float).eps
    return (eigvecs * np.maximum(eigvals, floor) ** power) @ eigvecs.T
