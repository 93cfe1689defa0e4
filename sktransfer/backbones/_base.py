"""The resolved backbone: a feature module plus everything needed to feed it."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn

from ..inputs import ImagePreprocess

POOLINGS = ("avg", "max", "avgmax", "token", "flatten")


class Pooled(nn.Module):
    """Reduce a body's output to (batch, features).

    4-D (B, C, H, W) maps are pooled over space, 3-D (B, T, D) token sequences
    over tokens (``"token"`` takes the first, class token); 2-D passes through.
    """

    def __init__(self, body: nn.Module, pooling: str = "avg", key: str | None = None):
        super().__init__()
        self.body = body
        self.pooling = pooling
        self.key = key  # output name when body returns a dict (feature extractors)

    def extra_repr(self) -> str:
        # In the repr, hence in the cache fingerprint: pooling changes the features.
        return f"pooling={self.pooling!r}, key={self.key!r}"

    def forward(self, x):
        out = self.body(x)
        if isinstance(out, dict):
            out = out[self.key] if self.key is not None else next(iter(out.values()))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return pool(out, self.pooling)


def pool(out: torch.Tensor, pooling: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim <= 2:
        return out  # vectors already; anything else is reported by the caller
    if pooling == "flatten":
        return out.flatten(1)
    if out.ndim == 4:
        dims = (2, 3)
    elif out.ndim == 3:
        if pooling == "token":
            return out[:, 0]
        dims = (1,)
    else:
        return out.flatten(1)
    if pooling == "avg":
        return out.mean(dims)
    if pooling == "max":
        return out.amax(dims)
    if pooling == "avgmax":
        return torch.cat([out.mean(dims), out.amax(dims)], dim=1)
    if pooling == "token":
        return out.mean(dims)
    raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS}.")


@dataclass
class Backbone:
    """A source model resolved for use: see ``resolve_backbone``.

    Builders given to ``register_backbone`` return one; the parameters are also its
    attributes.

    Parameters
    ----------
    module : nn.Module
        Maps a model-ready batch to (batch, dim) features.
    modality : {"image", "tabular", "text"} or None
        What input it takes; ``None`` means "infer from X" (user modules).
    preprocess : ImagePreprocess or None
        Eval-time resize/crop/normalisation from the weights' metadata.
    name : str
        A readable name (used for feature names and errors).
    collate : callable or None
        Turns a raw batch (e.g. a list of strings) into module input (e.g. tokens).
    head : nn.Module or None
        The source task's own classifier, kept for source-probability scores (LEEP).
    dim : int or None
        Number of features; ``None`` until the first batch has been through ``module``.
    fingerprint : str or None
        Content hash of weights, architecture and preprocessing (the feature cache's
        key); ``None`` until computed.
    native_size : int or None
        The crop size (px) the weights were trained at, kept when ``image_size``
        overrides it (far larger sizes warn); ``None`` when unknown.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktransfer import Backbone
    >>> bb = Backbone(module=nn.Linear(4, 2), modality="tabular", preprocess=None, name="linear")
    >>> bb.module(torch.ones(3, 4)).shape
    torch.Size([3, 2])
    >>> len(bb.compute_fingerprint())
    32
    """

    module: nn.Module
    modality: str | None
    preprocess: ImagePreprocess | None
    name: str
    collate: Callable | None = None
    head: nn.Module | None = None
    dim: int | None = None
    fingerprint: str | None = field(default=None)
    native_size: int | None = None  # the weights' own crop size (px), before image_size

    @property
    def is_conv(self) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in self.module.modules())

    def copy(self) -> Backbone:
        return copy.deepcopy(self)

    def compute_fingerprint(self) -> str:
        """Content hash of the weights, architecture and preprocessing (the cache key).

        Two modules with the same weights can still compute different features: the
        repr, each submodule's class and plain settings (``Pooled``'s pooling, the
        ``layer`` a hook stops at) and a traced ``GraphModule``'s code tell them apart.
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(repr(self.module).encode())
        # The tokeniser's settings (max_length, lowercasing) change text features too.
        h.update(repr(self.collate).encode())
        for name, m in self.module.named_modules():
            h.update(f"{name}:{type(m).__module__}.{type(m).__qualname__}".encode())
            h.update(repr(_settings(m)).encode())
            if isinstance(m, torch.fx.GraphModule):
                h.update(m.code.encode())
        h.update(repr(self.preprocess).encode())
        h.update(repr(self.modality).encode())
        for k, v in self.module.state_dict().items():
            h.update(k.encode())
            t = v.detach().cpu().contiguous()
            h.update(str(t.dtype).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        self.fingerprint = h.hexdigest()
        return self.fingerprint

    def __getstate__(self):
        # A GPU-fitted model must unpickle on a CPU-only machine.
        state = self.__dict__.copy()
        for key in ("module", "head"):
            mod = state.get(key)
            if mod is not None and not on_cpu(mod):
                state[key] = copy.deepcopy(mod).cpu()
        return state


def _settings(module: nn.Module) -> list:
    """A module's plain public attributes (not ``training``, which eval() flips)."""
    plain = (str, int, float, bool, tuple, type(None))
    return sorted(
        (k, v)
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training" and isinstance(v, plain)
    )


def on_cpu(module: nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` lives on the CPU."""
    tensors = [*module.parameters(), *module.buffers()]
    return all(t.device.type == "cpu" for t in tensors)


def param_blocks(module: nn.Module) -> list[list[str]]:
    """Parameter names grouped in blocks, earliest layer first.

    Top-level children are blocks; a child holding more than half of the
    parameters is split into its own children (recursively, to depth 4) so that
    e.g. ``features`` of an EfficientNet or ``blocks`` of a ViT yield one block
    per stage. Parameters a container owns directly (a ViT's position
    embedding) form a block before its children. Used for freezing the first
    ``k`` blocks and for layer-wise learning rates.
    """

    own = getattr(module, "param_blocks", None)
    if callable(own):  # e.g. a text encoder: embeddings, each layer, pooler
        return [list(b) for b in own()]
    body = getattr(module, "body", None)
    if isinstance(module, Pooled) and callable(getattr(body, "param_blocks", None)):
        return [[f"body.{n}" for n in b] for b in body.param_blocks()]

    def numel(m):
        return sum(p.numel() for p in m.parameters())

    def expand(prefix: str, mod: nn.Module, depth: int) -> list[list[str]]:
        total = numel(mod)
        own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
        blocks = [own] if own else []
        for name, child in mod.named_children():
            n = numel(child)
            if n == 0:
                continue
            cp = f"{prefix}{name}."
            kids = [c for c in child.children() if numel(c) > 0]
            if depth < 4 and n > total / 2 and len(kids) >= 2:
                blocks.extend(expand(cp, child, depth + 1))
            else:
                blocks.append([cp + pn for pn, _ in child.named_parameters()])
        return blocks

    blocks = expand("", module, 0)
    return [b for b in blocks if b]
