"""Multi-task transfer: one shared pretrained body, one head per task, trained together.

Each task is a column of y: classification or regression, its labels missing on some
rows (NaN/None, or -1 for a class) without those rows leaving the other tasks. The loss
is the weighted mean of the tasks' losses (``task_weights``); the body's features serve
every head, so each task's labels shape the features the others use.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import MultiOutputMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ._finetune_base import FINETUNE_CONSTRAINTS, FineTuneBase
from ._targets import class_index, stack_columns
from .backbones import param_blocks
from .training import BranchedBody, LossTask, TaskHeads

KINDS = ("classification", "regression")


class MultiTaskFineTune(MultiOutputMixin, FineTuneBase):
    """Fine-tune one pretrained body for several tasks at once, a head per task.

    y holds one column per task: a pandas DataFrame (its columns name the tasks) or a
    2-D array (tasks named 0, 1, ...). Each column is a classification task (a softmax
    head) or a regression task (a linear output on the standardised target); a row whose
    label for a task is missing (NaN or None, or -1 in an integer classification column,
    as in ``SelfTrainingClassifier``) still trains the other tasks. The loss is
    ``Σ_t w_t L_t / Σ_t w_t``, each ``L_t`` the mean loss over the rows labelled for task
    t. The recipe is ``FineTuneClassifier``'s: linear probes of every head on the cached
    frozen features, then the whole net with layer-wise learning rates.

    Parameters
    ----------
    backbone : str, nn.Module or fitted estimator
        As in ``PretrainedFeatures``; its body is shared by every task.
    tasks : "auto", list or dict, default="auto"
        The kind of each column, "classification" or "regression". "auto" reads it from
        the labelled values as scikit-learn's ``type_of_target`` does (continuous values
        are regression, anything else classes); a list gives every column's kind, a dict
        ``{column: kind}`` some of them (the others "auto").
    task_weights : None, dict or list, default=None
        Relative weights of the tasks' losses, ``{column: weight}`` or one per column
        (non-negative, not all zero); None weighs every task 1. A grid-searchable
        parameter.
    task_hidden : int or None, default=None
        Width of a task-specific hidden layer (Linear, ReLU) in every head; None gives
        each task a linear head. Hidden heads are not linear, so instead of the linear
        probe they first train on the cached frozen features (the MLP recipe: Adam at
        1e-2 for about 300 steps), then with the body.
    shared_blocks : int or None, default=None
        How much of the body the tasks share. None: all of it (hard parameter
        sharing, one forward pass). An int k: the body's first k blocks (as
        ``sktransfer.backbones.param_blocks`` counts them; 0 shares nothing) are shared,
        and each task trains its own copy of the later blocks, all starting from the
        pretrained weights. Each task's copy runs on every batch, so training and
        prediction cost one body per task. The fitted ``backbone_`` (for transfer to
        another estimator) is the first task's branch.
    class_weight : None, "balanced" or dict, default=None
        Per-class loss weights of the classification tasks: "balanced" for all, or
        ``{column: "balanced" or {class: weight}}``.
    weights, freeze, linear_probe, max_epochs, lr, lr_mult, batch_size, weight_decay, \
l2sp, batchnorm, wise, image_size, augment, layer, pooling, early_stopping, \
validation_fraction, n_iter_no_change, warm_start, device, precision, cache, \
num_workers, random_state, max_length, missing, verbose, callbacks, strategy, adapter, \
adapter_rank, adapter_alpha, adapter_dropout, adapter_targets
        As in ``FineTuneClassifier``; early stopping holds out rows at random and
        monitors the weighted multi-task loss.

    Attributes
    ----------
    tasks_ : list
        The task names: y's columns.
    task_kinds_ : dict
        ``{task: "classification" or "regression"}``.
    classes_ : dict
        ``{task: classes}`` for the classification tasks.
    y_mean_, y_scale_ : dict
        ``{task: float}``: the standardisation of the regression targets.
    n_outputs_ : int
        The number of tasks.
    lr_, lr_mult_, max_epochs_, batchnorm_, freeze_, family_, probe_loss_, probe_regularization_, \
net_, backbone_, history_, image_size_, batchnorm_statistics_
        As in ``FineTuneClassifier`` (``probe_regularization_`` a list, one per task).

    Examples
    --------
    Auto MPG's fuel consumption (regression) and region of origin (classes) from the
    car's other measurements, with origin known for only a third of the cars:

    >>> import numpy as np
    >>> import pandas as pd
    >>> from mlxtend.data import autompg_data
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from torch import nn
    >>> from sktransfer import MultiTaskFineTune
    >>> X, mpg = autompg_data()  # cylinders ... model year, origin, (car name: NaN)
    >>> Y = pd.DataFrame({"mpg": mpg, "origin": X[:, 6].astype(int)})
    >>> Y.loc[np.arange(len(Y)) % 3 != 0, "origin"] = np.nan  # two cars in three unlabelled
    >>> X_train, X_test, Y_train, Y_test = train_test_split(X[:, :6], Y, random_state=0)
    >>> body = nn.Sequential(nn.LazyLinear(32), nn.ReLU())
    >>> model = make_pipeline(StandardScaler(), MultiTaskFineTune(body, random_state=0))
    >>> model = model.fit(X_train, Y_train)
    >>> model[-1].task_kinds_
    {'mpg': 'regression', 'origin': 'classification'}
    >>> model.predict(X_test).columns.tolist()
    ['mpg', 'origin']
    >>> scores = model[-1].score_tasks(model[0].transform(X_test), Y_test)
    >>> bool(scores["mpg"] > 0.8), bool(scores["origin"] > 0.6)
    (True, True)
    """

    _task = "multitask"

    _parameter_constraints = {
        **FINETUNE_CONSTRAINTS,
        "tasks": [StrOptions({"auto"}), list, tuple, dict],
        "task_weights": [None, dict, list, tuple],
        "task_hidden": [None, Interval(Integral, 1, None, closed="left")],
        "shared_blocks": [None, Interval(Integral, 0, None, closed="left")],
        "class_weight": [None, StrOptions({"balanced"}), dict],
    }

    def __init__(
        self,
        backbone,
        *,
        tasks="auto",
        task_weights=None,
        task_hidden=None,
        shared_blocks=None,
        class_weight=None,
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
        self.tasks = tasks
        self.task_weights = task_weights
        self.task_hidden = task_hidden
        self.shared_blocks = shared_blocks
        self.class_weight = class_weight
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
    def fit(self, X, y, sample_weight=None):
        """Fine-tune the shared body and every task's head on ``(X, y)``."""
        return self._fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current weights; the first call
        takes ``classes`` as ``{task: classes}`` for tasks whose classes it may not all
        see."""
        return self._partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    # ------------------------------------------------------------------ targets

    def _check_target(self, y, sample_domain):
        """y as an (n, n_tasks) object array, with its column names and form for
        ``_encode_target``."""
        columns, names, frame, one_d = _columns_of(y)
        out = np.empty((len(columns[0]), len(columns)), dtype=object)
        for j, c in enumerate(columns):
            out[:, j] = c
        return out, (names, frame, one_d)

    def _encode_target(self, y, about_y, labelled, *, reset, classes=None):
        names, frame, one_d = about_y
        if reset:
            self._y_frame, self._y_1d = frame, one_d
            self._fit_tasks(y, names, classes)
        elif list(names) != list(self.tasks_):
            raise ValueError(f"y's tasks {list(names)} are not the fitted tasks {self.tasks_}.")
        enc = np.full(y.shape, np.nan, dtype=np.float32)
        for j, name in enumerate(self.tasks_):
            present, values = _labels(y[:, j], self.task_kinds_[name] == "classification")
            if self.task_kinds_[name] == "classification":
                enc[present, j] = class_index(self.classes_[name], values, f"y[{name!r}]")
            else:
                enc[present, j] = (values.astype(np.float64) - self.y_mean_[name]) / (
                    self.y_scale_[name]
                )
        return enc

    def _fit_tasks(self, y, names, classes):
        kinds = self._task_kinds(y, names)
        self.tasks_, self.task_kinds_ = list(names), kinds
        self.n_outputs_ = len(names)
        self.classes_, self.y_mean_, self.y_scale_ = {}, {}, {}
        self._class_weights = {}
        for j, name in enumerate(names):
            present, values = _labels(y[:, j], kinds[name] == "classification")
            if not present.any():
                raise ValueError(f"y[{name!r}] has no labelled row: every value is missing.")
            if kinds[name] == "classification":
                given = None if classes is None else classes.get(name)
                self.classes_[name] = np.unique(values) if given is None else np.asarray(given)
                self._class_weights[name] = self._task_class_weight(name, values)
            else:
                values = values.astype(np.float64)
                if not np.isfinite(values).all():
                    raise ValueError(f"y[{name!r}] contains infinity.")
                self.y_mean_[name] = float(values.mean())
                self.y_scale_[name] = float(values.std()) if values.std() > 0 else 1.0
        self._task_weight = self._weights(names)

    def _task_kinds(self, y, names):
        given = self.tasks
        if isinstance(given, (list, tuple)):
            if len(given) != len(names):
                raise ValueError(
                    f"tasks lists {len(given)} kinds but y has {len(names)} columns {names}."
                )
            given = dict(zip(names, given))
        elif given == "auto":
            given = {}
        unknown = [k for k in given if k not in names]
        if unknown:
            raise ValueError(f"tasks names columns {unknown} that y does not have: {names}.")
        kinds = {}
        for j, name in enumerate(names):
            kind = given.get(name, "auto")
            if kind == "auto":
                _, values = _labels(y[:, j], classification=False)
                kind = "regression" if _is_continuous(values) else "classification"
            if kind not in KINDS:
                raise ValueError(f"tasks[{name!r}] is {kind!r}; expected one of {KINDS}.")
            kinds[name] = kind
        return kinds

    def _weights(self, names):
        tw = self.task_weights
        if tw is None:
            return {n: 1.0 for n in names}
        if isinstance(tw, dict):
            unknown = [k for k in tw if k not in names]
            if unknown:
                raise ValueError(f"task_weights names tasks {unknown} not in y's {names}.")
            out = {n: float(tw.get(n, 1.0)) for n in names}
        else:
            if len(tw) != len(names):
                raise ValueError(f"task_weights has {len(tw)} values for {len(names)} tasks.")
            out = {n: float(v) for n, v in zip(names, tw)}
        bad = {n: v for n, v in out.items() if not (np.isfinite(v) and v >= 0)}
        if bad or sum(out.values()) <= 0:
            raise ValueError(
                f"task_weights must be finite, non-negative and not all zero; got {out}."
            )
        return out

    def _task_class_weight(self, name, values):
        cw = self.class_weight
        if isinstance(cw, dict):
            if any(k not in self.tasks_ for k in cw):
                raise ValueError(
                    f"class_weight names tasks {[k for k in cw if k not in self.tasks_]} not "
                    f"in y's {self.tasks_}."
                )
            cw = cw.get(name)
        if cw is None:
            return None
        classes = self.classes_[name]
        present = np.isin(classes, values)
        weights = np.ones(len(classes))
        weights[present] = compute_class_weight(cw, classes=classes[present], y=values)
        return tuple(float(v) for v in weights)

    def _tasks(self):
        out, start = [], 0
        for j, name in enumerate(self.tasks_):
            if self.task_kinds_[name] == "classification":
                size, kind = len(self.classes_[name]), "softmax"
            else:
                size, kind = 1, "mse"
            out.append(
                LossTask(
                    kind,
                    (start, start + size),
                    (j, j + 1),
                    self._task_weight[name],
                    self._class_weights.get(name),
                    name,
                )
            )
            start += size
        return out

    def _n_outputs(self):
        return self._tasks()[-1].outputs[1]

    def _make_body(self, backbone):
        if self.shared_blocks is None or len(self.tasks_) == 1:
            return backbone.module
        blocks = param_blocks(backbone.module)
        if self.shared_blocks >= len(blocks):
            raise ValueError(
                f"shared_blocks={self.shared_blocks} but the body has {len(blocks)} blocks "
                "(sktransfer.backbones.param_blocks): use at most "
                f"{len(blocks) - 1}, or None to share the whole body."
            )
        private = {n for b in blocks[self.shared_blocks :] for n in b}
        return BranchedBody(backbone.module, len(self.tasks_), private)

    def _make_head(self, n_features):
        return TaskHeads(
            n_features,
            [t.outputs[1] - t.outputs[0] for t in self._tasks()],
            hidden=self.task_hidden or 0,
        )

    def _check_params(self):
        super()._check_params()
        if isinstance(self.class_weight, dict) and self.class_weight:
            for name, cw in self.class_weight.items():
                if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
                    raise ValueError(
                        f"class_weight[{name!r}] is {cw!r:.40}; expected 'balanced', a dict "
                        "{class: weight} or None."
                    )

    # ------------------------------------------------------------------ predict

    def _outputs(self, X):
        out = self._forward(X).astype(np.float64)
        return {t.name: out[:, t.outputs[0] : t.outputs[1]] for t in self._tasks()}

    def predict(self, X):
        """One column per task: classes for classification tasks, values for regression;
        a DataFrame (y's columns, X's index when X has one) when y was a DataFrame, a 1-D
        array when y was 1-D."""
        check_is_fitted(self, "net_")
        cols = []
        for name, out in self._outputs(X).items():
            if self.task_kinds_[name] == "classification":
                cols.append(self.classes_[name][np.argmax(out, axis=1)])
            else:
                cols.append(out[:, 0] * self.y_scale_[name] + self.y_mean_[name])
        if self._y_frame:
            import pandas as pd

            index = X.index if isinstance(X, (pd.DataFrame, pd.Series)) else None
            return pd.DataFrame(dict(zip(self.tasks_, cols)), index=index)
        if self._y_1d:
            return cols[0]
        return stack_columns(cols)

    def _has_classes(self):
        return not hasattr(self, "task_kinds_") or "classification" in self.task_kinds_.values()

    @available_if(_has_classes)
    def predict_proba(self, X):
        """Class probabilities of the classification tasks: a list of (n, n_classes)
        arrays in ``tasks_`` order, as ``MultiOutputClassifier`` returns them (one array
        when y was 1-D). ``dict(zip(...))`` with the classification tasks names them."""
        check_is_fitted(self, "net_")
        out = [
            torch.softmax(torch.from_numpy(o), dim=1).numpy()
            for name, o in self._outputs(X).items()
            if self.task_kinds_[name] == "classification"
        ]
        return out[0] if self._y_1d else out

    def score_tasks(self, X, y, sample_weight=None):
        """``{task: score}``: accuracy for classification tasks, R² for regression, each
        on the rows where y labels that task (missing labels as in ``fit``)."""
        check_is_fitted(self, "net_")
        columns, names, _, _ = _columns_of(y)
        if list(names) != list(self.tasks_):
            raise ValueError(f"y's tasks {list(names)} are not the fitted tasks {self.tasks_}.")
        pred = self.predict(X)
        pred_cols = (
            [pred[n].to_numpy() for n in self.tasks_]
            if self._y_frame
            else ([pred] if self._y_1d else list(np.asarray(pred).T))
        )
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        scores = {}
        for name, col, p in zip(self.tasks_, columns, pred_cols):
            p = np.array(p.tolist()) if p.dtype == object else p
            classification = self.task_kinds_[name] == "classification"
            present, values = _labels(col, classification)
            w = None if sw is None else sw[present]
            if not present.any():
                scores[name] = np.nan
            elif classification:
                scores[name] = float(accuracy_score(values, p[present], sample_weight=w))
            else:
                scores[name] = float(
                    r2_score(values.astype(float), p[present].astype(float), sample_weight=w)
                )
        return scores

    def score(self, X, y, sample_weight=None):
        """The mean over tasks of ``score_tasks``: accuracy (classification) and R²
        (regression), each on its labelled rows; tasks without labelled rows are left
        out. Higher is better, so it serves GridSearchCV as it is."""
        scores = [s for s in self.score_tasks(X, y, sample_weight).values() if s == s]
        return float(np.mean(scores)) if scores else np.nan

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


def _columns_of(y):
    """(columns as 1-D arrays, their names, whether y is a DataFrame, whether 1-D)."""
    if hasattr(y, "columns") and hasattr(y, "iloc"):  # a DataFrame
        if y.shape[1] == 0:
            raise ValueError("y is a DataFrame without columns: no task to learn.")
        cols = [
            y.iloc[:, j].astype(object).where(y.iloc[:, j].notna(), None).to_numpy()
            for j in range(y.shape[1])
        ]
        return cols, list(y.columns), True, False
    if hasattr(y, "name") and hasattr(y, "iloc"):  # a Series: one task
        return [y.astype(object).where(y.notna(), None).to_numpy()], [y.name], False, True
    arr = np.asarray(y)
    if arr.ndim == 1:
        return [arr], [0], False, True
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(
            f"y must be 1-D, 2-D (one column per task) or a DataFrame; got shape {arr.shape}."
        )
    return list(arr.T), list(range(arr.shape[1])), False, False


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, and pandas' NA/NaT that slipped through
    except TypeError:
        return True


def _labels(col, classification):
    """(mask of labelled rows, their labels with a dtype of their own). Missing: NaN or
    None, and -1 in an integer classification column."""
    col = np.asarray(col)
    if col.dtype.kind == "f":
        present = ~np.isnan(col)
    elif col.dtype == object:
        present = np.array([not _is_missing(v) for v in col], dtype=bool)
    else:
        present = np.ones(len(col), dtype=bool)
    values = np.array(col[present].tolist()) if col.dtype == object else col[present]
    if values.size == 0:
        return present, values
    if classification and values.dtype.kind in "iuf" and _integral(values):
        keep = values != -1
        idx = np.flatnonzero(present)
        present = present.copy()
        present[idx[~keep]] = False
        values = values[keep]
        if values.dtype.kind == "f":  # integer labels that NaN made float
            values = values.astype(np.int64)
    return present, values


def _integral(values) -> bool:
    return values.dtype.kind in "iu" or bool(np.all(np.mod(values, 1) == 0))


def _is_continuous(values) -> bool:
    if values.size == 0 or values.dtype.kind not in "iuf":
        return False
    return type_of_target(values) == "continuous"
