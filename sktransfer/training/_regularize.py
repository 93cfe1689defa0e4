"""Staying near the source weights: decoupled L2-SP during training, WiSE-FT after it."""

from __future__ import annotations

import torch
from skorch.callbacks import Callback
from torch import nn


class L2SP(Callback):
    """L2-SP (Li et al. 2018) decoupled from the adaptive step, as AdamW decouples weight
    decay: after each optimiser step every listed parameter moves back towards its
    pretrained value by ``lr_t · l2sp`` of the distance (``lr_t`` its group's current
    learning rate, the factor capped at 1). A penalty added to the loss would be
    rescaled away by Adam's per-parameter normalisation."""

    def __init__(self, l2sp: float, names):
        self.l2sp = l2sp
        self.names = names

    def initialize(self):
        self.ref_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        params = dict(net.module_.named_parameters())
        self.ref_ = {params[n]: params[n].detach().clone() for n in self.names}

    @torch.no_grad()
    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        for group in net.optimizer_.param_groups:
            pull = min(1.0, group["lr"] * self.l2sp)
            for p in group["params"]:
                ref = self.ref_.get(p)
                if ref is not None:
                    p.lerp_(ref, pull)

    def on_train_end(self, net, **kwargs):
        self.ref_ = None  # no copy of the weights kept after fit (nor pickled)


def weights_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (the WiSE-FT zero-shot endpoint)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@torch.no_grad()
def interpolate_weights(
    module: nn.Module, start: dict[str, torch.Tensor], alpha: float, end=None
) -> None:
    """WiSE-FT (Wortsman et al. 2022): θ = (1 − α)·θ_start + α·θ_end for every floating
    parameter and buffer (BatchNorm statistics too); integer buffers keep their value.
    ``end`` (a ``weights_snapshot``) defaults to the module's weights now; α = 0 and 1
    give the endpoints exactly."""
    seen = set()  # a tensor tied in several places (BranchedBody) moves once
    for k, v in module.state_dict(keep_vars=True).items():
        if v.is_floating_point() and id(v) not in seen:
            seen.add(id(v))
            a = start[k].to(v.device, v.dtype)
            b = v.data if end is None else end[k].to(v.device, v.dtype)
            v.data.copy_(a if alpha == 0 else b if alpha == 1 else torch.lerp(a, b, alpha))
