"""Adaptation without the source data: AdaBN, TENT and SHOT on a fitted source model."""

import pickle

import numpy as np
import pytest
import torch
from conftest import TinyCNN
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from torch import nn

from sktransfer import SHOT, TENT, AdaBN, FineTuneClassifier, FineTuneRegressor

METHODS = [AdaBN, TENT, SHOT]


def offset_shift(seed, n=300):
    """Source ~ N(0, I) in 2-D; the target is the same task seen through an offset."""
    rng = np.random.default_rng(seed)
    Xs, Xt0 = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    label = lambda Z: (Z[:, 0] + 0.5 * Z[:, 1] > 0).astype(int)  # noqa: E731
    Xt = Xt0 + [3.0, -2.0]
    return Xs.astype(np.float32), label(Xs), Xt.astype(np.float32), label(Xt0)


def bn_body(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(2, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
    )


def plain_body(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU())


@pytest.fixture(scope="module")
def shift():
    Xs, ys, Xt, yt = offset_shift(0)
    # BatchNorm learns the source's statistics (the premise of AdaBN and TENT).
    source = FineTuneClassifier(bn_body(), batchnorm="train", wise=None, random_state=0)
    source.fit(Xs, ys)
    return source, Xs, ys, Xt, yt


def state(model):
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


@pytest.mark.parametrize("method", METHODS)
def test_beats_the_source_model_on_the_target(shift, method):
    source, _, _, Xt, yt = shift
    before = source.score(Xt, yt)
    adapted = method(source, random_state=0) if method is not AdaBN else method(source)
    after = adapted.fit(Xt).score(Xt, yt)
    assert before < 0.8
    assert after > before + 0.1, (before, after)


def test_adabn_undoes_an_offset_exactly_as_batchnorm_follows_the_first_layer(shift):
    source, Xs, ys, Xt, yt = shift
    adapted = AdaBN(source).fit(Xt)
    # Behind the first BatchNorm an offset of the inputs is an offset of its inputs, which
    # the target statistics remove: the target scores as well as the source does.
    assert adapted.score(Xt, yt) == pytest.approx(source.score(Xs, ys), abs=0.05)


@pytest.mark.parametrize("method", METHODS)
def test_the_source_model_passed_in_is_not_modified(shift, method):
    source, _, _, Xt, _ = shift
    weights, proba = state(source), source.predict_proba(Xt)
    adapted = method(source).fit(Xt)
    for k, v in source.module_.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    np.testing.assert_array_equal(source.predict_proba(Xt), proba)
    assert adapted.estimator is source and adapted.estimator_ is not source
    assert not np.allclose(adapted.predict_proba(Xt), proba)


@pytest.mark.parametrize("method", METHODS)
def test_only_target_rows_are_used_and_labels_never(shift, method):
    source, Xs, ys, Xt, yt = shift
    alone = method(source, batch_size=32).set_params(**_seeded(method)).fit(Xt)
    X = np.vstack([Xs, Xt])
    sd = np.r_[np.zeros(len(Xs), int), -np.ones(len(Xt), int)]
    y_true = np.r_[ys, yt]
    by_domain = clone(alone).fit(X, y_true, sample_domain=sd)
    by_marker = clone(alone).fit(X, np.r_[ys, -np.ones(len(Xt), int)])
    with_labels = clone(alone).fit(Xt, 1 - yt)  # test-time: labels given are ignored
    expected = alone.predict_proba(Xt)
    for other in (by_domain, by_marker, with_labels):
        assert other.n_target_ == len(Xt)
        np.testing.assert_allclose(other.predict_proba(Xt), expected, rtol=1e-5, atol=1e-6)


def _seeded(method):
    return {} if method is AdaBN else {"random_state": 0}


def test_tent_trains_only_batchnorm_affine_parameters_and_lowers_entropy(shift):
    source, _, _, Xt, _ = shift
    adapted = TENT(source, random_state=0).fit(Xt)
    changed = {
        k
        for k, v in adapted.estimator_.module_.named_parameters()
        if not torch.equal(v, dict(source.module_.named_parameters())[k])
    }
    assert changed and all(k.startswith(("body.body.1.", "body.body.4.")) for k in changed), changed

    def entropy(p):
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(1).mean()

    assert entropy(adapted.predict_proba(Xt)) < entropy(AdaBN(source).fit(Xt).predict_proba(Xt))


def test_shot_keeps_the_source_head(shift):
    source, _, _, Xt, _ = shift
    adapted = SHOT(source, random_state=0).fit(Xt)
    head, src_head = adapted.estimator_.module_.head, source.module_.head
    torch.testing.assert_close(head.weight, src_head.weight, rtol=0, atol=0)
    first = "body.body.0.weight"
    assert not torch.equal(
        adapted.estimator_.module_.get_parameter(first), source.module_.get_parameter(first)
    )
    assert len(adapted.history_) == 5 == len(adapted.pseudo_label_agreement_)
    assert all(0.0 <= a <= 1.0 for a in adapted.pseudo_label_agreement_)


def test_shot_adapts_a_body_without_batchnorm():
    Xs, ys, Xt, yt = offset_shift(1)
    source = FineTuneClassifier(plain_body(), random_state=0).fit(Xs, ys)
    adapted = SHOT(source, random_state=0).fit(Xt)
    assert adapted.predict(Xt).shape == (len(Xt),)
    assert set(adapted.predict(Xt)) <= {0, 1}


def test_adabn_adapts_a_regressor():
    Xs, _, Xt, _ = offset_shift(2)
    f = lambda Z: Z[:, 0] - Z[:, 1]  # noqa: E731
    source = FineTuneRegressor(bn_body(), batchnorm="train", wise=None, random_state=0)
    source.fit(Xs, f(Xs))
    adapted = AdaBN(source).fit(Xt)
    truth = f(Xt - np.float32([3.0, -2.0]))  # the task on the target, before the offset
    mse = lambda p: float(np.mean((p - truth) ** 2))  # noqa: E731
    assert mse(adapted.predict(Xt)) < 0.5 * mse(source.predict(Xt))


def test_adabn_on_images_through_the_source_input_pipeline(rgb_images, digits):
    X, y = rgb_images, digits[1]
    source = FineTuneClassifier(TinyCNN(), batchnorm="train", random_state=0)
    source.fit(X[:20], y[:20])
    target = (255 - X[20:]).astype(np.uint8)  # inverted images
    adapted = AdaBN(source).fit(target)
    assert adapted.predict_proba(target).shape == (20, 4)
    assert set(adapted.predict(target)) <= set(source.classes_)


def test_pickled_adapted_model_predicts_the_same(shift):
    source, _, _, Xt, _ = shift
    adapted = TENT(source, random_state=0).fit(Xt)
    again = pickle.loads(pickle.dumps(adapted))
    np.testing.assert_array_equal(again.predict_proba(Xt), adapted.predict_proba(Xt))


def test_clone_keeps_the_fitted_source_model_and_get_params_sees_every_knob(shift):
    source, _, _, Xt, _ = shift
    shot = SHOT(source, beta=0.0, max_epochs=2, random_state=0)
    copy = clone(shot)
    assert copy.estimator is source and not hasattr(copy, "estimator_")
    params = copy.get_params(deep=False)
    assert params == {
        "estimator": source,
        "lr": "auto",
        "max_epochs": 2,
        "beta": 0.0,
        "batch_size": None,
        "random_state": 0,
        "verbose": 0,
    }
    assert copy.fit(Xt).lr_ == pytest.approx(source.lr_ / 10)


@pytest.mark.parametrize("method", [TENT, SHOT])
def test_verbose_says_each_epoch_as_it_ends(shift, method, capsys):
    source, _, _, Xt, _ = shift
    adapted = method(source, max_epochs=2, random_state=0, verbose=1).fit(Xt)
    lines = [
        ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"[{method.__name__}]")
    ]
    assert len(lines) == 2 and lines[1].startswith(
        f"[{method.__name__}] epoch 2/2 on {len(Xt)} target rows"
    )
    assert f"loss {adapted.history_[1]['train_loss']:.4f}" in lines[1]
    method(source, max_epochs=1, random_state=0).fit(Xt)
    assert capsys.readouterr().out == ""


def test_parameters_of_the_shared_source_model_cannot_be_set_through_the_wrapper(shift):
    source = shift[0]
    with pytest.raises(ValueError, match="does not set parameters of its fitted source.*lr"):
        clone(TENT(source)).set_params(estimator__lr=1.0)
    assert source.lr == "auto"
    assert TENT(source).set_params(lr=1e-3).lr == 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_an_unfitted_source_model_is_a_clear_error(method):
    with pytest.raises(NotFittedError, match="needs a fitted source model"):
        method(FineTuneClassifier(bn_body())).fit(np.zeros((4, 2), np.float32))


@pytest.mark.parametrize("method", METHODS)
def test_a_source_model_that_is_not_an_sktransfer_network_is_a_clear_error(method):
    lr = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(TypeError, match="FineTuneClassifier or FineTuneRegressor; got Log"):
        method(lr).fit(np.zeros((4, 1)))


@pytest.mark.parametrize("method", [AdaBN, TENT])
def test_a_source_model_without_batchnorm_is_a_clear_error(method):
    Xs, ys, Xt, _ = offset_shift(0, n=40)
    source = FineTuneClassifier(plain_body(), random_state=0).fit(Xs, ys)
    match = f"{method.__name__} works on BatchNorm layers.*Sequential"
    with pytest.raises(ValueError, match=match):
        method(source).fit(Xt)


@pytest.mark.parametrize("method", [TENT, SHOT])
def test_a_regressor_is_a_clear_error_where_class_probabilities_are_needed(method):
    Xs, _, Xt, _ = offset_shift(0, n=40)
    source = FineTuneRegressor(bn_body(), random_state=0).fit(Xs, Xs[:, 0])
    with pytest.raises(ValueError, match=f"{method.__name__} minimises the entropy.*AdaBN"):
        method(source).fit(Xt)


@pytest.fixture(scope="module")
def default_source():
    """A source model at the default recipe: on weights it treats as pretrained its
    BatchNorm keeps the statistics it started with (``batchnorm_ == "eval"``)."""
    Xs, ys, Xt, yt = offset_shift(0)
    return FineTuneClassifier(bn_body(), random_state=0).fit(Xs, ys), Xs, ys, Xt, yt


def test_a_source_that_kept_its_pretrained_statistics_records_its_rows_own(default_source):
    source, Xs, _, _, _ = default_source
    assert source.batchnorm_ == "eval"
    stats = source.batchnorm_statistics_
    norms = [n for n, m in source.module_.named_modules() if isinstance(m, nn.BatchNorm1d)]
    assert sorted(stats) == sorted(norms)
    # The first BatchNorm's input is the first Linear layer's output on the source rows,
    # evenly spaced ones where there are more than the pass reads.
    from sktransfer.training import SOURCE_STATISTICS_ROWS as cap

    assert len(Xs) > cap
    rows = np.linspace(0, len(Xs) - 1, cap).astype(int)
    first = source.module_.get_submodule(norms[0].rsplit(".", 1)[0])[0]
    with torch.no_grad():
        z = first(torch.from_numpy(Xs[rows]))
    mean, var = stats[norms[0]]
    np.testing.assert_allclose(mean, z.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, z.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-6)


def test_statistics_are_recorded_only_where_the_pretrained_ones_were_kept(shift):
    source = shift[0]  # batchnorm="train": its running statistics are the data's
    assert source.batchnorm_statistics_ is None
    Xs, ys, _, _ = offset_shift(0, n=40)
    no_bn = FineTuneClassifier(plain_body(), random_state=0).fit(Xs, ys)
    assert no_bn.batchnorm_ == "eval" and no_bn.batchnorm_statistics_ is None


@pytest.mark.parametrize("method", [AdaBN, TENT])
def test_a_default_source_adapts_from_its_rows_statistics_without_a_warning(
    default_source, method, recwarn
):
    source, _, _, Xt, yt = default_source
    before = state(source)
    adapted = method(source, random_state=0) if method is TENT else method(source)
    adapted.fit(Xt)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert adapted.source_statistics_
    # The offset moves the source model to chance; the target statistics undo it.
    assert source.score(Xt, yt) < 0.6
    assert adapted.score(Xt, yt) > 0.95
    for k, v in before.items():  # the source model's own statistics are untouched
        torch.testing.assert_close(source.module_.state_dict()[k], v)


def test_adabn_on_the_source_rows_keeps_a_default_source_s_predictions(default_source):
    source, Xs, _, _, _ = default_source
    adapted = AdaBN(source).fit(Xs)
    assert np.mean(adapted.predict(Xs) == source.predict(Xs)) >= 0.98


@pytest.mark.parametrize("method", [AdaBN, TENT])
def test_a_source_without_a_record_of_its_rows_statistics_gets_a_warning(method):
    """A model fitted before the statistics were recorded (``batchnorm_statistics_``
    None) keeps only the pretrained ones: replacing those can be far worse."""
    Xs, ys, Xt, _ = offset_shift(0, n=40)
    source = FineTuneClassifier(bn_body(), random_state=0).fit(Xs, ys)
    source.batchnorm_statistics_ = None
    with pytest.warns(UserWarning, match="batchnorm_='eval'.*older sktransfer.*Refit the source"):
        method(source).fit(Xt)


def test_a_fit_with_one_row_batches_still_records_the_statistics():
    Xs, ys, _, _ = offset_shift(0, n=20)
    source = FineTuneClassifier(bn_body(), batch_size=1, random_state=0)
    stats = source.fit(Xs, ys).batchnorm_statistics_  # BatchNorm1d sees one row a batch
    mean, var = stats["body.body.1"]
    first = source.module_.body.body[0]
    with torch.no_grad():
        z = first(torch.from_numpy(Xs))
    np.testing.assert_allclose(mean, z.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, z.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-6)


def test_partial_fit_drops_a_record_that_no_longer_describes_the_weights():
    Xs, ys, Xt, _ = offset_shift(0, n=40)
    source = FineTuneClassifier(bn_body(), random_state=0).fit(Xs, ys)
    assert source.batchnorm_statistics_
    source.partial_fit(Xs, ys)
    assert source.batchnorm_statistics_ is None
    with pytest.warns(UserWarning, match="fitted by partial_fit"):
        AdaBN(source).fit(Xt)


def test_batchnorm_in_a_frozen_body_keeps_pretrained_statistics_so_they_are_recorded(recwarn):
    """batchnorm="train" with freeze="backbone": nothing trains in the body, so its
    statistics stay the ones it started with, as under batchnorm="eval"."""
    Xs, ys, Xt, yt = offset_shift(0)
    source = FineTuneClassifier(
        bn_body(), batchnorm="train", freeze="backbone", random_state=0
    ).fit(Xs, ys)
    assert source.batchnorm_ == "train" and source.batchnorm_statistics_
    adapted = AdaBN(source).fit(Xs)  # on the source rows themselves: (nearly) no change
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    assert np.mean(adapted.predict(Xs) == source.predict(Xs)) >= 0.98


@pytest.mark.parametrize("method", [AdaBN, TENT])
def test_a_source_model_the_guard_left_at_its_probe_gets_a_warning(method):
    Xs, ys, Xt, _ = offset_shift(0)
    source = FineTuneClassifier(bn_body(), batchnorm="train", wise="auto", random_state=0)
    assert source.fit(Xs, ys).wise_ == 0.0  # random features + the probe fit this linear task best
    with pytest.warns(UserWarning, match="wise_=0 on the line.*Fit the source model with wise"):
        method(source).fit(Xt)


def test_shot_keeps_the_pretrained_batchnorm_statistics_of_a_source_that_kept_them():
    Xs, ys, Xt, _ = offset_shift(0, n=40)
    source = FineTuneClassifier(bn_body(), random_state=0).fit(Xs, ys)
    adapted = SHOT(source, max_epochs=1, random_state=0).fit(Xt)
    for name, buf in source.module_.named_buffers():
        torch.testing.assert_close(adapted.estimator_.module_.get_buffer(name), buf)


@pytest.mark.parametrize("method", METHODS)
def test_a_last_batch_of_one_row_joins_the_batch_before(shift, method):
    source, _, _, Xt, _ = shift
    adapted = method(source, batch_size=32).fit(Xt[:33])  # BatchNorm1d cannot take 1 row
    assert adapted.predict(Xt[:33]).shape == (33,)


def test_one_target_row_is_a_clear_error(shift):
    source, _, _, Xt, _ = shift
    with pytest.raises(ValueError, match="AdaBN needs at least 2 target rows.*got 1"):
        AdaBN(source).fit(Xt[:1])


def test_sample_domain_without_target_rows_is_a_clear_error(shift):
    source, Xs, ys, _, _ = shift
    with pytest.raises(ValueError, match="No target rows.*no negative"):
        AdaBN(source).fit(Xs, ys, sample_domain=np.zeros(len(Xs), int))


@pytest.mark.parametrize("affine", [True, False])
def test_folding_the_source_statistics_in_changes_no_output(affine):
    """The scale and shift absorb the change of statistics: in eval() the folded layer
    computes what it did; in train() it maps a batch to the source rows' spread."""
    from sktransfer.training import fold_statistics

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=affine), nn.ReLU())
    bn = net[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    if affine:
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    x = torch.randn(8, 3, 6, 6)
    net.eval()
    with torch.no_grad():
        before = net(x)
        mean, var = torch.randn(4).numpy(), torch.rand(4).add(0.1).numpy()
        assert fold_statistics(net, {"1": (mean, var)}) == 1
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean)
    np.testing.assert_allclose(bn.running_var.numpy(), var)
    assert bn.affine and isinstance(bn.weight, nn.Parameter)


def test_folding_statistics_of_the_wrong_width_is_a_clear_error():
    from sktransfer.training import fold_statistics

    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="BatchNorm '1' have 5 channels; the layer has 3"):
        fold_statistics(net, {"1": (np.zeros(5, np.float32), np.ones(5, np.float32))})


def test_the_recorded_statistics_survive_save_and_load(default_source, tmp_path):
    from sktransfer import load, save

    source, _, _, Xt, _ = default_source
    save(source, tmp_path / "m.skt")
    loaded = load(tmp_path / "m.skt")
    for name, (mean, var) in source.batchnorm_statistics_.items():
        np.testing.assert_array_equal(loaded.batchnorm_statistics_[name][0], mean)
        np.testing.assert_array_equal(loaded.batchnorm_statistics_[name][1], var)
    np.testing.assert_array_equal(
        AdaBN(loaded).fit(Xt).predict(Xt), AdaBN(source).fit(Xt).predict(Xt)
    )
