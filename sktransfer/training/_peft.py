"""Parameter-efficient fine-tuning: a LoRA or BitFit adapter on a backbone's body.

Pure torch (and Hugging Face ``peft`` for LoRA, an optional extra); no estimator code.
``FineTune*`` call ``apply_adapter`` on the freshly built body before the optimiser
groups are made, and ``merge_adapter`` after training, so that a fitted estimator holds
plain torch layers and pickles, loads and predicts without ``peft``.

LoRA goes in through ``peft.inject_adapter_in_model``: each targeted layer is replaced
*in place* by a peft wrapper that holds the original layer (its parameters are then named
``<layer>.base_layer.weight``) plus the low-rank pair ``<layer>.lora_A.default.weight`` and
``<layer>.lora_B.default.weight``; the module keeps its class and its ``forward``, so
``body(x)`` and ``body(tokens)`` are called as before. B starts at zero, so the adapted
module computes exactly what it computed before.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from torch import nn

from .._torch import Seed

ADAPTERS = ("lora", "bitfit")

# The peft wrappers' own parts of a parameter name: ``<layer>.lora_A.<adapter>.weight``,
# ``<layer>.lora_embedding_A.<adapter>``, ``<layer>.base_layer.weight``.
_ADAPTER_DICTS = frozenset(
    {"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}
)
# Torch's normalisation layers; other libraries' norms (timm's LayerNorm2d, a model's
# RMSNorm) subclass these or are named ...Norm / ...Norm2d.
_NORMS = tuple(
    c
    for c in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*d, InstanceNorm*d, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if c is not None
)
_NORM_NAME = re.compile(r"norm\d?d?$", re.IGNORECASE)


def apply_adapter(
    module: nn.Module,
    adapter: str,
    *,
    rank: int = 8,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules="auto",
    random_state=None,
) -> nn.Module:
    """Put a parameter-efficient adapter on ``module``; afterwards only the adapter trains.

    The module is changed in place and returned (it is the body ``fit`` just built; pass a
    ``copy.deepcopy`` to keep an untouched one): every parameter's ``requires_grad`` is set,
    True for the adapter's and False for all others, and for LoRA the targeted layers are
    replaced by peft wrappers around them. The arguments and targets are checked before
    anything is changed, so an error leaves the module as it was.

    Parameters
    ----------
    module : nn.Module
        The body: an image backbone called as ``module(x)``, a text encoder called as
        ``module(tokens)``, or any torch module.
    adapter : {"lora", "bitfit"}
        ``"lora"``: a trainable low-rank update ``(alpha / rank) * B @ A`` beside each
        targeted ``nn.Linear`` and ungrouped ``nn.Conv2d`` (Hu et al., 2021), through
        Hugging Face ``peft``. ``"bitfit"``: only the biases and the normalisation layers'
        weights and biases train (Ben Zaken et al., 2022); no extra parameters.
    rank : int, default=8
        LoRA's rank r.
    alpha : float or None, default=None
        LoRA's scale numerator; None means ``2 * rank`` (an update scaled by 2).
    dropout : float, default=0.0
        Dropout on the LoRA branch's input, in [0, 1).
    target_modules : "auto", str or list of str, default="auto"
        The layers LoRA adapts, matched on the names of ``module.named_modules()`` as
        peft matches them: a list entry matches a name equal to it or ending in
        ``"." + entry`` (``"query"``, ``"blocks.0.conv_pw"``); a str is a regular expression
        that must match a whole name. ``"auto"``: in attention bodies (text encoders,
        ViTs) every ``nn.Linear`` and ungrouped ``nn.Conv2d`` inside the stack of
        repeated blocks (attention projections and MLPs; not a patch embedding or an
        unused pooler); in other bodies every ``nn.Linear`` and ungrouped ``nn.Conv2d``.
        Depthwise and grouped convolutions are never targeted: peft cannot merge a LoRA
        into them. Only ``"auto"`` applies to BitFit.
    random_state : int or None, default=None
        Seeds the initialisation of LoRA's A matrices.

    Returns
    -------
    nn.Module
        ``module`` itself, adapted.

    Examples
    --------
    >>> from torch import nn
    >>> from sktransfer.training import apply_adapter, trainable_parameters
    >>> body = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8))
    >>> trainable_parameters(apply_adapter(body, "bitfit"))  # biases 32 + 8, norm 32 + 32
    104

    With ``peft`` installed, ``apply_adapter(body, "lora", rank=4)`` trains
    ``4 * (16 + 32) + 4 * (32 + 8) = 352`` parameters instead.
    """
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter={adapter!r} is not one of {ADAPTERS}.")
    if not isinstance(module, nn.Module):
        raise TypeError(f"apply_adapter takes an nn.Module, got {type(module).__name__}.")
    if _has_lora(module):
        raise ValueError(
            f"{type(module).__name__} already has a LoRA adapter; merge_adapter(module) "
            "first, or start from the plain module."
        )
    if adapter == "bitfit":
        if not (isinstance(target_modules, str) and target_modules == "auto"):
            raise ValueError(
                f"target_modules={target_modules!r} applies to adapter='lora' only; BitFit "
                "trains every bias and normalisation parameter."
            )
        names = bitfit_parameters(module)
        if not names:
            raise ValueError(
                f"adapter='bitfit': {type(module).__name__} has no bias and no normalisation "
                "layer, so BitFit would train nothing; use adapter='lora'."
            )
        for name, p in module.named_parameters():
            p.requires_grad_(name in names)
        return module
    return _apply_lora(module, rank, alpha, dropout, target_modules, random_state)


def _apply_lora(module, rank, alpha, dropout, target_modules, random_state):
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
        raise ValueError(f"rank={rank!r} must be a positive integer (LoRA's rank).")
    if alpha is None:
        alpha = 2 * rank
    elif isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be a positive number or None (2 * rank).")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise ValueError(f"dropout={dropout!r} must be a number in [0, 1).")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
    names = lora_targets(module, target_modules)
    peft = import_peft()
    config = peft.LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        # The resolved names, matched whole: peft's own suffix matching could reach further.
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
    )
    with Seed(random_state):
        peft.inject_adapter_in_model(config, module)
    # peft freezes the rest already; say so here too, whatever its version does.
    for name, p in module.named_parameters():
        p.requires_grad_(_is_lora_parameter(name))
    return module


def lora_targets(module: nn.Module, target_modules="auto") -> list[str]:
    """The names of the layers of ``module`` that LoRA adapts for ``target_modules``.

    See ``apply_adapter`` for the matching rules and what ``"auto"`` picks. Raises a
    ``ValueError`` that lists the layers LoRA could adapt when nothing matches, and one
    naming the layers when a match is a layer LoRA cannot adapt here.
    """
    adaptable = _adaptable(module)
    if isinstance(target_modules, str) and target_modules == "auto":
        names = _auto_targets(module, adaptable)
        if not names:
            raise ValueError(
                f"target_modules='auto' found no layer to adapt in {type(module).__name__}: "
                "LoRA adapts nn.Linear and ungrouped nn.Conv2d layers; use adapter='bitfit'."
            )
        return names
    matched = _match(module, target_modules)
    if not matched:
        raise ValueError(
            f"target_modules={target_modules!r} matches no module of "
            f"{type(module).__name__}; the layers LoRA can adapt are {_listing(adaptable)}."
        )
    wrong = {}
    for name in matched:
        reason = adaptable.get(name) if name in adaptable else _unsupported(module, name)
        if reason:
            wrong[name] = reason
    if wrong:
        detail = "; ".join(f"{n!r} ({why})" for n, why in list(wrong.items())[:6])
        raise ValueError(
            f"target_modules={target_modules!r} matches layers LoRA cannot adapt: {detail}"
            + (f" and {len(wrong) - 6} more" if len(wrong) > 6 else "")
            + f". The layers it can adapt are {_listing(adaptable)}."
        )
    return matched


def _match(module: nn.Module, target_modules) -> list[str]:
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as exc:
            raise ValueError(
                f"target_modules={target_modules!r} is not a valid regular expression: {exc}."
            ) from None
        return [n for n, _ in module.named_modules() if n and pattern.fullmatch(n)]
    if (
        isinstance(target_modules, Sequence)
        and target_modules
        and all(isinstance(t, str) and t for t in target_modules)
    ):
        keys = list(target_modules)
        return [
            n
            for n, _ in module.named_modules()
            if n and any(n == k or n.endswith("." + k) for k in keys)
        ]
    raise ValueError(
        f"target_modules={target_modules!r} must be 'auto', a regular expression (str) or a "
        "non-empty list of module names."
    )


def _adaptable(module: nn.Module) -> dict[str, str]:
    """Linear and Conv2d layers by name, each with "" (LoRA adapts it) or why it cannot."""
    inside_mha = {
        f"{n}.{sub}" if n else sub
        for n, m in module.named_modules()
        if isinstance(m, nn.MultiheadAttention)
        for sub, _ in m.named_modules()
        if sub
    }
    out = {}
    for name, m in module.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        if name in inside_mha:
            out[name] = "inside nn.MultiheadAttention, whose forward bypasses a wrapped layer"
        elif isinstance(m, nn.Conv2d) and m.groups > 1:
            out[name] = f"a grouped Conv2d (groups={m.groups}): peft cannot merge LoRA into it"
        else:
            out[name] = ""
    return out


def _unsupported(module: nn.Module, name: str) -> str:
    m = module.get_submodule(name)
    if isinstance(m, nn.MultiheadAttention):
        return (
            "nn.MultiheadAttention: torch's fused attention ignores peft's wrapper, so the "
            "adapter would not change the output"
        )
    return f"a {type(m).__name__}; LoRA adapts nn.Linear and ungrouped nn.Conv2d layers"


def _auto_targets(module: nn.Module, adaptable: dict[str, str]) -> list[str]:
    names = [n for n, why in adaptable.items() if not why]
    if not _has_attention(module):
        return names
    stack = _block_stack(module)
    if stack is None:
        return names
    return [n for n in names if n.startswith(stack + ".")]


def _has_attention(module: nn.Module) -> bool:
    return any(
        isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__
        for m in module.modules()
    )


def _block_stack(module: nn.Module) -> str | None:
    """The name of the largest ModuleList/Sequential of two or more blocks (by parameters)."""
    best, best_n = None, 0
    for name, m in module.named_modules():
        if name and isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) >= 2:
            n = sum(p.numel() for p in m.parameters())
            if n > best_n:
                best, best_n = name, n
    return best


def _listing(adaptable: dict[str, str], limit: int = 10) -> str:
    names = [n for n, why in adaptable.items() if not why]
    if not names:
        return "none (no nn.Linear or ungrouped nn.Conv2d)"
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


def bitfit_parameters(module: nn.Module) -> set[str]:
    """The names of the parameters BitFit trains: every bias, and every parameter of a
    normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm, and
    other libraries' layers that subclass them or are named ...Norm)."""
    names = {n for n, _ in module.named_parameters() if n.rpartition(".")[2] == "bias"}
    for prefix, m in module.named_modules():
        if isinstance(m, _NORMS) or _NORM_NAME.search(type(m).__name__):
            own = m.named_parameters(recurse=False)
            names.update(f"{prefix}.{n}" if prefix else n for n, _ in own)
    return names


def merge_adapter(module: nn.Module) -> nn.Module:
    """Fold a LoRA adapter into the weights it adapts; the module then holds no peft class.

    In place: each peft wrapper is replaced by its original layer, whose weight becomes
    ``W + (alpha / rank) * B @ A``, and the ``peft_config`` peft left on the module is
    removed, so the result pickles and loads without ``peft``. Outputs are the adapted
    module's (in eval mode: LoRA's dropout is off there). A module without LoRA (BitFit,
    or none) is returned as it is. ``requires_grad`` flags are left as they were.
    """
    if _has_lora(module):
        from peft.tuners.tuners_utils import BaseTunerLayer

        wrapped = [(n, m) for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, layer in wrapped:
            if not any(name.startswith(w + ".") for w, _ in wrapped):  # outermost wrappers
                layer.merge()
                parent, _, child = name.rpartition(".")
                setattr(module.get_submodule(parent), child, layer.get_base_layer())
    for m in module.modules():
        if "peft_config" in vars(m):
            del m.peft_config
    left = sorted({_qualname(m) for m in module.modules() if _from_peft(m)})
    if left:
        raise RuntimeError(f"merge_adapter left peft modules in place: {left}.")
    return module


def base_param_name(name: str) -> str:
    """The name of the base parameter whose layer an adapted module's parameter belongs to.

    ``"blocks.0.conv_pw.lora_A.default.weight"`` and
    ``"blocks.0.conv_pw.base_layer.weight"`` both give ``"blocks.0.conv_pw.weight"``, so
    a LoRA parameter can join the learning-rate block of the layer it adapts. Names
    without adapter parts are returned unchanged.
    """
    parts = name.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i] == "base_layer":
            i += 1
        elif parts[i] in _ADAPTER_DICTS:
            i += 2  # the dict and the adapter's name ("default")
            if i >= len(parts):  # a ParameterDict entry: the layer's weight
                out.append("weight")
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


def adapter_parameters(module: nn.Module, adapter: str) -> set[str]:
    """The names of the parameters ``adapter`` trains in ``module`` (already adapted for
    LoRA), whatever their ``requires_grad`` flags say now: the complement is what a
    training loop must keep frozen."""
    if adapter == "lora":
        return {n for n, _ in module.named_parameters() if _is_lora_parameter(n)}
    if adapter == "bitfit":
        return bitfit_parameters(module)
    raise ValueError(f"adapter={adapter!r} is not one of {ADAPTERS}.")


def trainable_parameters(module: nn.Module) -> int:
    """The number of parameters that train (``requires_grad=True``), counted once each."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _is_lora_parameter(name: str) -> bool:
    return any(part in _ADAPTER_DICTS for part in name.split("."))


def _from_peft(m: nn.Module) -> bool:
    return type(m).__module__.split(".")[0] == "peft"


def _qualname(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def _has_lora(module: nn.Module) -> bool:
    return any(_from_peft(m) for m in module.modules())


def import_peft():
    try:
        import peft
    except ImportError:
        raise ImportError(
            "adapter='lora' needs the optional package 'peft': pip install 'sktransfer[peft]'"
        ) from None
    return peft
