"""``PretrainedFeatures``: a frozen pretrained backbone as a scikit-learn transformer."""

from __future__ import annotations

import copy
import os
import re
import tempfile
import threading
import warnings
from collections import OrderedDict
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _clone_parametrized
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.nn.parameter import is_lazy

from ._device import PRECISIONS, resolve_device
from ._extract import extract, forward_rows
from ._inputs import TabularRows, as_images, as_text
from ._torch import Seed
from .backbones import (
    POOLINGS,
    check_spec,
    fitted_backbone,
    on_cpu,
    registered,
    resolve_backbone,
    spec_modality,
)

BACKBONE_PARAMS = (
    "weights",
    "layer",
    "pooling",
    "image_size",
    "batch_size",
    "device",
    "precision",
    "cache",
    "num_workers",
    "random_state",
    "max_length",
    "missing",
)

# The parameters that change how, not which, features are computed.
RUNTIME_PARAMS = ("batch_size", "device", "precision", "cache", "num_workers")

backbone_constraints = {
    "backbone": "no_validation",
    "weights": [str, None],
    "layer": [str, None],
    "pooling": [StrOptions(set(POOLINGS))],
    "image_size": [Interval(Integral, 1, None, closed="left"), tuple, None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": [str, torch.device],
    "precision": [StrOptions(set(PRECISIONS))],
    "cache": ["boolean", str, os.PathLike],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "random_state": ["random_state"],
    "max_length": [Interval(Integral, 2, None, closed="left"), None],
    "missing": [StrOptions({"raise", "empty"})],
}


# PretrainedFeatures and FeatureTransfer* also take ``verbose`` (a progress bar over the rows).
features_constraints = {**backbone_constraints, "verbose": ["verbose"]}


def check_backbone_params(estimator) -> None:
    """What sklearn's constraints cannot say, checked before any input is read or weights
    load: the backbone spec, the shape of ``image_size``, a writable ``cache`` folder."""
    check_spec(estimator.backbone)
    size = estimator.image_size
    if isinstance(size, (tuple, list)) and not (
        len(size) == 2 and all(isinstance(v, Integral) and v >= 1 for v in size)
    ):
        raise ValueError(
            f"image_size={size!r} must be an int or a (height, width) pair of positive ints."
        )
    weights = estimator.weights
    if isinstance(weights, str) and (
        os.sep in weights or "/" in weights or weights.endswith(_WEIGHT_SUFFIXES)
    ):
        if os.path.isdir(weights):
            raise ValueError(f"weights={weights!r} is a directory; pass a state_dict file.")
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"weights={weights!r}: no such state_dict file; pass an existing path, "
                "'DEFAULT' for the pretrained weights or None for a random init."
            )
    cache = estimator.cache
    if isinstance(cache, (str, os.PathLike)) and not isinstance(cache, bool):
        folder = os.fspath(cache)
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise ValueError(
                f"cache={folder!r} is not a writable directory ({exc.strerror or exc}); pass a "
                "folder you can write to, cache=True for the shared default, or cache=False."
            ) from None


_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

# Sizes far above the weights' own cost time quadratically and rarely help.
_OVERSIZE = 4


def warn_oversized(bb, image_size) -> None:
    """Warn when ``image_size`` is far above the size the weights were trained at."""
    native = bb.native_size
    if image_size is None or not native:
        return
    size = max((image_size,) * 2 if isinstance(image_size, Integral) else image_size)
    if size > _OVERSIZE * native:
        warnings.warn(
            f"image_size={image_size!r} is {size / native:.0f}x the {native} px the weights of "
            f"{bb.name!r} were trained at: every image costs ~{(size / native) ** 2:.0f}x the "
            "compute and features rarely improve. Leave image_size=None for the native size.",
            UserWarning,
            stacklevel=3,
        )


def n_rows(X) -> int | None:
    """Rows of any input kind (arrays, tensors, lists, pandas) without reading them; None
    for a scalar."""
    shape = getattr(X, "shape", None)
    if isinstance(shape, tuple):  # first: len() of a scipy dok matrix counts its entries
        return shape[0] if shape else None
    try:
        return len(X)
    except TypeError:
        return None


def check_consistent_length_rows(X, y, sample_weight=None) -> None:
    """X, y (and sample_weight) of one length, said before any row is read or embedded."""
    lengths = {"X": n_rows(X), "y": n_rows(y)}
    if sample_weight is not None:
        lengths["sample_weight"] = n_rows(sample_weight)
    lengths = {k: v for k, v in lengths.items() if v is not None}  # scalars: checked later
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "inconsistent numbers of rows: "
            + ", ".join(f"{k} has {v}" for k, v in lengths.items())
            + "; pass one label (and weight) per row of X."
        )


def as_source(estimator, modality: str, X, *, reset: bool):
    """Validate ``X`` for ``modality`` into a source; tabular X goes through sklearn's checks."""
    if modality == "image":
        return as_images(X)
    if modality == "text":
        return as_text(X, missing=getattr(estimator, "missing", "raise"))
    X = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64])
    return TabularRows(X)


def clone_keeping_fitted_backbone(estimator):
    """``clone`` for estimators whose ``backbone`` may be a fitted estimator.

    ``sklearn.base.clone`` clones every parameter that is an estimator, and a clone
    is unfitted: the source model would be lost in every ``GridSearchCV`` fold. A
    fitted backbone is a trained model, like an ``nn.Module`` spec, so it is deep-copied
    as ``clone`` does with any other non-estimator parameter.
    """
    new = _clone_parametrized(estimator)
    if fitted_backbone(estimator.backbone) is not None:
        new.backbone = copy.deepcopy(estimator.backbone)
    return new


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


def _template_key(est, modality: str, seed):
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
    return (spec, builder, weights, est.layer, est.pooling, est.image_size, seed)


def seed_of(random_state) -> int | None:
    """An int seed for torch from sklearn's ``random_state`` (None stays None)."""
    if random_state is None:
        return None
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


class PretrainedFeatures(TransformerMixin, BaseEstimator):
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
        Crop size fed to the model; ``None`` takes the weights' own input size.
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

    def fit(self, X, y=None):
        """Load the backbone and check ``X``; no training happens."""
        self._validate_params()
        check_backbone_params(self)
        modality = spec_modality(self.backbone, X)
        source = as_source(self, modality, X, reset=True)
        seed = seed_of(self.random_state)
        key = _template_key(self, modality, seed)
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
        self.n_features_out_ = bb.dim
        return self

    def __sklearn_clone__(self):
        return clone_keeping_fitted_backbone(self)

    def transform(self, X):
        """Features of ``X``: float32 array (n_samples, n_features_out_)."""
        check_is_fitted(self)
        source = as_source(self, self.modality_, X, reset=False)
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
        _set_input_tags(tags, spec_modality(self.backbone))
        return tags


def _set_input_tags(tags, modality: str) -> None:
    if modality == "image":
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True  # image file paths
    elif modality == "text":
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
