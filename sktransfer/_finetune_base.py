"""What every fine-tuning estimator's scikit-learn face shares: the parameters both
single- and multi-task fine-tunes take, and a ``fit`` that checks, plans, assembles,
runs the engine's phases (``sktransfer.training``) and stores what they return."""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from torch import nn

from ._backbone_estimator import (
    BackboneEstimator,
    backbone_constraints,
    check_consistent_length_rows,
    seed_of,
)
from ._device import resolve_device
from ._finetune_face import (
    ADDED_FITTED_ATTRIBUTES,
    check_finetune_params,
    check_partial_fit,
    pairs_first,
    plan_from_params,
    record_source_statistics,
    same_backbone,
    settle_target,
    warn_interrupted,
)
from ._torch import Seed
from .backbones import param_blocks, spec_modality
from .features import PretrainedFeatures
from .inputs import as_source
from .training import (
    ADAPTERS,
    FitData,
    Plan,
    TransferModel,
    body_family,
    budget_epochs,
    check_freeze,
    drop_training_state,
    first_branch,
    fit_probe,
    guard_rows,
    make_net,
    make_trainable,
    predict_outputs,
    rank_device,
    resolve_batchnorm,
    resolve_freeze,
    resolve_lr,
    resolve_lr_mult,
    settle_wise,
    shared_seed,
    split_rows,
    train_all,
    train_head,
    trainable_parameters,
    weights_snapshot,
)

FINETUNE_CONSTRAINTS = {
    **backbone_constraints,
    "freeze": [
        StrOptions({"auto", "backbone", "none"}),
        Interval(Integral, 0, None, closed="left"),
        list,
        tuple,
    ],
    "linear_probe": ["boolean"],
    "max_epochs": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
    "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "lr_mult": [Interval(Real, 1, None, closed="left"), StrOptions({"auto"})],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "l2sp": [Interval(Real, 0, None, closed="left")],
    "batchnorm": [StrOptions({"auto", "eval", "train"})],
    "wise": [None, StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
    "augment": [None, "boolean", StrOptions({"flip", "crop"}), callable],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "warm_start": ["boolean"],
    "verbose": ["verbose"],
    "callbacks": [None, list],
    "strategy": [None, StrOptions({"ddp"})],
    "adapter": [None, StrOptions(set(ADAPTERS))],
    "adapter_rank": [Interval(Integral, 1, None, closed="left")],
    "adapter_alpha": [None, Interval(Real, 0, None, closed="neither")],
    "adapter_dropout": [Interval(Real, 0, 1, closed="left")],
    "adapter_targets": [StrOptions({"auto"}), str, list, tuple],
}


class FineTuneBase(BackboneEstimator):
    """The face of a fine-tune. Subclasses say what the target is: ``_check_target``,
    ``_encode_target``, ``_tasks`` (the loss's ``LossTask`` list), ``_make_body`` /
    ``_make_head``; single-task faces add the domains of ``_domains``."""

    # A training batch: 32 rows of gradients (64 is the inference batch of extraction).
    _backbone_defaults = {"batch_size": 32}
    _parameter_constraints = FINETUNE_CONSTRAINTS

    def _fit(self, X, y, sample_weight=None, sample_domain=None):
        self._fit_phases(X, y, sample_weight, sample_domain)
        # A fitted model keeps what predict needs: the optimiser's state (twice the
        # weights) is dropped; warm_start's next fit builds a new one anyway.
        drop_training_state(self.net_)
        return self

    def _fit_phases(self, X, y, sample_weight, sample_domain):
        self._check_params()
        seed = seed_of(self.random_state)
        if self.strategy == "ddp":
            seed = shared_seed(seed)  # every process shuffles and splits the rows alike
        self.interrupted_ = False
        with Seed(seed):
            continuing = self.warm_start and hasattr(self, "net_") and same_backbone(self)
            data = self._prepare(
                X,
                y,
                sample_weight,
                sample_domain,
                reset=not continuing,
                seed=seed,
                guard=not continuing and self._guarded(),
            )
            if not continuing:
                self._build(data)
            else:  # set_params since the last fit applies to the next epochs
                self._resolve_rates()
            plan = self._plan(data)
            if continuing:
                self._train_all(data, plan)
                settle_target(self, data, plan)
            else:
                self._fit_from_pretrained(data, plan)
            return record_source_statistics(self, data, plan)

    def _fit_from_pretrained(self, data, plan):
        """A fresh fit's phases: the pairs (``_contrastive``), the probe, then (unless the
        body is frozen) the unfrozen phase, then the point of WiSE-FT's line that ``wise``
        keeps."""
        self.probe_loss_ = self.probe_regularization_ = None
        self.head_history_, self.wise_, self.wise_losses_ = [], None, None
        model, bb, tasks = self.module_, self.backbone_, self._tasks()
        data, n_body = pairs_first(self, data, plan)
        if self.linear_probe:
            self.probe_loss_, self.probe_regularization_, self.head_history_ = fit_probe(
                model, bb, data, plan, tasks
            )
        if self.freeze == "backbone":
            if not self.linear_probe:
                self.head_history_ = train_head(model, bb, data, plan, tasks, self.max_epochs_)
            self.n_trainable_params_ = trainable_parameters(model.head)
            return self
        start = weights_snapshot(model) if self.wise is not None else None
        self.n_trainable_params_ = n_body + trainable_parameters(model.head)  # no epoch runs
        self._train_all(data, plan)
        self.wise_, self.wise_losses_, probe = settle_wise(
            model,
            start,
            self.net_,
            bb,
            data,
            plan,
            tasks,
            self.wise,
            epochs=self.max_epochs_,
            interrupted=self.interrupted_,
        )
        if probe is not None:  # the probe won, solved again on every labelled row
            self.probe_loss_, self.probe_regularization_, _ = probe
        settle_target(self, data, plan)
        bb.compute_fingerprint()
        return self

    def _guarded(self) -> bool:
        """Whether ``wise="auto"`` chooses the point between the probe and the fine-tune
        on held-out rows: it needs the probe as its start and a body that trains, and
        labelled rows that measure the task (under domain adaptation they are the source
        domain's, which says nothing of the target's)."""
        return (
            self.wise == "auto"
            and self.linear_probe
            and self.freeze != "backbone"
            and self.max_epochs != 0
            and self._adaptation_plan()[0] is None
        )

    def _partial_fit(self, X, y, classes=None, sample_weight=None):
        check_partial_fit(self)
        first = not hasattr(self, "net_")
        if first:  # _fit_context validated the parameters
            self._check_params()
        seed = seed_of(self.random_state)
        with Seed(seed if first else None):
            data = self._prepare(X, y, sample_weight, None, reset=first, seed=seed, classes=classes)
            if first:
                self._build(data)
            plan = self._plan(data, epochs=None if first else self.max_epochs_)
            self._train_all(data, plan, 1)
            settle_target(self, data, plan)
        # The weights moved: a record from an earlier fit no longer describes them (a
        # pass per call would cost a third of its epoch), so AdaBN and TENT warn.
        self.batchnorm_statistics_ = None
        return self

    def _check_params(self):
        """Checks sklearn's constraints cannot express, before any row is read."""
        check_finetune_params(self)

    def _prepare(
        self, X, y, sample_weight, sample_domain, *, reset, seed, classes=None, guard=False
    ):
        """The fit's ``FitData``: X's one validated source, y encoded, the rows split
        (``guard``: rows held out for ``wise="auto"``, the early-stopping rows if any)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        check_consistent_length_rows(X, y, sample_weight)
        modality = spec_modality(self.backbone, X) if reset else self.modality_
        # The one validated source of X for this fit: every phase reads its rows from it.
        source = as_source(self, modality, X, reset=reset)
        y, about_y = self._check_target(y, sample_domain)  # never written to
        labelled, domain = self._domains(y, sample_domain)
        y_enc = self._encode_target(y, about_y, labelled, reset=reset, classes=classes)
        w = np.ones(len(y), dtype=np.float32)
        if sample_weight is not None:
            # Negative weights would make the loss reward the wrong label.
            w = _check_sample_weight(
                sample_weight, np.empty((len(y), 0)), dtype=np.float32, ensure_non_negative=True
            )
        targets = {"y": y_enc, "w": (w * labelled).astype(np.float32)}
        if domain is not None:
            targets["d"] = domain.astype(np.float32)
        train, valid, holdout = np.arange(len(y)), None, None
        guard = guard and guard_rows(int(labelled.sum()))
        if self.early_stopping or guard:
            stratify = self._task == "classification" and y_enc.ndim == 1
            train, held = split_rows(
                labelled,
                y_enc,
                validation_fraction=self.validation_fraction,
                stratify=stratify,
                seed=seed,
            )
            valid = held if self.early_stopping else None
            holdout = held if guard else None
        return FitData(source, targets, modality, labelled, train, valid, holdout)

    def _contrastive_epochs(self, data) -> int:
        """Epochs of the contrastive phase before the probe: none unless the face pairs
        rows by their class (``FineTuneClassifier(contrastive=...)``)."""
        return 0

    def _domains(self, y, sample_domain):
        """(labelled rows, domains or None): without adaptation every row is labelled."""
        return np.ones(len(y), bool), None

    def _adaptation_plan(self):
        """(adaptation, its weight) for the plan: none unless the face adapts domains."""
        return None, 0.0

    def _make_body(self, backbone) -> nn.Module:
        return backbone.module

    def _make_head(self, n_features: int) -> nn.Module:
        return nn.Linear(n_features, self._n_outputs())

    def _build(self, data):
        """Load the backbone (once per fit), attach a fresh head sized to the target, and
        resolve the recipe's rate and BatchNorm policy for the body's family."""
        self.device_ = resolve_device(self.device)
        params = self._backbone_params()
        if self.strategy == "ddp":
            self.device_ = rank_device(self.device_)  # one GPU per process
            params["device"] = str(self.device_)
        features = PretrainedFeatures(self.backbone, **params)
        features._fit(data.source, data.modality)
        bb = features.backbone_
        make_trainable(bb.module)
        check_freeze(self.freeze, param_blocks(bb.module))
        self._fitted_spec = self.backbone
        self.modality_, self.backbone_ = data.modality, bb
        self.contrastive_, self.contrastive_history_ = False, []
        self.target_batchnorm_ = False
        self.batchnorm_statistics_ = None
        self.image_size_ = features.image_size_
        self.module_ = TransferModel(self._make_body(bb), self._make_head(bb.dim))
        self.family_ = body_family(bb.module, self.modality_)
        self._resolve_rates()
        self.batchnorm_ = resolve_batchnorm(self.batchnorm, pretrained=self.weights is not None)
        # A net to hold module_ from the start (a frozen body never trains one).
        self.net_ = make_net(
            self._plan(data, epochs=1), self.module_, tasks=self._tasks(), max_epochs=1
        )
        self.net_.initialize()

    def _resolve_rates(self):
        """``lr_``, ``lr_mult_`` and ``freeze_`` for the body's family and modality."""
        pretrained = self.weights is not None
        self.lr_ = resolve_lr(self.family_, self.lr, pretrained=pretrained, adapter=self.adapter)
        self.lr_mult_ = resolve_lr_mult(self.lr_mult, self.modality_)
        self.freeze_ = resolve_freeze(
            self.freeze,
            self.family_,
            pretrained=pretrained,
            adapter=self.adapter,
            n_blocks=len(param_blocks(self.backbone_.module)),
        )

    def _plan(self, data, epochs=None) -> Plan:
        """The fit's ``Plan``; sets ``max_epochs_`` (the number given, or "auto": the
        family's step budget over the training rows) unless ``epochs`` is given."""
        if epochs is None:
            n_train = len(data.train)
            auto = self.max_epochs == "auto"
            epochs = (
                budget_epochs(self.family_, n_train, self.batch_size)
                if auto
                else int(self.max_epochs)
            )
            self.max_epochs_ = epochs
        return plan_from_params(self, *self._adaptation_plan())

    def _train_all(self, data, plan, epochs=None):
        """The unfrozen phase (``epochs`` given: partial_fit's one epoch at a constant rate,
        continuing the same net); the body's features are not the pretrained ones after."""
        schedule = epochs is None
        epochs = self.max_epochs_ if schedule else epochs
        if epochs == 0:
            return self
        previous = self.net_ if not schedule and self.net_.history else None
        self.net_, self.n_trainable_params_ = train_all(
            self.module_,
            self.backbone_,
            data,
            plan,
            self._tasks(),
            epochs,
            schedule=schedule,
            net=previous,
        )
        self.backbone_.compute_fingerprint()
        if getattr(self.net_, "interrupted_", False):
            self.interrupted_ = True
            warn_interrupted(self, "the unfrozen phase", len(self.net_.history), epochs)
        return self

    def _forward(self, X):
        check_is_fitted(self, "net_")
        return predict_outputs(
            self.module_,
            self.net_,
            self.backbone_,
            as_source(self, self.modality_, X, reset=False),
            name=type(self).__name__,
            modality=self.modality_,
            family=self.family_,
            frozen=self.freeze == "backbone",
            device=self.device_,
            batch_size=self.batch_size,
            precision=self.precision,
            num_workers=self.num_workers,
            cache=self.cache,
            verbose=self.verbose,
        )

    @property
    def history_(self):
        """Epoch records of every phase in the order they ran, each tagged with its
        ``phase``: "contrastive", "probe", "head", "all"."""
        check_is_fitted(self, "net_")
        rows = [dict(r, phase="contrastive") for r in getattr(self, "contrastive_history_", [])]
        if getattr(self, "probe_loss_", None) is not None:
            rows.append({"epoch": 0, "train_loss": self.probe_loss_, "phase": "probe"})
        rows += [dict(r, phase="head") for r in getattr(self, "head_history_", [])]
        if self.freeze != "backbone":
            rows += [dict(r, phase="all") for r in self.net_.history]
        # numpy scalars print as np.float64(...): plain Python numbers read as numbers
        return [
            {k: v.item() if isinstance(v, np.generic) else v for k, v in r.items()} for r in rows
        ]

    def __getstate__(self):
        # backbone_.module is module_.body: store it once, relink it on load.
        state = self.__dict__.copy()
        state.pop("_fitted_spec", None)  # the user's object: never a second copy
        if "net_" in state:
            state.pop("module_", None)  # net_.module_, relinked on load
        if "backbone_" in state:
            bb = copy.copy(state["backbone_"])
            bb.module = None
            state["backbone_"] = bb
        return state

    def __setstate__(self, state):
        if "net_" in state:  # pickled before these attributes existed: what they meant then
            state = {**ADDED_FITTED_ATTRIBUTES, "lr_mult_": state.get("lr_mult"), **state}
        self.__dict__.update(state)
        if "net_" in state:
            self._fitted_spec = self.backbone  # unpickled together: the same spec
        if "backbone_" in state and "net_" in state:
            self.module_ = self.net_.module_
            self.backbone_.module = first_branch(self.module_.body)
            if (
                not torch.cuda.is_available()
                and getattr(self, "device_", None) is not None
                and self.device_.type == "cuda"
            ):
                self.device_ = torch.device("cpu")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
