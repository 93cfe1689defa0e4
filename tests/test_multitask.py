"""Multi-output and multi-task fine-tuning: multilabel, multiclass-multioutput,
multi-target and mixed tasks on one shared body, with missing labels and task weights."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, make_multilabel_classification
from sklearn.model_selection import GridSearchCV
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune
from sktransfer.training import LossTask, task_loss


def mlp(width=16):
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU())


def small_convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())


def images(n=48, seed=0):
    """Coloured noise with two learnable properties: the class (red/bright/plain) and
    whether the left half is darkened."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 12, 12, 3)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :, 0] = 1.0
    X[y == 2] = np.clip(X[y == 2] + 0.5, 0, 1)
    dark = (np.arange(n) // 3) % 2
    X[dark == 1, :, :6] *= 0.2
    return X, y, dark


@pytest.fixture(scope="module")
def digits_tasks():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Y = pd.DataFrame({"digit": y, "parity": np.where(y % 2 == 0, "even", "odd")})
    return X[:600], Y.iloc[:600].reset_index(drop=True), X[600:900], Y.iloc[600:900]


TEXTS = [
    "the striker scored a late goal",
    "a slow braise of beef in red wine",
    "the goalkeeper saved a penalty",
    "whisk the eggs with sugar until pale",
    "the team won the league on goal difference",
    "bake the bread until the crust is golden",
] * 4


# ----------------------------------------------------------------- the loss, task by task


def test_task_loss_ignores_missing_labels_and_weighs_tasks():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor(
        [[0, 0.5], [1, np.nan], [2, -1.0], [np.nan, 0.2], [0, 1.0], [1, np.nan]],
        dtype=torch.float32,
    )
    tasks = [
        LossTask("softmax", (0, 3), (0, 1), weight=1.0),
        LossTask("mse", (3, 4), (1, 2), weight=3.0),
    ]
    loss = task_loss(logits, y, torch.ones(6), tasks)
    loss.backward()
    g = logits.grad
    # A row missing a task's label gives that task's outputs no gradient...
    assert torch.all(g[3, :3] == 0) and torch.all(g[[1, 5], 3] == 0)
    # ...and still trains the other task.
    assert torch.all(g[3, 3] != 0) and torch.all(g[[1, 5], :3] != 0)
    # The loss is the weighted mean of each task's mean over its labelled rows.
    lab = [0, 1, 2, 4, 5]
    ce = torch.nn.functional.cross_entropy(logits[lab, :3], y[lab, 0].long())
    reg = [0, 2, 3, 4]
    mse = ((logits[reg, 3] - y[reg, 1]) ** 2).mean()
    assert loss.item() == pytest.approx(((ce + 3 * mse) / 4).item(), rel=1e-6)


# ------------------------------------------------------------------ FineTuneClassifier 2-D y


def test_multilabel_y_gets_one_sigmoid_output_per_label():
    X, Y = make_multilabel_classification(n_samples=240, n_classes=4, random_state=0)
    clf = FineTuneClassifier(mlp(), random_state=0).fit(X[:160], Y[:160])
    assert [t.kind for t in clf.net_.criterion_.tasks] == ["sigmoid"] * 4
    np.testing.assert_array_equal(clf.classes_, np.arange(4))
    proba = clf.predict_proba(X[160:])
    assert proba.shape == (80, 4) and np.all((proba >= 0) & (proba <= 1))
    # Independent labels: the rows' probabilities do not sum to one.
    assert not np.allclose(proba.sum(1), 1.0)
    pred = clf.predict(X[160:])
    assert pred.shape == (80, 4) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert clf.decision_function(X[160:]).shape == (80, 4)
    # Per label, better than predicting each label's majority value.
    majority = np.maximum(Y[160:].mean(0), 1 - Y[160:].mean(0))
    assert np.mean((pred == Y[160:]).mean(0) - majority) > 0.05


def test_multiclass_multioutput_y_gets_one_softmax_head_per_column(digits_tasks):
    X, Y, Xt, Yt = digits_tasks
    y = Y.to_numpy()  # an object array: int digits beside "even"/"odd" strings
    clf = FineTuneClassifier(mlp(32), random_state=0).fit(X, y)
    assert [t.kind for t in clf.net_.criterion_.tasks] == ["softmax", "softmax"]
    assert isinstance(clf.classes_, list)
    np.testing.assert_array_equal(clf.classes_[0], np.arange(10))
    np.testing.assert_array_equal(clf.classes_[1], ["even", "odd"])
    proba = clf.predict_proba(Xt)
    assert [p.shape for p in proba] == [(300, 10), (300, 2)]
    np.testing.assert_allclose([p.sum(1) for p in proba], 1.0, atol=1e-6)
    pred = clf.predict(Xt)
    assert pred.shape == (300, 2)
    yt = Yt.to_numpy()
    assert (pred[:, 0] == yt[:, 0]).mean() > 0.85
    assert (pred[:, 1] == yt[:, 1]).mean() > 0.85
    # score: the subset accuracy, as MultiOutputClassifier.score.
    assert clf.score(Xt, yt) == pytest.approx(np.all(pred == yt, axis=1).mean())


def test_multioutput_class_weight_is_balanced_per_column():
    X, Y = make_multilabel_classification(n_samples=120, n_classes=3, random_state=1)
    clf = FineTuneClassifier(mlp(), class_weight="balanced", random_state=0)
    clf.fit(X, Y)
    for j, t in enumerate(clf.net_.criterion_.tasks):
        pos = Y[:, j].mean()
        assert t.class_weight == pytest.approx((0.5 / (1 - pos), 0.5 / pos))
    with pytest.raises(ValueError, match="list of 3 dicts"):
        FineTuneClassifier(mlp(), class_weight={0: 1.0, 1: 2.0}).fit(X, Y)


def test_multi_output_y_on_images_and_text(tiny_dir):
    X, y, dark = images()
    Y = np.column_stack([y, dark])
    clf = FineTuneClassifier(small_convnet(), random_state=0).fit(X, Y)
    assert [len(c) for c in clf.classes_] == [3, 2]
    assert clf.predict(X).shape == (48, 2)
    reg = FineTuneRegressor(small_convnet(), random_state=0).fit(X, Y.astype(float))
    assert reg.predict(X).shape == (48, 2) and reg.n_outputs_ == 2

    texts = np.array(TEXTS)
    sport = np.array([i % 2 == 0 for i in range(len(TEXTS))], dtype=int)
    labels = np.column_stack([sport, 1 - sport, np.arange(len(TEXTS)) % 2])
    clf = FineTuneClassifier(tiny_dir, random_state=0).fit(texts, labels)
    assert clf.predict_proba(texts).shape == (len(TEXTS), 3)


def test_one_column_2d_y_is_raveled_as_sklearn_does():
    X, Y = make_multilabel_classification(n_samples=60, n_classes=2, random_state=0)
    with pytest.warns(Warning, match="column-vector y"):
        clf = FineTuneClassifier(mlp(), random_state=0).fit(X, Y[:, :1])
    assert clf.predict(X).shape == (60,)


# ------------------------------------------------------------------------ MultiTaskFineTune


def mixed(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = pd.DataFrame(
        {
            "value": X[:, 0] * 2 + X[:, 1] + 0.1 * rng.normal(size=n),
            "kind": np.where(X[:, 0] + X[:, 2] > 0, "up", "down"),
            "level": (X[:, 1] > 0).astype(int) + (X[:, 1] > 1).astype(int),
        }
    )
    return X, Y


def test_mixed_tasks_from_a_dataframe():
    X, Y = mixed()
    mt = MultiTaskFineTune(mlp(32), random_state=0).fit(X[:150], Y[:150])
    assert mt.tasks_ == ["value", "kind", "level"]
    assert mt.task_kinds_ == {
        "value": "regression",
        "kind": "classification",
        "level": "classification",
    }
    np.testing.assert_array_equal(mt.classes_["kind"], ["down", "up"])
    np.testing.assert_array_equal(mt.classes_["level"], [0, 1, 2])
    Xt = pd.DataFrame(X[150:], index=np.arange(1000, 1050))
    pred = mt.predict(Xt)
    assert isinstance(pred, pd.DataFrame) and list(pred.columns) == ["value", "kind", "level"]
    assert list(pred.index) == list(range(1000, 1050))
    assert set(pred["kind"]) <= {"down", "up"}
    proba = mt.predict_proba(X[150:])  # the classification tasks', in order
    assert [p.shape for p in proba] == [(50, 2), (50, 3)]
    np.testing.assert_allclose([p.sum(1) for p in proba], 1.0, atol=1e-6)
    regression_only = MultiTaskFineTune(mlp()).fit(X, Y[["value"]])
    assert not hasattr(regression_only, "predict_proba")
    scores = mt.score_tasks(X[150:], Y[150:])
    assert scores["value"] > 0.8 and scores["kind"] > 0.8 and scores["level"] > 0.7
    assert mt.score(X[150:], Y[150:]) == pytest.approx(np.mean(list(scores.values())))


def test_rows_missing_one_label_still_train_the_others_and_minus_one_equals_nan():
    X, Y = mixed()
    Y_nan = Y.copy()
    Y_nan.loc[::2, "level"] = np.nan  # NaN turns the column into floats
    Y_nan.loc[1::4, "kind"] = None
    Y_neg = Y.copy()
    Y_neg.loc[::2, "level"] = -1
    Y_neg.loc[1::4, "kind"] = None
    before = Y_nan.copy()
    a = MultiTaskFineTune(mlp(), random_state=0).fit(X, Y_nan)
    b = MultiTaskFineTune(mlp(), random_state=0).fit(X, Y_neg)
    pd.testing.assert_frame_equal(Y_nan, before)  # the user's y is not written to
    np.testing.assert_array_equal(a.classes_["level"], [0, 1, 2])
    pd.testing.assert_frame_equal(a.predict(X), b.predict(X))
    # The regression task learnt from every row, also those missing the other labels.
    assert a.score_tasks(X, Y)["value"] > 0.9
    # score reads missing labels as fit does: only the labelled rows count.
    assert a.score_tasks(X, Y_nan)["level"] == pytest.approx(
        (a.predict(X)["level"][1::2] == Y["level"][1::2]).mean()
    )


def test_task_weights_steer_the_shared_training():
    X, Y = mixed(seed=1)
    Y = Y[["value", "kind"]]

    def train_scores(w):
        mt = MultiTaskFineTune(mlp(8), task_weights=w, linear_probe=False, random_state=0)
        return mt.fit(X, Y).score_tasks(X, Y)

    value_first = train_scores({"value": 1.0, "kind": 0.0})
    kind_first = train_scores({"value": 0.0, "kind": 1.0})
    assert value_first["value"] > kind_first["value"] + 0.2
    assert kind_first["kind"] > value_first["kind"] + 0.1


def test_grid_search_over_task_weights_and_pickle_and_clone():
    X, Y = mixed(n=120)
    mt = MultiTaskFineTune(mlp(), random_state=0)
    search = GridSearchCV(
        mt, {"task_weights": [None, {"value": 3.0}]}, cv=2, error_score="raise"
    ).fit(X, Y)
    assert len(search.cv_results_["mean_test_score"]) == 2
    best = search.best_estimator_
    again = pickle.loads(pickle.dumps(best))
    pd.testing.assert_frame_equal(again.predict(X), best.predict(X))
    fresh = clone(best)
    assert (
        not hasattr(fresh, "net_")
        and fresh.get_params()["task_weights"] == (best.get_params()["task_weights"])
    )


def test_array_y_with_tasks_description_and_hidden_heads():
    X, Y = mixed()
    y = np.column_stack([Y["value"], Y["level"]])  # floats: 2.0 could be a value or a class
    mt = MultiTaskFineTune(mlp(), tasks=["regression", "classification"], task_hidden=16)
    mt.set_params(random_state=0).fit(X, y)
    assert mt.task_kinds_ == {0: "regression", 1: "classification"}
    assert [len(h) for h in mt.module_.head.heads] == [3, 3]  # Linear, ReLU, Linear each
    pred = mt.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (200, 2)
    assert set(np.unique(pred[:, 1])) <= {0, 1, 2}
    assert mt.history_[0]["phase"] == "head"  # hidden heads train on cached features first
    assert mt.score(X, y) > 0.8


def test_early_stopping_layerwise_freezing_and_warm_start_work_as_single_task():
    X, Y = mixed()
    body = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    mt = MultiTaskFineTune(body, early_stopping=True, freeze=1, random_state=0).fit(X, Y)
    assert "valid_loss" in mt.net_.history[-1]
    layers = mt.module_.body.body
    first, second = (layers[i].weight.detach().clone() for i in (0, 2))
    mt.set_params(warm_start=True, max_epochs=1).fit(X, Y)
    assert torch.equal(first, layers[0].weight)  # block 0 stays frozen
    assert not torch.equal(second, layers[2].weight)  # block 1 trains on


def test_multitask_on_images_and_text(tiny_dir):
    X, y, dark = images()
    Y = pd.DataFrame({"colour": y, "darkness": dark * 1.5 + 0.1})
    mt = MultiTaskFineTune(small_convnet(), random_state=0).fit(X, Y)
    assert mt.task_kinds_ == {"colour": "classification", "darkness": "regression"}
    assert mt.predict(X).shape == (48, 2)
    branched = MultiTaskFineTune(small_convnet(), shared_blocks=1, random_state=0)
    assert branched.fit(X, Y).predict(X).shape == (48, 2)
    texts = np.array(TEXTS)
    Y = pd.DataFrame(
        {"sport": [i % 2 == 0 for i in range(len(TEXTS))], "length": [len(t) for t in TEXTS]}
    )
    mt = MultiTaskFineTune(tiny_dir, tasks={"length": "regression"})
    mt.set_params(random_state=0).fit(texts, Y)
    assert mt.predict(texts)["sport"].dtype == np.dtype(bool)


@pytest.mark.parametrize(
    "params, y_fix, match",
    [
        ({"tasks": ["regression"]}, None, "tasks lists 1 kinds but y has 3 columns"),
        ({"tasks": {"colour": "regression"}}, None, "columns \\['colour'\\] that y does not"),
        ({"tasks": {"kind": "ranking"}}, None, "expected one of"),
        ({"task_weights": {"value": -1.0}}, None, "non-negative"),
        ({"task_weights": [1.0, 2.0]}, None, "2 values for 3 tasks"),
        ({"class_weight": {"colour": "balanced"}}, None, "class_weight names tasks"),
        ({}, "empty", "y\\['level'\\] has no labelled row"),
    ],
)
def test_bad_multitask_inputs_name_what_is_wrong(params, y_fix, match):
    X, Y = mixed(n=40)
    if y_fix == "empty":
        Y = Y.astype({"level": float})
        Y["level"] = np.nan
    with pytest.raises(ValueError, match=match):
        MultiTaskFineTune(mlp(), **params).fit(X, Y)


def test_predicting_with_other_tasks_is_an_error():
    X, Y = mixed(n=60)
    mt = MultiTaskFineTune(mlp(), random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="not the fitted tasks"):
        mt.score(X, Y[["kind", "value", "level"]])


def test_shared_blocks_gives_each_task_its_own_copy_of_the_later_blocks():
    X, Y = mixed()
    body = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    mt = MultiTaskFineTune(body, shared_blocks=1, random_state=0).fit(X, Y)
    copies = [c.body for c in mt.module_.body.copies]  # each a Pooled(Sequential)
    assert len(copies) == 3
    # The first block is one tensor for all tasks; the second trained apart per task.
    assert copies[0][0].weight is copies[1][0].weight is copies[2][0].weight
    assert not torch.equal(copies[0][2].weight, copies[1][2].weight)
    n_params = sum(p.numel() for p in mt.module_.body.parameters())
    assert n_params == (6 * 16 + 16) + 3 * (16 * 16 + 16)
    assert mt.score(X, Y) > 0.8
    again = pickle.loads(pickle.dumps(mt))
    pd.testing.assert_frame_equal(again.predict(X), mt.predict(X))
    assert again.backbone_.module is again.module_.body.copies[0]
    with pytest.raises(ValueError, match="shared_blocks=2 but the body has 2 blocks"):
        MultiTaskFineTune(body, shared_blocks=2).fit(X, Y)
