"""What every estimator that takes a backbone shares: its parameters (declared once, with
their defaults and constraints), the checks sklearn's constraints cannot express, clone
behaviour and input tags.

``PretrainedFeatures``, ``FeatureTransfer*`` and ``FineTune*`` derive from
:class:`BackboneEstimator`; scikit-learn needs each ``__init__`` to spell its parameters
out, and a test checks that each one's backbone parameters and defaults are these.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, _clone_parametrized
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._device import PRECISIONS
from .backbones import POOLINGS, check_spec, fitted_backbone, spec_modality

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
    # bool is an Integral to Python and to sklearn's constraints: image_size=True would be
    # a 1 px image.
    for name in ("image_size", "batch_size", "num_workers", "max_length"):
        value = getattr(estimator, name, None)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, (bool, np.bool_)) for v in values):
            raise ValueError(
                f"{name}={value!r} is a boolean; pass a number"
                + (
                    " of pixels (e.g. image_size=224), or None for the weights' own size."
                    if name == "image_size"
                    else "."
                )
            )
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

# Images whose shorter side is under SMALL_SIDE px are fed at SMALL_IMAGE_SIZE, not the
# weights' own 224: measured on MNIST, Fashion-MNIST and digits (docs/feature_transfer.md,
# "Image size"), a frozen EfficientNet-Lite0's probe at 160 px is within 0.01 of 224 px at
# 0.43-0.49x the time, and 32 px (what an untold user of 28 px images might choose) is the
# worst size on every set, below raw pixels. The threshold is BiT's HyperRule (96 px).
SMALL_SIDE = 96
SMALL_IMAGE_SIZE = 160


def small_image_size(source) -> tuple[int | None, int | None]:
    """(the size the small-image rule picks, the images' shorter side): the size is None
    where the rule does not apply (larger images, or a source that is not images)."""
    from .inputs import short_side

    side = short_side(source)
    return (SMALL_IMAGE_SIZE if side is not None and side < SMALL_SIDE else None), side


def apply_image_size_rule(bb, size, side, *, verbose=0, who="PretrainedFeatures") -> None:
    """Feed ``bb`` at the rule's ``size`` where its weights' own size is larger (the rule
    never enlarges the input past what the weights were trained at); says so if verbose."""
    pre, native = bb.preprocess, bb.native_size
    if size is None or pre is None or pre.crop is None or not native or native <= size:
        return
    if max(pre.crop) != native:  # a fitted source's own size (its image_size) stays
        return
    bb.preprocess = pre.with_image_size(size)
    if verbose:
        print(
            f"[{who}] image_size_={size}: the images' shorter side is {side} px (under "
            f"{SMALL_SIDE}), so they are resized to {size} px instead of the weights' {native} "
            f"px (as accurate on small images at about half the time); set image_size to "
            "choose another size.",
            flush=True,
        )


def fitted_image_size(bb):
    """The crop size ``bb`` is fed at: an int for a square crop, (h, w) otherwise, None
    where the backbone takes images as they come (or is not an image backbone)."""
    pre = bb.preprocess
    if pre is None or pre.crop is None:
        return None
    h, w = pre.crop
    return h if h == w else (h, w)


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


def seed_of(random_state) -> int | None:
    """An int seed for torch from sklearn's ``random_state`` (None stays None)."""
    if random_state is None:
        return None
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def set_input_tags(tags, modality: str) -> None:
    if modality == "image":
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True  # image file paths
    elif modality == "text":
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True


#: The backbone parameters' defaults, as every estimator's ``__init__`` declares them.
BACKBONE_DEFAULTS = {
    "weights": "DEFAULT",
    "layer": None,
    "pooling": "avg",
    "image_size": None,
    "batch_size": 64,
    "device": "auto",
    "precision": "auto",
    "cache": True,
    "num_workers": 0,
    "random_state": None,
    "max_length": None,
    "missing": "raise",
}


class BackboneEstimator(BaseEstimator):
    """Base of the estimators that take a ``backbone``: constraints, clone, input tags."""

    _parameter_constraints: dict = dict(backbone_constraints)
    #: Defaults this estimator declares differently from ``BACKBONE_DEFAULTS``, and why.
    _backbone_defaults: dict = {}

    def _backbone_params(self) -> dict:
        """This estimator's backbone parameters, e.g. for the ``PretrainedFeatures`` it fits."""
        return {p: getattr(self, p) for p in BACKBONE_PARAMS}

    def __sklearn_clone__(self):
        # A fitted source estimator as backbone= must survive clone (GridSearchCV folds).
        return clone_keeping_fitted_backbone(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        set_input_tags(tags, spec_modality(self.backbone))
        return tags
