"""What trains in the unfrozen phase: freezing, the adapter, and the optimiser groups,
all in one map of parameter names (the model's, ``body.…`` and ``head.…``)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..backbones import param_blocks
from ._model import BranchedBody, body_names_of
from ._peft import apply_adapter, base_param_name, trainable_parameters
from ._recipe import layerwise_groups


@dataclass(frozen=True)
class AdapterSpec:
    """``adapter=`` and its settings, as ``apply_adapter`` takes them."""

    kind: str
    rank: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    targets: object = "auto"


@dataclass
class Trainable:
    """The unfrozen phase's parameters: AdamW groups (names, peak ``lr``, weight decay),
    the frozen names, the submodules to keep in eval(), the names L2-SP pulls back."""

    groups: list[dict]
    frozen: set[str]
    frozen_modules: list[str]
    l2sp_names: list[str]
    n_params: int


def assemble(model, body, blocks, *, freeze, adapter, lr, lr_mult, weight_decay, l2sp, say):
    """Freeze ``model`` for the unfrozen phase (and put ``adapter`` on ``body`` in place);
    ``blocks`` are the body's ``param_blocks``, earliest first."""
    names_of = body_names_of(model)
    frozen_body = frozen_names([n for n, _ in body.named_parameters()], blocks, freeze)
    if adapter is not None:
        blocks, frozen_body = _adapt(model, body, blocks, frozen_body, adapter, say)
    frozen = {f"body.{m}" for n in frozen_body for m in names_of(n, aliases=True)}
    blocks = [[m for n in b for m in names_of(n)] for b in blocks]
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    groups = layerwise_groups(
        model,
        blocks,
        frozen,
        lr=lr,
        lr_mult=lr_mult,
        weight_decay=weight_decay,
        body_decay=0.0 if l2sp > 0 else weight_decay,
    )
    l2sp_names = (
        []
        if l2sp <= 0
        else [n for n, _ in model.named_parameters() if n.startswith("body.") and n not in frozen]
    )
    return Trainable(
        groups,
        frozen,
        fully_frozen_modules(model, frozen),
        l2sp_names,
        trainable_parameters(model),
    )


def _adapt(model, body, blocks, frozen, adapter: AdapterSpec, say):
    """Put the adapter on ``body`` in place; returns the blocks and frozen names in the
    adapted body's parameter names (a LoRA pair joins the block of the layer it adapts;
    everything the adapter does not train is frozen)."""
    if isinstance(model.body, BranchedBody):
        raise ValueError(
            f"adapter={adapter.kind!r} with shared_blocks: each task's branch would need "
            "its own adapter; use one of them."
        )
    targets = adapter.targets
    apply_adapter(
        body,
        adapter.kind,
        rank=adapter.rank,
        alpha=adapter.alpha,
        dropout=adapter.dropout,
        target_modules=list(targets) if isinstance(targets, tuple) else targets,
    )
    by_base: dict[str, list[str]] = {}
    still = set()
    for n, p in body.named_parameters():
        by_base.setdefault(base_param_name(n), []).append(n)
        if not p.requires_grad:
            still.add(n)
    blocks = [[m for n in b for m in by_base.get(n, [])] for b in blocks]
    frozen = {m for n in frozen for m in by_base.get(n, [])} | still
    say(
        f"adapter {adapter.kind}: {trainable_parameters(body):,} of "
        f"{sum(p.numel() for p in body.parameters()):,} body parameters train"
    )
    return blocks, frozen


def unfreeze(model: nn.Module) -> None:
    """After a phase: every parameter trainable again (a fitted model has no frozen state)."""
    for p in model.parameters():
        p.requires_grad_(True)


def check_freeze(freeze, blocks) -> None:
    """A ``freeze=k`` the body can honour: at most its number of blocks."""
    if isinstance(freeze, (int, np.integer)) and not isinstance(freeze, bool):
        if int(freeze) > len(blocks):
            raise ValueError(
                f"freeze={int(freeze)} but the body has {len(blocks)} blocks (as "
                "sktransfer.backbones.param_blocks counts them): use at most "
                f"{len(blocks)}, or freeze='backbone' to train the head alone."
            )


def frozen_names(named_params: list[str], blocks: list[list[str]], freeze) -> set[str]:
    """Parameter names kept frozen by ``freeze`` ("backbone", "none", int k, or patterns)."""
    if freeze == "none" or freeze is None:
        return set()
    if freeze == "backbone":
        return set(named_params)
    if isinstance(freeze, (int, np.integer)):
        return {n for b in blocks[: int(freeze)] for n in b}
    pats = [freeze] if isinstance(freeze, str) else list(freeze)
    out = {n for n in named_params if any(fnmatch.fnmatchcase(n, p) for p in pats)}
    unmatched = [p for p in pats if not any(fnmatch.fnmatchcase(n, p) for n in named_params)]
    if unmatched:
        raise ValueError(
            f"freeze patterns {unmatched} match no parameter of the backbone; names look like "
            f"{named_params[:3]} (see sktransfer.backbones.param_blocks)."
        )
    return out


def frozen_of(body, freeze) -> tuple[set[str], list[str]]:
    """(the body's parameter names ``freeze`` keeps frozen, its submodules they fill):
    what a phase outside the unfrozen one (the pairs, the target's statistics) leaves
    alone."""
    names = [n for n, _ in body.named_parameters()]
    frozen = frozen_names(names, param_blocks(body), freeze)
    return frozen, fully_frozen_modules(body, frozen)


def fully_frozen_modules(module: nn.Module, frozen: set[str]) -> list[str]:
    """Submodules whose parameters are all frozen: they must run in eval() so that
    BatchNorm statistics do not move while the rest trains."""
    out = []
    for name, m in module.named_modules():
        names = [f"{name}.{p}" if name else p for p, _ in m.named_parameters()]
        if names and all(n in frozen for n in names):
            if not any(name.startswith(o + ".") or o == "" for o in out):
                out.append(name)
    return out
