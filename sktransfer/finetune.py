"""Parameter transfer: fine-tune a pretrained backbone with a new head, as an sklearn estimator.

The default recipe is LP-FT: the new head is solved to convergence on the frozen
body's features (computed once, through the cache), then everything trains with
layer-wise learning rates under a one-cycle schedule, AdamW with decoupled weight
decay and none on norms and biases, BatchNorm on its pretrained statistics, for a
budget of optimiser steps that suits the body's family. skorch runs the loop
(``net_``); this module owns the sklearn contract.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_y, check_is_fitted, column_or_1d

from ._finetune_base import FINETUNE_CONSTRAINTS, FineTuneBase
from ._targets import as_tuple, class_index, stack_columns
from .inputs import NoTargetRowsWarning, resolve_domains
from .training import (
    ADAPTATION_LOSSES,
    CONTRASTIVE_MAX_ROWS,
    AdaptationLoss,
    LossTask,
    contrastive_epochs,
)


class _SingleTaskFineTune(FineTuneBase):
    """One target (a label, a value, or their 2-D forms) and, optionally, the unlabelled
    rows of a target domain for a deep adaptation term."""

    _parameter_constraints = {
        **FINETUNE_CONSTRAINTS,
        "adaptation": [None, StrOptions(set(ADAPTATION_LOSSES)), AdaptationLoss],
        "adaptation_weight": [Interval(Real, 0, None, closed="left")],
    }
    _task = "classification"

    def __init__(
        self,
        backbone,
        *,
        weights="DEFAULT",
        freeze="auto",
        linear_probe=True,
        max_epochs="auto",
        lr="auto",
        lr_mult="auto",
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, sample_domain=None):
        """Fine-tune on ``(X, y)``; starts again from the pretrained weights unless ``warm_start``.

        Rows with ``sample_domain < 0`` (or, without ``sample_domain``, y == -1 / NaN)
        are unlabelled target rows: they enter only the ``adaptation`` term.
        """
        return self._fit(X, y, sample_weight, sample_domain)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)`` at a constant learning rate, continuing from the current
        weights (the first call loads the backbone; classifiers need ``classes`` then)."""
        return self._partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    def _check_target(self, y, sample_domain):
        """y validated as scikit-learn's estimators of this kind take it, as an array."""
        if self.adaptation is None and sample_domain is not None:
            raise ValueError(
                "sample_domain was passed but adaptation=None: set adaptation='dann' or "
                "'coral' to use unlabelled target rows."
            )
        regression = self._task == "regression"
        if self.adaptation is None:
            y = _check_y(y, multi_output=True, y_numeric=regression, estimator=self)
            return np.asarray(y), None
        if regression:
            return np.asarray(y), None
        y = np.asarray(y)
        if y.ndim > 1 and y.shape[1] > 1:
            raise ValueError(
                f"{type(self).__name__}(adaptation={self.adaptation!r}) takes a 1-D y (one "
                f"label per row, -1 for unlabelled target rows); got y of shape "
                f"{y.shape}. Multi-output y trains without adaptation."
            )
        return column_or_1d(y, warn=True), None  # -1 marks target rows

    def _adaptation_plan(self):
        return self.adaptation, self.adaptation_weight

    def _domains(self, y, sample_domain):
        """(labelled mask, domain: 1 source / 0 target) by the adaptation package's reading
        of skada's convention, so both parse sample_domain and the -1/NaN marker alike."""
        if self.adaptation is None:
            return super()._domains(y, sample_domain)
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
                stacklevel=4,
            )
        return domains.labelled, domains.source.astype(np.int8)


class FineTuneClassifier(ClassifierMixin, _SingleTaskFineTune):
    """Fine-tune a pretrained backbone with a new classification head.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        As in ``PretrainedFeatures``; a fitted sktransfer estimator or skorch net
        reuses its trained body (source task → target task).
    weights : str or None, default="DEFAULT"
        ``None`` trains the same architecture from scratch (structure transfer).
    freeze : {"auto", "none", "backbone"}, int or list of str, default="auto"
        What stays frozen after the linear probe: nothing, the whole body (only the
        head is fitted: the probe itself), the first ``k`` blocks, or parameter-name
        patterns. "auto": the first third of the blocks of a pretrained convolutional
        body (the accuracy of training them all for less than half the CPU time,
        measured in docs/finetuning.md, "Cost"), nothing otherwise (text encoders,
        tables, fresh weights, adapters). Resolved: ``freeze_``.
    linear_probe : bool, default=True
        Start fine-tuning from the head solved to convergence on the frozen body's
        features (LP-FT, Kumar et al. 2022); ``False`` starts from a random head.
    max_epochs : int or "auto", default="auto"
        Epochs of the unfrozen phase; "auto" aims for the body family's number of
        optimiser steps (150 for convolutional bodies, 100 for transformers, 300 for
        MLPs) within bounds (see docs/finetuning.md), and is 0 after the contrastive
        phase (see ``contrastive``). Resolved value: ``max_epochs_``.
    lr : float or "auto", default="auto"
        Peak learning rate of the head and last block; "auto" is 1e-4 for
        convolutional bodies, 5e-5 for transformers, 1e-2 for MLPs (ten times the first
        two with an ``adapter``). Resolved: ``lr_``.
    lr_mult : float or "auto", default="auto"
        Ratio between the head's and the earliest block's learning rate (the blocks in
        between on a geometric ladder); "auto" is 10 for images and tables, 1 (one rate
        for every layer) for text encoders (see docs/finetuning.md, "One rate for
        text"). Resolved: ``lr_mult_``.
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
    wise : "auto", float in [0, 1] or None, default=None
        WiSE-FT: the final weights are ``(1 - wise)·probe + wise·fine-tuned``. "auto",
        the guard (not the default: measured, it cost 0.003-0.021 against the plain
        fine-tune on 9 of 10 cells; docs/finetuning.md, "The guard, measured"):
        ``validation_fraction`` of the labelled rows (the early-stopping rows if
        ``early_stopping``) is held out, and of the points 0 (the linear probe), 0.25,
        0.5, 0.75 and 1 (the plain fine-tune) the one with the lowest held-out loss is
        kept, so that a fine-tune does not end below its own probe; when 0 wins, the
        probe is solved again on every row. It needs ``linear_probe=True`` and at least
        20 labelled rows, and is off under ``adaptation`` (the labelled rows measure the
        source domain) and ``freeze="backbone"``: there the fine-tune is kept (``wise_``
        is 1). ``None``: the plain fine-tune, every row trains. ``wise_`` says what was
        kept, ``wise_losses_`` the held-out losses.
    image_size, layer, pooling, device, precision, cache, num_workers, random_state
        As in ``PretrainedFeatures``.
    augment : None, "flip", "crop" or callable, default=None
        Training-time augmentation of image batches in the unfrozen phase.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss (and in the linear probe); "balanced" weighs
        each class inversely to its frequency among the labelled training rows.
    contrastive : "auto" or bool, default="auto"
        Before the linear probe, train the body on pairs of labelled rows, as SetFit
        does (Tunstall et al. 2022): the cosine of two rows' features is pulled to 1 for
        one class and to 0 for two (every pair of a batch counts; positive and negative
        pairs weigh half each; class weights do not enter), for at least 40 optimiser
        steps at ``lr_``. With ``max_epochs="auto"``, the probe and no ``adaptation``,
        no classification epoch follows (``max_epochs_`` is 0: the pairs train the body,
        the probe the head) and no row is held out. "auto" does so for a pretrained text
        encoder with at most 256 labelled rows and a 1-D y, unless ``freeze``,
        ``adapter``, ``adaptation`` or ``strategy`` is set: measured with MiniLM at
        16-256 rows, it scored 0.03-0.13 above the classification fine-tune on Rotten
        Tomatoes and fortunes, tied it on a third set, and was at or above SetFit 1.2's
        defaults where SetFit ran (docs/finetuning.md, "Few labelled texts"). ``True``
        runs it on any body with a 1-D y (unmeasured on images and tables);
        ``contrastive_`` says whether it ran.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop after
        ``n_iter_no_change`` epochs without improvement, restoring the best weights.
        No validation split is made otherwise.
    validation_fraction : float in (0, 1), default=0.1
        Share of the labelled training rows held out by ``early_stopping=True`` and by
        ``wise="auto"`` (the same rows when both are on).
    n_iter_no_change : int, default=3
        Epochs without improvement of the validation loss before early stopping stops.
    adaptation : None, "dann", "coral" or AdaptationLoss, default=None
        Deep domain adaptation with unlabelled target rows (y == -1 or ``sample_domain``);
        an ``sktransfer.training.AdaptationLoss`` object plugs in another method. After
        each unfrozen phase the body's BatchNorm statistics become the target rows'
        (AdaBN), so the fitted model is the target domain's (``target_batchnorm_``):
        where they trained (``batchnorm_ == "train"``), outside frozen blocks; where the
        pretrained ones were kept (``"eval"``), in every layer, with the source rows'
        statistics folded in first, as ``AdaBN`` adapts such a model.
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
    lr_, lr_mult_, max_epochs_, batchnorm_, freeze_, family_
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
    image_size_ : int, (int, int) or None
        The crop size images were fed at (see ``image_size``).
    contrastive_ : bool
        Whether the contrastive phase ran (see ``contrastive``).
    target_batchnorm_ : bool
        Whether BatchNorm statistics were re-estimated on the target rows (see
        ``adaptation``).
    batchnorm_statistics_ : dict or None
        When the body kept pretrained BatchNorm statistics (``batchnorm_ == "eval"``, or
        BatchNorm in blocks ``freeze`` kept frozen) and no ``adaptation`` replaced them:
        per BatchNorm layer (by name in ``module_``), the (mean, variance) of its input
        over the labelled rows (up to 256, evenly spaced), recorded at the end of ``fit``
        in one pass without gradients; ``AdaBN`` and ``TENT`` fold them in, so that they
        start from the source data's statistics. None otherwise, and after
        ``partial_fit`` (the record would no longer describe the weights).
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
        freeze="auto",
        linear_probe=True,
        max_epochs="auto",
        lr="auto",
        lr_mult="auto",
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
        contrastive="auto",
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
        self.contrastive = contrastive

    _parameter_constraints = {
        **_SingleTaskFineTune._parameter_constraints,
        "class_weight": [None, StrOptions({"balanced"}), dict, list],
        "contrastive": [StrOptions({"auto"}), "boolean"],
    }

    def _contrastive_epochs(self, data):
        """Epochs of the contrastive phase. "auto" runs it where it was measured to win: a
        pretrained text encoder on at most ``CONTRASTIVE_MAX_ROWS`` labelled rows with
        one label each, when nothing else asks the body to train otherwise (a frozen
        part, an adapter, adaptation, data-parallel training)."""
        n = int(data.labelled.sum())
        on = self.contrastive
        if isinstance(on, str):  # "auto"
            on = (
                self.modality_ == "text"
                and self.family_ == "transformer"
                and self.weights is not None
                and n <= CONTRASTIVE_MAX_ROWS
                and self.freeze_ == "none"
                and self.adapter is None
                and self.adaptation is None
                and self.strategy is None
            )
        if not on or self._y_kind != "single":
            return 0
        return contrastive_epochs(n, self.batch_size)

    def _n_outputs(self):
        return self._tasks()[-1].outputs[1]

    def _tasks(self):
        cw = self.class_weight_
        if self._y_kind == "single":
            k = len(self.classes_)
            return [LossTask("softmax", (0, k), None, 1.0, as_tuple(cw))]
        tasks, start = [], 0
        for j in range(self.n_outputs_):
            size = 1 if self._y_kind == "multilabel" else len(self.classes_[j])
            kind = "sigmoid" if self._y_kind == "multilabel" else "softmax"
            cw_j = None if cw is None else as_tuple(cw[j])
            tasks.append(LossTask(kind, (start, start + size), (j, j + 1), 1.0, cw_j, j))
            start += size
        return tasks

    def _encode_target(self, y, about_y, labelled, *, reset, classes=None):
        if y.ndim > 1 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim > 1:
            return self._encode_multi(y, reset=reset, classes=classes)
        y_lab = y[labelled]
        check_classification_targets(y_lab)
        if reset:
            self._y_kind, self.n_outputs_ = "single", 1
            # classes in any order, as scikit-learn's partial_fit takes them: sorted
            self.classes_ = np.unique(y_lab if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least two classes, but y has one class: "
                    f"{self.classes_.tolist()}. Pass classes=[...] to partial_fit when the "
                    "first batch lacks some."
                )
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
        enc[labelled] = class_index(self.classes_, y_lab, "y")
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
                self.classes_ = [np.unique(np.asarray(c)) for c in classes]
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
            enc[:, j] = class_index(self.classes_[j], col, f"y[:, {j}]")
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
            return stack_columns(cols)
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


class FineTuneRegressor(RegressorMixin, _SingleTaskFineTune):
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
    freeze : {"auto", "none", "backbone"}, int or list of str, default="auto"
        What stays frozen after the linear probe: nothing, the whole body (only the
        head is fitted: the probe itself), the first ``k`` blocks, or parameter-name
        patterns. "auto": the first third of the blocks of a pretrained convolutional
        body (the accuracy of training them all for less than half the CPU time,
        measured in docs/finetuning.md, "Cost"), nothing otherwise (text encoders,
        tables, fresh weights, adapters). Resolved: ``freeze_``.
    linear_probe : bool, default=True
        Start fine-tuning from the ridge head solved on the frozen body's features
        (LP-FT, Kumar et al. 2022); ``False`` starts from a random head.
    max_epochs : int or "auto", default="auto"
        Epochs of the unfrozen phase; "auto" aims for the body family's number of
        optimiser steps, as in ``FineTuneClassifier``. Resolved value: ``max_epochs_``.
    lr : float or "auto", default="auto"
        Peak learning rate of the head and last block, as in ``FineTuneClassifier``.
        Resolved: ``lr_``.
    lr_mult : float or "auto", default="auto"
        As in ``FineTuneClassifier``. Resolved: ``lr_mult_``.
    batch_size : int, default=32
    weight_decay : float, default=0.01
        AdamW's decoupled weight decay; never applied to norms and biases.
    l2sp : float, default=0
        Decoupled L2-SP: pulls every body weight back towards its pretrained value
        (see ``FineTuneClassifier``).
    batchnorm : {"auto", "eval", "train"}, default="auto"
        "eval" keeps BatchNorm layers on their pretrained running statistics; "auto"
        is "eval" unless ``weights=None``. Resolved: ``batchnorm_``.
    wise : "auto", float in [0, 1] or None, default=None
        WiSE-FT: the final weights are ``(1 - wise)·probe + wise·fine-tuned``. "auto",
        the guard (not the default: measured, it cost 0.003-0.021 against the plain
        fine-tune on 9 of 10 cells; docs/finetuning.md, "The guard, measured"):
        ``validation_fraction`` of the labelled rows (the early-stopping rows if
        ``early_stopping``) is held out, and of the points 0 (the linear probe), 0.25,
        0.5, 0.75 and 1 (the plain fine-tune) the one with the lowest held-out loss is
        kept, so that a fine-tune does not end below its own probe; when 0 wins, the
        probe is solved again on every row. It needs ``linear_probe=True`` and at least
        20 labelled rows, and is off under ``adaptation`` (the labelled rows measure the
        source domain) and ``freeze="backbone"``: there the fine-tune is kept (``wise_``
        is 1). ``None``: the plain fine-tune, every row trains. ``wise_`` says what was
        kept, ``wise_losses_`` the held-out losses.
    image_size, layer, pooling, device, precision, cache, num_workers, random_state
        As in ``PretrainedFeatures``.
    augment : None, "flip", "crop" or callable, default=None
        Training-time augmentation of image batches in the unfrozen phase.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` and stop after ``n_iter_no_change`` epochs
        without improvement, restoring the best weights.
    validation_fraction : float in (0, 1), default=0.1
        Share of the labelled training rows held out by ``early_stopping=True`` and by
        ``wise="auto"`` (the same rows when both are on).
    n_iter_no_change : int, default=3
        Epochs without improvement of the validation loss before early stopping stops.
    adaptation : None, "dann", "coral" or AdaptationLoss, default=None
        Deep domain adaptation with unlabelled target rows (y = NaN or ``sample_domain``);
        an ``sktransfer.training.AdaptationLoss`` object plugs in another method.
        BatchNorm statistics end as the target rows', as in ``FineTuneClassifier``
        (``target_batchnorm_``).
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
    lr_, lr_mult_, max_epochs_, batchnorm_, freeze_, family_
        What the "auto" parameters resolved to, and the body's family.
    n_trainable_params_ : int
        Parameters that trained by gradient in the last phase.
    probe_loss_, probe_regularization_ : float or None
        Training loss of the linear probe and its ridge ``alpha``.
    net_ : skorch.NeuralNet
    backbone_ : Backbone
    image_size_ : int, (int, int) or None
        The crop size images were fed at (see ``image_size``).
    batchnorm_statistics_ : dict or None
        As in ``FineTuneClassifier``: what ``AdaBN`` folds in.
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

    def _encode_target(self, y, about_y, labelled, *, reset, classes=None):
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
