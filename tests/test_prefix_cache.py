"""Frozen blocks computed once (``training/_prefix.py``): under ``freeze=k`` the unfrozen
phase trains from the frozen blocks' output, computed once per row, and the fit is the
one it would have been."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import FineTuneClassifier
from sktransfer.training import _prefix


def convnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
    )


class Doubling(nn.Module):
    """A body that does something between its submodules: no module's output alone is
    what the next one sees."""

    def __init__(self):
        super().__init__()
        self.body = convnet()

    def forward(self, x):
        x = self.body[:3](x)
        return self.body[3:](2 * x)


def images(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 12, 12, 3)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :, 0] = 1.0
    X[y == 2] = np.clip(X[y == 2] + 0.5, 0, 1)
    return X, y


def weights(clf):
    return {k: v.clone() for k, v in clf.backbone_.module.state_dict().items()}


def fit(body, capsys, **params):
    X, y = images()
    clf = FineTuneClassifier(body, random_state=0, verbose=1, **params).fit(X, y)
    return clf, capsys.readouterr().out


@pytest.mark.parametrize("early_stopping", [False, True])
def test_cached_fit_equals_the_fit_that_recomputes_the_frozen_blocks(
    capsys, monkeypatch, early_stopping
):
    cached, said = fit(convnet(), capsys, freeze=4, early_stopping=early_stopping)
    assert "frozen blocks: computed once, up to body.5 (6 submodules" in said
    monkeypatch.setattr(_prefix, "MAX_CACHE_BYTES", 0)
    plain, said = fit(convnet(), capsys, freeze=4, early_stopping=early_stopping)
    assert "recomputed every epoch (their output, 0.0 GiB for 60 rows, is over" in said
    a, b = weights(cached), weights(plain)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert len(cached.history_) == len(plain.history_)
    X, _ = images(seed=1)
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-5)


def test_a_body_that_does_more_than_chain_its_modules_trains_the_usual_way(capsys, monkeypatch):
    frozen = ["body.body.[0134].*"]  # two conv blocks, the doubling between them
    clf, said = fit(Doubling(), capsys, freeze=frozen)
    assert "frozen blocks: recomputed every epoch (the body does more than chain" in said
    monkeypatch.setattr(_prefix, "MAX_CACHE_BYTES", 0)
    plain, _ = fit(Doubling(), capsys, freeze=frozen)
    for k, v in weights(plain).items():
        torch.testing.assert_close(weights(clf)[k], v, rtol=0, atol=0, msg=k)


def test_a_dropout_before_the_trainable_blocks_ends_what_is_computed_once(capsys):
    body = convnet()
    body.insert(3, nn.Dropout(0.5))  # between frozen blocks: without it, up to body.6
    _, said = fit(body, capsys, freeze=4)
    assert "computed once, up to body.2 (3 submodules" in said


@pytest.mark.parametrize(
    "params", [{"freeze": "none"}, {"freeze": "backbone"}, {"freeze": 2, "augment": "flip"}]
)
def test_nothing_is_computed_once_where_the_frozen_output_changes_or_nothing_is_frozen(
    capsys, params
):
    _, said = fit(convnet(), capsys, **params)
    assert "frozen blocks" not in said


def test_the_users_module_and_the_fitted_one_keep_their_own_forward(capsys):
    body = convnet()
    clf, said = fit(body, capsys, freeze=2)
    assert "computed once" in said
    for module in list(body.modules()) + list(clf.backbone_.module.modules()):
        assert "forward" not in vars(module)
    X, _ = images(n=6, seed=2)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_find_prefix_stops_at_the_first_trainable_call_and_keeps_maximal_modules():
    body = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)
    )
    for p in body[0].parameters():
        p.requires_grad_(False)
    for p in body[1].parameters():
        p.requires_grad_(False)
    x = torch.zeros(2, 3, 4, 4)
    with torch.no_grad():
        names = _prefix.find_prefix(body, x, ["0", "1"], body)
    assert names == ["0", "1"]
    body[1].weight.requires_grad_(True)
    with torch.no_grad():
        assert _prefix.find_prefix(body, x, ["0"], body) == ["0"]
