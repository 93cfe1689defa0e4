"""The skorch net that runs every phase: layer-wise optimiser groups, the criterion in
skorch's slot, frozen blocks in eval(), autocast, channels_last and DDP."""

from __future__ import annotations

import copy

import torch
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_tensor
from torch import nn

from .._device import autocast, autocast_dtype, halve_on_oom, use_channels_last
from .._log import PrintLog
from . import _distributed
from ._adaptation import AdaptationProgress
from ._data import identity_collate
from ._loss import TransferCriterion
from ._model import TransferModel

_LEGACY = ("tasks", "adaptation", "adaptation_weight", "domain_features", "adaptation_loss_")


class TransferNet(NeuralNet):
    """A skorch ``NeuralNet`` for transfer learning.

    Targets arrive as a dict: ``y`` (labels or values), ``w`` (sample weights),
    ``d`` (domain: 1 for labelled rows, 0 for unlabelled target rows used only by
    the adaptation term); the criterion (``TransferCriterion``, in skorch's criterion
    slot) reads them. ``param_groups`` are the AdamW groups (parameter names, peak ``lr``,
    weight decay): the optimiser is built from that one list, each group keeping its
    ``peak_lr`` for the schedule, and the criterion's own parameters (DANN's domain
    classifier) join at the last group's rate.

    With ``distributed=True`` (inside a torch.distributed process group) training runs
    data-parallel: each process takes its share of every batch (``batch_size`` is the
    global batch), forwards it through a ``DistributedDataParallel`` replica of
    ``module_`` that lives only during ``fit_loop``, and the criterion divides each share's
    loss by the whole batch's weight, so that the averaged gradient is the one of the
    whole batch. ``module_`` stays the plain module, so validation, prediction, state
    dicts and pickles never see the replica.
    """

    def __init__(
        self,
        *args,
        param_groups=None,
        frozen_modules=(),
        batchnorm_eval=False,
        amp_dtype=None,
        channels_last=False,
        distributed=False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.param_groups = param_groups
        self.frozen_modules = frozen_modules
        self.batchnorm_eval = batchnorm_eval
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.distributed = distributed
        self.train_forward_ = None

    def initialize_module(self):
        super().initialize_module()
        if self.channels_last:
            self.module_.to(memory_format=torch.channels_last)
        if isinstance(self.module_, TransferModel):
            self.module_.keep_eval = tuple(self.frozen_modules)
            self.module_.batchnorm_eval = self.batchnorm_eval
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
                "peak_lr": g["lr"],
                "weight_decay": g["weight_decay"],
            }
            for g in groups
            if g["names"]
        ]
        extra = [p for p in self.criterion_.parameters() if p.requires_grad]
        if extra:  # e.g. DANN's domain classifier, at the head's rate
            last = torch_groups[-1]
            torch_groups.append(
                {
                    "params": extra,
                    "lr": last["lr"],
                    "peak_lr": last["lr"],
                    "weight_decay": last["weight_decay"],
                }
            )
        _, kw = self.get_params_for_optimizer("optimizer", self.module_.named_parameters())
        kw.pop("lr", None)
        self.optimizer_ = self.optimizer(torch_groups, lr=torch_groups[-1]["lr"], **kw)
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
        # skorch ends a fit quietly on KeyboardInterrupt (Ctrl+C, or a callback's): keep
        # that graceful stop, but record it so that the estimator can say so.
        self.interrupted_ = False
        try:
            return self._fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            # skorch's EarlyStopping stops a fit the same way: that one is no interruption
            self.interrupted_ = not any(
                isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
                for _, cb in self.callbacks_
            )
            raise

    def _fit_loop(self, X, y=None, epochs=None, **fit_params):
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
        replica = getattr(self, "train_forward_", None)
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

    def __getstate__(self):
        # skorch pickles module (the parameter) and module_ (the initialised one) apart,
        # so the one module given as an instance would be stored twice.
        shared = self.__dict__.get("module") is self.__dict__.get("module_")
        if not shared:
            return super().__getstate__()
        module, self.module = self.module, None
        try:
            state = super().__getstate__()
        finally:
            self.module = module
        state["module_is_module_"] = True
        return state

    def __setstate__(self, state):
        shared = state.pop("module_is_module_", False)
        self._load_state(state)
        if shared:
            self.module = self.module_

    def _load_state(self, state):
        # Version 0.1.0 kept the loss's pieces on the net and an unused nn.Identity in the
        # criterion slot: move them into the criterion, so such a net trains on.
        legacy = {k: state.pop(k) for k in _LEGACY if k in state}
        super().__setstate__(state)
        if "tasks" in legacy:
            self.criterion = TransferCriterion
            criterion = TransferCriterion(
                legacy["tasks"], None, legacy.get("adaptation_weight", 0.0)
            )
            criterion.adaptation = legacy.get("adaptation_loss_")
            self.criterion_ = criterion

    def get_loss(self, y_pred, y_true, X=None, training=False):
        distributed = training and self.train_forward_ is not None
        reduce = _distributed.whole_batch_denominator if distributed else None
        return self.criterion_(y_pred, y_true, training=training, reduce=reduce)


def make_net(plan, module, *, tasks, max_epochs, lr=None, adaptation=None, **kwargs):
    """A ``TransferNet`` over ``module`` as ``plan`` says (device, precision, batch,
    workers, verbosity); ``kwargs`` go to the net (groups, frozen modules, callbacks,
    train_split, distributed). ``adaptation`` is the loss the criterion adds, if any."""
    device = plan.device
    callbacks = list(kwargs.pop("callbacks", ()))
    if plan.verbosity > 1:
        callbacks.append(("progress", ProgressBar()))
    pin = device.type == "cuda"
    return TransferNet(
        module,
        criterion=TransferCriterion,
        criterion__tasks=tuple(tasks),
        criterion__adaptation=adaptation,
        criterion__adaptation_weight=plan.adaptation_weight,
        criterion__n_features=plan.n_features,
        callbacks__print_log=PrintLog(),
        optimizer=torch.optim.AdamW,
        lr=plan.lr if lr is None else lr,
        optimizer__weight_decay=plan.weight_decay,
        max_epochs=max_epochs,
        batch_size=plan.batch_size,
        callbacks=callbacks or None,
        iterator_train__shuffle=True,
        iterator_train__collate_fn=identity_collate,
        iterator_valid__collate_fn=identity_collate,
        iterator_train__num_workers=plan.num_workers,
        iterator_valid__num_workers=plan.num_workers,
        iterator_train__pin_memory=pin,
        iterator_valid__pin_memory=pin,
        device=str(device),
        verbose=plan.verbosity,
        batchnorm_eval=plan.batchnorm == "eval",
        amp_dtype=autocast_dtype(device, plan.precision),
        channels_last=use_channels_last(device, plan.is_conv),
        **{"train_split": None, **kwargs},
    )


def drop_training_state(net) -> None:
    """Forget what only a continuing optimiser needs: AdamW's moments (twice the
    weights) and the schedules that hold the optimiser. A fitted estimator keeps what
    predict needs; ``resume_training`` rebuilds the rest."""
    net.optimizer_ = None
    for _, cb in net.callbacks_:
        if isinstance(cb, LRScheduler):
            cb.lr_scheduler_ = None


def resume_training(net) -> None:
    """A net whose training state was dropped trains on (partial_fit): fresh AdamW
    moments for the same groups, at their peak rates, with no schedule."""
    if net.optimizer_ is not None:
        return
    # No schedule: neither the rate's nor the adaptation term's (at full strength).
    net.callbacks_ = [
        (n, cb) for n, cb in net.callbacks_ if not isinstance(cb, (LRScheduler, AdaptationProgress))
    ]
    net.initialize_optimizer()


def fit_net(net, dataset, device, partial=False):
    """Fit a skorch net; on CUDA out-of-memory halve the batch and run the phase again."""
    start = copy.deepcopy(net.module.state_dict()) if isinstance(net.module, nn.Module) else None

    def run(batch_size):
        net.set_params(batch_size=batch_size)
        if partial:
            return net.partial_fit(dataset, None, epochs=1)
        return net.fit(dataset, None)

    if net.distributed:
        # One process cannot retry alone: the others would wait for it in the
        # gradient average.
        return run(net.batch_size)
    return halve_on_oom(
        run, net.batch_size, device, restart=lambda: net.module.load_state_dict(start)
    )
