"""wise="auto", the guard (issue 20, item 4; opt-in: docs/finetuning.md measures why it is
not the default): a fine-tune does not end below its own linear probe; what was kept is
``wise_``, the held-out losses ``wise_losses_``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune
from sktransfer.training import WISE_GRID


def body():
    return nn.Sequential(nn.LazyLinear(16), nn.ReLU())


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def test_the_guard_holds_out_a_tenth_and_keeps_the_best_point_of_the_line(wine, capsys):
    X, y = wine
    clf = FineTuneClassifier(body(), wise="auto", random_state=0, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    n_held = len(y) - int(out.split("all layers: ")[1].split(" rows")[0].split(" on ")[1])
    assert n_held == int(np.ceil(0.1 * len(y)))  # validation_fraction of the labelled rows
    assert f"guard: held-out loss on {n_held} rows" in out
    assert sorted(clf.wise_losses_) == list(WISE_GRID)
    assert clf.wise_ == min(clf.wise_losses_, key=lambda a: (clf.wise_losses_[a], -a))
    assert clf.score(X, y) > 0.9


def test_a_fine_tune_worse_than_its_probe_ends_as_the_probe_on_every_row(wine):
    """A rate that wrecks the body: the guard keeps the probe, solved again on all rows,
    which is what the probe alone (max_epochs=0) gives."""
    X, y = wine
    wrecked = FineTuneClassifier(body(), lr=30.0, wise="auto", random_state=0).fit(X, y)
    plain = FineTuneClassifier(body(), lr=30.0, wise=None, random_state=0).fit(X, y)
    probe = FineTuneClassifier(body(), max_epochs=0, random_state=0).fit(X, y)
    assert wrecked.wise_ == 0.0
    assert wrecked.wise_losses_[0.0] < wrecked.wise_losses_[1.0]
    np.testing.assert_allclose(
        wrecked.predict_proba(X), probe.predict_proba(X), rtol=1e-4, atol=1e-6
    )
    assert wrecked.score(X, y) > plain.score(X, y)


def test_wise_none_and_a_number_train_on_every_row_without_a_guard(wine, capsys):
    X, y = wine
    for wise, kept in ((None, 1.0), (0.5, 0.5)):
        clf = FineTuneClassifier(body(), wise=wise, random_state=0, verbose=1).fit(X, y)
        out = capsys.readouterr().out
        assert f"epochs on {len(y)} rows" in out and "guard" not in out
        assert clf.wise_ == kept and clf.wise_losses_ is None


@pytest.mark.parametrize(
    "params, why",
    [
        ({"adaptation": "coral"}, "the labelled rows are the source domain's"),
        ({"freeze": "backbone"}, "no body trains"),
        ({"linear_probe": False}, "no probe to fall back on"),
    ],
)
def test_where_the_guard_does_not_apply_every_row_trains(wine, params, why):
    X, y = wine
    kw = {"sample_domain": np.where(np.arange(len(y)) % 2, 1, -1)} if "adaptation" in params else {}
    clf = FineTuneClassifier(body(), wise="auto", random_state=0, **params).fit(X, y, **kw)
    assert clf.wise_losses_ is None, why
    assert clf.wise_ == (None if params.get("freeze") else 1.0)


def test_fewer_than_twenty_labelled_rows_hold_nothing_out(wine):
    X, y = wine
    rows = np.r_[0:6, 60:66, 130:136]  # 18 rows, three classes
    clf = FineTuneClassifier(body(), wise="auto", random_state=0).fit(X[rows], y[rows])
    assert clf.wise_ == 1.0 and clf.wise_losses_ is None


def test_early_stopping_and_the_guard_share_the_held_out_rows(wine, capsys):
    X, y = wine
    clf = FineTuneClassifier(body(), early_stopping=True, wise="auto", random_state=0, verbose=1)
    clf.fit(X, y)
    out = capsys.readouterr().out
    n_held = int(np.ceil(0.1 * len(y)))
    assert f"epochs on {len(y) - n_held} rows" in out
    assert f"guard: held-out loss on {n_held} rows" in out


def test_the_regressor_and_multitask_are_guarded_too(wine):
    X, y = wine
    reg = FineTuneRegressor(body(), wise="auto", random_state=0).fit(X, X[:, 0] + 0.1 * y)
    assert reg.wise_ in WISE_GRID and len(reg.wise_losses_) == len(WISE_GRID)
    Y = np.c_[y, X[:, 1]]
    mt = MultiTaskFineTune(body(), wise="auto", random_state=0).fit(X, Y)
    assert mt.wise_ in WISE_GRID and len(mt.wise_losses_) == len(WISE_GRID)


def test_the_default_is_the_plain_fine_tune_on_every_row(wine):
    X, y = wine
    clf = FineTuneClassifier(body(), random_state=0).fit(X, y)
    assert clf.wise is None and clf.wise_ == 1.0 and clf.wise_losses_ is None


def test_wise_auto_is_a_valid_value_and_others_are_explained(wine):
    X, y = wine
    with pytest.raises(ValueError, match="wise"):
        FineTuneClassifier(body(), wise="best").fit(X, y)
