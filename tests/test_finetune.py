"""FineTuneClassifier / FineTuneRegressor: recipe, freezing, transfer hooks, sklearn contract."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, PretrainedFeatures
from sktransfer.backbones import param_blocks


def tabular(seed=0, n=120, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


def small_convnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
    )


def images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 12, 12, 3)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :, 0] = 1.0  # a learnable signal: class 1 is red, class 2 bright
    X[y == 2] = np.clip(X[y == 2] + 0.5, 0, 1)
    return X, y


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------- freezing


def test_freeze_backbone_keeps_body_parameters_and_batchnorm_buffers_bit_identical():
    body = small_convnet()
    before = snapshot(body)
    X, y = images()
    clf = FineTuneClassifier(body, freeze="backbone", random_state=0).fit(X, y)
    after = clf.backbone_.module.body.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    # the user's module is untouched too (fit works on a copy)
    assert all(torch.equal(body.state_dict()[k], v) for k, v in before.items())


def test_freeze_backbone_trains_the_head():
    X, y = tabular()
    body = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU())
    clf = FineTuneClassifier(body, freeze="backbone", random_state=0)
    assert clf.fit(X, y).score(X, y) > 0.85


def test_freeze_int_keeps_leading_blocks_and_their_batchnorm_stats_fixed():
    body = small_convnet()
    X, y = images()
    # wise=None: the fine-tuned body itself is under test, not what the guard would keep.
    clf = FineTuneClassifier(body, freeze=1, batchnorm="train", wise=None, random_state=0)
    trained = clf.fit(X, y).backbone_.module.body.state_dict()
    blocks = param_blocks(clf.backbone_.module)
    first = {n.removeprefix("body.") for n in blocks[0]}
    assert first == {"0.weight", "0.bias"}
    for k in ("0.weight", "0.bias"):
        assert torch.equal(trained[k], body.state_dict()[k])
    assert not torch.equal(trained["3.weight"], body.state_dict()["3.weight"])
    # BatchNorm 1 (block 1) is trainable: its running stats move
    assert not torch.equal(trained["1.running_mean"], body.state_dict()["1.running_mean"])


def test_freeze_auto_keeps_the_first_third_of_a_pretrained_conv_body_frozen():
    body = small_convnet()  # 4 blocks: conv, BatchNorm, conv, BatchNorm
    before = snapshot(body)
    X, y = images()
    clf = FineTuneClassifier(body, random_state=0).fit(X, y)
    assert clf.freeze == "auto" and clf.freeze_ == 1
    after = clf.backbone_.module.body.state_dict()
    for k in ("0.weight", "0.bias"):
        assert torch.equal(after[k], before[k]), k
    for k in ("1.weight", "3.weight", "4.weight"):
        assert not torch.equal(after[k], before[k]), k


@pytest.mark.parametrize(
    "make, data, params",
    [
        (lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8)), tabular, {}),
        (small_convnet, images, {"weights": None}),  # fresh weights: structure transfer
        (small_convnet, images, {"adapter": "bitfit"}),  # the adapter chooses what trains
    ],
)
def test_freeze_auto_trains_every_block_elsewhere(make, data, params):
    X, y = data()
    clf = FineTuneClassifier(make(), max_epochs=1, random_state=0, **params).fit(X, y)
    assert clf.freeze_ == "none"


def test_freeze_pattern_that_matches_nothing_names_the_pattern():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 4)), freeze=["nope.*"], random_state=0)
    with pytest.raises(ValueError, match=r"\['nope\.\*'\] match no parameter"):
        clf.fit(X, y)


def test_freeze_pattern_freezes_matching_parameters():
    body = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8))
    ref = snapshot(body)
    X, y = tabular()
    clf = FineTuneClassifier(body, freeze=["body.0.*"], wise=None, random_state=0).fit(X, y)
    after = clf.backbone_.module.body.state_dict()
    assert torch.equal(after["0.weight"], ref["0.weight"])
    assert not torch.equal(after["2.weight"], ref["2.weight"])


# ------------------------------------------------------------------------- targets


def test_string_labels_round_trip_through_predict():
    X, y = tabular()
    labels = np.where(y == 1, "cat", "dog")
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 16), nn.ReLU()), random_state=0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog"]
    assert set(clf.predict(X)) <= {"cat", "dog"}
    assert clf.score(X, labels) > 0.8


def test_integer_labels_not_starting_at_zero():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0)
    clf.fit(X, y + 7)
    assert list(clf.classes_) == [7, 8]
    assert clf.predict_proba(X).shape == (len(X), 2)
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1.0, rtol=1e-6)


def test_regressor_handles_one_and_multi_output_targets():
    X, _ = tabular()
    Y = np.stack([X @ [1, 2, 0, 0, 0], X @ [0, 0, 1, -1, 0]], axis=1) * 10 + 100
    body = nn.Sequential(nn.Linear(5, 32), nn.ReLU())
    one = FineTuneRegressor(body, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (len(X),)
    assert one.score(X, Y[:, 0]) > 0.8  # targets far from 0 learn fine: y is standardised inside
    two = FineTuneRegressor(body, random_state=0).fit(X, Y)
    assert two.predict(X).shape == (len(X), 2)


def test_y_is_not_mutated():
    X, y = tabular()
    y_copy = y.copy()
    FineTuneClassifier(nn.Sequential(nn.Linear(5, 4)), random_state=0).fit(X, y)
    assert np.array_equal(y, y_copy)


# ------------------------------------------------------------------------- recipe details


def test_random_state_makes_cpu_fits_bit_identical():
    X, y = tabular()
    body = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    a = FineTuneClassifier(body, random_state=3).fit(X, y).predict_proba(X)
    b = FineTuneClassifier(body, random_state=3).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


def test_each_fit_starts_again_from_the_pretrained_weights():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0)
    first = clf.fit(X, y).predict_proba(X)
    second = clf.fit(X, y).predict_proba(X)
    assert np.array_equal(first, second)


def test_warm_start_continues_training():
    X, y = tabular()
    clf = FineTuneClassifier(
        nn.Sequential(nn.Linear(5, 8)), max_epochs=2, warm_start=True, random_state=0
    )
    first = clf.fit(X, y).predict_proba(X)
    second = clf.fit(X, y).predict_proba(X)
    assert not np.array_equal(first, second)


def test_partial_fit_runs_one_epoch_per_call():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y)
    assert len(clf.net_.history) == 2
    assert list(clf.classes_) == [0, 1]


def test_layerwise_learning_rates_rise_from_earliest_block_to_head():
    X, y = tabular()
    body = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    clf = FineTuneClassifier(body, lr=1e-2, lr_mult=100, max_epochs=1, random_state=0).fit(X, y)
    groups = clf.net_.param_groups
    weight_lrs = [g["lr"] for g in groups if g["weight_decay"] > 0]
    assert weight_lrs == sorted(weight_lrs)
    assert weight_lrs[-1] == pytest.approx(1e-2)  # the head
    assert weight_lrs[0] == pytest.approx(1e-4)  # the earliest block: / lr_mult
    # norms and biases take no weight decay
    assert all(
        g["weight_decay"] == 0 for g in groups if all(n.endswith("bias") for n in g["names"])
    )


def test_l2sp_feature_drift_falls_monotonically_to_nearly_frozen():
    X, y = tabular()
    body = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        Z0 = body(torch.from_numpy(X))

    def drift(l2sp):
        # wise=None: the drift of the fine-tuned body, not of what the guard would keep.
        clf = FineTuneClassifier(body, l2sp=l2sp, wise=None, random_state=0).fit(X, y)
        Z = PretrainedFeatures(clf).fit_transform(X)
        return float(np.linalg.norm(Z - Z0.numpy()) / np.linalg.norm(Z0.numpy()))

    drifts = [drift(lam) for lam in (0.0, 1.0, 10.0, 100.0)]
    assert all(a > b for a, b in zip(drifts, drifts[1:])), drifts
    assert drifts[-1] < 0.1 * drifts[0], drifts  # the documented top of the range: nearly frozen


def test_no_validation_split_unless_early_stopping():
    X, y = tabular()
    plain = FineTuneClassifier(nn.Sequential(nn.Linear(5, 4)), random_state=0).fit(X, y)
    assert all("valid_loss" not in h for h in plain.history_)
    es = FineTuneClassifier(
        nn.Sequential(nn.Linear(5, 4)),
        max_epochs=30,
        early_stopping=True,
        n_iter_no_change=2,
        lr=0.5,
        random_state=0,
    ).fit(X, y)
    unfrozen = [h for h in es.history_ if h["phase"] == "all"]
    assert all("valid_loss" in h for h in unfrozen)
    assert len(unfrozen) < 30  # stopped early


def test_sample_weight_zero_rows_are_ignored():
    X, y = tabular(n=200)
    flipped = np.concatenate([y[:100], 1 - y[100:]])
    w = np.r_[np.ones(100), np.zeros(100)]
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 16), nn.ReLU()), random_state=0)
    clf.fit(X, flipped, sample_weight=w)
    assert clf.score(X[:100], y[:100]) > 0.85


def test_class_weight_balanced_raises_minority_recall():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=300) > 1.8).astype(int)  # ~10 % positives, overlapping

    def recall(cw):
        clf = FineTuneClassifier(
            nn.Sequential(nn.Linear(2, 8), nn.ReLU()),
            class_weight=cw,
            random_state=0,
        ).fit(X, y)
        return (clf.predict(X)[y == 1] == 1).mean()

    assert recall("balanced") > recall(None)


# ------------------------------------------------------------------------- transfer hooks


def test_structure_transfer_weights_none_trains_from_scratch():
    X, y = images(n=24)
    a = FineTuneClassifier(
        "efficientnet_lite0",
        weights=None,
        image_size=32,
        max_epochs=1,
        random_state=0,
    ).fit(X, y)
    b = FineTuneClassifier("efficientnet_lite0", image_size=32, max_epochs=1, random_state=0)
    b.fit(X, y)
    wa = a.backbone_.module.state_dict()
    wb = b.backbone_.module.state_dict()
    key = next(k for k in wa if k.endswith("conv_stem.weight"))
    assert not torch.allclose(wa[key], wb[key], atol=1e-2)


def test_fitted_estimator_as_backbone_starts_from_its_trained_body():
    X, y = tabular()
    source = FineTuneRegressor(
        nn.Sequential(nn.Linear(5, 8), nn.ReLU()), max_epochs=3, random_state=0
    ).fit(X, X[:, 0])
    target = FineTuneClassifier(source, freeze="backbone", random_state=0).fit(X, y)
    src = source.backbone_.module.state_dict()
    tgt = target.backbone_.module.state_dict()
    assert all(torch.equal(src[k], tgt[k]) for k in src)
    # and the source keeps its own body: the target trained on a copy
    assert target.backbone_.module is not source.backbone_.module


def test_pretrained_features_of_a_fitted_finetune_are_its_body_outputs():
    X, y = tabular()
    clf = FineTuneClassifier(
        nn.Sequential(nn.Linear(5, 6), nn.ReLU()), max_epochs=2, random_state=0
    ).fit(X, y)
    Z = PretrainedFeatures(clf).fit_transform(X)
    with torch.no_grad():
        expected = clf.backbone_.module.eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)


def test_fitted_skorch_net_as_backbone():
    from skorch import NeuralNetRegressor

    X, _ = tabular()
    net = NeuralNetRegressor(
        nn.Sequential(nn.Linear(5, 6), nn.ReLU()), max_epochs=1, train_split=None, verbose=0
    ).fit(X, X[:, :6].mean(1, keepdims=True).repeat(6, 1))
    Z = PretrainedFeatures(net).fit_transform(X)
    assert Z.shape == (len(X), 6)


def test_unfitted_estimator_as_backbone_is_a_clear_error():
    X, y = tabular()
    with pytest.raises(ValueError, match="is not fitted"):
        FineTuneClassifier(FineTuneClassifier(nn.Linear(5, 2))).fit(X, y)


# ------------------------------------------------------------------------- sklearn contract


def test_pickle_round_trip_predicts_identically():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.backbone_.module is loaded.net_.module_.body


def test_clone_carries_no_fitted_state():
    X, y = tabular()
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0).fit(X, y)
    assert not hasattr(clone(clf), "net_")


def test_grid_search_with_two_jobs():
    X, y = tabular()
    search = GridSearchCV(
        FineTuneClassifier(nn.Sequential(nn.Linear(5, 8)), random_state=0),
        {"lr": [1e-3, 1e-2]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert cross_val_score(search.best_estimator_, X, y, cv=2).shape == (2,)


def test_fit_without_y_is_a_clear_error():
    X, _ = tabular()
    with pytest.raises(ValueError, match="requires y to be passed"):
        FineTuneClassifier(nn.Linear(5, 2)).fit(X, None)


def test_sample_domain_without_adaptation_is_a_clear_error():
    X, y = tabular()
    with pytest.raises(ValueError, match="adaptation=None"):
        FineTuneClassifier(nn.Linear(5, 2)).fit(X, y, sample_domain=np.zeros(len(y)))


# scikit-learn's estimator checks for FineTune* live in test_sklearn_contract.py.


def test_a_fitted_source_survives_clone_in_a_grid_search():
    X, y = tabular()
    source = FineTuneRegressor(
        nn.Sequential(nn.Linear(5, 8), nn.ReLU()), max_epochs=2, random_state=0
    ).fit(X, X[:, 0])
    search = GridSearchCV(
        FineTuneClassifier(source, random_state=0), {"l2sp": [0.0, 1e-2]}, cv=2
    ).fit(X, y)
    assert hasattr(clone(search.best_estimator_).backbone, "net_")


def test_fp16_precision_trains_with_a_grad_scaler():
    X, y = tabular()
    clf = FineTuneClassifier(
        nn.Sequential(nn.Linear(5, 8)),
        precision="16",
        device="cpu",
        max_epochs=2,
        random_state=0,
    ).fit(X, y)
    assert clf.net_.grad_scaler_ is not None
    assert np.isfinite(clf.predict_proba(X)).all()


# ------------------------------------------------------------------------- the default recipe


def test_head_starts_as_the_converged_linear_probe():
    from sklearn.linear_model import LogisticRegressionCV

    from sktransfer.training import PROBE_CS, PROBE_CV, PROBE_LRCV_OPTIONS

    X, y = images()
    body = small_convnet()
    clf = FineTuneClassifier(body, freeze="backbone", random_state=0).fit(X, y)
    Z = PretrainedFeatures(small_convnet(), random_state=0).fit_transform(X)
    lrcv = LogisticRegressionCV(
        Cs=list(PROBE_CS), cv=PROBE_CV, scoring="neg_log_loss", max_iter=1000, **PROBE_LRCV_OPTIONS
    )
    Zs = (Z - Z.mean(0)) / Z.std(0).mean()  # centred, one scale for all features
    lrcv.fit(Zs, y)
    assert clf.probe_regularization_ == np.ravel(lrcv.C_)[0]
    np.testing.assert_allclose(clf.predict_proba(X), lrcv.predict_proba(Zs), atol=1e-4)
    assert [h["phase"] for h in clf.history_] == ["probe"]


def test_training_loss_does_not_jump_when_the_body_unfreezes():
    X, y = images()
    clf = FineTuneClassifier(small_convnet(), random_state=0).fit(X, y)
    probe, first = clf.history_[0], clf.history_[1]
    assert (probe["phase"], first["phase"]) == ("probe", "all")
    # the first unfrozen epoch starts where the probe ended, on the same (eval-mode) features
    assert first["train_loss"] < probe["train_loss"] + 0.05


def test_without_the_probe_the_head_starts_random_and_the_loss_starts_high():
    X, y = images()
    clf = FineTuneClassifier(small_convnet(), linear_probe=False, random_state=0)
    clf.fit(X, y)
    assert clf.history_[0]["phase"] == "all"
    assert clf.history_[0]["train_loss"] > 0.9  # about log(3): an untrained head


@pytest.mark.parametrize("policy, moves", [("eval", False), ("train", True)])
def test_batchnorm_policy_keeps_or_moves_the_running_statistics(policy, moves):
    body = small_convnet()
    before = snapshot(body)
    X, y = images()
    # freeze="none": every BatchNorm under the policy (the default freezes the first third)
    clf = FineTuneClassifier(body, batchnorm=policy, freeze="none", wise=None, random_state=0)
    after = clf.fit(X, y).backbone_.module.body.state_dict()
    assert not torch.equal(after["3.weight"], before["3.weight"])  # the body trained
    assert torch.equal(after["1.running_mean"], before["1.running_mean"]) is not moves
    assert torch.equal(after["4.running_var"], before["4.running_var"]) is not moves


def test_batchnorm_auto_trains_statistics_only_for_fresh_weights():
    X, y = images(n=24)
    kw = dict(image_size=32, max_epochs=1, random_state=0)
    assert FineTuneClassifier("efficientnet_lite0", **kw).fit(X, y).batchnorm_ == "eval"
    fresh = FineTuneClassifier("efficientnet_lite0", weights=None, **kw).fit(X, y)
    assert fresh.batchnorm_ == "train"


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wise_ft_endpoints_are_the_probe_and_the_fine_tuned_model(alpha):
    X, y = images()
    kw = dict(max_epochs=2, random_state=0)
    wise = FineTuneClassifier(small_convnet(), wise=alpha, **kw).fit(X, y).predict_proba(X)
    if alpha == 0.0:
        end = FineTuneClassifier(small_convnet(), freeze="backbone", random_state=0)
    else:
        end = FineTuneClassifier(small_convnet(), wise=None, **kw)
    np.testing.assert_allclose(wise, end.fit(X, y).predict_proba(X), atol=1e-5)


def test_wise_ft_halfway_lies_between_the_endpoints():
    X, y = images()
    kw = dict(max_epochs=2, random_state=0)
    probs = [
        FineTuneClassifier(small_convnet(), wise=a, **kw).fit(X, y).predict_proba(X)
        for a in (0.0, 0.5, 1.0)
    ]
    assert 0 < np.abs(probs[1] - probs[0]).mean() < np.abs(probs[2] - probs[0]).mean()


def test_auto_budget_gives_small_tables_hundreds_of_steps_and_is_exposed():
    X, y = tabular(n=120)
    clf = FineTuneClassifier(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), random_state=0).fit(X, y)
    steps_per_epoch = -(-len(X) // clf.batch_size)
    assert clf.max_epochs_ * steps_per_epoch >= 300
    assert len([h for h in clf.history_ if h["phase"] == "all"]) == clf.max_epochs_
    assert clf.lr_ == pytest.approx(1e-2)  # the "mlp" recipe
    assert FineTuneClassifier(nn.Linear(5, 2), max_epochs=4, lr=0.1).fit(X, y).max_epochs_ == 4


def test_auto_budget_shrinks_in_epochs_as_the_data_grows():
    def epochs(n):
        X, y = tabular(n=n)
        return FineTuneClassifier(nn.Linear(5, 2), max_epochs="auto").fit(X, y).max_epochs_

    assert epochs(100) > epochs(1000)


def test_tabular_mlp_with_defaults_fits_a_separable_table():
    # The case: 200 rows, 6 features, nearly linearly separable.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X @ rng.normal(size=6) > 0).astype(int)
    clf = FineTuneClassifier(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), random_state=0)
    score = clf.fit(X, y).score(X, y)
    assert score > 0.9  # was 0.375 (one class) with the old defaults
    # and above scikit-learn's own MLP of the same width, with its defaults
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert score > MLPClassifier((8,), random_state=0).fit(X, y).score(X, y)


def test_head_only_sgd_with_early_stopping_validates_on_held_out_features():
    X, y = tabular()
    clf = FineTuneClassifier(
        nn.Sequential(nn.Linear(5, 8), nn.ReLU()),
        freeze="backbone",
        linear_probe=False,
        early_stopping=True,
        random_state=0,
    ).fit(X, y)
    head = [h for h in clf.history_ if h["phase"] == "head"]
    assert head and all("valid_loss" in h for h in head)
    assert clf.score(X, y) > 0.7  # 8 random ReLU features, head by SGD: well above chance


@pytest.mark.parametrize("width", [16, 64])
@pytest.mark.parametrize("Est", [FineTuneClassifier, FineTuneRegressor])
def test_a_rows_tabular_prediction_does_not_depend_on_its_batch_at_any_width(Est, width):
    """sklearn's subset-invariance check at the widths it once failed at (it passed at 8):
    a small MLP predicts in float64, where batch-dependent rounding is below 1e-12."""
    X, y = tabular(n=60)
    est = Est(nn.Sequential(nn.LazyLinear(width), nn.ReLU()), random_state=0)
    est.fit(X, y if Est is FineTuneClassifier else X[:, 0])
    method = est.predict_proba if Est is FineTuneClassifier else est.predict
    whole = method(X)
    one_by_one = np.concatenate([method(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-12, atol=1e-12)


def test_an_images_prediction_depends_on_its_batch_only_at_float32_rounding():
    """Conv kernels in float32 block a batch differently by its size: the same image's
    probabilities agree to ~1e-6 alone or in a batch (documented; predictions match)."""
    X, y = images(n=24)
    clf = FineTuneClassifier(small_convnet(), random_state=0).fit(X, y)
    whole = clf.predict_proba(X)
    one_by_one = np.concatenate([clf.predict_proba(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)
    np.testing.assert_array_equal(one_by_one.argmax(1), whole.argmax(1))
