"""Deep domain-adaptation terms on the body's features: the public extension point
(``AdaptationLoss``) and the two methods offered by name (DANN, Deep CORAL)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class AdaptationLoss(nn.Module):
    """A domain-adaptation term on the body's features: ``forward(zs, zt)`` takes the
    features of a batch's source rows and of its target rows (two or more of each) and
    returns a scalar added to the task loss, times ``adaptation_weight``.

    Subclass it and pass an instance as ``FineTuneClassifier(adaptation=MyLoss(d))``
    (each fit trains a copy of it), or add it to ``ADAPTATION_LOSSES`` to offer it by
    name; its parameters (if any) train with the head's learning rate.
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features

    def forward(self, zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class CORALLoss(AdaptationLoss):
    """Deep CORAL: the relative gap between the two domains' feature covariances."""

    def forward(self, zs, zt):
        return coral_loss(zs, zt)


class DANNLoss(AdaptationLoss):
    """DANN: the body learns to fool a binary domain classifier via a reversed gradient.

    A real classifier with a hidden layer on the body's features (not skada's one-unit
    softmax, whose output is a constant).
    """

    def __init__(self, n_features: int, hidden: int = 256):
        super().__init__(n_features)
        self.discriminator = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, zs, zt):
        z = torch.cat([zs, zt])
        is_target = torch.cat([zs.new_zeros(len(zs)), zt.new_ones(len(zt))])
        logits = self.discriminator(GradReverse.apply(z, 1.0)).squeeze(1)
        return F.binary_cross_entropy_with_logits(logits, is_target)


ADAPTATION_LOSSES: dict[str, type[AdaptationLoss]] = {"coral": CORALLoss, "dann": DANNLoss}


def make_adaptation_loss(adaptation, n_features: int) -> AdaptationLoss:
    """A fresh loss for ``adaptation``: a name in ``ADAPTATION_LOSSES`` or a loss object
    (copied, so that each fit starts from its initial parameters)."""
    if isinstance(adaptation, AdaptationLoss):
        return copy.deepcopy(adaptation)
    return ADAPTATION_LOSSES[adaptation](n_features)


def coral_loss(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko 2016), relative: ||C_s − C_t||²_F / (||C_s||²_F + ||C_t||²_F).

    The paper's 1 / (4 d²) makes the term tiny next to the cross-entropy (weight 1 did
    nothing measurable), and any scale factor lets the body shrink its features instead
    of aligning them. The relative gap lies in [0, 2] whatever the units, so weight 1
    weighs it like the cross-entropy, as DANN's domain loss is.
    """
    cs, ct = torch.cov(zs.T), torch.cov(zt.T)
    total = (cs**2).sum() + (ct**2).sum()
    return ((cs - ct) ** 2).sum() / total.clamp_min(torch.finfo(total.dtype).tiny)


class GradReverse(torch.autograd.Function):
    """Identity forward, −λ·gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None
