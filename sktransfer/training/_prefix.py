"""Frozen blocks computed once: under ``freeze=k`` the blocks before the first trainable
one give each row the same output in every epoch (they run in eval(), without gradient),
so the unfrozen phase computes that output once per row and trains from it.

How: one forward pass with hooks finds the body's submodules that run, in call order,
before the first module that trains or behaves otherwise in training (a trainable
parameter, a BatchNorm outside the frozen blocks, a dropout); their output at the last of
them (the cut) is computed once for the training and validation rows; during the fit those
submodules pass their input through, so the body starts at the cut. Before it is used, the
shortcut is checked on a few rows against the whole body: a body that does something
between its submodules (a functional op, a skip from the input) is caught there, and the
phase runs the usual way and says so.

Only on the CPU: there the frozen blocks are most of a step (EfficientNet-Lite0, blocks 0-4
of 7 frozen: 87 % of the forward pass). On a GPU they are cheap next to moving their
output to the device every step; that trade is unmeasured, so a GPU fit runs unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .._device import autocast, autocast_dtype
from ..inputs import FeatureRows
from ._batchnorm import row_batches
from ._model import BranchedBody

MAX_CACHE_BYTES = 2 * 2**30  # the cut's output for all training and validation rows
_CHECK_ROWS = 4


class _Stop(Exception):
    """Raised from the cut's forward hook: the rest of the body is not needed."""

    def __init__(self, output):
        super().__init__()
        self.output = output


class _PassThrough:
    """A stubbed submodule's forward: its input, unchanged (a class, so that a module
    pickled mid-fit by a user's callback still pickles)."""

    def __call__(self, x, *args, **kwargs):
        return x


@dataclass
class PrefixCache:
    """The submodules that pass through during the fit (names in the body), and the
    cut's output for the training and validation rows."""

    names: list[str]
    train: FeatureRows
    valid: FeatureRows | None


def ruled_out(model, data, plan, epochs: int, continuing: bool) -> str | None:
    """Why the frozen blocks cannot be computed once for this phase (None: they can)."""
    if plan.freeze in (None, "none", "backbone"):
        return "no frozen blocks"
    reasons = [
        (plan.device.type != "cpu", "not on the CPU"),
        (epochs < 2, "fewer than two epochs"),
        (continuing, "a continued fit"),
        (plan.augment is not None and data.modality == "image", "augmentation"),
        (plan.adapter is not None, "an adapter"),
        (plan.adaptation is not None, "adaptation"),
        (plan.distributed, "distributed training"),
        (isinstance(model.body, BranchedBody), "task branches"),
    ]
    return next((why for bad, why in reasons if bad), None)


def find_prefix(body: nn.Module, x, frozen: list[str], run) -> list[str]:
    """The maximal submodules of ``body`` (names, in call order) whose every call ends
    before the first call of a module that trains or acts otherwise in training;
    ``frozen`` are the submodules kept in eval() (names in ``body``)."""

    def under_frozen(name):
        return any(name == f or name.startswith(f + ".") for f in frozen)

    def barrier(name, m):
        if any(p.requires_grad for p in m.parameters(recurse=False)):
            return True
        if under_frozen(name):
            return False
        stochastic = "drop" in type(m).__name__.lower()  # nn.Dropout*, timm's DropPath
        stateful = isinstance(m, _BatchNorm) or any(True for _ in m.buffers(recurse=False))
        return stochastic or stateful

    clock, calls, handles = [0], {}, []

    def pre(name):
        def hook(module, args):
            clock[0] += 1
            calls.setdefault(name, []).append([clock[0], None])

        return hook

    def post(name):
        def hook(module, args, output):
            clock[0] += 1
            calls[name][-1][1] = clock[0]

        return hook

    modules = [(n, m) for n, m in body.named_modules() if n]
    for name, m in modules:
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post(name)))
    try:
        run(x)
    finally:
        for h in handles:
            h.remove()
    starts = [calls[n][0][0] for n, m in modules if n in calls and barrier(n, m)]
    if not starts:
        return []
    first = min(starts)
    inside = {n for n, _ in modules if n in calls and all(e < first for _, e in calls[n])}
    maximal = [n for n in inside if n.rpartition(".")[0] not in inside]
    return sorted(maximal, key=lambda n: calls[n][0][0])


@contextmanager
def stubbed(body: nn.Module, names: list[str]):
    """The named submodules of ``body`` pass their input through, until the block ends."""
    modules = [body.get_submodule(n) for n in names]
    for m in modules:
        m.forward = _PassThrough()
    try:
        yield
    finally:
        for m in modules:
            del m.forward


def cache_prefix(model, backbone, data, plan, frozen_modules, say) -> PrefixCache | None:
    """The cut's output for the training and validation rows, checked against the whole
    body on a few rows; None (and ``say`` why) where the shortcut does not hold."""
    body = model.body
    frozen = [n[len("body.") :] for n in frozen_modules if n.startswith("body.")]
    dtype = autocast_dtype(plan.device, plan.precision)
    was_training = model.training
    model.to(plan.device).eval()

    def forward(x):
        with torch.no_grad(), autocast(plan.device, dtype):
            return body(x)

    try:
        first = next(row_batches(backbone, data.source, data.train[:2], 2, plan.device))
        if not isinstance(first, torch.Tensor):
            return None  # tokens: the body reads its mask again after the embeddings
        names = find_prefix(body, first, frozen, forward)
        if not names:
            return None
        cut = body.get_submodule(names[-1])
        n_rows = len(data.train) + (0 if data.valid is None else len(data.valid))
        out = _output(cut, forward, first)
        if out is None:
            return None
        per_row = out.nbytes // len(first)
        if per_row * n_rows > MAX_CACHE_BYTES:
            gib = per_row * n_rows / 2**30
            say(
                f"frozen blocks: recomputed every epoch (their output, {gib:.1f} GiB for "
                f"{n_rows} rows, is over the {MAX_CACHE_BYTES / 2**30:g} GiB cache)"
            )
            return None

        def rows(idx):
            batches = row_batches(backbone, data.source, idx, plan.batch_size, plan.device)
            return FeatureRows(np.concatenate([_output(cut, forward, x) for x in batches]))

        train = rows(data.train)
        check = next(
            row_batches(backbone, data.source, data.train[:_CHECK_ROWS], _CHECK_ROWS, plan.device)
        )
        whole = forward(check).float()
        try:
            with stubbed(body, names):
                short = forward(train.load(np.arange(len(check))).to(plan.device)).float()
        except (RuntimeError, TypeError, ValueError, IndexError):
            short = None  # e.g. a shape the next submodule does not take
        if short is None or not _same(whole, short):
            say(
                "frozen blocks: recomputed every epoch (the body does more than chain "
                f"its submodules up to {names[-1]}, so their output alone cannot stand in)"
            )
            return None
        valid = None if data.valid is None else rows(data.valid)
    finally:
        model.train(was_training)
    say(
        f"frozen blocks: computed once, up to {names[-1]} ({len(names)} submodules, "
        f"{per_row * n_rows / 2**20:.0f} MiB for {n_rows} rows)"
    )
    return PrefixCache(names, train, valid)


def _output(cut: nn.Module, forward, x) -> np.ndarray | None:
    """The cut's output for batch ``x``, float32 on the CPU (None: not one tensor); the
    body stops there."""

    def stop(module, args, output):
        raise _Stop(output)

    handle = cut.register_forward_hook(stop)
    try:
        forward(x)
    except _Stop as s:
        if not isinstance(s.output, torch.Tensor):
            return None
        return s.output.float().cpu().numpy()
    finally:
        handle.remove()
    raise RuntimeError(f"the body never reached {type(cut).__name__}")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(a.abs().max()) or 1.0
    return bool(torch.allclose(a, b, rtol=1e-3, atol=1e-3 * scale))
