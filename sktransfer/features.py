"""``PretrainedFeatures``: a frozen pretrained backbone as a scikit-learn transformer."""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict

import numpy as np
from sklearn.base import TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted
from torch.nn.parameter import is_lazy

from ._backbone_estimator import (
    BackboneEstimator,
    apply_image_size_rule,
    check_backbone_params,
    features_constraints,
    fitted_image_size,
    seed_of,
    small_image_size,
    warn_oversized,
)
from ._device import resolve_device
from ._extract import extract, forward_rows
from ._torch import Seed
from .backbones import on_cpu, registered, resolve_backbone, spec_modality
from .inputs import Source, as_source


class _Templates:
    """The last few backbones resolved by name, for fits that repeat.

    In a GridSearchCV every fold and candidate fits anew; with the feature cache
    warm, building the model and loading its weights (and hashing them for the
    cache key) would cost more than the features. A fit with the same name, weights
    and settings starts from a copy of the backbone resolved before. Kept on the
    CPU, at most ``size`` of them (each holds one copy of a model's weights).
    """

    def __init__(self, size: int = 2):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        if key is None:
            return None
        with self._lock:
            bb = self._items.get(key)
            if bb is None:
                return None
            self._items.move_to_end(key)
        return bb.copy()

    def put(self, key, bb) -> None:
        if key is None or not on_cpu(bb.module):
            return
        template = bb.copy()
        with self._lock:
            self._items[key] = template
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_templates = _Templates()


def _template_key(est, modality: str, seed, auto_size=None):
    """What fully determines the backbone ``est`` resolves to, or None when it cannot be
    known without building it: modules and fitted estimators (the user may change them
    in place), a random init without a seed, and text backbones (tokenizers)."""
    spec, weights = est.backbone, est.weights
    if not isinstance(spec, str) or modality != "image" or (weights is None and seed is None):
        return None
    if isinstance(weights, str) and os.path.isfile(weights):
        st = os.stat(weights)  # a rewritten file is other weights
        weights = (os.path.abspath(weights), st.st_size, st.st_mtime_ns)
    entry = registered(spec)  # re-registering a name gives a new key
    builder = entry.builder if entry is not None else None
    return (spec, builder, weights, est.layer, est.pooling, est.image_size, auto_size, seed)


class PretrainedFeatures(TransformerMixin, BackboneEstimator):
    """Features from a frozen pretrained backbone, for any scikit-learn model.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        A registered name (``sktransfer.list_backbones()``, e.g. ``"efficientnet_lite0"``),
        a torchvision model name (``"resnet18"``), a timm name (``"timm/convnext_tiny"``),
        an ``nn.Module`` whose output is the features (conv maps are pooled), or a
        fitted sktransfer estimator whose trained network becomes the source model.
    weights : str or None, default="DEFAULT"
        ``"DEFAULT"`` (the model's pretrained weights), ``None`` (random init: the same
        architecture, no transfer), a weights name (``"IMAGENET1K_V2"``), or a path to
        a state_dict file.
    layer : str or None, default=None
        Take features from this named layer (a torchvision FX node name such as
        ``"layer3"``) instead of the penultimate, pooled pre-logits.
    pooling : {"avg", "max", "avgmax", "token", "flatten"}, default="avg"
        How feature maps (B, C, H, W) or token sequences (B, T, D) become vectors.
    image_size : int, (int, int) or None, default=None
        Crop size fed to the model. ``None``: the weights' own input size, except for
        small images (shorter side under 96 px, e.g. 28 px digits), which are fed at
        160 px: on small images as accurate as 224 px at about half the time (measured
        in docs/feature_transfer.md, "Image size"). ``image_size_`` says what was used.
    batch_size : int, default=64
    device : str, default="auto"
        ``"auto"`` uses CUDA when available.
    precision : {"auto", "32", "bf16", "16"}, default="auto"
        ``"auto"`` is bf16 autocast on GPU and float32 on the CPU.
    cache : bool, str or path-like, default=True
        Reuse features of rows seen before (same content, same backbone, code and
        settings; see ``sktransfer.feature_cache``): in this process's memory and in a
        directory on disk that parallel workers (``GridSearchCV(n_jobs=...)``, Dask
        workers) and later sessions share. ``True`` uses ``feature_cache.directory``
        (``$SKTRANSFER_CACHE_DIR``, else ``~/.cache/sktransfer``); a path uses that
        directory; ``False`` caches nothing, neither in memory nor on disk.
    num_workers : int, default=0
        DataLoader worker processes that decode image files in parallel.
    random_state : int, RandomState or None, default=None
        Seeds random initialisation (``weights=None``, lazy modules).
    max_length : int or None, default=None
        Text backbones: tokens kept per text (longer texts are truncated); ``None``
        takes the model's own limit (256 for all-MiniLM-L6-v2).
    missing : {"raise", "empty"}, default="raise"
        Text input: a None/NaN row is an error naming the row, or is embedded as "".
    verbose : int, default=0
        ``> 0``: a progress bar (tqdm; terminal or notebook) over the rows extracted,
        then one line on stderr with the rows per second and the rows from the cache.

    Attributes
    ----------
    backbone_ : Backbone
        The resolved backbone: ``module``, ``preprocess``, ``dim``.
    n_features_out_ : int
    n_features_in_ : int
        Only for tabular backbones.
    modality_ : {"image", "tabular", "text"}
    image_size_ : int, (int, int) or None
        The crop size the images were fed at (``image_size``, or what ``None`` chose);
        None for text and tabular backbones, and for image modules without preprocessing.

    Examples
    --------
    >>> from torch import nn
    >>> from sktransfer import PretrainedFeatures
    >>> import numpy as np
    >>> X = np.random.RandomState(0).rand(20, 5)
    >>> PretrainedFeatures(nn.Sequential(nn.Linear(5, 3)), random_state=0).fit_transform(X).shape
    (20, 3)
    """

    _parameter_constraints = features_constraints

    def __init__(
        self,
        backbone,
        *,
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the backbone and check ``X``; no training happens."""
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``, with ``X`` validated and each row read once."""
        return self._transform(self._fit(X))

    def _fit(self, X, modality: str | None = None) -> Source:
        """Fit on ``X`` (raw, or a source an estimator built); returns the source, for the
        caller's next phase. ``modality`` is given by callers that sniffed it already."""
        check_backbone_params(self)
        modality = modality or spec_modality(self.backbone, X)
        source = as_source(self, modality, X, reset=True)
        if modality == "tabular" and isinstance(X, Source):
            self.n_features_in_ = source.X.shape[1]  # the caller validated the table
        seed = seed_of(self.random_state)
        auto_size, side = None, None
        if modality == "image" and self.image_size is None:
            auto_size, side = small_image_size(source)
        key = _template_key(self, modality, seed, auto_size)
        bb = _templates.get(key)
        reused = bb is not None
        if not reused:
            bb = resolve_backbone(
                self.backbone,
                weights=self.weights,
                layer=self.layer,
                pooling=self.pooling,
                random_state=seed,
                image_size=self.image_size,
                max_length=self.max_length,
            )
            apply_image_size_rule(bb, auto_size, side, verbose=self.verbose)
        bb.modality = modality
        if modality != "image":
            bb.preprocess = None
        else:
            warn_oversized(bb, self.image_size)
        device = resolve_device(self.device)
        if any(is_lazy(t) for t in [*bb.module.parameters(), *bb.module.buffers()]):
            # Lazy modules (nn.LazyLinear) take their shape, seeded, from one row.
            with Seed(seed):
                forward_rows(
                    bb, source, np.arange(1), batch_size=1, device=device, precision=self.precision
                )
        if not reused:
            # Always from the weights as they are now: a fitted estimator's backbone may
            # carry the fingerprint of weights it has trained since.
            bb.compute_fingerprint()
            _templates.put(key, bb)
        # The first row measures the dimension; through the cache, so that it is not
        # computed again by the transform that usually follows.
        probe = extract(
            bb, source, [0], batch_size=1, device=device, precision=self.precision, cache=self.cache
        )
        bb.dim = probe.shape[1]
        self.backbone_ = bb
        self.modality_ = modality
        self.image_size_ = fitted_image_size(bb)
        self.n_features_out_ = bb.dim
        return source

    def transform(self, X):
        """Features of ``X``: float32 array (n_samples, n_features_out_)."""
        check_is_fitted(self)
        return self._transform(as_source(self, self.modality_, X, reset=False))

    def _transform(self, source: Source) -> np.ndarray:
        return extract(
            self.backbone_,
            source,
            batch_size=self.batch_size,
            device=resolve_device(self.device),
            precision=self.precision,
            num_workers=self.num_workers,
            cache=self.cache,
            verbose=self.verbose,
        )

    def get_feature_names_out(self, input_features=None):
        """``<backbone name>_<i>``, e.g. ``efficientnet_lite0_17``."""
        check_is_fitted(self)
        prefix = re.sub(r"\W+", "_", self.backbone_.name.removeprefix("timm/")).lower()
        return np.asarray([f"{prefix}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
