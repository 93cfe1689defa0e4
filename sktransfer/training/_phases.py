"""The phases of a fine-tune, each a function of the model, its backbone, the rows and
the plan: the linear probe, the head on cached features, and the unfrozen phase."""

from __future__ import annotations

import copy
from contextlib import nullcontext

from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from .._extract import extract
from ..augment import make_augment
from ..backbones import param_blocks
from ..inputs import FeatureRows, Subset
from . import _distributed
from ._adaptation import AdaptationProgress
from ._assemble import assemble, unfreeze
from ._data import SourceDataset, TrainingDataset
from ._model import TaskHeads, load_linear_heads
from ._net import fit_net, make_net, resume_training
from ._peft import merge_adapter
from ._prefix import cache_prefix, ruled_out, stubbed
from ._probe import fit_task_probes
from ._recipe import RECIPES, OneCycle, budget_epochs, steps_per_epoch
from ._regularize import L2SP


def head_features(backbone, data, plan, rows):
    """Body features of ``rows`` (computed once, through the cache) and their targets."""
    Z = extract(
        backbone,
        Subset(data.source, rows),
        batch_size=plan.batch_size,
        device=plan.device,
        precision=plan.precision,
        num_workers=plan.num_workers,
        cache=plan.cache,
        verbose=plan.verbosity,
    )
    return Z, {k: v[rows] for k, v in data.targets.items() if k != "d"}


def fit_probe(model, backbone, data, plan, tasks):
    """LP of LP-FT (Kumar et al. 2022): the head solved to convergence on the frozen
    body's features before any body weight moves, so fine-tuning starts from the linear
    probe instead of distorting the features to fit a random head. Heads with a hidden
    layer are not linear: they train on the cached features instead (the MLP recipe).

    Returns (training loss, regularisation per task, the head phase's history)."""
    if isinstance(model.head, TaskHeads) and model.head.hidden:
        epochs = budget_epochs("mlp", int(data.labelled.sum()), plan.batch_size)
        history = train_head(model, backbone, data, plan, tasks, epochs, RECIPES["mlp"]["lr"])
        return None, None, history
    Z, targets = head_features(backbone, data, plan, data.train_labelled)
    n_outputs = tasks[-1].outputs[1]
    weight, bias, loss, regs = fit_task_probes(Z, targets["y"], targets["w"], tasks, n_outputs)
    load_linear_heads(model.head, weight, bias)
    plan.say(f"head on cached features: linear probe on {len(Z)} rows, loss {loss:.4f}")
    return loss, (regs[0] if len(regs) == 1 else regs), []


def train_head(model, backbone, data, plan, tasks, epochs, lr=None):
    """The head trained by SGD on the frozen body's features, computed once; returns its
    history."""
    if epochs == 0:
        return []
    Z, targets = head_features(backbone, data, plan, data.train_labelled)
    valid = None
    if data.valid is not None:
        Zv, tv = head_features(backbone, data, plan, data.valid)
        valid = predefined_split(SourceDataset(FeatureRows(Zv), tv))
    plan.say(f"head on cached features: {epochs} epochs on {len(Z)} rows")
    lr = plan.lr if lr is None else lr
    cbs = _callbacks(plan, len(Z), epochs, schedule=True, validating=valid is not None)
    net = make_net(
        plan, model.head, tasks=tasks, max_epochs=epochs, lr=lr, callbacks=cbs, train_split=valid
    )
    fit_net(net, TrainingDataset(FeatureRows(Z), targets), plan.device)
    return net.history


def train_all(model, backbone, data, plan, tasks, epochs, *, schedule=True, net=None):
    """The unfrozen phase: layer-wise learning rates, frozen blocks in eval(); ``net``
    continues a previous net (partial_fit: one history, one optimiser state).

    Returns (the trained net, the number of parameters that trained)."""
    body = backbone.module
    trainable = assemble(
        model,
        body,
        param_blocks(body),
        freeze=plan.freeze,
        adapter=plan.adapter,
        lr=plan.lr,
        lr_mult=plan.lr_mult,
        weight_decay=plan.weight_decay,
        l2sp=plan.l2sp,
        say=plan.say,
    )
    augment = make_augment(plan.augment) if data.modality == "image" else None

    def rows(idx, cls):
        return cls(
            Subset(data.source, idx),
            _train_targets(data, idx),
            backbone.preprocess,
            augment,
            backbone.collate,
        )

    validating = data.valid is not None
    prefix = None
    if ruled_out(model, data, plan, epochs, continuing=net is not None) is None:
        prefix = cache_prefix(model, backbone, data, plan, trainable.frozen_modules, plan.say)
    if prefix is not None:  # the frozen blocks' output, once per row: train from there
        train_rows = TrainingDataset(prefix.train, _train_targets(data, data.train))
        valid_rows = (
            SourceDataset(prefix.valid, _train_targets(data, data.valid)) if validating else None
        )
    else:
        train_rows = rows(data.train, TrainingDataset)
        valid_rows = rows(data.valid, SourceDataset) if validating else None
    cbs = _callbacks(plan, len(data.train), epochs, schedule, validating, trainable.l2sp_names)
    if plan.distributed:
        cbs.append(("global_batch", _distributed.GlobalBatchRecord()))
    if net is not None:
        resume_training(net)
    else:
        net = make_net(
            plan,
            model,
            tasks=tasks,
            max_epochs=epochs,
            adaptation=plan.adaptation,
            param_groups=trainable.groups,
            frozen_modules=trainable.frozen_modules,
            callbacks=cbs,
            train_split=predefined_split(valid_rows) if validating else None,
            distributed=plan.distributed,
        )
    plan.say(
        f"all layers: {epochs} epochs on {len(data.train)} rows, peak lr {plan.lr:g} (head) "
        f"to {plan.lr / plan.lr_mult:g} (first block), BatchNorm {plan.batchnorm}"
    )
    try:
        with stubbed(model.body, prefix.names) if prefix is not None else nullcontext():
            fit_net(net, train_rows, plan.device, partial=not schedule)
    finally:
        if plan.adapter is not None:
            merge_adapter(body)  # plain torch layers again, picklable without peft
        unfreeze(model)
    return net, trainable.n_params


def _train_targets(data, idx):
    return {k: v[idx] for k, v in data.targets.items()}


def _callbacks(plan, n_train, epochs, schedule, validating, l2sp_names=()):
    cbs = []
    if schedule and epochs > 0:
        cbs.append(("onecycle", OneCycle(n_train, epochs, plan.batch_size)))
    if l2sp_names:
        cbs.append(("l2sp", L2SP(plan.l2sp, l2sp_names)))
    if schedule and plan.adaptation is not None:  # partial_fit: the term at full strength
        steps = epochs * steps_per_epoch(n_train, plan.batch_size)
        cbs.append(("adaptation_progress", AdaptationProgress(steps)))
    if validating:
        cbs.append(
            (
                "early_stopping",
                EarlyStopping(monitor="valid_loss", patience=plan.n_iter_no_change, load_best=True),
            )
        )
    # A fresh copy per phase: a callback keeps state between epochs.
    return cbs + [(f"user_{i}", copy.deepcopy(cb)) for i, cb in enumerate(plan.callbacks)]
