"""Resolve a backbone spec into a ``Backbone``: module, preprocessing, parameter blocks.

A spec is one of: a registered name (``list_backbones()``), a torchvision
classification model name (``"resnet18"``), a timm model name (``"timm/convnext_tiny"``,
or a bare timm name that torchvision does not have), an ``nn.Module`` whose output is
the features, or a fitted sktransfer estimator / skorch net whose trained network
becomes the source model.
"""

from __future__ import annotations

import difflib
import inspect
import reprlib
from collections.abc import Mapping

from torch import nn

from .._torch import require
from ..inputs import ImagePreprocess, looks_like_images
from ._base import POOLINGS, Backbone, Pooled, on_cpu, param_blocks
from ._registry import Entry, list_backbones, register_backbone, registered
from ._text import build_hf_text, is_hf_dir
from ._vision import build_timm, build_torchvision, split_classifier, torchvision_names

__all__ = [
    "Backbone",
    "Entry",
    "register_backbone",
    "registered",
    "list_backbones",
    "resolve_backbone",
    "check_spec",
    "fitted_backbone",
    "spec_modality",
    "on_cpu",
    "param_blocks",
    "Pooled",
    "POOLINGS",
]


def fitted_backbone(spec) -> Backbone | None:
    """The trained network of a fitted sktransfer estimator or skorch net, if ``spec`` is one."""
    bb = getattr(spec, "backbone_", None)
    if isinstance(bb, Backbone):
        return bb
    module = getattr(spec, "module_", None)
    if isinstance(module, nn.Module):  # a fitted skorch NeuralNet
        return Backbone(
            module=module,
            modality=None,
            preprocess=ImagePreprocess(channels=None),
            name=type(module).__name__,
        )
    return None


def spec_modality(spec, X=None) -> str:
    """What input a spec takes, without loading any weights."""
    if isinstance(spec, str):
        if (entry := registered(spec)) is not None:
            return entry.modality
        if is_hf_dir(spec):
            return "text"
        return "image"
    fitted = fitted_backbone(spec)
    modality = fitted.modality if fitted is not None else None
    if modality is None and isinstance(spec, nn.Module):
        modality = _module_modality(spec)
    if modality is None and X is not None:
        modality = "image" if looks_like_images(X) else "tabular"
    return modality or "tabular"


def _module_modality(module: nn.Module) -> str | None:
    """ "image" for a module whose first weighted layer is a 2-D convolution, "tabular"
    for one that starts with a linear layer, None (read it from X) otherwise."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.LazyConv2d)):
            return "image"
        if isinstance(m, (nn.Linear, nn.LazyLinear)):
            return "tabular"
        if isinstance(m, (nn.Embedding, nn.Conv1d, nn.RNNBase, nn.MultiheadAttention)):
            return None
    return None


def resolve_backbone(
    spec,
    *,
    weights="DEFAULT",
    layer=None,
    pooling="avg",
    random_state=None,
    image_size=None,
    max_length=None,
) -> Backbone:
    """Build (and load the weights of) the backbone ``spec`` names. Never mutates ``spec``.

    Estimators call it in ``fit``; call it yourself to see what a spec resolves to.

    Parameters
    ----------
    spec : str, nn.Module, Backbone or fitted estimator
        A registered name (``list_backbones()``), a torchvision or timm model name, an
        ``nn.Module`` (copied, its output pooled), or a fitted sktransfer estimator or
        skorch net (its trained network).
    weights, layer, pooling, random_state, image_size
        As in ``PretrainedFeatures``.
    max_length : int or None, default=None
        Tokens kept per text; applies to text backbones named by a string only.

    Returns
    -------
    Backbone

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktransfer import resolve_backbone
    >>> bb = resolve_backbone(nn.Sequential(nn.Linear(5, 3), nn.ReLU()))
    >>> bb.name, bb.module(torch.ones(2, 5)).shape
    ('Sequential', torch.Size([2, 3]))
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS}.")
    text_kw = {} if max_length is None else {"max_length": max_length}
    if text_kw and not (isinstance(spec, str) and _is_text_name(spec)):
        raise ValueError(
            f"max_length={max_length} applies to text backbones given by name; "
            f"backbone={spec!r} is not one."
        )
    if isinstance(spec, Backbone):
        bb = spec.copy()
    elif isinstance(spec, str):
        bb = _resolve_name(
            spec,
            weights=weights,
            layer=layer,
            pooling=pooling,
            random_state=random_state,
            **text_kw,
        )
    elif isinstance(spec, nn.Module):
        bb = _from_module(spec, layer=layer, pooling=pooling)
    elif (fitted := fitted_backbone(spec)) is not None:
        bb = fitted.copy()
        if layer is not None:
            bb.module = _from_module(bb.module, layer=layer, pooling=pooling).module
    elif inspect.isclass(spec) and issubclass(spec, nn.Module):
        raise TypeError(
            f"backbone={spec.__name__} is a class; pass an instance, e.g. {spec.__name__}()."
        )
    else:
        check_spec(spec)
        raise AssertionError(f"unreachable: {spec!r}")  # pragma: no cover
    if bb.preprocess is not None and bb.preprocess.crop is not None and bb.native_size is None:
        bb.native_size = max(bb.preprocess.crop)
    if image_size is not None and bb.preprocess is not None:
        bb.preprocess = bb.preprocess.with_image_size(image_size)
    return bb


def check_spec(spec) -> None:
    """Raise, before any input is read or weights load, when ``spec`` cannot be a backbone.

    Names are looked up (registry, saved Hugging Face folders, torchvision, timm) without
    building anything; modules and fitted estimators pass; anything else is explained.
    """
    if isinstance(spec, str):
        if (
            registered(spec) is not None
            or is_hf_dir(spec)
            or spec.startswith("timm/")
            or spec in torchvision_names()
        ):
            return
        try:
            timm = require("timm", "timm")
        except ImportError:
            timm = None
        if timm is not None and timm.is_model(spec):
            return
        raise ValueError(_unknown_name(spec))
    if isinstance(spec, (Backbone, nn.Module)) or fitted_backbone(spec) is not None:
        return
    if inspect.isclass(spec) and issubclass(spec, nn.Module):
        raise TypeError(
            f"backbone={spec.__name__} is a class; pass an instance, e.g. {spec.__name__}()."
        )
    if hasattr(spec, "fit") and hasattr(spec, "get_params"):
        name = type(spec).__name__
        if _is_fitted(spec):
            steps = getattr(spec, "steps", None)
            if steps and fitted_backbone(steps[-1][1]) is not None:
                raise TypeError(
                    f"backbone={name}(...) is a fitted pipeline; a backbone is one network, "
                    f"and the steps before it would be skipped. Pass its last step "
                    f"(pipe[-1], a fitted {type(steps[-1][1]).__name__}) and run the earlier "
                    "steps on X first (e.g. make_pipeline(pipe[:-1], <this estimator>))."
                )
            raise TypeError(
                f"backbone={name}(...) is a fitted estimator with no torch network: a backbone "
                "is a model name, an nn.Module, or a fitted sktransfer estimator or skorch net. "
                f"To fit {name} on the features, pass it as head=."
            )
        raise ValueError(
            f"backbone={name}(...) is not fitted; fit it on the source task first "
            "(its trained network becomes the source model)."
        )
    if isinstance(spec, Mapping) and any(hasattr(v, "shape") for v in spec.values()):
        keys = list(spec)
        shown = ", ".join(repr(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        raise TypeError(
            f"backbone is a state_dict ({type(spec).__name__} of {len(keys)} tensors: {shown}): "
            "weights without the network they belong to. Build that nn.Module, load them with "
            "module.load_state_dict(state_dict), and pass the module."
        )
    raise TypeError(
        f"backbone={reprlib.repr(spec)} ({type(spec).__name__}) is not a backbone spec: pass a "
        "name (see sktransfer.list_backbones()), an nn.Module, or a fitted sktransfer estimator."
    )


def _is_fitted(estimator) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _unknown_name(name: str) -> str:
    names = list_backbones()
    close = difflib.get_close_matches(name, names + torchvision_names(), n=3)
    text = [n for n in names if registered(n).modality == "text"]
    return (
        f"backbone={name!r} is not a known model name"
        + (f"; did you mean {close}?" if close else ".")
        + " Registered: "
        + ", ".join(names)
        + "; any torchvision classification model; timm models as 'timm/<name>' "
        "(pip install 'sktransfer[timm]'); text encoders: "
        + ", ".join(text)
        + " or a folder saved with save_pretrained."
    )


def _is_text_name(name: str) -> bool:
    entry = registered(name)
    return (entry is not None and entry.modality == "text") or is_hf_dir(name)


def _resolve_name(name: str, **kw) -> Backbone:
    if (entry := registered(name)) is not None:
        return entry.builder(**kw)
    if is_hf_dir(name):  # a Hugging Face encoder saved with save_pretrained
        return build_hf_text(name, **kw)
    if name.startswith("timm/"):
        return build_timm(name, **kw)
    tv = torchvision_names()
    if name in tv:
        return build_torchvision(name, **kw)
    try:
        timm = require("timm", "timm")
    except ImportError:
        timm = None
    if timm is not None and timm.is_model(name):
        return build_timm(name, **kw)
    raise ValueError(_unknown_name(name))


def _from_module(module: nn.Module, *, layer, pooling) -> Backbone:
    import copy

    module = copy.deepcopy(module)  # the user's module is never mutated
    if layer is not None:
        body, _ = split_classifier(module, layer, pooling)
    else:
        body = Pooled(module, pooling)
    return Backbone(
        module=body,
        modality=None,
        preprocess=ImagePreprocess(channels=None),
        name=type(module).__name__,
    )
