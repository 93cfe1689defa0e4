"""``lr_mult="auto"``: one rate for every layer of a text encoder, the ladder for images."""

import numpy as np
import pytest
from conftest import TinyCNN
from sklearn.utils._param_validation import InvalidParameterError
from test_text import TOPIC, TOPICS
from torch import nn

from sktransfer import FineTuneClassifier, MultiTaskFineTune


def _rates(out: str) -> tuple[float, float]:
    """(head, first block) peak rates from the unfrozen phase's verbose line."""
    line = next(ln for ln in out.splitlines() if "peak lr" in ln)
    head = float(line.split("peak lr ")[1].split(" ")[0])
    first = float(line.split(" to ")[1].split(" ")[0])
    return head, first


def test_a_text_encoder_trains_every_layer_at_one_rate(tiny_dir, capsys):
    clf = FineTuneClassifier(tiny_dir, contrastive=False, verbose=1, random_state=0)
    clf.fit(TOPICS, TOPIC)
    assert clf.lr_mult_ == 1.0
    head, first = _rates(capsys.readouterr().out)
    assert head == first == pytest.approx(clf.lr_)


def test_an_image_body_keeps_the_ladder_of_ten(rgb_images, digits, capsys):
    clf = FineTuneClassifier(TinyCNN(), image_size=16, verbose=1, random_state=0)
    clf.fit(rgb_images, digits[1])
    assert clf.lr_mult_ == 10.0
    head, first = _rates(capsys.readouterr().out)
    assert first == pytest.approx(head / 10)


def test_a_number_given_is_kept_and_a_bad_one_is_refused(tiny_dir):
    clf = FineTuneClassifier(tiny_dir, contrastive=False, lr_mult=4, random_state=0)
    assert clf.fit(TOPICS, TOPIC).lr_mult_ == 4.0
    with pytest.raises(InvalidParameterError, match="lr_mult"):
        FineTuneClassifier(tiny_dir, lr_mult=0.5).fit(TOPICS, TOPIC)
    with pytest.raises(InvalidParameterError, match="lr_mult"):
        FineTuneClassifier(tiny_dir, lr_mult="flat").fit(TOPICS, TOPIC)


def _table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


def _body():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())


def test_a_model_fitted_before_lr_mult_was_resolved_continues_with_its_number(capsys):
    """Older fitted models have no ``lr_mult_``: warm_start's next fit takes the number
    their ``lr_mult`` held."""
    X, y = _table()
    clf = FineTuneClassifier(_body(), lr_mult=4.0, warm_start=True, verbose=1, random_state=0)
    clf.fit(X, y)
    del clf.__dict__["lr_mult_"]
    clf.__dict__["lr_mult"] = 5.0  # what an old model's parameter held (no set_params)
    clf._resolve_rates = lambda: None  # as an old model's continuing fit: nothing resolved
    capsys.readouterr()
    clf.fit(X, y)
    head, first = _rates(capsys.readouterr().out)
    assert first == pytest.approx(head / 5)


def test_set_params_before_a_warm_start_fit_changes_the_rates(capsys):
    X, y = _table()
    clf = FineTuneClassifier(_body(), warm_start=True, verbose=1, random_state=0).fit(X, y)
    assert clf.lr_mult_ == 10.0
    capsys.readouterr()
    clf.set_params(lr_mult=2.0).fit(X, y)  # continues the fitted body
    head, first = _rates(capsys.readouterr().out)
    assert clf.lr_mult_ == 2.0 and first == pytest.approx(head / 2)


def test_an_unpickled_old_model_reads_lr_mult_from_its_parameter():
    import pickle

    X, y = _table()
    clf = FineTuneClassifier(_body(), lr_mult=3.0, random_state=0).fit(X, y)
    state = clf.__getstate__()
    del state["lr_mult_"]  # as pickled before the attribute existed
    old = FineTuneClassifier.__new__(FineTuneClassifier)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.lr_mult_ == 3.0


def test_multitask_resolves_it_too():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    Y = np.c_[(X[:, 0] > 0).astype(int), X[:, 1]]
    body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    mt = MultiTaskFineTune(body, tasks=["classification", "regression"], random_state=0)
    assert mt.fit(X, Y).lr_mult_ == 10.0
