"""The contrastive phase (``FineTuneClassifier(contrastive=...)``): SetFit's pair loss
on the body before the probe, on by default for transformer bodies on few rows."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from test_text import TOPIC, TOPICS
from torch import nn

import sktransfer.training._contrastive as contrastive_module
from sktransfer import FineTuneClassifier, FineTuneRegressor
from sktransfer.training import CONTRASTIVE_MAX_ROWS, CONTRASTIVE_STEPS, pair_loss


def _cos(z):
    u = torch.nn.functional.normalize(z, dim=1)
    return u @ u.T


def test_pair_loss_is_setfits_cosine_loss_with_positive_and_negative_pairs_halved():
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.5]])
    y = torch.tensor([0, 0, 1, 1])
    c = _cos(z)
    pos = [(c[0, 1] - 1) ** 2, (c[2, 3] - 1) ** 2]
    neg = [c[0, 2] ** 2, c[0, 3] ** 2, c[1, 2] ** 2, c[1, 3] ** 2]
    expected = 0.5 * (sum(pos) / 2) + 0.5 * (sum(neg) / 4)
    assert float(pair_loss(z, y)) == pytest.approx(float(expected), rel=1e-6)


def test_pair_loss_weighs_a_pair_by_both_rows_weights_and_a_weight_of_zero_drops_it():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 1, 1, 1])
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    assert float(pair_loss(z, y, w)) == pytest.approx(float(pair_loss(z[:4], y[:4])), rel=1e-6)
    # one class only: the positive pairs alone; gradients flow
    z.requires_grad_(True)
    loss = pair_loss(z, torch.zeros(5, dtype=torch.long))
    c = _cos(z.detach())
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    assert float(loss.detach()) == pytest.approx(float(((c[upper] - 1) ** 2).mean()), rel=1e-6)
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def _table(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 6).astype("float32")
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)


def _attention_like_body():
    # LayerNorm makes the body a "transformer" (body_family), as text encoders and ViTs are
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU())


def _class_separation(clf, X, y):
    """Mean cosine within a class minus across classes, on the fitted body's features."""
    with torch.no_grad():
        z = clf.backbone_.module(torch.from_numpy(X))
    c = _cos(z).numpy()
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    return c[same & off].mean() - c[~same].mean()


def _epochs(n_rows, batch=32):
    return -(-CONTRASTIVE_STEPS // -(-n_rows // batch))


def test_auto_runs_it_for_a_text_encoder_then_solves_the_head_as_setfit_does(tiny_dir):
    clf = FineTuneClassifier(tiny_dir, random_state=0).fit(TOPICS, TOPIC)
    assert clf.family_ == "transformer" and clf.contrastive_ is True
    # max_epochs="auto" after the pairs: no classification epoch, the probe is the head
    assert [h["phase"] for h in clf.history_] == ["contrastive"] * _epochs(24) + ["probe"]
    assert clf.max_epochs_ == 0
    body = sum(p.numel() for p in clf.backbone_.module.parameters())
    assert clf.n_trainable_params_ == body + (32 * 2 + 2)
    assert clf.predict_proba(TOPICS).shape == (24, 2)


def test_without_epochs_no_row_is_held_out(tiny_dir, capsys):
    clf = FineTuneClassifier(tiny_dir, wise="auto", early_stopping=True, verbose=1)
    clf.set_params(random_state=0).fit(TOPICS, TOPIC)
    said = capsys.readouterr().out
    assert f"contrastive: {_epochs(24)} epochs on 24 rows" in said
    assert "linear probe on 24 rows" in said and clf.wise_ == 0.0


def test_a_number_of_epochs_given_still_trains_after_the_pairs():
    X, y = _table()
    clf = FineTuneClassifier(_attention_like_body(), contrastive=True, max_epochs=2)
    phases = [h["phase"] for h in clf.set_params(random_state=0).fit(X, y).history_]
    assert clf.contrastive_ and phases[-3:] == ["probe", "all", "all"]


def test_epochs_follow_the_pairs_without_the_probe_or_with_adaptation():
    X, y = _table()
    no_probe = FineTuneClassifier(_attention_like_body(), contrastive=True, linear_probe=False)
    no_probe.set_params(random_state=0).fit(X, y)
    assert no_probe.contrastive_ and no_probe.max_epochs_ > 0  # the head is not left random
    y_t = y.copy()
    y_t[60:] = -1  # unlabelled target rows
    dann = FineTuneClassifier(_attention_like_body(), contrastive=True, adaptation="dann")
    dann.set_params(random_state=0).fit(X, y_t)
    assert dann.contrastive_ and dann.max_epochs_ > 0
    assert len(dann.contrastive_history_) == _epochs(60)  # the 60 labelled rows pair


def test_the_phase_pulls_a_class_together_and_the_classes_apart():
    X, y = _table(120)
    kw = dict(max_epochs=0, random_state=0)  # the probe on the body each phase left

    def body():  # an MLP trains at its family's rate, 1e-2
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU())

    before = FineTuneClassifier(body(), contrastive=False, **kw).fit(X, y)
    after = FineTuneClassifier(body(), contrastive=True, **kw).fit(X, y)
    losses = [h["train_loss"] for h in after.contrastive_history_]
    assert losses[-1] < 0.7 * losses[0]
    assert _class_separation(after, X, y) > _class_separation(before, X, y) + 0.1


def test_auto_leaves_it_off_where_it_was_not_measured_or_does_not_belong(tiny_dir):
    X, y = _table()
    # measured on text encoders only: a LayerNorm body on a table keeps the fine-tune
    table = FineTuneClassifier(_attention_like_body(), random_state=0).fit(X, y)
    assert table.family_ == "transformer" and table.contrastive_ is False
    for kw in ({"freeze": 1}, {"adapter": "bitfit"}, {"weights": None}):
        clf = FineTuneClassifier(tiny_dir, random_state=0, **kw).fit(TOPICS, TOPIC)
        assert clf.contrastive_ is False, kw
    many = TOPICS * (CONTRASTIVE_MAX_ROWS // 24 + 1)
    clf = FineTuneClassifier(tiny_dir, random_state=0)
    assert clf.fit(many, np.tile(TOPIC, len(many) // 24)).contrastive_ is False
    Y = np.stack([y, 1 - y * (X[:, 2] > 0)], axis=1)  # multilabel: rows have no one class
    clf = FineTuneClassifier(_attention_like_body(), contrastive=True, random_state=0).fit(X, Y)
    assert clf.contrastive_ is False and "contrastive" not in [h["phase"] for h in clf.history_]


def test_partial_fit_and_the_other_faces_say_it_did_not_run(tiny_dir):
    X, y = _table()
    clf = FineTuneClassifier(tiny_dir).partial_fit(TOPICS, TOPIC, classes=[0, 1])
    assert clf.contrastive_ is False and clf.contrastive_history_ == []
    assert clf.target_batchnorm_ is False
    reg = FineTuneRegressor(_attention_like_body()).fit(X, X[:, 0])
    assert reg.contrastive_ is False


def test_an_interrupt_in_the_pairs_keeps_a_usable_model_and_says_so(monkeypatch):
    X, y = _table()
    calls = []

    def interrupting(*args):
        calls.append(1)
        if len(calls) == 7:  # in the third epoch (3 batches an epoch)
            raise KeyboardInterrupt
        return pair_loss(*args)

    monkeypatch.setattr(contrastive_module, "pair_loss", interrupting)
    clf = FineTuneClassifier(_attention_like_body(), contrastive=True, random_state=0)
    with pytest.warns(UserWarning, match="in the contrastive phase after 2 of 14 epochs"):
        clf.fit(X, y)
    assert clf.interrupted_ and clf.max_epochs_ == 0 and len(clf.contrastive_history_) == 2
    assert clf.predict(X).shape == (80,)


def test_a_fitted_model_keeps_its_pair_history_through_a_pickle():
    import pickle

    X, y = _table()
    clf = FineTuneClassifier(_attention_like_body(), contrastive=True, random_state=0).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    assert back.contrastive_ and back.history_ == clf.history_
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_true_runs_it_on_any_body_and_false_never():
    X, y = _table()
    body = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
    on = FineTuneClassifier(body, contrastive=True, random_state=0).fit(X, y)
    assert on.contrastive_ is True and len(on.contrastive_history_) > 0
    off = FineTuneClassifier(_attention_like_body(), contrastive=False, random_state=0)
    assert off.fit(X, y).contrastive_ is False and off.contrastive_history_ == []


def test_freeze_holds_during_the_phase():
    X, y = _table()
    body = _attention_like_body()
    first = body[0].weight.detach().clone()
    clf = FineTuneClassifier(body, contrastive=True, freeze=1, random_state=0)
    clf.fit(X, y)
    assert len(clf.contrastive_history_) > 0
    fitted = dict(clf.backbone_.module.named_parameters())
    assert torch.equal(fitted["body.0.weight"], first)  # the first block: frozen
    assert not torch.equal(fitted["body.1.weight"], torch.ones(16))  # the LayerNorm trained
    assert torch.equal(body[0].weight, first)  # and the module passed in is not touched


def test_a_seeded_fit_with_the_phase_is_reproducible():
    X, y = _table()
    torch.manual_seed(0)  # the body's own init: alike for both
    b1 = _attention_like_body()
    torch.manual_seed(0)
    b2 = _attention_like_body()
    p1 = FineTuneClassifier(b1, random_state=3).fit(X, y).predict_proba(X)
    p2 = FineTuneClassifier(b2, random_state=3).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)


def test_the_order_of_the_pairs_follows_random_state():
    X, y = _table()

    torch.manual_seed(0)
    body = _attention_like_body()  # the same initial body every time (the estimator copies it)

    def losses(seed):
        clf = FineTuneClassifier(body, contrastive=True)
        clf.set_params(random_state=seed).fit(X, y)
        return [h["train_loss"] for h in clf.contrastive_history_]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)
    # unseeded fits draw the order from the caller's torch stream, not from a fixed seed
    torch.manual_seed(5)
    first = losses(None)
    torch.manual_seed(6)
    assert losses(None) != first


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"freeze": "backbone"}, "freeze='backbone'"),
        ({"adapter": "bitfit"}, "adapter='bitfit'"),
    ],
)
@pytest.mark.parametrize("true", [True, np.True_])
def test_true_with_a_setting_that_forbids_training_the_body_is_a_clear_error(kw, match, true):
    X, y = _table()
    clf = FineTuneClassifier(_attention_like_body(), contrastive=true, **kw)
    with pytest.raises(ValueError, match=f"contrastive=True.*{match}"):
        clf.fit(X, y)


def test_contrastive_takes_auto_or_a_bool_and_only_the_classifier_has_it():
    X, y = _table()
    with pytest.raises(InvalidParameterError, match="contrastive"):
        FineTuneClassifier(_attention_like_body(), contrastive="yes").fit(X, y)
    assert "contrastive" not in FineTuneRegressor(_attention_like_body()).get_params()
