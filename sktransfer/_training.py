"""The pieces skorch runs for fine-tuning: datasets, the transfer module, the net.

skorch owns the loop (epochs, callbacks, history, early stopping); this module
adds what transfer learning needs on top: weighted losses, L2-SP, domain
adaptation terms, frozen blocks kept in ``eval()``, autocast and channels_last.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import StratifiedKFold
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_tensor
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset

from . import _distributed
from ._device import autocast


class TransferModel(nn.Module):
    """body (pretrained, features) → head (new, the transfer layer).

    In training mode ``forward`` returns ``(logits, features)``, so that an adaptation
    loss sees the body's features without any module state; in eval mode the logits.
    ``train()`` keeps the submodules named in ``keep_eval`` (frozen blocks) and, with
    ``batchnorm_eval``, every BatchNorm in eval mode: torch's own hook for modes, so no
    training loop (skorch's or another) needs to know.
    """

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head
        self.keep_eval: tuple[str, ...] = ()
        self.batchnorm_eval = False

    def forward(self, x=None, **tokens):
        z = self.body(x if x is not None else tokens)
        out = self.head(z)
        return (out, z) if self.training else out

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for name in self.keep_eval:
                (self.get_submodule(name) if name else self).eval()
            if self.batchnorm_eval:
                # Normalise with the pretrained running statistics, as the probe saw them;
                # the affine parameters still train.
                for m in self.modules():
                    if isinstance(m, _BatchNorm):
                        m.eval()
        return self


class SourceDataset(Dataset):
    """Rows of a source with their targets; ``__getitems__`` builds whole batches at once
    so preprocessing is batched (see ``identity_collate``)."""

    def __init__(
        self, source, targets: dict[str, np.ndarray], preprocess=None, augment=None, collate=None
    ):
        self.source, self.targets = source, targets
        self.preprocess, self.augment, self.collate = preprocess, augment, collate
        self.training = False

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        idx = np.asarray(indices)
        x = self.source.load(idx, self.preprocess)
        if self.augment is not None and self.training:
            x = self.augment(x)
        if self.collate is not None:
            x = self.collate(x)
        y = {k: torch.as_tensor(v[idx]) for k, v in self.targets.items()}
        return x, y


def identity_collate(batch):
    """Batches arrive whole from ``SourceDataset.__getitems__``."""
    return batch


class TrainingDataset(SourceDataset):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.training = True


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


class TransferNet(NeuralNet):
    """A skorch ``NeuralNet`` for transfer learning.

    Targets arrive as a dict: ``y`` (labels or values), ``w`` (sample weights),
    ``d`` (domain: 1 for labelled rows, 0 for unlabelled target rows used only by
    the adaptation term). ``tasks`` (``LossTask`` objects) say which outputs and
    target columns each loss reads; the loss is their weighted mean (``task_loss``).

    With ``distributed=True`` (inside a torch.distributed process group) training runs
    data-parallel: each process takes its share of every batch (``batch_size`` is the
    global batch), forwards it through a ``DistributedDataParallel`` replica of
    ``module_`` that lives only during ``fit_loop``, and scales its loss so that the
    averaged gradient is the one of the whole batch. ``module_`` stays the plain module,
    so validation, prediction, state dicts and pickles never see the replica.
    """

    def __init__(
        self,
        *args,
        tasks=(),
        param_groups=None,
        frozen_modules=(),
        batchnorm_eval=False,
        amp_dtype=None,
        channels_last=False,
        adaptation=None,
        adaptation_weight=0.0,
        domain_features=None,
        distributed=False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.tasks = tasks
        self.param_groups = param_groups
        self.frozen_modules = frozen_modules
        self.batchnorm_eval = batchnorm_eval
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.adaptation = adaptation
        self.adaptation_weight = adaptation_weight
        self.domain_features = domain_features
        self.distributed = distributed
        self.train_forward_ = None

    def initialize_module(self):
        super().initialize_module()
        if self.channels_last:
            self.module_.to(memory_format=torch.channels_last)
        if isinstance(self.module_, TransferModel):
            self.module_.keep_eval = tuple(self.frozen_modules)
            self.module_.batchnorm_eval = self.batchnorm_eval
        self.adaptation_loss_ = None
        if self.adaptation is not None:
            # A name, or a callable n_features -> AdaptationLoss (a loss object cannot be a
            # skorch parameter: skorch owns the torch modules it is given).
            make = self.adaptation
            if isinstance(make, str):
                make = functools.partial(make_adaptation_loss, make)
            self.adaptation_loss_ = make(self.domain_features)
            self.adaptation_loss_.to(self.device)
        return self

    def get_all_learnable_params(self):
        yield from ((n, p) for n, p in super().get_all_learnable_params() if p.requires_grad)

    def initialize_optimizer(self, *args, **kwargs):
        groups = self.param_groups
        if groups is None:
            return super().initialize_optimizer(*args, **kwargs)
        params = dict(self.module_.named_parameters())
        torch_groups = [
            {
                "params": [params[n] for n in g["names"]],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
            }
            for g in groups
            if g["names"]
        ]
        extra = [] if self.adaptation_loss_ is None else list(self.adaptation_loss_.parameters())
        if extra:  # e.g. DANN's domain classifier, at the head's rate
            torch_groups.append(
                {
                    "params": extra,
                    "lr": groups[-1]["lr"],
                    "weight_decay": groups[-1]["weight_decay"],
                }
            )
        _, kw = self.get_params_for_optimizer("optimizer", self.module_.named_parameters())
        kw.pop("lr", None)
        self.optimizer_ = self.optimizer(torch_groups, lr=groups[-1]["lr"], **kw)
        return self

    def initialize(self):
        super().initialize()
        # fp16 autocast needs loss scaling (bf16 does not): small gradients underflow.
        fp16 = self.amp_dtype == torch.float16
        self.grad_scaler_ = torch.amp.GradScaler(torch.device(self.device).type) if fp16 else None
        return self

    def train_step(self, batch, **fit_params):
        """One optimiser step; with fp16 autocast, through the GradScaler (skorch's
        documented place for fine-grained control of the step)."""
        scaler = getattr(self, "grad_scaler_", None)
        if scaler is None:
            return super().train_step(batch, **fit_params)
        self.optimizer_.zero_grad()
        self.module_.train()
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        scaler.step(self.optimizer_)
        scaler.update()
        return {"loss": loss, "y_pred": y_pred}

    def get_iterator(self, dataset, training=False):
        if not (self.distributed and training):
            return super().get_iterator(dataset, training=training)
        kwargs = self.get_params_for("iterator_train")
        kwargs.setdefault("batch_size", self.batch_size)
        return _distributed.sharded_loader(dataset, **kwargs)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        if not self.distributed:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        # The replica's forward, not the replica: skorch registers any module set on the
        # net, and this one must not outlive the loop (it holds the process group).
        self.train_forward_ = _distributed.wrap(self.module_, self.device).__call__
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        finally:
            self.train_forward_ = None

    def infer(self, x, **fit_params):
        if self.channels_last and isinstance(x, torch.Tensor) and x.ndim == 4:
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        replica = self.train_forward_
        with autocast(torch.device(self.device), self.amp_dtype):
            if replica is not None and self.module_.training and torch.is_grad_enabled():
                x = to_tensor(x, device=self.device)
                out = (
                    replica(**x, **fit_params) if isinstance(x, dict) else replica(x, **fit_params)
                )
            else:
                out = super().infer(x, **fit_params)
        if isinstance(out, tuple):  # (logits, features) from a TransferModel in training
            return tuple(o.float() for o in out)
        return out.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        z = None
        if isinstance(y_pred, tuple):
            y_pred, z = y_pred
        y, w, d = y_true["y"], y_true.get("w"), y_true.get("d")
        w = torch.ones(len(y), device=y_pred.device) if w is None else w.to(y_pred.device)
        if d is not None:
            w = w * (d.to(y_pred.device) > 0).float()
        reduce = None
        if training and self.train_forward_ is not None:
            # DistributedDataParallel averages the processes' gradients: dividing this
            # share's loss by the whole batch's weight, times the number of processes,
            # makes that average the gradient of the whole batch's weighted mean.
            def reduce(total):
                return _distributed.global_sum(total) / _distributed.world_size()

        loss = task_loss(y_pred, y.to(y_pred.device), w.float(), self.tasks, reduce=reduce)
        if training and self.adaptation_loss_ is not None and d is not None and z is not None:
            src = d.to(z.device) > 0
            if src.sum() >= 2 and (~src).sum() >= 2:  # a covariance needs two rows a side
                loss = loss + self.adaptation_weight * self.adaptation_loss_(z[src], z[~src])
        return loss


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


class TaskHeads(nn.Module):
    """One head per task on the shared features, outputs concatenated in task order.

    ``hidden`` > 0 gives each head a task-specific hidden layer (Linear, ReLU) before
    its output layer; ``sizes`` are the tasks' numbers of outputs.
    """

    def __init__(self, n_features: int, sizes, hidden: int = 0):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.hidden = int(hidden or 0)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, s))
            if self.hidden
            else nn.Linear(n_features, s)
            for s in self.sizes
        )

    def forward(self, z):
        if z.ndim == 3:  # (batch, task, features) from a BranchedBody: a branch per head
            return torch.cat([h(z[:, t]) for t, h in enumerate(self.heads)], dim=1)
        return torch.cat([h(z) for h in self.heads], dim=1)


class BranchedBody(nn.Module):
    """A body shared up to a point, then one branch per task.

    ``copies[0]`` is the given body; each other task gets a deep copy whose parameters
    (and the buffers of their modules) outside ``private`` are the very tensors of
    ``copies[0]``: tied, so they train as one. Each copy runs whole on every batch, so a
    forward pass costs ``n_tasks`` bodies; ``forward`` returns (batch, task, features).
    """

    def __init__(self, body: nn.Module, n_tasks: int, private: set[str]):
        super().__init__()
        self.private = frozenset(private)
        copies = [body] + [copy.deepcopy(body) for _ in range(n_tasks - 1)]
        for other in copies[1:]:
            for name, m in body.named_modules():
                own = [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
                if any(o in self.private for o in own):
                    continue
                target = other.get_submodule(name)
                for p, param in m.named_parameters(recurse=False):
                    setattr(target, p, param)
                for b, buf in m.named_buffers(recurse=False):
                    target._buffers[b] = buf
        self.copies = nn.ModuleList(copies)

    def names_of(self, name: str, aliases: bool = False) -> list[str]:
        """This module's names for the body's parameter ``name``: one per copy when it is
        task-specific, copy 0's alone when shared (``aliases``: every copy's name of it)."""
        if aliases or name in self.private:
            return [f"copies.{t}.{name}" for t in range(len(self.copies))]
        return [f"copies.0.{name}"]

    def forward(self, x):
        return torch.stack([c(x) for c in self.copies], dim=1)


class AdaptationLoss(nn.Module):
    """A domain-adaptation term on the body's features: ``forward(zs, zt)`` takes the
    features of a batch's source rows and of its target rows (two or more of each) and
    returns a scalar added to the task loss, times ``adaptation_weight``.

    Subclass it and add it to ``ADAPTATION_LOSSES`` to offer a new method; its parameters
    (if any) train with the head's learning rate.
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


def layerwise_groups(
    module: TransferModel,
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


# The probe's inverse L2 strengths, on standardised features, chosen by cross-validated
# log-loss. A fixed C cannot serve every body: C=1 fits 300 Fashion-MNIST images to a
# training loss of 0.0025 (the body then gets almost no gradient and Adam's normalised
# steps are noise), while on MiniLM sentence features C=0.05 already overfits 1,000
# reviews (0.701 held-out vs 0.739 at the C that cross-validation picks, 0.001).
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
PROBE_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# Below this many labelled rows in the rarest class, no 3-fold CV: a fixed C.
PROBE_FALLBACK_C = 0.05
# The probe's folds are shuffled (with a fixed seed): unshuffled folds of rows sorted by a
# column (auto MPG is sorted by model year) picked another C and cost the region task 3
# points (0.767 vs 0.799 on 242 cars, bench_multitask).
PROBE_CV = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)


def fit_linear_probe(
    Z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    task: str,
    n_outputs: int,
    class_weight=None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(weight, bias, training loss, regularisation) of a linear head fitted to convergence
    on features Z.

    A convex solver on centred features scaled by their mean spread, folded back into one
    ``nn.Linear`` acting on the raw features: L-BFGS multinomial logistic regression for
    classes, its ``C`` chosen from ``PROBE_CS`` by 3-fold cross-validated log-loss
    (``PROBE_FALLBACK_C`` when a class has fewer than 3 rows); ridge for standardised
    targets, its alpha chosen from ``PROBE_ALPHAS`` by leave-one-out. ``w`` are sample
    weights; ``class_weight``
    multiplies them per class, as the fine-tuning loss does.
    """
    Z = np.asarray(Z, dtype=np.float64)
    mu = Z.mean(0)
    # One scale for all features, not one per feature: dividing a nearly constant feature
    # by its tiny spread gives it a huge weight, and training-time noise the probe never saw
    # (dropout in a text encoder) then swings the logits (MiniLM: loss 0.31 -> 5.7 at the
    # first unfrozen step with per-feature scaling).
    sd = np.full(Z.shape[1], max(float(Z.std(0).mean()), 1e-12))
    Zs = (Z - mu) / sd
    sw = np.asarray(w, dtype=np.float64).copy()
    d = Z.shape[1]
    if task == "classification":
        y = np.asarray(y, dtype=np.int64)
        if class_weight is not None:
            sw = sw * np.asarray(class_weight, dtype=np.float64)[y]
        present, counts = np.unique(y[sw > 0], return_counts=True)
        weight = np.zeros((n_outputs, d))
        bias = np.full(n_outputs, -1e3 if len(present) < n_outputs else 0.0)
        reg = PROBE_FALLBACK_C
        if len(present) == 1:  # one class seen: predict it
            bias[present[0]] = 0.0
        else:
            keep = sw > 0
            with warnings.catch_warnings():
                # An unconverged L-BFGS head is still a good start for fine-tuning; and
                # LogisticRegressionCV's announcements of its own API changes are not the
                # user's concern.
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", FutureWarning)
                if counts.min() >= 3:
                    lr = LogisticRegressionCV(
                        Cs=list(PROBE_CS), cv=PROBE_CV, scoring="neg_log_loss", max_iter=1000
                    ).fit(Zs[keep], y[keep], sample_weight=sw[keep])
                    reg = float(lr.C_[0])
                else:
                    lr = LogisticRegression(C=reg, max_iter=1000)
                    lr.fit(Zs[keep], y[keep], sample_weight=sw[keep])
            coef, icpt = lr.coef_, lr.intercept_
            if len(present) == 2:  # one logit z: softmax over [-z/2, z/2] is sigmoid(z)
                coef = np.vstack([-coef / 2, coef / 2])
                icpt = np.array([-icpt[0] / 2, icpt[0] / 2])
            weight[present] = coef
            bias[present] = icpt
    else:
        Y = np.asarray(y, dtype=np.float64).reshape(len(Z), -1)
        ridge = RidgeCV(alphas=list(PROBE_ALPHAS)).fit(Zs, Y, sample_weight=sw)
        reg = float(np.atleast_1d(ridge.alpha_)[0])
        weight = ridge.coef_.reshape(n_outputs, d)
        bias = np.atleast_1d(ridge.intercept_).reshape(n_outputs)
    # Fold the standardisation in: w·(z - mu)/sd + b = (w/sd)·z + (b - w·mu/sd).
    weight = weight / sd
    bias = bias - weight @ mu
    logits = Z @ weight.T + bias
    if task == "classification":
        logits = logits - logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        per = -logp[np.arange(len(y)), y]
    else:
        per = ((logits - Y) ** 2).mean(1)
    loss = float((per * sw).sum() / max(sw.sum(), 1e-12))
    return weight.astype(np.float32), bias.astype(np.float32), loss, reg


def fit_task_probes(Z, y, w, tasks, n_outputs):
    """The linear probe of every task of a net's loss: ``fit_linear_probe`` on each task's
    labelled rows and outputs, assembled into one (weight, bias) for the whole head.

    Returns (weight, bias, training loss as ``task_loss`` computes it, the per-task
    regularisation strengths).
    """
    Z = np.asarray(Z)
    weight = np.zeros((n_outputs, Z.shape[1]), np.float32)
    bias = np.zeros(n_outputs, np.float32)
    regs = []
    for t in tasks:
        a, b = t.outputs
        target = y if t.columns is None else y[:, t.columns[0] : t.columns[1]]
        target = np.asarray(target).reshape(len(target), -1)
        present = ~np.isnan(target.astype(np.float64)).any(1)
        rows = present & (np.asarray(w) > 0)
        if not rows.any():  # nothing to fit this task on: its head starts at zero
            regs.append(None)
            continue
        kind = "regression" if t.kind == "mse" else "classification"
        tt = target[rows] if kind == "regression" else target[rows, 0].astype(np.int64)
        n_out = 2 if t.kind == "sigmoid" else b - a
        W, B, _, reg = fit_linear_probe(
            Z[rows],
            tt,
            np.asarray(w)[rows],
            task=kind,
            n_outputs=n_out,
            class_weight=t.class_weight,
        )
        if t.kind == "sigmoid":  # softmax over [z0, z1] is sigmoid(z1 - z0)
            W, B = W[1:] - W[:1], B[1:] - B[:1]
        weight[a:b], bias[a:b] = W, B
        regs.append(reg)
    with torch.no_grad():
        logits = torch.from_numpy(Z.astype(np.float32)) @ torch.from_numpy(weight).T
        logits = logits + torch.from_numpy(bias)
        target = torch.as_tensor(np.asarray(y))
        loss = task_loss(logits, target, torch.as_tensor(np.asarray(w, np.float32)), tasks)
    return weight, bias, float(loss), regs


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
def interpolate_weights(module: nn.Module, start: dict[str, torch.Tensor], alpha: float) -> None:
    """WiSE-FT (Wortsman et al. 2022): θ = (1 − α)·θ_start + α·θ_now for every floating
    parameter and buffer (BatchNorm statistics too); integer buffers keep their value."""
    seen = set()  # a tensor tied in several places (BranchedBody) moves once
    for k, v in module.state_dict(keep_vars=True).items():
        if v.is_floating_point() and id(v) not in seen:
            seen.add(id(v))
            v.data.copy_(torch.lerp(start[k].to(v.device, v.dtype), v.data, alpha))
