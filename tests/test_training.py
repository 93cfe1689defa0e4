"""The fine-tuning engine (``sktransfer.training``) on its own: the recipe, the optimiser
groups and their schedule, the criterion, the probe solver, L2-SP and branched bodies."""

import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier
from sktransfer.training import (
    L2SP,
    PROBE_CS,
    PROBE_CV,
    PROBE_LRCV_OPTIONS,
    RECIPES,
    BranchedBody,
    LossTask,
    OneCycle,
    TransferCriterion,
    TransferModel,
    TransferNet,
    assemble,
    body_family,
    budget_epochs,
    fit_linear_probe,
    resolve_batchnorm,
    resolve_lr,
    task_loss,
)


@pytest.mark.parametrize(
    ("family", "pretrained", "adapter", "want"),
    [
        ("conv", True, None, 1e-4),
        ("conv", False, None, 1e-3),
        ("conv", True, "lora", 1e-3),
        ("conv", False, "lora", 1e-3),  # fresh weights: the scratch rate, adapter or not
        ("transformer", True, None, 5e-5),
        ("transformer", False, None, 5e-4),
        ("transformer", True, "bitfit", 5e-4),
        ("mlp", True, None, 1e-2),
        ("mlp", False, None, 1e-2),
    ],
)
def test_auto_learning_rate_per_family(family, pretrained, adapter, want):
    assert resolve_lr(family, "auto", pretrained=pretrained, adapter=adapter) == want
    assert resolve_lr(family, 0.3, pretrained=pretrained, adapter=adapter) == 0.3


def test_batchnorm_keeps_running_statistics_only_when_they_were_learnt():
    assert resolve_batchnorm("auto", pretrained=True) == "eval"
    assert resolve_batchnorm("auto", pretrained=False) == "train"
    assert resolve_batchnorm("train", pretrained=True) == "train"


@pytest.mark.parametrize(
    ("family", "n_rows", "want"),
    [
        ("conv", 300, 15),  # 10 steps an epoch, 150 steps
        ("conv", 50, 20),  # 2 steps an epoch: capped at 20 epochs
        ("conv", 10_000, 5),  # at least 5 epochs
        ("transformer", 64, 5),  # 2 steps an epoch, 100 steps: capped at 5
        ("transformer", 1000, 4),  # 32 steps an epoch
        ("mlp", 150, 60),  # 5 steps an epoch, 300 steps
    ],
)
def test_the_step_budget_becomes_epochs_within_the_family_bounds(family, n_rows, want):
    assert budget_epochs(family, n_rows, 32) == want


def test_the_documented_recipe_table_is_the_code():
    doc = FineTuneClassifier.__doc__
    steps = re.search(r"\((\d+) for convolutional bodies, (\d+) for transformers, (\d+) for", doc)
    assert steps, "FineTuneClassifier's max_epochs doc no longer lists the step budgets"
    assert [int(s) for s in steps.groups()] == [
        RECIPES[f]["steps"] for f in ("conv", "transformer", "mlp")
    ]
    rates = re.search(
        r'"auto" is (\S+) for\s+convolutional bodies, (\S+) for transformers, (\S+)', doc
    )
    assert [float(r) for r in rates.groups()] == [
        RECIPES[f]["lr"] for f in ("conv", "transformer", "mlp")
    ]


def test_body_family_reads_the_layers():
    assert body_family(nn.Sequential(nn.Linear(3, 4)), "tabular") == "mlp"
    assert body_family(nn.Sequential(nn.Conv2d(3, 4, 3)), "image") == "conv"
    assert body_family(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), "tabular") == "transformer"
    assert body_family(nn.Sequential(nn.Linear(3, 4)), "text") == "transformer"


def three_block_model():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 6))
    return TransferModel(body, nn.Linear(6, 3))


def blocks_of(body):
    return [[f"{i}.weight", f"{i}.bias"] for i in (0, 2, 3)]


def test_layerwise_groups_carry_a_geometric_ladder_of_peak_rates_and_skip_frozen_blocks():
    model = three_block_model()
    t = assemble(
        model,
        model.body,
        blocks_of(model.body),
        freeze=1,
        adapter=None,
        lr=1e-2,
        lr_mult=100,
        weight_decay=0.05,
        l2sp=0.0,
        say=print,
    )
    by_name = {n: g for g in t.groups for n in g["names"]}
    assert "body.0.weight" not in by_name and "body.0.bias" in t.frozen
    assert by_name["head.weight"]["lr"] == pytest.approx(1e-2)
    # tiers: block 0 (frozen) 1e-4, block 2 1e-3, block 3 1e-2 ** ... head 1e-2
    assert by_name["body.2.weight"]["lr"] == pytest.approx(1e-2 * 100 ** (-2 / 3))
    assert by_name["body.3.weight"]["lr"] == pytest.approx(1e-2 * 100 ** (-1 / 3))
    assert by_name["body.2.bias"]["weight_decay"] == 0.0  # no decay on biases
    assert by_name["body.2.weight"]["weight_decay"] == 0.05
    assert t.frozen_modules == ["body.0"]
    assert t.n_params == sum(p.numel() for n, p in model.named_parameters() if n not in t.frozen)


def net_for(model, groups, adaptation=None, epochs=2, n_rows=64):
    tasks = (LossTask("softmax", (0, 3)),)
    return TransferNet(
        model,
        criterion=TransferCriterion,
        criterion__tasks=tasks,
        criterion__adaptation=adaptation,
        criterion__adaptation_weight=1.0,
        criterion__n_features=6,
        optimizer=torch.optim.AdamW,
        lr=1.0,
        max_epochs=epochs,
        batch_size=32,
        train_split=None,
        param_groups=groups,
        callbacks=[("onecycle", OneCycle(n_rows, epochs, 32))],
        verbose=0,
    ).initialize()


def test_the_schedule_peaks_each_optimiser_group_at_its_own_rate_dann_group_included():
    model = three_block_model()
    t = assemble(
        model,
        model.body,
        blocks_of(model.body),
        freeze="none",
        adapter=None,
        lr=1e-2,
        lr_mult=10,
        weight_decay=0.01,
        l2sp=0.0,
        say=print,
    )
    net = net_for(model, t.groups, adaptation="dann")
    groups = net.optimizer_.param_groups
    assert len(groups) == len(t.groups) + 1  # DANN's discriminator at the head's rate
    assert groups[-1]["peak_lr"] == t.groups[-1]["lr"]
    disc = {id(p) for p in net.criterion_.adaptation.parameters()}
    assert {id(p) for p in groups[-1]["params"]} == disc
    cb = dict(net.callbacks_)["onecycle"]
    cb.on_train_begin(net)
    assert cb.max_lr == [g["lr"] for g in t.groups] + [t.groups[-1]["lr"]]
    # one-cycle starts every group at its own peak / 5
    np.testing.assert_allclose([g["lr"] for g in groups], np.array(cb.max_lr) / 5)


def test_task_loss_is_the_weighted_mean_of_each_tasks_mean_over_its_labelled_rows():
    logits = torch.tensor([[2.0, 0.0, 0.5], [0.0, 1.0, -1.0], [1.0, 1.0, 3.0]])
    y = torch.tensor([[0.0, 0.5], [np.nan, -1.0], [1.0, np.nan]])
    w = torch.tensor([1.0, 1.0, 2.0])
    tasks = (LossTask("softmax", (0, 2), (0, 1), 1.0), LossTask("mse", (2, 3), (1, 2), 3.0))
    ce = torch.nn.functional.cross_entropy(
        logits[[0, 2], :2], torch.tensor([0, 1]), reduction="none"
    )
    want_ce = (ce * torch.tensor([1.0, 2.0])).sum() / 3.0
    want_mse = ((0.5 - 0.5) ** 2 * 1.0 + (-1.0 - -1.0) ** 2 * 1.0) / 2.0
    got = task_loss(logits, y, w, tasks)
    assert float(got) == pytest.approx(float((1.0 * want_ce + 3.0 * want_mse) / 4.0), rel=1e-6)


def test_a_missing_label_gives_no_gradient_to_its_task():
    logits = torch.zeros(2, 2, requires_grad=True)
    y = torch.tensor([[0.0], [np.nan]])
    task_loss(logits, y, torch.ones(2), (LossTask("softmax", (0, 2), (0, 1)),)).backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_under_ddp_a_share_divides_by_the_whole_batchs_weight():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = {"y": torch.tensor([0, 0]), "w": torch.ones(2)}
    crit = TransferCriterion((LossTask("softmax", (0, 2)),))
    local = crit(logits, y, training=True)
    # two processes, the other holding 6 rows of weight: each divides by 8 / 2 (DDP then
    # averages the two gradients)
    shared = crit(logits, y, training=True, reduce=lambda total: (total + 6.0) / 2)
    assert float(shared) == pytest.approx(float(local) * 2 / 4)


def test_the_adaptation_term_needs_training_and_two_rows_of_each_domain():
    torch.manual_seed(0)
    crit = TransferCriterion((LossTask("softmax", (0, 2)),), "coral", 1.0, 3)
    logits, z = torch.zeros(5, 2), torch.randn(5, 3)
    y = {"y": torch.zeros(5, dtype=torch.long), "w": torch.ones(5)}
    task_only = float(crit((logits, z), y, training=True))
    y["d"] = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    with_term = float(crit((logits, z), y, training=True))
    assert with_term > task_only + 1e-3
    assert float(crit((logits, z), y, training=False)) == pytest.approx(float(crit(logits, y)))
    y["d"] = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])  # one target row: no covariance
    assert float(crit((logits, z), y, training=True)) == pytest.approx(task_only)


def wine():
    X, y = load_wine(return_X_y=True)
    return X, y


def test_the_logistic_probe_is_scikit_learns_cross_validated_logistic_regression():
    X, y = wine()
    w = np.ones(len(y))
    weight, bias, loss, C = fit_linear_probe(X, y, w, task="classification", n_outputs=3)
    sd = X.std(0).mean()
    Xs = (X - X.mean(0)) / sd
    ref = LogisticRegressionCV(
        Cs=list(PROBE_CS), cv=PROBE_CV, scoring="neg_log_loss", max_iter=1000, **PROBE_LRCV_OPTIONS
    ).fit(Xs, y)
    assert C == np.ravel(ref.C_)[0]
    # the standardisation is folded into one linear layer on the raw features
    np.testing.assert_allclose(X @ weight.T + bias, ref.decision_function(Xs), rtol=1e-4, atol=1e-3)
    p = np.exp(X @ weight.T + bias)
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-4)


def test_the_ridge_probe_is_scikit_learns_ridge_with_leave_one_out_alpha():
    X, y = wine()
    target = StandardScaler().fit_transform(X[:, :1])
    weight, bias, _, alpha = fit_linear_probe(
        X[:, 1:], target, np.ones(len(y)), task="regression", n_outputs=1
    )
    Z = X[:, 1:]
    Zs = (Z - Z.mean(0)) / Z.std(0).mean()
    ref = RidgeCV(alphas=[1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]).fit(Zs, target)
    assert alpha == ref.alpha_
    np.testing.assert_allclose(
        Z @ weight.T + bias, ref.predict(Zs).reshape(-1, 1), rtol=1e-4, atol=1e-4
    )


def test_a_class_absent_from_the_rows_is_never_predicted_by_the_probe():
    X, y = wine()
    keep = y != 1
    weight, bias, _, _ = fit_linear_probe(
        X[keep], y[keep], np.ones(keep.sum()), task="classification", n_outputs=3
    )
    assert not np.any(np.argmax(X @ weight.T + bias, 1) == 1)


def test_l2sp_pulls_each_weight_back_by_the_rate_times_its_strength():
    model = nn.Linear(2, 1)
    ref = model.weight.detach().clone()

    class Net:
        module_ = model
        optimizer_ = torch.optim.SGD(model.parameters(), lr=0.1)

    cb = L2SP(2.0, ["weight"]).initialize()
    cb.on_train_begin(Net)
    with torch.no_grad():
        model.weight.add_(1.0)
    cb.on_batch_end(Net, training=True)
    np.testing.assert_allclose(model.weight.detach(), ref + 1.0 * (1 - 0.2), rtol=1e-6)
    cb.on_train_end(Net)
    assert cb.ref_ is None  # no copy of the weights outlives fit


def test_a_branched_body_ties_the_shared_blocks_and_copies_the_rest():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    branched = BranchedBody(body, 3, {"1.weight", "1.bias"})
    a, b = branched.copies[0], branched.copies[2]
    assert a[0].weight is b[0].weight  # shared
    assert a[1].weight is not b[1].weight  # each task's own
    torch.testing.assert_close(a[1].weight, b[1].weight)  # from the same start
    assert branched(torch.randn(5, 3)).shape == (5, 3, 2)
    assert branched.names_of("0.weight") == ["copies.0.0.weight"]
    assert branched.names_of("1.weight") == [f"copies.{t}.1.weight" for t in range(3)]
