"""Feature transfer: a frozen pretrained backbone followed by any scikit-learn head."""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import (
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    clone,
    is_classifier,
    is_regressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_is_fitted,
    column_or_1d,
    has_fit_parameter,
    validate_data,
)

from ._backbone_estimator import (
    RUNTIME_PARAMS,
    BackboneEstimator,
    check_backbone_params,
    check_consistent_length_rows,
    features_constraints,
)
from ._targets import check_column_classes
from .backbones import spec_modality
from .features import PretrainedFeatures
from .inputs import TabularRows, as_source


def _head_has(attr):
    def check(self):
        if hasattr(self, "head_"):
            head = self.head_
        else:
            head = self.head if self.head is not None else self._default_head()
        return hasattr(head, attr)

    return check


class _FeatureTransfer(BackboneEstimator):
    """Shared fit/predict plumbing; subclasses set the default head and target checks."""

    _parameter_constraints = {**features_constraints, "head": [None, HasMethods(["fit"])]}

    def __init__(
        self,
        backbone,
        *,
        head=None,
        weights="DEFAULT",
        layer=None,
        pooling="avg",
        image_size=None,
        batch_size=64,
        device="auto",
        precision="auto",
        cache=True,
        num_workers=0,
        random_state=None,
        max_length=None,
        missing="raise",
        verbose=0,
    ):
        self.backbone = backbone
        self.head = head
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.cache = cache
        self.num_workers = num_workers
        self.random_state = random_state
        self.max_length = max_length
        self.missing = missing
        self.verbose = verbose

    def _source(self, X, y=None, *, modality, reset):
        """The one validated source of ``X`` (and ``y``) for this call: a tabular X gets
        sklearn's validation under this estimator's own name, once."""
        if modality == "tabular" and reset:
            X, y = validate_data(
                self,
                X,
                y,
                dtype=[np.float32, np.float64],
                multi_output=self._multi_output,
                y_numeric=self._y_numeric,
            )
            return TabularRows(X), y
        return as_source(self, modality, X, reset=reset), y

    @_fit_context(prefer_skip_nested_validation=False)  # the head's own parameters are checked
    def fit(self, X, y, sample_weight=None):
        """Extract features of ``X`` with the frozen backbone, then fit a clone of ``head``."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        check_backbone_params(self)
        self._check_head()
        check_consistent_length_rows(X, y, sample_weight)
        modality = spec_modality(self.backbone, X)
        source, y = self._source(X, y, modality=modality, reset=True)
        y = self._check_target(y)
        head = self._head_for(y)
        if sample_weight is not None and not has_fit_parameter(head, "sample_weight"):
            raise TypeError(
                f"sample_weight was given but the head {type(head).__name__} does not accept "
                "it in fit; choose a head that does, or drop sample_weight."
            )
        fit_params = {}
        if sample_weight is not None:
            fit_params["sample_weight"] = _check_sample_weight(
                sample_weight, np.empty((len(y), 0)), ensure_non_negative=True
            )
        self.features_ = PretrainedFeatures(
            self.backbone, **self._backbone_params(), verbose=self.verbose
        )
        # float64 for the head: sklearn's solvers work in it and regressors must predict in it.
        Z = self.features_._transform(self.features_._fit(source, modality)).astype(np.float64)
        self.head_ = head.fit(Z, y, **fit_params)
        self.backbone_ = self.features_.backbone_
        self.image_size_ = self.features_.image_size_
        self.n_features_out_ = self.features_.n_features_out_
        if hasattr(self.head_, "classes_"):
            self.classes_ = self.head_.classes_
        return self

    def _head_for(self, y):
        """A clone of ``head`` for this target. A 2-D ``y`` (several targets, or a
        multilabel indicator matrix) needs a head that predicts several outputs: the
        default head is wrapped in ``MultiOutput*``; a given head that cannot is an error
        that says how to wrap it, raised before any row is embedded."""
        head = clone(self.head) if self.head is not None else self._default_head()
        if np.ndim(y) < 2 or get_tags(head).target_tags.multi_output:
            return head
        wrapper = MultiOutputRegressor if self._y_numeric else MultiOutputClassifier
        if self.head is None:
            return wrapper(head)
        raise ValueError(
            f"y has {np.shape(y)[1]} columns (one target each), but the head "
            f"{type(head).__name__} predicts a single target. Wrap it: "
            f"head={wrapper.__name__}({type(head).__name__}(...)) fits one per column."
        )

    def _check_head(self):
        """A classifier needs a classifier head, a regressor a regressor: said before any
        extraction, not discovered as float predictions and no ``classes_``."""
        head = self.head
        if head is None:
            return
        classifying = not self._y_numeric
        if (is_regressor(head) if classifying else is_classifier(head)) or not hasattr(
            head, "predict"
        ):
            need, other = (
                ("classifier", "Regressor") if classifying else ("regressor", "Classifier")
            )
            raise TypeError(
                f"head={type(head).__name__}(...) is not a {need}; {type(self).__name__} needs "
                f"a {need} head. For this head use FeatureTransfer{other}."
            )

    def set_params(self, **params):
        # head=None stands for the default head; ``head__C`` then tunes that default,
        # as a user of GridSearchCV expects, instead of failing on None.set_params.
        if (
            self.head is None
            and "head" not in params
            and any(k.startswith("head__") for k in params)
        ):
            self.head = self._default_head()
        return super().set_params(**params)

    def _features(self, X):
        check_is_fitted(self)
        # Settings that do not change the features follow this estimator's current values,
        # so that set_params(device="auto", batch_size=...) after fit (or after loading a
        # GPU-fitted model on a CPU-only machine) takes effect; a shallow copy leaves the
        # fitted state untouched.
        features = copy.copy(self.features_)
        features.set_params(**{p: getattr(self, p) for p in (*RUNTIME_PARAMS, "verbose")})
        # The modality is the fitted one (no sniffing again), the table validated once.
        source, _ = self._source(X, modality=features.modality_, reset=False)
        return features._transform(source).astype(np.float64)

    def predict(self, X):
        Z = self._features(X)
        return self.head_.predict(Z)

    @available_if(_head_has("predict_proba"))
    def predict_proba(self, X):
        Z = self._features(X)
        return self.head_.predict_proba(Z)

    @available_if(_head_has("predict_log_proba"))
    def predict_log_proba(self, X):
        Z = self._features(X)
        return self.head_.predict_log_proba(Z)

    @available_if(_head_has("decision_function"))
    def decision_function(self, X):
        Z = self._features(X)
        return self.head_.decision_function(Z)


class FeatureTransferClassifier(ClassifierMixin, _FeatureTransfer):
    """Frozen pretrained features + a scikit-learn classifier (the transfer layer).

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        See ``PretrainedFeatures``.
    head : classifier, default=None
        Fitted on the features; ``None`` means ``LogisticRegression(max_iter=1000)``.
        Its parameters are tunable as ``head__C`` in a grid search.
    weights, layer, pooling, image_size, batch_size, device, precision, cache, \
num_workers, random_state, max_length, missing, verbose
        As in ``PretrainedFeatures``; ``verbose > 0`` shows a progress bar over the rows
        extracted (in ``fit`` and in every ``predict``) and their rows per second.

    Attributes
    ----------
    features_ : PretrainedFeatures
    head_ : classifier
    classes_ : ndarray
    image_size_ : int, (int, int) or None
        The crop size images were fed at (see ``image_size``).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import FeatureTransferClassifier
    >>> X = np.random.RandomState(0).randn(40, 4)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = FeatureTransferClassifier(nn.Sequential(nn.LazyLinear(8)), random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    >>> clf.n_features_out_, clf.predict_proba(X[:3]).shape
    (8, (3, 2))
    """

    _multi_output = True
    _y_numeric = False

    def _default_head(self):
        return LogisticRegression(max_iter=1000)

    def _check_target(self, y):
        y = _check_y(y, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # a column vector: one target, as sklearn warns
        check_classification_targets(y)
        check_column_classes(y, type(self).__name__)
        return y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        head = self.head
        # Several targets (multilabel, multiclass-multioutput): the default head is wrapped
        # in MultiOutputClassifier; a given head must take them itself.
        tags.target_tags.multi_output = head is None or get_tags(head).target_tags.multi_output
        return tags


class FeatureTransferRegressor(RegressorMixin, _FeatureTransfer):
    """Frozen pretrained features + a scikit-learn regressor (default ``Ridge()``).

    ``y`` may be 2-D (multi-output) when the head supports it.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        See ``PretrainedFeatures``.
    head : regressor, default=None
        Fitted on the features; ``None`` means ``Ridge()``. Its parameters are
        tunable as ``head__alpha`` in a grid search.
    weights, layer, pooling, image_size, batch_size, device, precision, cache, \
num_workers, random_state, max_length, missing, verbose
        As in ``PretrainedFeatures``; ``verbose > 0`` shows a progress bar over the rows
        extracted (in ``fit`` and in every ``predict``) and their rows per second.

    Attributes
    ----------
    features_ : PretrainedFeatures
    head_ : regressor
    image_size_ : int, (int, int) or None
        The crop size images were fed at (see ``image_size``).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import FeatureTransferRegressor
    >>> X = np.random.RandomState(0).randn(40, 4)
    >>> y = X @ [1.0, 2.0, 0.0, -1.0]
    >>> reg = FeatureTransferRegressor(nn.Sequential(nn.LazyLinear(8)), random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.99
    True
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _multi_output = True
    _y_numeric = True

    def _default_head(self):
        return Ridge()

    def _check_target(self, y):
        y = _check_y(y, multi_output=True, y_numeric=True)
        return y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        head = self.head
        tags.target_tags.multi_output = head is None or get_tags(head).target_tags.multi_output
        return tags
