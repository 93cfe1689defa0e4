"""What the fine-tune faces share outside their class: the checks made before a row is
read (what scikit-learn's parameter constraints cannot express, what ``partial_fit``
refuses, whether ``warm_start`` can continue the fitted body), the ``Plan`` built from
the parameters, the contrastive phase's place in a fit, and the interrupt warning."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
from skorch.callbacks import Callback

from ._backbone_estimator import check_backbone_params
from ._log import caller_stacklevel
from .training import (
    AdapterSpec,
    Plan,
    check_process_group,
    contrastive_phase,
    import_peft,
    is_main_process,
    source_statistics,
    target_batchnorm,
)

# Fitted attributes added after 0.1.0's pickles: their values for a model fitted then.
ADDED_FITTED_ATTRIBUTES = {
    "contrastive_": False,
    "contrastive_history_": [],
    "target_batchnorm_": False,
    "batchnorm_statistics_": None,
}


def check_finetune_params(est) -> None:
    """Combinations of parameters that cannot train, and callbacks that are not
    skorch callbacks, named before any row is read."""
    check_backbone_params(est)
    if est.max_epochs == 0 and not est.linear_probe:
        raise ValueError(
            "max_epochs=0 with linear_probe=False trains nothing: the head would keep "
            "its random weights. Set linear_probe=True (the head solved on the frozen "
            "features) or max_epochs >= 1."
        )
    if est.strategy == "ddp":
        check_process_group(est)
    if est.adapter is not None and est.freeze == "backbone":
        raise ValueError(
            f"adapter={est.adapter!r} trains an adapter inside the body, but "
            "freeze='backbone' trains none of the body: drop one of them."
        )
    contrastive = getattr(est, "contrastive", "auto")
    if not isinstance(contrastive, str) and contrastive:  # True, np.True_
        clash = {
            "freeze='backbone'": est.freeze == "backbone",
            f"adapter={est.adapter!r}": est.adapter is not None,
            "strategy='ddp'": est.strategy == "ddp",
        }
        for what, bad in clash.items():
            if bad:
                raise ValueError(
                    f"contrastive=True trains the body on pairs of rows before the probe, "
                    f"which {what} does not allow (a frozen body; an adapter trains instead "
                    "of the body; the pair phase is not data-parallel). Set "
                    "contrastive='auto' or False."
                )
    if est.adapter == "lora":
        import_peft()  # before any row is read: the install hint, not a late failure
    for i, cb in enumerate(est.callbacks or []):
        obj = cb[1] if isinstance(cb, tuple) and len(cb) == 2 else cb
        if not isinstance(obj, Callback):
            raise TypeError(
                f"callbacks[{i}] is a {type(obj).__name__} ({obj!r:.40}); expected a skorch "
                "Callback instance (e.g. skorch.callbacks.EpochScoring(...)) or a "
                "(name, callback) pair."
            )


def check_partial_fit(est) -> None:
    """What ``partial_fit`` cannot do: share epochs between processes, or continue an
    adapter that each fit merges into the weights."""
    name = type(est).__name__
    if est.strategy == "ddp":
        raise ValueError(
            f"{name}(strategy='ddp') supports fit only: partial_fit's "
            "epochs are not shared between processes. Use strategy=None."
        )
    if est.adapter is not None:
        raise ValueError(
            f"{name}(adapter={est.adapter!r}) supports fit only: the "
            "adapter is merged into the weights after each fit, so partial_fit's "
            "optimiser state would point at weights that are gone. Use fit (with "
            "warm_start=True to continue)."
        )


def same_backbone(est) -> bool:
    """Whether ``warm_start`` can continue: the fitted body is still the backbone asked
    for (``set_params(backbone=...)`` since the last fit starts from the new one)."""
    spec = est.backbone
    fitted = est.__dict__.get("_fitted_spec")
    same = spec is fitted or (isinstance(spec, str) and spec == fitted)
    if fitted is not None and not same:
        warnings.warn(
            f"{type(est).__name__}(warm_start=True): backbone was changed since the last "
            "fit, so this fit starts from the new backbone instead of continuing the "
            "fitted body.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    return same or fitted is None


def plan_from_params(est, adaptation=None, adaptation_weight=0.0) -> Plan:
    """The ``Plan`` of a built face (``_build`` resolved ``lr_``, ``batchnorm_``,
    ``family_``, ``device_``, ``backbone_``): how its fit trains."""
    adapter = None
    if est.adapter is not None:
        adapter = AdapterSpec(
            est.adapter,
            est.adapter_rank,
            est.adapter_alpha,
            est.adapter_dropout,
            est.adapter_targets,
        )
    quiet = est.strategy == "ddp" and not is_main_process()
    return Plan(
        name=type(est).__name__,
        device=est.device_,
        precision=est.precision,
        batch_size=est.batch_size,
        lr=est.lr_,
        # A model fitted before lr_mult_ existed took its number as given.
        lr_mult=est.__dict__.get("lr_mult_", est.lr_mult),
        weight_decay=est.weight_decay,
        l2sp=est.l2sp,
        batchnorm=est.batchnorm_,
        family=est.family_,
        # A model fitted before freeze_ existed took its freeze as given.
        freeze=est.__dict__.get("freeze_", est.freeze),
        n_features=est.backbone_.dim,
        is_conv=est.backbone_.is_conv,
        adapter=adapter,
        adaptation=adaptation,
        adaptation_weight=adaptation_weight,
        augment=est.augment,
        callbacks=tuple(est.callbacks or ()),
        distributed=est.strategy == "ddp",
        n_iter_no_change=est.n_iter_no_change,
        num_workers=est.num_workers,
        cache=est.cache,
        verbosity=0 if quiet else int(est.verbose or 0),
    )


def warn_interrupted(est, phase: str, done: int, total: int) -> None:
    """The warning of a fit that a KeyboardInterrupt stopped in ``phase``."""
    then = "the head is solved on the body of that moment, no epoch follows"
    if phase == "the unfrozen phase":
        then = "the estimator holds the weights of that moment"
    warnings.warn(
        f"{type(est).__name__}.fit was interrupted (KeyboardInterrupt) in {phase} after "
        f"{done} of {total} epochs: {then}, and interrupted_ is True.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


def pairs_first(est, data, plan):
    """A fresh fit's first phase: the contrastive one where the face asks for it
    (``est._contrastive_epochs``); returns (the rows the next
    phases train on, the body's parameters that trained). Under ``max_epochs="auto"``
    with the probe and no adaptation it is SetFit's recipe: the pairs train the body,
    the probe the head, no epoch follows (``max_epochs_`` 0), so every labelled row
    trains (none is held out for early stopping or the guard)."""
    est.contrastive_, est.contrastive_history_ = False, []
    epochs = est._contrastive_epochs(data)
    if not epochs:
        return data, 0
    if est.max_epochs == "auto" and est.linear_probe and plan.adaptation is None:
        est.max_epochs_ = 0
        data = replace(data, train=np.arange(len(data.labelled)), valid=None, holdout=None)
    model, bb = est.module_, est.backbone_
    history, n_body, stopped = contrastive_phase(model, bb, data, plan, epochs, plan.lr)
    est.contrastive_, est.contrastive_history_ = bool(history), history
    bb.compute_fingerprint()  # the probe reads the new body's features
    if stopped:
        est.interrupted_, est.max_epochs_ = True, 0
        warn_interrupted(est, "the contrastive phase", len(history), epochs)
    return data, n_body


def settle_target(est, data, plan):
    """With adaptation, after an unfrozen phase that ran: the BatchNorm statistics of the
    target rows, the domain ``predict`` will see (``target_batchnorm_``); returns ``est``."""
    ran = bool(est.net_.history) and est.freeze != "backbone"
    est.target_batchnorm_ = bool(
        plan.adaptation is not None
        and ran
        and target_batchnorm(est.module_, est.backbone_, data, plan)
    )
    if est.target_batchnorm_:
        est.backbone_.compute_fingerprint()
    return est


def record_source_statistics(est, data, plan):
    """After a fit (not ``partial_fit``: one pass over up to 256 rows each call): when the
    body kept its pretrained BatchNorm statistics, each BatchNorm's input statistics on
    the labelled rows (``batchnorm_statistics_``), so that AdaBN and TENT can normalise
    target rows to where the source rows arrived; returns ``est``. Not after a fit whose
    adaptation replaced the pretrained statistics with the target's (``target_batchnorm_``
    under ``batchnorm_ == "eval"``): they are the data's now, as a body's that trained."""
    replaced = est.target_batchnorm_ and plan.batchnorm != "train"
    est.batchnorm_statistics_ = (
        None if replaced else source_statistics(est.module_, est.backbone_, data, plan)
    )
    return est
