"""The torch layers the safe format rebuilds from JSON: a user's ``nn.Sequential`` body
made of plain ``torch.nn`` layers is stored as their classes and constructor arguments,
never as code. Anything else (a custom ``nn.Module`` subclass) runs code of its own and
is refused at save time."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .backbones import Pooled


def _bias(m) -> bool:
    return m.bias is not None


_CONV = ("stride", "padding", "dilation", "groups", "padding_mode")
_NORM = ("eps", "momentum", "affine", "track_running_stats")

# class -> its constructor arguments as (argument, how to read it from the layer)
_LAYERS: dict[type, tuple] = {
    nn.Linear: ("in_features", "out_features", ("bias", _bias)),
    nn.LazyLinear: ("out_features", ("bias", _bias)),
    nn.Conv1d: ("in_channels", "out_channels", "kernel_size", *_CONV, ("bias", _bias)),
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", *_CONV, ("bias", _bias)),
    nn.LazyConv2d: ("out_channels", "kernel_size", *_CONV, ("bias", _bias)),
    nn.BatchNorm1d: ("num_features", *_NORM),
    nn.BatchNorm2d: ("num_features", *_NORM),
    nn.LazyBatchNorm1d: _NORM,
    nn.LazyBatchNorm2d: _NORM,
    nn.LayerNorm: ("normalized_shape", "eps", "elementwise_affine", ("bias", _bias)),
    nn.Dropout: ("p",),
    nn.Dropout2d: ("p",),
    nn.ReLU: (),
    nn.ReLU6: (),
    nn.GELU: ("approximate",),
    nn.SiLU: (),
    nn.Tanh: (),
    nn.Sigmoid: (),
    nn.LeakyReLU: ("negative_slope",),
    nn.ELU: ("alpha",),
    nn.Softplus: ("beta", "threshold"),
    nn.Identity: (),
    nn.Flatten: ("start_dim", "end_dim"),
    nn.AdaptiveAvgPool2d: ("output_size",),
    nn.AdaptiveMaxPool2d: ("output_size",),
    nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    nn.AvgPool2d: ("kernel_size", "stride", "padding", "ceil_mode"),
}
_CONTAINERS = {"Sequential": nn.Sequential, "ModuleList": nn.ModuleList}
_BY_NAME = {cls.__name__: cls for cls in _LAYERS}


class ModuleRefused(TypeError):
    """A module the safe format cannot rebuild; ``where`` names the layer."""


def layer_names() -> list[str]:
    """The torch.nn layers a saved body may be made of."""
    return sorted([*_BY_NAME, *_CONTAINERS, "sktransfer Pooled"])


def encode_module(module: nn.Module, where: str = "module") -> dict:
    """``module``'s architecture as JSON (classes and constructor arguments, no tensors)."""
    cls = type(module)
    if cls in _CONTAINERS.values():
        return {
            "layer": cls.__name__,
            "children": [
                [name, encode_module(child, f"{where}.{name}")]
                for name, child in module.named_children()
            ],
        }
    if cls is Pooled:
        return {
            "layer": "Pooled",
            "pooling": module.pooling,
            "key": module.key,
            "body": encode_module(module.body, f"{where}.body"),
        }
    if cls not in _LAYERS:
        raise ModuleRefused(
            f"{where} is a {cls.__module__}.{cls.__qualname__}, which the safe format does "
            f"not rebuild (it takes nn.Sequential bodies of {', '.join(layer_names())})"
        )
    args = {}
    for arg in _LAYERS[cls]:
        name, read = arg if isinstance(arg, tuple) else (arg, None)
        value = read(module) if read else getattr(module, name)
        args[name] = list(value) if isinstance(value, tuple) else value
    return {"layer": cls.__name__, "args": args}


def decode_module(spec: dict, where: str = "module") -> nn.Module:
    """The module ``encode_module`` described, freshly initialised (load its state next)."""
    kind = spec.get("layer")
    if kind in _CONTAINERS:
        children = [(name, decode_module(c, f"{where}.{name}")) for name, c in spec["children"]]
        if kind == "ModuleList":
            return nn.ModuleList([c for _, c in children])
        return nn.Sequential(OrderedDict(children))
    if kind == "Pooled":
        return Pooled(decode_module(spec["body"], f"{where}.body"), spec["pooling"], spec["key"])
    cls = _BY_NAME.get(kind)
    if cls is None:
        raise ValueError(
            f"the file's {where} is a {kind!r} layer, which this version of sktransfer does "
            f"not load (it loads {', '.join(layer_names())})."
        )
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["args"].items()}
    return cls(**args)
