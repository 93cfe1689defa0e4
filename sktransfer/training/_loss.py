"""The criterion in skorch's criterion slot: the tasks' losses, the adaptation term and
the data-parallel reduction, in one module (as skada's ``DomainAwareCriterion``), so that
skorch registers the adaptation term's parameters and moves them with the net."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._adaptation import make_adaptation_loss


@dataclass(frozen=True)
class LossTask:
    """One task of a net's loss: which outputs it reads, which target columns, how.

    ``kind`` is "softmax" (cross-entropy over ``outputs``, the target a class index),
    "sigmoid" (binary cross-entropy on one output, the target 0/1) or "mse" (mean
    squared error over ``outputs`` against as many standardised target columns).
    ``columns`` is the (start, stop) of the task's columns in a 2-D target matrix, or
    None when the target is 1-D (one task). NaN in a task's columns marks a row whose
    label for this task is missing: the row still trains the other tasks.
    ``class_weight`` weighs each class's rows (softmax: one per class; sigmoid: [0, 1]).
    """

    kind: str
    outputs: tuple[int, int]
    columns: tuple[int, int] | None = None
    weight: float = 1.0
    class_weight: tuple[float, ...] | None = None
    name: object = None


def task_loss(y_pred, y, w, tasks, reduce=None):
    """Σ_t weight_t · L_t / Σ_t weight_t, where L_t is the mean of task t's loss over the
    rows labelled for it, weighted by ``w`` (and its class weights, which scale the rows'
    losses, not the mean's denominator, as torch's ``cross_entropy`` has it).

    ``reduce`` maps each task's total row weight to the one the mean divides by (the
    whole global batch's, under DDP).
    """
    total = y_pred.new_zeros(())
    for t in tasks:
        logits = y_pred[:, t.outputs[0] : t.outputs[1]]
        target = y if t.columns is None else y[:, t.columns[0] : t.columns[1]]
        ww = w
        if t.columns is not None or target.is_floating_point():
            missing = torch.isnan(target.float()).reshape(len(target), -1).any(1)
            ww = ww * (~missing).float()
            target = torch.nan_to_num(target.float())
        cw = None if t.class_weight is None else logits.new_tensor(t.class_weight)
        if t.kind == "softmax":
            per = F.cross_entropy(logits, target.reshape(-1).long(), weight=cw, reduction="none")
        elif t.kind == "sigmoid":
            target = target.reshape(-1).float()
            per = F.binary_cross_entropy_with_logits(logits.reshape(-1), target, reduction="none")
            if cw is not None:
                per = per * cw[target.long()]
        else:
            per = F.mse_loss(logits, target.float().view_as(logits), reduction="none")
            per = per.reshape(len(per), -1).mean(1)
        denom = ww.sum()
        if reduce is not None:
            denom = reduce(denom)
        total = total + t.weight * (per * ww).sum() / denom.clamp_min(1e-12)
    return total / max(sum(t.weight for t in tasks), 1e-12)


class TransferCriterion(nn.Module):
    """The fine-tuning loss: ``task_loss`` over the labelled rows of a batch, plus
    ``adaptation_weight`` times an adaptation term on the body's features of its source
    and target rows when ``adaptation`` is set (a name in ``ADAPTATION_LOSSES`` or an
    ``AdaptationLoss`` object, copied so that each fit starts from its initial state).

    ``y_pred`` is ``(logits, features)`` in training (``TransferModel``), the logits
    otherwise; ``y_true`` the dict of targets: ``y``, ``w`` (sample weights, 0 for
    unlabelled rows), ``d`` (domain: 1 labelled source rows, 0 target rows).
    ``reduce`` maps a task's total row weight to the one its mean divides by (under DDP:
    the whole global batch's, ``_distributed.whole_batch_denominator``).
    """

    def __init__(self, tasks=(), adaptation=None, adaptation_weight=0.0, n_features=None):
        super().__init__()
        self.tasks = tuple(tasks)
        self.adaptation_weight = adaptation_weight
        self.adaptation = (
            None if adaptation is None else make_adaptation_loss(adaptation, n_features)
        )

    def forward(self, y_pred, y_true, training=False, reduce=None):
        z = None
        if isinstance(y_pred, tuple):
            y_pred, z = y_pred
        y, w, d = y_true["y"], y_true.get("w"), y_true.get("d")
        w = torch.ones(len(y), device=y_pred.device) if w is None else w.to(y_pred.device)
        if d is not None:
            w = w * (d.to(y_pred.device) > 0).float()
        loss = task_loss(y_pred, y.to(y_pred.device), w.float(), self.tasks, reduce=reduce)
        if training and self.adaptation is not None and d is not None and z is not None:
            src = d.to(z.device) > 0
            if src.sum() >= 2 and (~src).sum() >= 2:  # a covariance needs two rows a side
                loss = loss + self.adaptation_weight * self.adaptation(z[src], z[~src])
        return loss
