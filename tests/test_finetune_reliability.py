"""What a fine-tune does with settings and events that used to pass in silence or with a
misleading message (issue 23's catalogue, the fine-tuning half)."""

import re
import warnings

import numpy as np
import pytest
from skorch.callbacks import Callback
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor


def body():
    return nn.Sequential(nn.LazyLinear(8), nn.ReLU())


def test_max_epochs_0_without_the_probe_is_refused_instead_of_an_untrained_head(table):
    X, y = table
    with pytest.raises(ValueError, match="max_epochs=0 with linear_probe=False trains nothing"):
        FineTuneClassifier(body(), max_epochs=0, linear_probe=False).fit(X, y)


def test_freeze_beyond_the_bodys_blocks_is_refused_naming_how_many_there_are(table):
    X, y = table
    with pytest.raises(ValueError, match=r"freeze=999 but the body has 2 blocks"):
        two = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 8))
        FineTuneClassifier(two, freeze=999).fit(X, y)


def test_partial_fit_takes_the_classes_in_any_order(table):
    X, y = table
    clf = FineTuneClassifier(body(), random_state=0)
    clf.partial_fit(X, y, classes=[2, 0, 1])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict(X).shape == (len(X),)


def test_a_classifier_fitted_on_one_class_is_an_error_as_in_scikit_learn(table):
    X, _ = table
    with pytest.raises(ValueError, match=r"needs at least two classes, but y has one class: \[1\]"):
        FineTuneClassifier(body()).fit(X, np.ones(len(X), int))


class StopAt(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


def test_an_interrupted_fit_warns_and_says_so_in_interrupted_(table):
    X, y = table
    clf = FineTuneClassifier(body(), max_epochs=10, callbacks=[StopAt()], random_state=0)
    with pytest.warns(
        UserWarning,
        match="interrupted .KeyboardInterrupt. in the unfrozen phase after 2 of 10 epochs",
    ):
        clf.fit(X, y)
    assert clf.interrupted_ is True
    assert clf.predict(X).shape == (len(X),)  # skorch's graceful stop is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.set_params(callbacks=None).fit(X, y)
    assert clf.interrupted_ is False


def test_warm_start_after_a_new_backbone_starts_from_it_and_says_so(table):
    X, y = table
    clf = FineTuneClassifier(body(), warm_start=True, random_state=0).fit(X, y)
    old = clf.backbone_.module
    clf.set_params(backbone=nn.Sequential(nn.LazyLinear(5), nn.ReLU()))
    with pytest.warns(UserWarning, match="backbone was changed since the last fit"):
        clf.fit(X, y)
    assert clf.backbone_.module is not old
    assert clf.backbone_.dim == 5


def test_warm_start_with_the_same_backbone_continues_without_a_word(table):
    X, y = table
    clf = FineTuneClassifier(body(), warm_start=True, random_state=0).fit(X, y)
    old = clf.module_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(X, y)
    assert clf.module_ is old


class Widest(nn.Module):
    """A tabular body that records the most rows one forward call saw."""

    most = 0

    def __init__(self):
        super().__init__()
        self.linear = nn.LazyLinear(16)

    def forward(self, x):
        Widest.most = max(Widest.most, len(x))
        return self.linear(x)


def test_predict_on_many_rows_runs_batch_by_batch():
    rng = np.random.RandomState(0)
    X, y = rng.randn(500, 5), rng.randn(500)
    reg = FineTuneRegressor(Widest(), random_state=0).fit(X, y)
    Widest.most = 0
    out = reg.predict(rng.randn(5000, 5))
    assert out.shape == (5000,)
    assert Widest.most <= reg.batch_size  # 32, the default


def test_history_reads_as_plain_numbers(table):
    X, y = table
    clf = FineTuneClassifier(body(), random_state=0).fit(X, y)
    assert "np.float" not in repr(clf.history_)
    assert all(type(h["train_loss"]) is float for h in clf.history_)


def test_a_redirected_epoch_table_has_no_terminal_colour_codes(table, capsys):
    X, y = table
    FineTuneClassifier(body(), verbose=1, random_state=0).fit(X, y)
    printed = capsys.readouterr().out
    assert "train_loss" in printed
    assert not re.search("\x1b\\[", printed)


def test_a_fitted_fine_tune_pickles_at_most_one_and_a_half_times_its_weights():
    import pickle

    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 64).astype(np.float32), rng.randint(0, 3, 200)
    wide = nn.Sequential(nn.LazyLinear(1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU())
    clf = FineTuneClassifier(wide, random_state=0).fit(X, y)
    weights = sum(t.numel() * t.element_size() for t in clf.module_.state_dict().values())
    # beyond the backbone parameter itself (the user's module; a registered name costs
    # nothing)
    spec = len(pickle.dumps(clf.backbone))
    assert len(pickle.dumps(clf)) < 1.5 * weights + spec
    assert clf.net_.optimizer_ is None  # AdamW's moments: twice the weights, not kept
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_partial_fit_after_fit_trains_on_from_the_fitted_weights(table):
    X, y = table
    clf = FineTuneClassifier(body(), max_epochs=3, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.partial_fit(X, y)
    assert len(clf.net_.history) == 4  # the fit's three epochs, then one more
    assert not np.array_equal(clf.predict_proba(X), before)
    clf.partial_fit(X, y)  # its optimiser state is kept between partial_fit calls
    assert clf.net_.optimizer_ is not None


def test_verbose_predict_shows_progress_and_gives_the_same_numbers(capsys):
    from conftest import TinyCNN

    X = np.random.RandomState(0).rand(40, 3, 16, 16).astype(np.float32)
    y = np.arange(40) % 2
    clf = FineTuneClassifier(TinyCNN(), random_state=0, batch_size=16).fit(X, y)
    quiet = clf.predict_proba(X)
    capsys.readouterr()
    clf.set_params(verbose=1)
    loud = clf.predict_proba(X)
    err = capsys.readouterr().err
    assert "FineTuneClassifier.predict: 40 rows in" in err and "rows/s" in err
    np.testing.assert_array_equal(loud, quiet)
