"""The recipe: what ``lr="auto"``, ``max_epochs="auto"`` and ``batchnorm="auto"`` resolve
to for a body's family, the layer-wise groups with their peak rates, and the schedule.

Every number a user does not set is here, next to the measurement that chose it.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from torch import nn


def layerwise_groups(
    module: nn.Module,
    blocks: list[list[str]],
    frozen: set[str],
    *,
    lr: float,
    lr_mult: float,
    weight_decay: float,
    body_decay: float,
) -> list[dict]:
    """AdamW groups: the head gets ``lr``, the body blocks a geometric ladder from
    ``lr / lr_mult`` (earliest) up to the last block's, just under the head's; norms and
    biases get no weight decay."""
    shapes = {n: p.ndim for n, p in module.named_parameters()}
    tiers = [[f"body.{n}" for n in b] for b in blocks] + [
        [n for n in shapes if n.startswith("head.")]
    ]
    k = len(tiers)
    lrs = [lr * lr_mult ** (-(k - 1 - i) / max(k - 1, 1)) for i in range(k)]
    groups = []
    for i, (names, tier_lr) in enumerate(zip(tiers, lrs)):
        names = [n for n in names if n not in frozen]
        decay = weight_decay if i == k - 1 else body_decay
        groups.append(
            {"names": [n for n in names if shapes[n] > 1], "lr": tier_lr, "weight_decay": decay}
        )
        groups.append(
            {"names": [n for n in names if shapes[n] <= 1], "lr": tier_lr, "weight_decay": 0.0}
        )
    return [g for g in groups if g["names"]]


# What ``lr="auto"`` and ``max_epochs="auto"`` resolve to, per kind of body (see
# docs/finetuning.md for the measurements behind each number). ``steps`` is the number
# of optimiser steps the unfrozen phase aims for; the epochs are that many steps over the
# training rows, within [min_epochs, max_epochs]. ``adapter_lr`` serves ``adapter=``: LoRA
# and BitFit train few weights from a zero update, at ten times full fine-tuning's rate
# as in the LoRA paper (MiniLM on 300 Rotten Tomatoes reviews: LoRA 0.777 at 5e-4 vs 0.759
# at 5e-5; EfficientNet-Lite0 on Fashion-MNIST and BitFit: the same either way).
RECIPES = {
    # Pretrained convolutional nets with BatchNorm (EfficientNet, ResNet, ConvNeXt-BN...).
    "conv": {
        "lr": 1e-4,
        "scratch_lr": 1e-3,
        "adapter_lr": 1e-3,
        "steps": 150,
        "min_epochs": 5,
        "max_epochs": 20,
    },
    # Attention-based bodies (text encoders, ViTs): small steps keep their features intact,
    # and a few epochs, as in the Hugging Face course.
    "transformer": {
        "lr": 5e-5,
        "scratch_lr": 5e-4,
        "adapter_lr": 5e-4,
        "steps": 100,
        "min_epochs": 2,
        "max_epochs": 5,
    },
    # Anything else, e.g. a small MLP on a table, usually trained from random weights:
    # scikit-learn's MLP trains for up to 200 epochs at Adam's 1e-3; a few hundred steps
    # at 1e-2 reach the same place on small tables.
    "mlp": {
        "lr": 1e-2,
        "scratch_lr": 1e-2,
        "adapter_lr": 1e-2,
        "steps": 300,
        "min_epochs": 10,
        "max_epochs": 200,
    },
}


def body_family(module: nn.Module, modality: str) -> str:
    """Which ``RECIPES`` entry a body takes: "transformer" for text encoders and bodies
    with attention or LayerNorm, "conv" for convolutional bodies, "mlp" otherwise."""
    kinds = {type(m) for m in module.modules()}
    if modality == "text" or any(
        issubclass(k, (nn.MultiheadAttention, nn.LayerNorm)) for k in kinds
    ):
        return "transformer"
    if any(issubclass(k, nn.modules.conv._ConvNd) for k in kinds):
        return "conv"
    return "mlp"


def resolve_lr(family: str, lr, *, pretrained: bool, adapter) -> float:
    """``lr_``: the number given, or the family's rate. Fresh weights (structure transfer)
    train from scratch: a pretrained body's small rate would leave them near their random
    start; an adapter trains few weights from a zero update: a larger step."""
    if lr != "auto":
        return float(lr)
    key = "lr" if pretrained else "scratch_lr"
    if adapter is not None and pretrained:
        key = "adapter_lr"
    return RECIPES[family][key]


# ``lr_mult="auto"``: the head's rate over the earliest block's. Ten for images (the
# recipe's ladder, chosen on Fashion-MNIST and kept on the suite's image sets); one, the
# same rate for every layer as in the Hugging Face course, for text encoders: MiniLM at
# 1,000 labelled rows, four epochs, the suite's draws (docs/finetuning.md, "One rate for
# text"): Rotten Tomatoes 0.783 -> 0.808 (two seeds), 2012 conventions 0.658 -> 0.682,
# fortunes 0.754 -> 0.779.
LR_MULT = {"image": 10.0, "text": 1.0}


def resolve_lr_mult(lr_mult, modality: str) -> float:
    """``lr_mult_``: the number given, or the modality's ratio (10 for anything not text:
    images, tables, several inputs)."""
    if lr_mult != "auto":
        return float(lr_mult)
    return LR_MULT.get(modality, LR_MULT["image"])


def resolve_freeze(freeze, family: str, *, pretrained: bool, adapter, n_blocks: int):
    """``freeze_``: "auto" keeps the first third of a pretrained convolutional body's
    blocks frozen (on EfficientNet-Lite0 the stem and stages 0-1, which run at the highest
    resolutions), and nothing else. Measured on EfficientNet-Lite0 (docs/finetuning.md,
    "Cost"): the accuracy of training every block, for less than half the fit time on the
    CPU, where the frozen blocks are also computed once (``_prefix.py``); freezing half
    the blocks cost 0.020 on 100 digits. Text encoders, tables, fresh weights and adapters
    (which choose what trains themselves) keep every block trainable."""
    if not (isinstance(freeze, str) and freeze == "auto"):
        return freeze
    if family == "conv" and pretrained and adapter is None and n_blocks >= 3:
        return n_blocks // 3
    return "none"


def resolve_batchnorm(batchnorm: str, *, pretrained: bool) -> str:
    """``batchnorm_``: running statistics are worth keeping only when they were learnt
    (Keras's advice for transfer); fresh weights have none yet, so their BatchNorm trains."""
    if batchnorm != "auto":
        return batchnorm
    return "eval" if pretrained else "train"


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return max(1, -(-n_rows // batch_size))


# The contrastive phase (``contrastive="auto"``; training/_contrastive.py): a number of
# optimiser steps over the labelled rows, within [1, CONTRASTIVE_MAX_EPOCHS] epochs, at the
# family's rate; "auto" runs it for transformer bodies up to CONTRASTIVE_MAX_ROWS rows.
CONTRASTIVE_STEPS = 40
CONTRASTIVE_MAX_EPOCHS = 40
CONTRASTIVE_MAX_ROWS = 256


def contrastive_epochs(n_rows: int, batch_size: int) -> int:
    """Epochs of the contrastive phase: ``CONTRASTIVE_STEPS`` optimiser steps over
    ``n_rows``, within [1, ``CONTRASTIVE_MAX_EPOCHS``]."""
    epochs = -(-CONTRASTIVE_STEPS // steps_per_epoch(n_rows, batch_size))
    return int(np.clip(epochs, 1, CONTRASTIVE_MAX_EPOCHS))


def budget_epochs(family: str, n_rows: int, batch_size: int) -> int:
    """Enough epochs over ``n_rows`` to reach the family's number of optimiser steps,
    within the family's bounds."""
    recipe = RECIPES[family]
    epochs = -(-recipe["steps"] // steps_per_epoch(n_rows, batch_size))
    return int(np.clip(epochs, recipe["min_epochs"], recipe["max_epochs"]))


class OneCycle(LRScheduler):
    """The one-cycle schedule over ``epochs`` of ``n_rows``: each optimiser group peaks
    at its own ``peak_lr`` (the rate the group was built with), read from the optimiser
    itself when training begins, so no list has to line up with the groups by position."""

    def __init__(self, n_rows: int, epochs: int, batch_size: int):
        # +1: skorch may step once more than the batch count (e.g. a last partial batch)
        super().__init__(
            policy=torch.optim.lr_scheduler.OneCycleLR,
            total_steps=epochs * steps_per_epoch(n_rows, batch_size) + 1,
            pct_start=0.3,
            div_factor=5.0,
            step_every="batch",
        )

    def on_train_begin(self, net, **kwargs):
        self.max_lr = [g.get("peak_lr", g["lr"]) for g in net.optimizer_.param_groups]
        super().on_train_begin(net, **kwargs)
