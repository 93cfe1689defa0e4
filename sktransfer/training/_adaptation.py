"""Deep domain-adaptation terms on the body's features: the public extension point
(``AdaptationLoss``) and the two methods offered by name (DANN, Deep CORAL)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from skorch.callbacks import Callback
from torch import nn


class AdaptationLoss(nn.Module):
    """A domain-adaptation term on the body's features: ``forward(zs, zt)`` takes the
    features of a batch's source rows and of its target rows (two or more of each) and
    returns a scalar added to the task loss, times ``adaptation_weight``.

    Subclass it and pass an instance as ``FineTuneClassifier(adaptation=MyLoss(d))``
    (each fit trains a copy of it), or add it to ``ADAPTATION_LOSSES`` to offer it by
    name; its parameters (if any) train with the head's learning rate. ``progress`` is
    the share of the unfrozen phase's optimiser steps done, set before each step (1 when
    no fit is running), for terms that follow a schedule.
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features
        self.progress = 1.0

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

    ``ramp=True`` scales the reversed gradient by Ganin et al.'s schedule (JMLR 2016),
    λ = 2 / (1 + exp(−10 p)) − 1 over the share p of the steps done: 0 at the start, when
    the domain classifier's gradient is noise, 0.46 at a tenth, 0.85 at a quarter, 0.99 at
    the half; the classifier itself always trains at full strength. It is not the
    default: on the six shifts of ``benchmarks/bench_source_free.py`` (LeNet from
    scratch, 2 seeds, the target's BatchNorm statistics after the fit) its mean was above
    λ = 1's on four shifts and below on two, every gap within the spread over seeds. The
    default ``ramp=False`` keeps λ = 1 throughout.
    """

    def __init__(self, n_features: int, hidden: int = 256, ramp: bool = False):
        super().__init__(n_features)
        self.ramp = ramp
        self.discriminator = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def reversal(self) -> float:
        """λ, the reversed gradient's scale at ``progress``."""
        if not self.ramp:
            return 1.0
        return float(2.0 / (1.0 + math.exp(-10.0 * self.progress)) - 1.0)

    def forward(self, zs, zt):
        z = torch.cat([zs, zt])
        is_target = torch.cat([zs.new_zeros(len(zs)), zt.new_ones(len(zt))])
        logits = self.discriminator(GradReverse.apply(z, self.reversal())).squeeze(1)
        return F.binary_cross_entropy_with_logits(logits, is_target)


class AdaptationProgress(Callback):
    """Sets the adaptation term's ``progress`` before each training step: the share of
    the ``total`` optimiser steps of the phase done so far."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)

    def on_train_begin(self, net, **kwargs):
        self.step_ = 0

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        term = getattr(net.criterion_, "adaptation", None)
        if training and term is not None:
            term.progress = min(self.step_ / self.total, 1.0)
            self.step_ += 1

    def on_train_end(self, net, **kwargs):
        term = getattr(net.criterion_, "adaptation", None)
        if term is not None:
            term.progress = 1.0


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
