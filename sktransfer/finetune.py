"""Parameter transfer: fine-tune a pretrained backbone with a new head, as an sklearn estimator.

The default recipe is LP-FT: the new head is solved to convergence on the frozen
body's features (computed once, through the cache), then everything trains with
layer-wise learning rates under a one-cycle schedule, AdamW with decoupled weight
decay and none on norms and biases, BatchNorm on its pretrained statistics, for a
budget of optimiser steps that suits the body's family. skorch runs the loop
(``net_``); this module owns the sklearn contract.
"""

from __future__ import annotations

import copy
import functools
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_is_fitted,
    column_or_1d,
)
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, ProgressBar
from skorch.helper import predefined_split
from torch import nn

from ._backbone_estimator import (
    BackboneEstimator,
    backbone_constraints,
    check_backbone_params,
    check_consistent_length_rows,
    seed_of,
)
from ._device import autocast_dtype, halve_on_oom, resolve_device
from ._distributed import (
    GlobalBatchRecord,
    check_process_group,
    is_main_process,
    rank_device,
    shared_seed,
)
from ._extract import extract
from ._peft import (
    ADAPTERS,
    _import_peft,
    apply_adapter,
    base_param_name,
    merge_adapter,
    trainable_parameters,
)
from ._torch import Seed
from ._training import (
    ADAPTATION_LOSSES,
    L2SP,
    RECIPES,
    AdaptationLoss,
    BranchedBody,
    LossTask,
    SourceDataset,
    TaskHeads,
    TrainingDataset,
    TransferModel,
    TransferNet,
    body_family,
    fit_task_probes,
    frozen_names,
    fully_frozen_modules,
    identity_collate,
    interpolate_weights,
    layerwise_groups,
    make_adaptation_loss,
    weights_snapshot,
)
from .augment import make_augment
from .backbones import param_blocks, spec_modality
from .features import PretrainedFeatures
from .inputs import FeatureRows, NoTargetRowsWarning, Subset, as_source, resolve_domains


class _FineTune(BackboneEstimator):
    # A training batch: 32 rows of gradients (64 is the inference batch of extraction).
    _backbone_defaults = {"batch_size": 32}
    _parameter_constraints = {
        **backbone_constraints,
        "freeze": [
            StrOptions({"backbone", "none"}),
            Interval(Integral, 0, None, closed="left"),
            list,
            tuple,
        ],
        "linear_probe": ["boolean"],
        "max_epochs": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lr_mult": [Interval(Real, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "l2sp": [Interval(Real, 0, None, closed="left")],
        "batchnorm": [StrOptions({"auto", "eval", "train"})],
        "wise": [None, Interval(Real, 0, 1, closed="both")],
        "augment": [None, "boolean", StrOptions({"flip", "crop"}), callable],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "adaptation": [None, StrOptions(set(ADAPTATION_LOSSES)), AdaptationLoss],
        "adaptation_weight": [Interval(Real, 0, None, closed="left")],
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
    _task = "classification"

    def __init__(
        self,
        backbone,
        *,
        weights="DEFAULT",
        freeze="none",
        linear_probe=True,
        max_epochs="auto",
        lr="auto",
        lr_mult=10.0,
        batch_size=32,
        weight_decay=0.01,
        l2sp=0.0,
        batchnorm="auto",
        wise=None,
        image_size=None,
        augment=None,
        layer=None,
        pooling="avg",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=3,
        adaptation=None,
        adaptation_weight=1.0,
        warm_start=False,
        device="auto",
        precision="auto",
        cache=True,
        num_workers=0,
        random_state=None,
        max_length=None,
        missing="raise",
        verbose=0,
        callbacks=None,
        strategy=None,
        adapter=None,
        adapter_rank=8,
        adapter_alpha=None,
        adapter_dropout=0.0,
        adapter_targets="auto",
    ):
        self.backbone = backbone
        self.weights = weights
        self.freeze = freeze
        self.linear_probe = linear_probe
        self.max_epochs = max_epochs
        self.lr = lr
        self.lr_mult = lr_mult
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.l2sp = l2sp
        self.batchnorm = batchnorm
        self.wise = wise
        self.image_size = image_size
        self.augment = augment
        self.layer = layer
        self.pooling = pooling
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.adaptation = adaptation
        self.adaptation_weight = adaptation_weight
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.cache = cache
        self.num_workers = num_workers
        self.random_state = random_state
        self.max_length = max_length
        self.missing = missing
        self.verbose = verbose
        self.callbacks = callbacks
        self.strategy = strategy
        self.adapter = adapter
        self.adapter_rank = adapter_rank
        self.adapter_alpha = adapter_alpha
        self.adapter_dropout = adapter_dropout
        self.adapter_targets = adapter_targets

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, sample_domain=None):
        """Fine-tune on ``(X, y)``; starts again from the pretrained weights unless ``warm_start``.

        Rows with ``sample_domain < 0`` (or, without ``sample_domain``, y == -1 / NaN)
        are unlabelled target rows: they enter only the ``adaptation`` term.
        """
        self._check_params()
        seed = seed_of(self.random_state)
        if self.strategy == "ddp":
            seed = shared_seed(seed)  # every process shuffles and splits the rows alike
        with Seed(seed):
            continuing = self._continuing()
            data = self._prepare(X, y, sample_weight, sample_domain, reset=not continuing)
            if self.strategy == "ddp":
                data["seed"] = seed  # the validation split too
            if not continuing:
                self._build(data)
            self._resolve_budget(data)
            if not continuing:
                self.probe_loss_ = self.probe_regularization_ = None
                self.head_history_ = []
                if self.linear_probe:
                    self._fit_probe(data)
                if self.freeze == "backbone":
                    if not self.linear_probe:
                        self._train_head(data, self.max_epochs_)
                    self.n_trainable_params_ = trainable_parameters(self.module_.head)
                    return self
                start = weights_snapshot(self.module_) if self.wise is not None else None
            self._train_all(data, self.max_epochs_)
            if not continuing and self.wise is not None:
                interpolate_weights(self.module_, start, self.wise)
                self.backbone_.compute_fingerprint()
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)`` at a constant learning rate, continuing from the current
        weights (the first call loads the backbone; classifiers need ``classes`` then)."""
        if self.strategy == "ddp":
            raise ValueError(
                f"{type(self).__name__}(strategy='ddp') supports fit only: partial_fit's "
                "epochs are not shared between processes. Use strategy=None."
            )
        if self.adapter is not None:
            raise ValueError(
                f"{type(self).__name__}(adapter={self.adapter!r}) supports fit only: the "
                "adapter is merged into the weights after each fit, so partial_fit's "
                "optimiser state would point at weights that are gone. Use fit (with "
                "warm_start=True to continue)."
            )
        first = not hasattr(self, "net_")
        if first:  # _fit_context validated the parameters
            self._check_params()
        with Seed(seed_of(self.random_state) if first else None):
            data = self._prepare(X, y, sample_weight, None, reset=first, classes=classes)
            if first:
                self._build(data)
                self._resolve_budget(data)
            self._train_all(data, 1, schedule=False)
        return self

    def _check_params(self):
        """Checks sklearn's constraints cannot express, before any row is read."""
        check_backbone_params(self)
        if self.strategy == "ddp":
            check_process_group(self)
        if self.adapter is not None and self.freeze == "backbone":
            raise ValueError(
                f"adapter={self.adapter!r} trains an adapter inside the body, but "
                "freeze='backbone' trains none of the body: drop one of them."
            )
        if self.adapter == "lora":
            _import_peft()  # before any row is read: the install hint, not a late failure
        for i, cb in enumerate(self.callbacks or []):
            obj = cb[1] if isinstance(cb, tuple) and len(cb) == 2 else cb
            if not isinstance(obj, Callback):
                raise TypeError(
                    f"callbacks[{i}] is a {type(obj).__name__} ({obj!r:.40}); expected a skorch "
                    "Callback instance (e.g. skorch.callbacks.EpochScoring(...)) or a "
                    "(name, callback) pair."
                )

    def _continuing(self):
        return self.warm_start and hasattr(self, "net_")

    def _prepare(self, X, y, sample_weight, sample_domain, *, reset, classes=None):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        check_consistent_length_rows(X, y, sample_weight)
        modality = spec_modality(self.backbone, X) if reset else self.modality_
        # The one validated source of X for this fit: every phase reads its rows from it.
        source = as_source(self, modality, X, reset=reset)
        if self.adaptation is None and sample_domain is not None:
            raise ValueError(
                "sample_domain was passed but adaptation=None: set adaptation='dann' or "
                "'coral' to use unlabelled target rows."
            )
        y = self._check_target(y)  # never written to: encodings below are new arrays
        if self.adaptation is None:
            labelled, domain = np.ones(len(y), bool), np.ones(len(y), np.int8)
        else:
            labelled, domain = self._domains(y, sample_domain)
        y_enc = self._encode_target(y, labelled, reset=reset, classes=classes)
        w = np.ones(len(y), dtype=np.float32)
        if sample_weight is not None:
            # Negative weights would make the loss reward the wrong label.
            w = _check_sample_weight(
                sample_weight, np.empty((len(y), 0)), dtype=np.float32, ensure_non_negative=True
            )
        w = w * labelled
        targets = {"y": y_enc, "w": w.astype(np.float32)}
        if self.adaptation is not None:
            targets["d"] = domain.astype(np.float32)
        return {"source": source, "targets": targets, "modality": modality, "labelled": labelled}

    def _check_target(self, y):
        """y validated as scikit-learn's estimators of this kind take it, as an array."""
        regression = self._task == "regression"
        if self.adaptation is None:
            return np.asarray(_check_y(y, multi_output=True, y_numeric=regression, estimator=self))
        if regression:
            return np.asarray(y)
        y = np.asarray(y)
        if y.ndim > 1 and y.shape[1] > 1:
            raise ValueError(
                f"{type(self).__name__}(adaptation={self.adaptation!r}) takes a 1-D y (one "
                f"label per row, -1 for unlabelled target rows); got y of shape "
                f"{y.shape}. Multi-output y trains without adaptation."
            )
        return column_or_1d(y, warn=True)  # -1 marks target rows

    def _tasks(self) -> list[LossTask]:
        """The loss's tasks (outputs, target columns, kind, weights) for the fitted target."""
        raise NotImplementedError

    def _make_body(self, backbone) -> nn.Module:
        return backbone.module

    def _make_head(self, n_features: int) -> nn.Module:
        return nn.Linear(n_features, self._n_outputs())

    def _domains(self, y, sample_domain):
        """(labelled mask, domain: 1 source / 0 target) by the adaptation package's reading
        of skada's convention, so both parse sample_domain and the -1/NaN marker alike."""
        regression = self._task == "regression"
        rows = y
        if regression and y.ndim > 1:  # multi-output: a row is unlabelled when any y is NaN
            rows = np.where(np.isnan(y.astype(float)).any(axis=1), np.nan, 0.0)
        domains = resolve_domains(
            rows, sample_domain, len(y), regression=regression, allow_no_target=True
        )
        if not domains.target.any():
            # As the adaptation estimators do: fit on the source rows alone (the
            # adaptation term needs both domains in a batch, so it is zero) and say so.
            warnings.warn(
                f"{type(self).__name__}(adaptation={self.adaptation!r}) got no target rows, so "
                "it fine-tunes on the source rows alone, without adapting. Mark target rows "
                "with sample_domain < 0, or, without sample_domain, with y == "
                f"{'NaN' if regression else '-1'} on unlabelled rows.",
                NoTargetRowsWarning,
                stacklevel=3,
            )
        return domains.labelled, domains.source.astype(np.int8)

    def _build(self, data):
        """Load the backbone (once per fit) and attach a fresh head sized to the target."""
        self.device_ = resolve_device(self.device)
        params = self._backbone_params()
        if self.strategy == "ddp":
            self.device_ = rank_device(self.device_)  # one GPU per process
            params["device"] = str(self.device_)
        features = PretrainedFeatures(self.backbone, **params)
        features._fit(data["source"], data["modality"])
        bb = features.backbone_
        _make_trainable(bb.module)
        self.modality_ = data["modality"]
        self.backbone_ = bb
        self.module_ = TransferModel(self._make_body(bb), self._make_head(bb.dim))
        self.family_ = body_family(bb.module, self.modality_)
        # Fresh weights (structure transfer) train from scratch: a pretrained body's small
        # rate would leave them near their random start.
        key = "scratch_lr" if self.weights is None else "lr"
        if self.adapter is not None and self.weights is not None:
            key = "adapter_lr"  # few weights, from a zero update: a larger step
        self.lr_ = RECIPES[self.family_][key] if self.lr == "auto" else float(self.lr)
        self.batchnorm_ = self.batchnorm
        if self.batchnorm == "auto":
            # Running statistics are worth keeping only when they were learnt (Keras's advice
            # for transfer); fresh weights have none yet, so their BatchNorm must train.
            self.batchnorm_ = "train" if self.weights is None else "eval"
        self.net_ = self._make_net(self.module_, max_epochs=1)
        self.net_.initialize()

    def _resolve_budget(self, data):
        """``max_epochs_``: the number given, or for "auto" enough epochs to reach the
        family's number of optimiser steps on this many training rows (within bounds)."""
        if self.max_epochs != "auto":
            self.max_epochs_ = int(self.max_epochs)
            return
        n_train = len(self._split(data)[0])
        recipe = RECIPES[self.family_]
        steps_per_epoch = max(1, -(-n_train // self.batch_size))
        epochs = -(-recipe["steps"] // steps_per_epoch)
        self.max_epochs_ = int(np.clip(epochs, recipe["min_epochs"], recipe["max_epochs"]))

    def _make_net(
        self,
        module,
        *,
        max_epochs,
        groups=None,
        frozen_modules=(),
        callbacks=(),
        train_split=None,
        distributed=False,
        lr=None,
    ):
        device = self.device_
        amp = autocast_dtype(device, self.precision)
        cbs = list(callbacks)
        verbose = self._verbosity()
        if verbose > 1:
            cbs.append(("progress", ProgressBar()))
        return TransferNet(
            module,
            criterion=nn.Identity,  # unused: TransferNet.get_loss computes the loss
            optimizer=torch.optim.AdamW,
            lr=self.lr_ if lr is None else lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=max_epochs,
            batch_size=self.batch_size,
            train_split=train_split,
            callbacks=cbs or None,
            iterator_train__shuffle=True,
            iterator_train__collate_fn=identity_collate,
            iterator_valid__collate_fn=identity_collate,
            iterator_train__num_workers=self.num_workers,
            iterator_valid__num_workers=self.num_workers,
            iterator_train__pin_memory=device.type == "cuda",
            iterator_valid__pin_memory=device.type == "cuda",
            device=str(device),
            verbose=verbose,
            tasks=tuple(self._tasks()),
            param_groups=groups,
            frozen_modules=frozen_modules,
            batchnorm_eval=self.batchnorm_ == "eval",
            amp_dtype=amp,
            channels_last=device.type == "cuda" and self.backbone_.is_conv,
            adaptation=(
                functools.partial(make_adaptation_loss, self.adaptation)
                if module is self.module_ and self.adaptation is not None
                else None
            ),
            adaptation_weight=self.adaptation_weight,
            domain_features=self.backbone_.dim,
            distributed=distributed,
        )

    def _split(self, data):
        """(train rows, validation rows or None): only when early_stopping asks for it.
        Made once per fit (seeded), so the probe and the unfrozen phase see the same rows."""
        n_rows = len(data["labelled"])
        if not self.early_stopping:
            return np.arange(n_rows), None
        if "split" in data:
            return data["split"]
        rows = np.flatnonzero(data["labelled"])
        y = data["targets"]["y"]
        # Stratified on a 1-D class target; multi-output targets split at random.
        strat = y[rows] if self._task == "classification" and y.ndim == 1 else None
        seed = data["seed"] if "seed" in data else seed_of(self.random_state)
        try:
            tr, va = train_test_split(
                rows, test_size=self.validation_fraction, stratify=strat, random_state=seed
            )
        except ValueError:  # too few rows per class to stratify
            tr, va = train_test_split(rows, test_size=self.validation_fraction, random_state=seed)
        unlabelled = np.flatnonzero(~data["labelled"])
        data["split"] = np.sort(np.concatenate([tr, unlabelled])), np.sort(va)
        return data["split"]

    def _callbacks(self, n_train, epochs, max_lr, schedule, validating, l2sp_params=()):
        cbs = []
        if schedule and epochs > 0:
            # +1: skorch may step once more than the batch count (e.g. a last partial batch)
            steps = epochs * max(1, -(-n_train // self.batch_size)) + 1
            cbs.append(
                (
                    "onecycle",
                    LRScheduler(
                        policy=torch.optim.lr_scheduler.OneCycleLR,
                        max_lr=max_lr,
                        total_steps=steps,
                        pct_start=0.3,
                        div_factor=5.0,
                        step_every="batch",
                    ),
                )
            )
        if l2sp_params:
            cbs.append(("l2sp", L2SP(self.l2sp, l2sp_params)))
        if validating:
            cbs.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss",
                        patience=self.n_iter_no_change,
                        load_best=True,
                    ),
                )
            )
        cbs += [(f"user_{i}", copy.deepcopy(cb)) for i, cb in enumerate(self.callbacks or [])]
        return cbs

    def _head_features(self, data, rows=None):
        """Body features (computed once, through the cache) and targets of ``rows``, by
        default the labelled training rows."""
        if rows is None:
            tr, _ = self._split(data)
            rows = tr[data["labelled"][tr]]
        Z = extract(
            self.backbone_,
            Subset(data["source"], rows),
            batch_size=self.batch_size,
            device=self.device_,
            precision=self.precision,
            num_workers=self.num_workers,
            cache=self.cache,
        )
        return Z, {k: v[rows] for k, v in data["targets"].items() if k != "d"}

    def _fit_probe(self, data):
        """LP of LP-FT (Kumar et al. 2022): the head solved to convergence on the frozen
        body's features before any body weight moves, so fine-tuning starts from the
        linear probe instead of distorting the features to fit a random head. Heads with
        a hidden layer are not linear: they train on the cached features instead."""
        head = self.module_.head
        if isinstance(head, TaskHeads) and head.hidden:
            # The MLP recipe: fresh layers on fixed features train like a small MLP.
            self._train_head(data, self._head_epochs(data), lr=RECIPES["mlp"]["lr"])
            return
        Z, targets = self._head_features(data)
        weight, bias, loss, regs = fit_task_probes(
            Z, targets["y"], targets["w"], self._tasks(), self._n_outputs()
        )
        self.probe_regularization_ = regs[0] if len(regs) == 1 else regs
        linears = head.heads if isinstance(head, TaskHeads) else [head]
        start = 0
        with torch.no_grad():
            for lin in linears:
                stop = start + lin.out_features
                lin.weight.copy_(torch.from_numpy(weight[start:stop]))
                lin.bias.copy_(torch.from_numpy(bias[start:stop]))
                start = stop
        self.probe_loss_ = loss
        self._say(f"head on cached features: linear probe on {len(Z)} rows, loss {loss:.4f}")

    def _head_epochs(self, data) -> int:
        """Epochs of the head phase on cached features: the MLP recipe's step budget."""
        recipe = RECIPES["mlp"]
        n = int(data["labelled"].sum())
        epochs = -(-recipe["steps"] // max(1, -(-n // self.batch_size)))
        return int(np.clip(epochs, recipe["min_epochs"], recipe["max_epochs"]))

    def _train_head(self, data, epochs, lr=None):
        """The frozen body without a probe: the head trained by SGD on features computed once."""
        if epochs == 0:
            return
        Z, targets = self._head_features(data)
        _, va = self._split(data)
        ds = TrainingDataset(FeatureRows(Z), targets)
        valid = None
        if va is not None:
            Zv, tv = self._head_features(data, va)
            valid = predefined_split(TrainingDataset(FeatureRows(Zv), tv))
        self._say(f"head on cached features: {epochs} epochs on {len(Z)} rows")
        lr = self.lr_ if lr is None else lr
        cbs = self._callbacks(len(Z), epochs, lr, True, va is not None)
        net = self._make_net(
            self.module_.head, max_epochs=epochs, callbacks=cbs, train_split=valid, lr=lr
        )
        self._fit_net(net, ds)
        self.head_history_ = net.history

    def _train_all(self, data, epochs, schedule=True):
        """The unfrozen phase: layer-wise learning rates, frozen blocks in eval()."""
        if epochs == 0:
            return
        bb, model = self.backbone_, self.module_
        body_names = [n for n, _ in bb.module.named_parameters()]
        # The model's names for each body parameter (several when a task branch owns it).
        names_of = getattr(model.body, "names_of", lambda n, aliases=False: [n])
        blocks = param_blocks(bb.module)
        frozen_body = frozen_names(body_names, blocks, self.freeze)
        if self.adapter is not None:
            blocks, frozen_body = self._apply_adapter(bb.module, blocks, frozen_body)
        frozen = {f"body.{m}" for n in frozen_body for m in names_of(n, aliases=True)}
        blocks = [[m for n in b for m in names_of(n)] for b in blocks]
        for n, p in model.named_parameters():
            p.requires_grad_(n not in frozen)
        self.n_trainable_params_ = trainable_parameters(model)
        groups = layerwise_groups(
            model,
            blocks,
            frozen,
            lr=self.lr_,
            lr_mult=self.lr_mult,
            weight_decay=self.weight_decay,
            body_decay=0.0 if self.l2sp > 0 else self.weight_decay,
        )
        # A loss with parameters (DANN's discriminator) is one more optimiser group.
        loss = None if self.adaptation is None else make_adaptation_loss(self.adaptation, bb.dim)
        trains = loss is not None and any(True for _ in loss.parameters())
        max_lr = [g["lr"] for g in groups] + ([self.lr_] if trains else [])
        tr, va = self._split(data)
        source = data["source"]
        augment = make_augment(self.augment) if data["modality"] == "image" else None

        def ds(rows, cls):
            targets = {k: v[rows] for k, v in data["targets"].items()}
            return cls(Subset(source, rows), targets, bb.preprocess, augment, bb.collate)

        l2sp_params = [
            n for n in dict(model.named_parameters()) if n.startswith("body.") and n not in frozen
        ]
        cbs = self._callbacks(
            len(tr),
            epochs,
            max_lr,
            schedule,
            va is not None,
            l2sp_params=l2sp_params if self.l2sp > 0 else (),
        )
        distributed = self.strategy == "ddp"
        if distributed:
            cbs.append(("global_batch", GlobalBatchRecord()))
        net = self._make_net(
            model,
            max_epochs=epochs,
            groups=groups,
            frozen_modules=fully_frozen_modules(model, frozen),
            callbacks=cbs,
            train_split=predefined_split(ds(va, SourceDataset)) if va is not None else None,
            distributed=distributed,
        )
        if not schedule and self.net_.history:
            net = self.net_  # partial_fit: keep one net, one history, one optimizer state
        self._say(
            f"all layers: {epochs} epochs on {len(tr)} rows, peak lr {self.lr_:g} (head) to "
            f"{self.lr_ / self.lr_mult:g} (first block), BatchNorm {self.batchnorm_}"
        )
        try:
            self._fit_net(net, ds(tr, TrainingDataset), partial=not schedule)
        finally:
            if self.adapter is not None:
                # Fold LoRA into the weights: plain torch layers, picklable without peft.
                merge_adapter(bb.module)
            for p in model.parameters():
                p.requires_grad_(True)
        self.net_ = net
        # The body has trained: its features (and their cache key) are not the pretrained ones.
        bb.compute_fingerprint()

    def _apply_adapter(self, body, blocks, frozen):
        """Put the adapter on ``body`` in place; returns the blocks and frozen names in the
        adapted body's parameter names (a LoRA pair joins the block of the layer it adapts;
        everything the adapter does not train is frozen)."""
        if isinstance(self.module_.body, BranchedBody):
            raise ValueError(
                f"adapter={self.adapter!r} with shared_blocks: each task's branch would need "
                "its own adapter; use one of them."
            )
        targets = self.adapter_targets
        apply_adapter(
            body,
            self.adapter,
            rank=self.adapter_rank,
            alpha=self.adapter_alpha,
            dropout=self.adapter_dropout,
            target_modules=list(targets) if isinstance(targets, tuple) else targets,
        )
        by_base: dict[str, list[str]] = {}
        still = set()
        for n, p in body.named_parameters():
            by_base.setdefault(base_param_name(n), []).append(n)
            if not p.requires_grad:
                still.add(n)
        blocks = [[m for n in b for m in by_base.get(n, [])] for b in blocks]
        frozen = {m for n in frozen for m in by_base.get(n, [])} | still
        self._say(
            f"adapter {self.adapter}: {trainable_parameters(body):,} of "
            f"{sum(p.numel() for p in body.parameters()):,} body parameters train"
        )
        return blocks, frozen

    def _verbosity(self) -> int:
        """``verbose``, in process 0 only under DDP (the others would print the same)."""
        if self.strategy == "ddp" and not is_main_process():
            return 0
        return int(self.verbose or 0)

    def _say(self, message):
        if self._verbosity():
            print(f"[{type(self).__name__}] {message}", flush=True)

    def _fit_net(self, net, dataset, partial=False):
        """Fit a skorch net; on CUDA out-of-memory halve the batch and run the phase again."""
        start = (
            copy.deepcopy(net.module.state_dict()) if isinstance(net.module, nn.Module) else None
        )

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
            run, net.batch_size, self.device_, restart=lambda: net.module.load_state_dict(start)
        )

    # ------------------------------------------------------------------ predict

    def _forward(self, X):
        check_is_fitted(self, "net_")
        source = as_source(self, self.modality_, X, reset=False)
        if self.modality_ == "tabular" and self.family_ == "mlp" and self.device_.type == "cpu":
            # float32 products depend on how many rows a batch holds (the kernels block
            # differently), so a row's prediction would depend on its neighbours; a small
            # MLP is cheap in float64, where that noise falls below any tolerance.
            module = copy.deepcopy(self.module_).double().eval()
            with torch.inference_mode():
                return module(torch.from_numpy(source.X).double()).numpy()
        if self.freeze == "backbone":
            # The body never trained: its features come from the cache, only the head runs.
            Z = extract(
                self.backbone_,
                source,
                batch_size=self.batch_size,
                device=self.device_,
                precision=self.precision,
                num_workers=self.num_workers,
                cache=self.cache,
            )
            head = self.module_.head.to(self.device_).eval()
            with torch.inference_mode():
                return head(torch.from_numpy(Z).to(self.device_)).float().cpu().numpy()
        bb = self.backbone_
        ds = SourceDataset(source, {}, bb.preprocess, None, bb.collate)
        return self.net_.forward(ds, training=False, device="cpu").float().numpy()

    @property
    def history_(self):
        """Epoch records of both phases, each tagged with its ``phase``."""
        check_is_fitted(self, "net_")
        rows = []
        if getattr(self, "probe_loss_", None) is not None:
            rows.append({"epoch": 0, "train_loss": self.probe_loss_, "phase": "probe"})
        rows += [dict(r, phase="head") for r in getattr(self, "head_history_", [])]
        if self.freeze != "backbone":
            rows += [dict(r, phase="all") for r in self.net_.history]
        return rows

    def __getstate__(self):
        # backbone_.module is module_.body: store it once, relink it on load.
        state = self.__dict__.copy()
        if "backbone_" in state:
            bb = copy.copy(state["backbone_"])
            bb.module = None
            state["backbone_"] = bb
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "backbone_" in state and "net_" in state:
            self.module_ = self.net_.module_
            body = self.module_.body
            self.backbone_.module = body.copies[0] if isinstance(body, BranchedBody) else body
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


def _make_trainable(module: nn.Module) -> None:
    """Lazy modules materialised under ``inference_mode`` hold inference tensors, which
    autograd refuses; give them ordinary storage."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_inference():
                t.data = t.data.clone()


class FineTuneClassifier(ClassifierMixin, _FineTune):
    """Fine-tune a pretrained backbone with a new classification head.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        As in ``PretrainedFeatures``; a fitted sktransfer estimator or skorch net
        reuses its trained body (source task → target task).
    weights : str or None, default="DEFAULT"
        ``None`` trains the same architecture from scratch (structure transfer).
    freeze : {"none", "backbone"}, int or list of str, default="none"
        What stays frozen after the linear probe: nothing, the whole body (only the
        head is fitted: the probe itself), the first ``k`` blocks, or parameter-name
        patterns.
    linear_probe : bool, default=True
        Start fine-tuning from the head solved to convergence on the frozen body's
        features (LP-FT, Kumar et al. 2022); ``False`` starts from a random head.
    max_epochs : int or "auto", default="auto"
        Epochs of the unfrozen phase; "auto" aims for the body family's number of
        optimiser steps (150 for convolutional and transformer bodies, 300 for MLPs)
        within bounds (see docs/finetuning.md). Resolved value: ``max_epochs_``.
    lr : float or "auto", default="auto"
        Peak learning rate of the head and last block; "auto" is 1e-4 for
        convolutional bodies, 5e-5 for transformers, 1e-2 for MLPs (ten times the first
        two with an ``adapter``). Resolved: ``lr_``.
    lr_mult : float, default=10
        Ratio between the head's and the earliest block's learning rate.
    batch_size : int, default=32
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay; never applied to norms and biases.
    l2sp : float, default=0
        Decoupled L2-SP: after each step every body weight moves ``lr_t · l2sp`` of the
        way back to its pretrained value (replacing the body's weight decay); a weight
        then drifts at most about ``1 / l2sp`` from it.
    batchnorm : {"auto", "eval", "train"}, default="auto"
        "eval" keeps BatchNorm layers on their pretrained running statistics while
        their affine parameters train; "train" uses batch statistics and updates them;
        "auto" is "eval" unless ``weights=None``. Resolved: ``batchnorm_``.
    wise : float in [0, 1] or None, default=None
        WiSE-FT: the final weights are ``(1 - wise)·probe + wise·fine-tuned``.
    image_size, layer, pooling, device, precision, cache, num_workers, random_state
        As in ``PretrainedFeatures``.
    augment : None, "flip", "crop" or callable, default=None
        Training-time augmentation of image batches in the unfrozen phase.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss (and in the linear probe); "balanced" weighs
        each class inversely to its frequency among the labelled training rows.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop after
        ``n_iter_no_change`` epochs without improvement, restoring the best weights.
        No validation split is made otherwise.
    validation_fraction : float in (0, 1), default=0.1
        Share of the labelled training rows held out when ``early_stopping=True``.
    n_iter_no_change : int, default=3
        Epochs without improvement of the validation loss before early stopping stops.
    adaptation : None, "dann", "coral" or AdaptationLoss, default=None
        Deep domain adaptation with unlabelled target rows (y == -1 or ``sample_domain``);
        an ``sktransfer._training.AdaptationLoss`` object plugs in another method.
    adaptation_weight : float, default=1.0
        Weight of the adaptation loss (DANN's domain loss, or the CORAL distance)
        against the classification loss.
    warm_start : bool, default=False
        Continue from the previous fit's weights instead of the pretrained ones.
    max_length : int or None, default=None
        Text backbones: tokens kept per text (longer texts are truncated); ``None``
        takes the model's own limit.
    missing : {"raise", "empty"}, default="raise"
        Text input: a None/NaN row is an error naming the row, or is embedded as "".
    verbose : int, default=0
        1 names each phase and prints skorch's epoch table, 2 adds a progress bar.
    callbacks : list of skorch callbacks, default=None
        Added to the unfrozen phase's net.
    strategy : None or "ddp", default=None
        "ddp" fine-tunes data-parallel across the processes of an initialised
        ``torch.distributed`` process group (started by ``torchrun``; see
        docs/scaling.md): every process calls ``fit`` on the same data, each computes the
        gradient of its share of every batch (``batch_size`` is the global batch, split
        between the processes) and ``DistributedDataParallel`` averages them, so the
        loss curve is the single-process one. Every process ends with the same plain,
        picklable estimator. Not with ``adaptation`` nor ``partial_fit``.
    adapter : None, "lora" or "bitfit", default=None
        Parameter-efficient fine-tuning in the unfrozen phase: "lora" trains a low-rank
        update beside each targeted layer (Hugging Face ``peft``: ``pip install
        'sktransfer[peft]'``), merged into the weights after ``fit``, so the fitted
        estimator holds plain torch layers and pickles and predicts without ``peft``;
        "bitfit" trains only the body's biases and normalisation parameters. The head
        always trains. See docs/finetuning.md.
    adapter_rank : int, default=8
        LoRA's rank.
    adapter_alpha : float or None, default=None
        LoRA's scale numerator; None is ``2 * adapter_rank``.
    adapter_dropout : float in [0, 1), default=0
        Dropout on LoRA's input in training.
    adapter_targets : "auto", str or list of str, default="auto"
        The layers LoRA adapts: "auto" takes every ``nn.Linear`` and ungrouped
        ``nn.Conv2d`` (in attention bodies, those of the repeated blocks); a list matches
        module names or their dotted suffixes, a str is a regular expression over whole
        names.

    Attributes
    ----------
    classes_ : ndarray
    lr_, max_epochs_, batchnorm_, family_
        What the "auto" parameters resolved to, and the body's family.
    n_trainable_params_ : int
        Parameters that trained by gradient in the last phase (head and unfrozen body, or
        the adapter), each counted once.
    probe_loss_ : float or None
        Training loss of the linear probe.
    probe_regularization_ : float or None
        The probe's ``C`` (classifiers) or ridge ``alpha`` (regressors), chosen by
        cross-validation on the training rows.
    net_ : skorch.NeuralNet
        The trained net (``net_.module_`` is body + head).
    backbone_ : Backbone
        The fine-tuned body: pass the fitted estimator as ``backbone=`` to transfer it.
    history_ : list of dict

    Examples
    --------
    A small MLP body on a real table (with an image backbone such as
    ``"efficientnet_lite0"`` the same code fine-tunes an ImageNet model):

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import train_test_split
    >>> from torch import nn
    >>> from sktransfer import FineTuneClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    >>> body = nn.Sequential(nn.LazyLinear(8), nn.ReLU())
    >>> clf = FineTuneClassifier(body, random_state=0).fit(X_train, y_train)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.predict_proba(X_test).shape
    (38, 3)
    >>> clf.score(X_test, y_test) > 0.9
    True
    >>> [h["phase"] for h in clf.history_][:2]  # the linear probe, then the whole net
    ['probe', 'all']
    """

    _task = "classification"

    def __init__(
        self,
        backbone,
        *,
        weights="DEFAULT",
        freeze="none",
        linear_probe=True,
        max_epochs="auto",
        lr="auto",
        lr_mult=10.0,
        batch_size=32,
        weight_decay=0.01,
        l2sp=0.0,
        batchnorm="auto",
        wise=None,
        image_size=None,
        augment=None,
        layer=None,
        pooling="avg",
        class_weight=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=3,
        adaptation=None,
        adaptation_weight=1.0,
        warm_start=False,
        device="auto",
        precision="auto",
        cache=True,
        num_workers=0,
        random_state=None,
        max_length=None,
        missing="raise",
        verbose=0,
        callbacks=None,
        strategy=None,
        adapter=None,
        adapter_rank=8,
        adapter_alpha=None,
        adapter_dropout=0.0,
        adapter_targets="auto",
    ):
        super().__init__(
            backbone,
            weights=weights,
            freeze=freeze,
            linear_probe=linear_probe,
            max_epochs=max_epochs,
            lr=lr,
            lr_mult=lr_mult,
            batch_size=batch_size,
            weight_decay=weight_decay,
            l2sp=l2sp,
            batchnorm=batchnorm,
            wise=wise,
            image_size=image_size,
            augment=augment,
            layer=layer,
            pooling=pooling,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            adaptation=adaptation,
            adaptation_weight=adaptation_weight,
            warm_start=warm_start,
            device=device,
            precision=precision,
            cache=cache,
            num_workers=num_workers,
            random_state=random_state,
            max_length=max_length,
            missing=missing,
            verbose=verbose,
            callbacks=callbacks,
            strategy=strategy,
            adapter=adapter,
            adapter_rank=adapter_rank,
            adapter_alpha=adapter_alpha,
            adapter_dropout=adapter_dropout,
            adapter_targets=adapter_targets,
        )
        self.class_weight = class_weight

    _parameter_constraints = {
        **_FineTune._parameter_constraints,
        "class_weight": [None, StrOptions({"balanced"}), dict, list],
    }

    def _n_outputs(self):
        return self._tasks()[-1].outputs[1]

    def _tasks(self):
        cw = self.class_weight_
        if self._y_kind == "single":
            k = len(self.classes_)
            return [LossTask("softmax", (0, k), None, 1.0, _tuple(cw))]
        tasks, start = [], 0
        for j in range(self.n_outputs_):
            size = 1 if self._y_kind == "multilabel" else len(self.classes_[j])
            kind = "sigmoid" if self._y_kind == "multilabel" else "softmax"
            cw_j = None if cw is None else _tuple(cw[j])
            tasks.append(LossTask(kind, (start, start + size), (j, j + 1), 1.0, cw_j, j))
            start += size
        return tasks

    def _encode_target(self, y, labelled, *, reset, classes=None):
        if y.ndim > 1 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim > 1:
            return self._encode_multi(y, reset=reset, classes=classes)
        y_lab = y[labelled]
        check_classification_targets(y_lab)
        if reset:
            self._y_kind, self.n_outputs_ = "single", 1
            self.classes_ = np.unique(y_lab) if classes is None else np.asarray(classes)
            self.class_weight_ = None
            if self.class_weight is not None:
                if isinstance(self.class_weight, list):
                    raise ValueError(
                        "class_weight is a list (one dict per output) but y is 1-D: pass "
                        "one dict, or 'balanced'."
                    )
                self.class_weight_ = compute_class_weight(
                    self.class_weight, classes=self.classes_, y=y_lab
                )
        elif self._y_kind != "single":
            raise ValueError(
                f"y is 1-D but {type(self).__name__} was fitted on a {self._y_kind} y of "
                f"{self.n_outputs_} columns."
            )
        enc = np.zeros(len(y), dtype=np.int64)
        enc[labelled] = _class_index(self.classes_, y_lab, "y")
        return enc

    def _encode_multi(self, y, *, reset, classes):
        """A 2-D y: a multilabel indicator matrix (one sigmoid output per label) or
        multiclass-multioutput (one softmax head per column), as encoded targets."""
        cols = [np.array(c.tolist()) if c.dtype == object else c for c in y.T]
        for j, col in enumerate(cols):  # per column: an object y may mix str and int columns
            try:
                check_classification_targets(col)
            except TypeError as exc:
                raise ValueError(f"y[:, {j}] mixes labels of different types: {exc}") from None
        if reset:
            multilabel = y.dtype != object and type_of_target(y) == "multilabel-indicator"
            self._y_kind = "multilabel" if multilabel else "multioutput"
            self.n_outputs_ = y.shape[1]
            if multilabel:  # as MLPClassifier: one class per label, probabilities (n, labels)
                self.classes_ = np.arange(y.shape[1])
            elif classes is not None:
                self.classes_ = [np.asarray(c) for c in classes]
            else:
                self.classes_ = [np.unique(col) for col in cols]
            self.class_weight_ = self._multi_class_weight(cols)
        elif self._y_kind == "single" or y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y.shape[1]} columns but {type(self).__name__} was fitted on "
                f"{self.n_outputs_}."
            )
        if self._y_kind == "multilabel":
            return y.astype(np.float32)
        enc = np.empty(y.shape, dtype=np.float32)
        for j, col in enumerate(cols):
            enc[:, j] = _class_index(self.classes_[j], col, f"y[:, {j}]")
        return enc

    def _multi_class_weight(self, cols):
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, dict) or (isinstance(cw, list) and len(cw) != len(cols)):
            raise ValueError(
                f"class_weight for a y of {len(cols)} columns is 'balanced' or a list of "
                f"{len(cols)} dicts (one per column, as in RandomForestClassifier); got "
                f"{cw!r:.80}."
            )
        out = []
        for j, col in enumerate(cols):
            classes = np.array([0, 1]) if self._y_kind == "multilabel" else self.classes_[j]
            cw_j = cw if cw == "balanced" else cw[j]
            present = np.isin(classes, col)
            weights = np.ones(len(classes))
            # compute_class_weight wants every class present; absent ones keep weight 1.
            weights[present] = compute_class_weight(cw_j, classes=classes[present], y=col)
            out.append(weights)
        return out

    def _logits(self, X):
        """The head's outputs, split per output column for a multiclass-multioutput y."""
        out = self._forward(X).astype(np.float64)
        if self._y_kind != "multioutput":
            return out
        return [out[:, t.outputs[0] : t.outputs[1]] for t in self._tasks()]

    def predict_proba(self, X):
        """Class probabilities: (n, n_classes); for a multilabel y (n, n_labels), each
        label's probability; for multiclass-multioutput a list, one array per column."""
        out = self._logits(X)
        if self._y_kind == "multilabel":
            return torch.sigmoid(torch.from_numpy(out)).numpy()
        if self._y_kind == "multioutput":
            return [torch.softmax(torch.from_numpy(o), dim=1).numpy() for o in out]
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()

    def predict_log_proba(self, X):
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return [np.log(np.clip(p, 1e-300, None)) for p in proba]
        return np.log(np.clip(proba, 1e-300, None))

    def decision_function(self, X):
        out = self._logits(X)
        if self._y_kind == "single" and out.shape[1] == 2:
            return out[:, 1] - out[:, 0]
        return out

    def predict(self, X):
        out = self._logits(X)
        if self._y_kind == "multilabel":
            return (out > 0).astype(np.int64)
        if self._y_kind == "multioutput":
            cols = [c[np.argmax(o, axis=1)] for c, o in zip(self.classes_, out)]
            return _stack_columns(cols)
        return self.classes_[np.argmax(out, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy; for a 2-D y the subset accuracy (a row counts when every column
        is right), as ``MultiOutputClassifier.score`` has it for multiclass-multioutput y,
        where scikit-learn's ``accuracy_score`` refuses."""
        check_is_fitted(self, "net_")
        if getattr(self, "_y_kind", "single") != "multioutput":
            return super().score(X, y, sample_weight=sample_weight)
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has shape {y.shape}; {type(self).__name__} was fitted on "
                f"{self.n_outputs_} columns."
            )
        right = np.all(y == self.predict(X), axis=1)
        return float(np.average(right, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Multilabel and multiclass-multioutput y; adaptation's -1 marker needs a 1-D y.
        tags.target_tags.multi_output = self.adaptation is None
        return tags


def _tuple(weights):
    return None if weights is None else tuple(float(v) for v in weights)


def _class_index(classes, labels, where):
    """Index of each label in the sorted ``classes``; unknown labels are an error."""
    idx = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    unknown = classes[idx] != labels
    if np.any(unknown):
        raise ValueError(
            f"{where} contains labels {np.unique(labels[unknown])[:5]} not in the classes "
            f"seen at fit {classes}."
        )
    return idx


def _stack_columns(cols):
    """Columns side by side, as one array (object dtype when numbers meet other types)."""
    if len({c.dtype for c in cols}) == 1 or all(c.dtype.kind in "biuf" for c in cols):
        return np.column_stack(cols)
    out = np.empty((len(cols[0]), len(cols)), dtype=object)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


class FineTuneRegressor(RegressorMixin, _FineTune):
    """Fine-tune a pretrained backbone with a new regression head (1-D or multi-output y).

    Targets are standardised for training and mapped back in ``predict``. The
    parameters are those of ``FineTuneClassifier`` except ``class_weight``;
    unlabelled target rows for ``adaptation`` have y = NaN.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        As in ``PretrainedFeatures``; a fitted sktransfer estimator or skorch net
        reuses its trained body (source task → target task).
    weights : str or None, default="DEFAULT"
        ``None`` trains the same architecture from scratch (structure transfer).
    freeze : {"none", "backbone"}, int or list of str, default="none"
        What stays frozen after the linear probe: nothing, the whole body (only the
        head is fitted: the probe itself), the first ``k`` blocks, or parameter-name
        patterns.
    linear_probe : bool, default=True
        Start fine-tuning from the ridge head solved on the frozen body's features
        (LP-FT, Kumar et al. 2022); ``False`` starts from a random head.
    max_epochs : int or "auto", default="auto"
        Epochs of the unfrozen phase; "auto" aims for the body family's number of
        optimiser steps, as in ``FineTuneClassifier``. Resolved value: ``max_epochs_``.
    lr : float or "auto", default="auto"
        Peak learning rate of the head and last block, as in ``FineTuneClassifier``.
        Resolved: ``lr_``.
    lr_mult : float, default=10
        Ratio between the head's and the earliest block's learning rate.
    batch_size : int, default=32
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay; never applied to norms and biases.
    l2sp : float, default=0
        Decoupled L2-SP: pulls every body weight back towards its pretrained value
        (see ``FineTuneClassifier``).
    batchnorm : {"auto", "eval", "train"}, default="auto"
        "eval" keeps BatchNorm layers on their pretrained running statistics; "auto"
        is "eval" unless ``weights=None``. Resolved: ``batchnorm_``.
    wise : float in [0, 1] or None, default=None
        WiSE-FT: the final weights are ``(1 - wise)·probe + wise·fine-tuned``.
    image_size, layer, pooling, device, precision, cache, num_workers, random_state
        As in ``PretrainedFeatures``.
    augment : None, "flip", "crop" or callable, default=None
        Training-time augmentation of image batches in the unfrozen phase.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` and stop after ``n_iter_no_change`` epochs
        without improvement, restoring the best weights.
    validation_fraction : float in (0, 1), default=0.1
        Share of the labelled training rows held out when ``early_stopping=True``.
    n_iter_no_change : int, default=3
        Epochs without improvement of the validation loss before early stopping stops.
    adaptation : None, "dann", "coral" or AdaptationLoss, default=None
        Deep domain adaptation with unlabelled target rows (y = NaN or ``sample_domain``);
        an ``sktransfer._training.AdaptationLoss`` object plugs in another method.
    adaptation_weight : float, default=1.0
        Weight of the adaptation loss against the regression loss.
    warm_start : bool, default=False
        Continue from the previous fit's weights instead of the pretrained ones.
    max_length : int or None, default=None
        Text backbones: tokens kept per text; ``None`` takes the model's own limit.
    missing : {"raise", "empty"}, default="raise"
        Text input: a None/NaN row is an error naming the row, or is embedded as "".
    verbose : int, default=0
        1 names each phase and prints skorch's epoch table, 2 adds a progress bar.
    callbacks : list of skorch callbacks, default=None
        Added to the unfrozen phase's net.
    strategy : None or "ddp", default=None
        "ddp" fine-tunes data-parallel across the processes of an initialised
        ``torch.distributed`` process group (started by ``torchrun``; see
        docs/scaling.md): every process calls ``fit`` on the same data, each computes the
        gradient of its share of every batch (``batch_size`` is the global batch, split
        between the processes) and ``DistributedDataParallel`` averages them, so the
        loss curve is the single-process one. Every process ends with the same plain,
        picklable estimator. Not with ``adaptation`` nor ``partial_fit``.
    adapter : None, "lora" or "bitfit", default=None
        Parameter-efficient fine-tuning in the unfrozen phase: "lora" trains a low-rank
        update beside each targeted layer (Hugging Face ``peft``: ``pip install
        'sktransfer[peft]'``), merged into the weights after ``fit``, so the fitted
        estimator holds plain torch layers and pickles and predicts without ``peft``;
        "bitfit" trains only the body's biases and normalisation parameters. The head
        always trains. See docs/finetuning.md.
    adapter_rank : int, default=8
        LoRA's rank.
    adapter_alpha : float or None, default=None
        LoRA's scale numerator; None is ``2 * adapter_rank``.
    adapter_dropout : float in [0, 1), default=0
        Dropout on LoRA's input in training.
    adapter_targets : "auto", str or list of str, default="auto"
        The layers LoRA adapts: "auto" takes every ``nn.Linear`` and ungrouped
        ``nn.Conv2d`` (in attention bodies, those of the repeated blocks); a list matches
        module names or their dotted suffixes, a str is a regular expression over whole
        names.

    Attributes
    ----------
    n_outputs_ : int
    y_mean_, y_scale_ : ndarray of shape (n_outputs_,)
        The standardisation of the targets.
    lr_, max_epochs_, batchnorm_, family_
        What the "auto" parameters resolved to, and the body's family.
    n_trainable_params_ : int
        Parameters that trained by gradient in the last phase.
    probe_loss_, probe_regularization_ : float or None
        Training loss of the linear probe and its ridge ``alpha``.
    net_ : skorch.NeuralNet
    backbone_ : Backbone
    history_ : list of dict

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.model_selection import train_test_split
    >>> from torch import nn
    >>> from sktransfer import FineTuneRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    >>> body = nn.Sequential(nn.LazyLinear(8), nn.ReLU())
    >>> reg = FineTuneRegressor(body, random_state=0).fit(X_train, y_train)
    >>> reg.predict(X_test).shape
    (111,)
    >>> reg.score(X_test, y_test) > 0.3
    True
    """

    _task = "regression"

    def _n_outputs(self):
        return self.n_outputs_

    def _tasks(self):
        n = self.n_outputs_
        return [LossTask("mse", (0, n), (0, n))]

    def _encode_target(self, y, labelled, *, reset, classes=None):
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self._y_1d = y.ndim == 1
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
            y_lab = y[labelled].reshape(labelled.sum(), -1)
            if not np.isfinite(y_lab).all():
                raise ValueError("y contains infinity or NaN in labelled rows.")
            self.y_mean_ = y_lab.mean(0)
            self.y_scale_ = np.where(y_lab.std(0) > 0, y_lab.std(0), 1.0)
        z = (y.reshape(len(y), -1) - self.y_mean_) / self.y_scale_
        return np.nan_to_num(z).astype(np.float32)

    def predict(self, X):
        out = self._forward(X).astype(np.float64) * self.y_scale_ + self.y_mean_
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
