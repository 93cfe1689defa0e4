"""Adaptation without the source data: AdaBN, TENT and SHOT.

Each wraps a fitted source model (a ``FineTuneClassifier`` or ``FineTuneRegressor``)
and adapts a deep copy of it to unlabelled target rows; the model passed in is never
modified. The target rows enter through the source model's own input pipeline
(``as_source`` + its preprocessing), so anything it predicts on, it adapts on.
"""

from __future__ import annotations

import copy
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._backbone_estimator import seed_of
from .._device import autocast, autocast_dtype, to_device, use_channels_last
from ..finetune import FineTuneClassifier, FineTuneRegressor
from ..inputs import as_source
from ..training import (
    SourceDataset,
    batch_bounds,
    batchnorms,
    fold_statistics,
    pretrained_statistics_kept,
    reestimate_batchnorm,
)
from ._base import WrappingAdapter, check_sample_domain, unlabelled_mask


class _SourceFree(WrappingAdapter):
    """Shared plumbing: target rows, the deep copy, batches, BatchNorm statistics.

    ``sklearn.utils.estimator_checks`` does not apply: every check builds the
    estimator from default arguments, and these need a fitted source model.
    """

    _parameter_constraints = {
        "estimator": "no_validation",
        "batch_size": [None, Interval(Integral, 1, None, closed="left")],
    }
    _needs_batchnorm = True
    _needs_classes = True

    def __init__(self, estimator, *, batch_size=None):
        self.estimator = estimator
        self.batch_size = batch_size

    def fit(self, X, y=None, sample_domain=None):
        """Adapt a copy of ``estimator`` to the target rows of ``X``; labels are never used.

        The target rows are the rows with ``sample_domain < 0`` when it is given; else
        the rows with ``y == -1`` (NaN for a regressor) when ``y`` marks some; else
        every row (test-time adaptation: ``y``, if given, is ignored).
        """
        self._validate_params()
        source = self._check_source()
        X_target = _target_rows(X, y, sample_domain, regression=not is_classifier(source))
        est = copy.deepcopy(source)
        self.estimator_ = est
        # A source that kept its pretrained statistics recorded its rows' own: fold them
        # in (the copy computes what the source does), so that the target's statistics
        # replace the source data's, the premise of AdaBN and TENT.
        stats = getattr(source, "batchnorm_statistics_", None)
        self.source_statistics_ = bool(
            self._needs_batchnorm and stats and fold_statistics(est.module_, stats)
        )
        self.n_target_ = _n_rows(X_target)
        if self.n_target_ < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 target rows (BatchNorm statistics, "
                f"batch entropies); got {self.n_target_}."
            )
        seed = seed_of(getattr(self, "random_state", None))
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self._adapt(est, X_target)
        # The body changed: predictions through the feature cache must not reuse the old
        # features (a frozen-backbone source predicts from cached body features).
        est.backbone_.compute_fingerprint()
        return self

    def _prepare_predict(self, X):
        check_is_fitted(self, "estimator_")
        return X  # the source model checks its own input

    def __sklearn_clone__(self):
        # The fitted source model is the point of the estimator: a clone (GridSearchCV,
        # cross_validate) keeps it; it is never modified, so sharing it is safe.
        params = self.get_params(deep=False)
        source = params.pop("estimator")
        return type(self)(source, **{k: clone(v, safe=False) for k, v in params.items()})

    def set_params(self, **params):
        nested = sorted(k for k in params if k.startswith("estimator__"))
        if nested:
            # A clone shares the fitted source model: setting its parameters would change
            # the user's model (and a fitted model's parameters no longer describe it).
            raise ValueError(
                f"{type(self).__name__} does not set parameters of its fitted source model "
                f"({', '.join(nested)}); fit another source model and pass it as estimator=."
            )
        return super().set_params(**params)

    # ------------------------------------------------------------------ checks

    def _check_source(self):
        src, name = self.estimator, type(self).__name__
        if not isinstance(src, (FineTuneClassifier, FineTuneRegressor)):
            raise TypeError(
                f"{name} adapts a fitted sktransfer FineTuneClassifier or FineTuneRegressor; "
                f"got {type(src).__name__}. Fit one on the source data first."
            )
        try:
            check_is_fitted(src, "net_")
        except NotFittedError:
            raise NotFittedError(
                f"{name} needs a fitted source model: {type(src).__name__} is not fitted yet. "
                "Call its fit on the labelled source data first."
            ) from None
        if self._needs_classes and not is_classifier(src):
            raise ValueError(
                f"{name} minimises the entropy of class probabilities, so it needs a "
                f"classifier; got {type(src).__name__}. For a regressor use AdaBN."
            )
        if self._needs_batchnorm and not batchnorms(src.module_):
            raise ValueError(
                f"{name} works on BatchNorm layers, and the source model "
                f"({type(src).__name__} with backbone {_describe(src.backbone)}) has none. "
                "Use SHOT, or a backbone with BatchNorm (e.g. 'efficientnet_lite0')."
            )
        # A source whose BatchNorm kept pretrained statistics records its rows' own at
        # the end of fit (batchnorm_statistics_); fit folds them in, so the premise holds.
        # A fit with adaptation may have replaced them with the target's already.
        unrecorded = self._needs_batchnorm and not getattr(src, "batchnorm_statistics_", None)
        kept = (
            unrecorded
            and not getattr(src, "target_batchnorm_", False)
            and pretrained_statistics_kept(
                src.module_.body,
                getattr(src, "batchnorm_", "train"),
                getattr(src, "freeze_", getattr(src, "freeze", None)),
            )
        )
        if kept:
            warnings.warn(
                f"{name} replaces the BatchNorm statistics of the source model with the "
                f"target's, but this {type(src).__name__} kept pretrained statistics "
                "(batchnorm_='eval', or BatchNorm in frozen blocks) and has no record of the "
                "source data's (batchnorm_statistics_ is None: it was fitted by partial_fit, "
                "or by an older sktransfer): its head never saw features normalised by the "
                "data's own statistics, and the adapted model can be far worse than the "
                "source one. Refit the source model with fit.",
                UserWarning,
                stacklevel=3,
            )
        elif unrecorded and getattr(src, "wise_", None) not in (None, 1.0):
            warnings.warn(
                f"{name} replaces the BatchNorm statistics of the source model with the "
                f"target's, but this {type(src).__name__} ends at wise_={src.wise_:g} on the "
                "line from its linear probe to its fine-tune, so its statistics are (partly) "
                "the ones it started from, not the source data's, and the adapted model can "
                "be far worse than the source one. Fit the source model with wise=None (the "
                "default) to keep the fine-tune.",
                UserWarning,
                stacklevel=3,
            )
        return src

    # ------------------------------------------------------------------ batches

    def _loader(self, est, X):
        """``batches(order)`` yields model-ready target batches on the model's device, in
        ``batch_size`` rows, taken from the source model's own input pipeline."""
        bb = est.backbone_
        ds = SourceDataset(
            as_source(est, est.modality_, X, reset=False), {}, bb.preprocess, None, bb.collate
        )
        size = self.batch_size or est.batch_size
        device = est.device_
        layout = use_channels_last(device, bb.is_conv)  # as predict feeds the body

        def batches(order):
            """(rows, batch) pairs (``batch_bounds``: no batch of a single row)."""
            for start, stop in batch_bounds(len(order), size):
                rows = order[start:stop]
                x, _ = ds.__getitems__(rows)
                yield rows, to_device(x, device, channels_last=layout)

        return batches, len(ds)

    def _run(self, est, x):
        """(logits, body features) of a batch, as ``TransferModel.forward`` computes them."""
        module = est.module_
        with autocast(est.device_, autocast_dtype(est.device_, est.precision)):
            z = module.body(x)
            return module.head(z).float(), z.float()

    def _reestimate_batchnorm(self, est, X):
        """AdaBN: every BatchNorm's running mean and variance become the target's, averaged
        over all target rows (a cumulative average, not a momentum one); nothing else moves."""
        module = est.module_.to(est.device_)
        batches, n = self._loader(est, X)
        reestimate_batchnorm(
            module, (x for _, x in batches(np.arange(n))), run=lambda x: self._run(est, x)
        )


class AdaBN(_SourceFree):
    """Adaptive Batch Normalisation (Li et al., 2016): the source model with every BatchNorm
    layer's statistics re-estimated on the unlabelled target rows.

    No weight changes, no training: the body normalises target features with the target's
    own mean and variance, so that they arrive at the head standardised as the source's
    did. Works for classifiers and regressors.

    Parameters
    ----------
    estimator : fitted FineTuneClassifier or FineTuneRegressor
        The source model, with BatchNorm layers. Never modified: ``fit`` adapts a copy.
    batch_size : int or None, default=None
        Rows per forward pass; None takes the source model's.

    Attributes
    ----------
    estimator_ : the adapted copy of ``estimator``; ``predict``, ``predict_proba`` and
        ``score`` are its.
    n_target_ : int
        Number of target rows adapted on.
    source_statistics_ : bool
        Whether the source model's record of its rows' BatchNorm statistics
        (``batchnorm_statistics_``, kept by a source fitted on pretrained statistics) was
        folded in first, so that the target's replace the source data's.

    Notes
    -----
    ``sklearn.utils.estimator_checks`` does not apply: its checks build the estimator from
    default arguments, and it needs a fitted source model.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import AdaBN, FineTuneClassifier, SHOT, TENT
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(60, 2)).astype(np.float32)
    >>> ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + np.float32([2.0, -1.0])  # the target: the same rows behind an offset
    >>> body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU())
    >>> source = FineTuneClassifier(body, batchnorm="train", random_state=0).fit(Xs, ys)
    >>> adabn = AdaBN(source).fit(Xt)  # unlabelled target rows only
    >>> print(adabn.n_target_, adabn.predict(Xt).shape)
    60 (60,)
    """

    _needs_classes = False

    def _adapt(self, est, X):
        self._reestimate_batchnorm(est, X)


class _Trained(_SourceFree):
    """Source-free methods that train part of the model on the target rows."""

    _parameter_constraints = {
        **_SourceFree._parameter_constraints,
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _optimise(self, est, X, params, loss_fn, epoch_start=None):
        """Adam over ``params`` for ``max_epochs`` shuffled passes over the target rows;
        ``loss_fn(logits, features, rows)`` is the loss of a batch."""
        module = est.module_.to(est.device_)
        for p in module.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        self.lr_ = self._auto_lr(est) if self.lr == "auto" else float(self.lr)
        opt = torch.optim.Adam(params, lr=self.lr_)
        batches, n = self._loader(est, X)
        rng = check_random_state(self.random_state)
        self.history_ = []
        started = time.perf_counter()
        try:
            for epoch in range(self.max_epochs):
                if epoch_start is not None:
                    epoch_start(epoch)
                self._train_mode(est)
                total, seen = 0.0, 0
                for rows, x in batches(rng.permutation(n)):
                    logits, z = self._run(est, x)
                    loss = loss_fn(logits, z, rows)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total, seen = total + loss.item() * len(rows), seen + len(rows)
                self.history_.append({"epoch": epoch + 1, "train_loss": total / max(seen, 1)})
                if self.verbose:
                    print(
                        f"[{type(self).__name__}] epoch {epoch + 1}/{self.max_epochs} on "
                        f"{n} target rows: loss {self.history_[-1]['train_loss']:.4f} "
                        f"({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
        finally:
            for p in module.parameters():
                p.requires_grad_(True)
            module.eval()
        if self._batch_statistics(est):
            # Predictions use target statistics of the final weights, gathered over every
            # target row, so that a row's prediction does not depend on its batch.
            self._reestimate_batchnorm(est, X)

    def _auto_lr(self, est):
        return float(est.lr_)

    def _batch_statistics(self, est):
        """Whether BatchNorm normalises with the target batches' statistics in training."""
        return True

    def _train_mode(self, est):
        """Everything in eval() (no dropout), except BatchNorm when it uses batch statistics."""
        est.module_.eval()
        if self._batch_statistics(est):
            for m in batchnorms(est.module_):
                m.train()


class TENT(_Trained):
    """Test-time entropy minimisation (Wang et al., ICLR 2021) on unlabelled target rows.

    Only the BatchNorm layers' affine parameters (scale and shift) train, with Adam, to
    minimise the mean entropy of the predictions on target batches, BatchNorm normalising
    with each batch's own statistics. ``predict`` then normalises with the target
    statistics of all target rows (as AdaBN), so a row's prediction does not depend on
    its neighbours in a batch.

    Parameters
    ----------
    estimator : fitted FineTuneClassifier
        The source classifier, with BatchNorm layers. Never modified.
    lr : float or "auto", default="auto"
        Adam's learning rate; "auto" is the rate the source model was fine-tuned with
        (``estimator.lr_``: 1e-4 for convolutional bodies). Resolved: ``lr_``.
    max_epochs : int, default=1
        Passes over the target rows (the paper adapts online, in one pass).
    batch_size : int or None, default=None
        None takes the source model's. Entropy is minimised per batch, so batches of a
        few rows (fewer than the classes) make it degenerate.
    random_state : int, RandomState or None, default=None
        Seeds the order of the target rows.
    verbose : int, default=0
        ``> 0``: one line per epoch (its loss and the seconds so far).

    Attributes
    ----------
    estimator_, n_target_, source_statistics_, lr_
    history_ : list of dict
        Mean entropy of the target predictions over each epoch.

    Notes
    -----
    ``sklearn.utils.estimator_checks`` does not apply: its checks build the estimator from
    default arguments, and it needs a fitted source model.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import AdaBN, FineTuneClassifier, SHOT, TENT
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(60, 2)).astype(np.float32)
    >>> ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + np.float32([2.0, -1.0])  # the target: the same rows behind an offset
    >>> body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU())
    >>> source = FineTuneClassifier(body, batchnorm="train", random_state=0).fit(Xs, ys)
    >>> tent = TENT(source, random_state=0).fit(Xt)
    >>> print(tent.n_target_, tent.predict_proba(Xt).shape, len(tent.history_))
    60 (60, 2) 1
    """

    def __init__(
        self, estimator, *, lr="auto", max_epochs=1, batch_size=None, random_state=None, verbose=0
    ):
        super().__init__(estimator, batch_size=batch_size)
        self.lr = lr
        self.max_epochs = max_epochs
        self.random_state = random_state
        self.verbose = verbose

    def _adapt(self, est, X):
        params = [p for m in batchnorms(est.module_) for p in (m.weight, m.bias) if p is not None]
        if not params:
            raise ValueError(
                "TENT trains the BatchNorm layers' affine parameters, and the source "
                "model's BatchNorm layers have none (affine=False). Use AdaBN or SHOT."
            )
        self._optimise(est, X, params, lambda logits, z, rows: entropy(logits).mean())


class SHOT(_Trained):
    """Source Hypothesis Transfer (Liang et al., ICML 2020): adapt the body, keep the head.

    The head (the source hypothesis) is frozen; the body trains on the target rows to make
    the predictions confident and diverse (information maximisation: the mean entropy of
    the predictions minus the entropy of their mean), plus ``beta`` times the cross-entropy
    to self-supervised pseudo-labels. The pseudo-labels are refreshed before every epoch:
    class centroids in feature space weighted by the predicted probabilities, each row
    labelled by its nearest centroid (cosine distance), and centroids and labels computed
    once more from those labels. BatchNorm trains as in the source model: on batch
    statistics (then re-estimated over all target rows, as AdaBN) unless the source kept
    its pretrained statistics (``batchnorm_ == "eval"``), which then stay.

    Parameters
    ----------
    estimator : fitted FineTuneClassifier
        The source classifier (any body, with or without BatchNorm). Never modified.
    lr : float or "auto", default="auto"
        Adam's learning rate for the body; "auto" is a tenth of the rate the source model
        was fine-tuned with (``estimator.lr_ / 10``). Resolved: ``lr_``.
    max_epochs : int, default=5
        Passes over the target rows.
    beta : float, default=0.3
        Weight of the pseudo-label cross-entropy (the paper's 0.3); 0 is SHOT-IM.
    batch_size : int or None, default=None
        None takes the source model's.
    random_state : int, RandomState or None, default=None
        Seeds the order of the target rows.
    verbose : int, default=0
        ``> 0``: one line per epoch (its loss and the seconds so far).

    Attributes
    ----------
    estimator_, n_target_, lr_
    history_ : list of dict
        Mean training loss over each epoch.
    pseudo_label_agreement_ : list of float
        Per epoch, the share of target rows whose pseudo-label is the model's prediction.

    Notes
    -----
    ``sklearn.utils.estimator_checks`` does not apply: its checks build the estimator from
    default arguments, and it needs a fitted source model.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import AdaBN, FineTuneClassifier, SHOT, TENT
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(60, 2)).astype(np.float32)
    >>> ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + np.float32([2.0, -1.0])  # the target: the same rows behind an offset
    >>> body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU())
    >>> source = FineTuneClassifier(body, batchnorm="train", random_state=0).fit(Xs, ys)
    >>> shot = SHOT(source, max_epochs=2, random_state=0).fit(Xt)
    >>> print(shot.predict(Xt).shape, len(shot.history_))
    (60,) 2
    """

    _needs_batchnorm = False
    _parameter_constraints = {
        **_Trained._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        estimator,
        *,
        lr="auto",
        max_epochs=5,
        beta=0.3,
        batch_size=None,
        random_state=None,
        verbose=0,
    ):
        super().__init__(estimator, batch_size=batch_size)
        self.lr = lr
        self.max_epochs = max_epochs
        self.beta = beta
        self.random_state = random_state
        self.verbose = verbose

    def _adapt(self, est, X):
        labels = {}
        self.pseudo_label_agreement_ = []

        def refresh(epoch):
            if self.beta > 0:
                pseudo, agreement = self._pseudo_labels(est, X)
                labels["y"] = torch.as_tensor(pseudo, device=est.device_)
                self.pseudo_label_agreement_.append(agreement)

        def loss(logits, z, rows):
            p = logits.softmax(1)
            mean = p.mean(0)
            info_max = entropy(logits).mean() + (mean * torch.log(mean + 1e-5)).sum()
            if self.beta == 0:
                return info_max
            return info_max + self.beta * F.cross_entropy(logits, labels["y"][rows])

        body = list(est.module_.body.parameters())
        self._optimise(est, X, body, loss, epoch_start=refresh)

    def _auto_lr(self, est):
        # The whole body moves, unsupervised: a tenth of the source model's rate (SHOT
        # trains its backbone at a tenth of its base rate). On held-out draws of the
        # benchmark (seed 3) the source rate itself scored 0.08 and 0.26 lower.
        return float(est.lr_) / 10

    def _batch_statistics(self, est):
        # The body trains as the source model's did: a source that kept its pretrained
        # BatchNorm statistics (batchnorm_="eval") keeps them, as its head expects them.
        return getattr(est, "batchnorm_", "train") != "eval"

    def _pseudo_labels(self, est, X):
        """Nearest-centroid labels in the body's feature space (cosine), the centroids first
        weighted by the predicted probabilities, then by the labels of that first pass.
        BatchNorm normalises as in training."""
        self._train_mode(est)
        batches, n = self._loader(est, X)
        feats, probs = [], []
        with torch.no_grad():
            for _, x in batches(np.arange(n)):
                logits, z = self._run(est, x)
                feats.append(z)
                probs.append(logits.softmax(1))
        Z = torch.cat(feats)
        P = torch.cat(probs)
        Z = F.normalize(torch.cat([Z, torch.ones(len(Z), 1, device=Z.device)], 1), dim=1)
        weights = P
        for _ in range(2):
            centroids = weights.T @ Z / (weights.sum(0)[:, None] + 1e-8)
            labels = (Z @ F.normalize(centroids, dim=1).T).argmax(1)
            weights = F.one_hot(labels, P.shape[1]).float()
        agreement = float((labels == P.argmax(1)).float().mean())
        return labels, agreement


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row's softmax."""
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def _describe(backbone) -> str:
    return repr(backbone) if isinstance(backbone, str) else type(backbone).__name__


def _n_rows(X):
    try:
        return len(X)
    except TypeError:
        return X.shape[0]


def _target_rows(X, y, sample_domain, *, regression):
    """The rows of ``X`` to adapt on (see ``_SourceFree.fit``), as a new selection."""
    n = _n_rows(X)
    if sample_domain is not None:
        rows = check_sample_domain(sample_domain, n) < 0
        how = "sample_domain has no negative (target) id"
    elif y is not None:
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"X has {n} rows but y has {len(y)}.")
        marker = unlabelled_mask(y, regression=regression)
        rows = marker if marker.any() else np.ones(n, bool)
        how = ""
    else:
        return X
    if not rows.any():
        raise ValueError(f"No target rows to adapt on: {how}.")
    if rows.all():
        return X
    idx = np.flatnonzero(rows)
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    return X[idx]
