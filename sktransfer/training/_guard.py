"""The guard: a fine-tune never ends below its own linear probe by more than noise.

After the unfrozen phase the weights are interpolated between the probe's start (the
pretrained body under the probe's head) and the fine-tuned end, WiSE-FT's line (Wortsman
et al. 2022); each point is scored on labelled rows the training never saw, and the best
is kept. α = 0 is the probe itself, α = 1 the plain fine-tune: one forward pass of the
held-out rows per point, no second training.
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Real

import numpy as np
import torch
from torch import nn

from ..inputs import Subset
from ._data import SourceDataset
from ._loss import task_loss
from ._phases import fit_probe
from ._regularize import interpolate_weights, weights_snapshot

# The points of the line tried: the probe, three mixtures, the fine-tune.
WISE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
# Fewer labelled rows than this: no rows are held out and the fine-tune is kept (α = 1).
MIN_GUARD_ROWS = 20


def held_out_loss(net, backbone, data, rows, tasks) -> float:
    """The tasks' mean loss (``task_loss``, sample weights included) on ``rows``."""
    ds = SourceDataset(Subset(data.source, rows), {}, backbone.preprocess, None, backbone.collate)
    pred = net.forward(ds, training=False, device="cpu").float()
    y = torch.as_tensor(data.targets["y"][rows])
    w = torch.as_tensor(data.targets["w"][rows])
    return float(task_loss(pred, y, w, tasks))


@torch.no_grad()
def choose_wise(model, start, net, backbone, data, plan, tasks, grid=WISE_GRID):
    """Leave ``model`` at the point of the line from ``start`` (a ``weights_snapshot``)
    to its current weights whose held-out loss is lowest; returns (α, {α: loss}).

    A tie goes to the larger α, the model that trained more."""
    end = weights_snapshot(model)
    rows = data.holdout
    losses = {}
    for alpha in grid:
        interpolate_weights(model, start, alpha, end)
        losses[alpha] = held_out_loss(net, backbone, data, rows, tasks)
    best = min(losses.values())
    alpha = max(a for a, v in losses.items() if v <= best)
    interpolate_weights(model, start, alpha, end)
    listed = ", ".join(f"{a:g}: {v:.4f}" for a, v in losses.items())
    plan.say(
        f"guard: held-out loss on {len(rows)} rows along probe (0) to fine-tune (1): "
        f"{listed}; kept {alpha:g}"
    )
    return alpha, losses


def wise_grid(model, batchnorm: str):
    """The points the guard tries. BatchNorm statistics that trained (``batchnorm ==
    "train"``) mixed halfway are not the statistics of the mixed weights: a mixture would
    normalise with numbers no network computes (AdaBN, re-estimating them, then finds
    another model), so only the endpoints are tried there."""
    trains_stats = batchnorm == "train" and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )
    return (0.0, 1.0) if trains_stats else WISE_GRID


def settle_wise(model, start, net, backbone, data, plan, tasks, wise, *, epochs, interrupted):
    """After the unfrozen phase: the point of WiSE-FT's line the fit keeps. Returns
    (α, the held-out losses or None, the probe solved again on every row or None).

    ``wise`` is the estimator's parameter: None keeps the fine-tune (α = 1; 0 when
    ``epochs`` is 0), a number mixes at that α, "auto" (with ``data.holdout``) chooses
    on the held-out rows unless the fit was ``interrupted``; when the probe (α = 0) wins
    it is solved again on every labelled row, as ``max_epochs=0`` fits it."""
    if not epochs:
        return 0.0, None, None
    if data.holdout is not None and not interrupted:
        alpha, losses = choose_wise(
            model, start, net, backbone, data, plan, tasks, wise_grid(model, plan.batchnorm)
        )
        probe = None
        if alpha == 0:
            everyone = replace(data, train=np.union1d(data.train, data.holdout))
            probe = fit_probe(model, backbone, everyone, plan, tasks)
        return alpha, losses, probe
    if isinstance(wise, Real):
        interpolate_weights(model, start, wise)
        return float(wise), None, None
    return 1.0, None, None


def guard_rows(n_labelled: int) -> bool:
    """Whether a fit with ``n_labelled`` rows holds some out for the guard."""
    return n_labelled >= MIN_GUARD_ROWS


__all__ = [
    "MIN_GUARD_ROWS",
    "WISE_GRID",
    "choose_wise",
    "guard_rows",
    "held_out_loss",
    "settle_wise",
    "wise_grid",
]
