"""A catalogue of bad inputs, tried as a new user would: each gets a clear error (or warning)
that says what was wrong and where, and none changes what the user passed.

Each case builds its own inputs (``X``, ``y``, ``sample_weight``, a module, ...) from
``make()``, then ``call(inputs)`` does the wrong thing. The runner checks the error type
and message, then that every input still equals a snapshot taken before the call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TinyCNN
from torch import nn


@dataclass
class Case:
    id: str
    make: Callable[[Any], dict]
    call: Callable[[dict], Any]
    error: type | tuple | None = ValueError
    match: str = ""
    warns: type | None = None
    marks: tuple = field(default_factory=tuple)


CASES: list[Case] = []


def case(id, error=ValueError, match="", warns=None, marks=()):
    """Register ``call`` (a function of the inputs dict) with the inputs from ``make``."""

    def register(pair):
        make, call = pair
        CASES.append(Case(id, make, call, error, match, warns, tuple(marks)))
        return pair

    return register


def lazy_mlp(width=8):
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU())


def table(n=40, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = (X[:, 0] > 0).astype(int)
    return X, y


def _snapshot(value):
    if isinstance(value, nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}, repr(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _assert_same(before, after, name):
    if isinstance(after, nn.Module):
        state, text = before
        assert repr(after) == text, f"{name}: the module's structure changed"
        now = after.state_dict()
        assert now.keys() == state.keys(), f"{name}: the module's parameters changed"
        for k, v in state.items():
            assert torch.equal(now[k], v), f"{name}: parameter {k} changed"
    elif isinstance(after, (pd.DataFrame, pd.Series)):
        assert after.equals(before), f"{name} changed"
    elif isinstance(after, torch.Tensor):
        assert torch.equal(after, before), f"{name} changed"
    elif isinstance(after, np.ndarray):
        assert after.dtype == before.dtype and after.shape == before.shape, f"{name} changed"
        np.testing.assert_array_equal(after, before, err_msg=f"{name} changed")
    elif isinstance(after, list):
        assert len(after) == len(before), f"{name} changed length"
        for i, (a, b) in enumerate(zip(after, before)):
            _assert_same(b, a, f"{name}[{i}]")
    else:
        assert after == before, f"{name} changed"


def _params():
    return [pytest.param(c, id=c.id, marks=c.marks) for c in CASES]


# =========================================================================== inputs and images
# (lead)


# =========================================================================== fine-tuning and
# feature transfer (lead)


# =========================================================================== adaptation
# estimators (helper: CORAL, ImportanceWeighting, SourceWeighted, TrAdaBoost*)


def shifted(n=40, d=5, seed=0):
    """A table with its last quarter marked target (``sample_domain`` -1), labels everywhere."""
    X, y = table(n, d, seed)
    return {"X": X, "y": y, "sample_domain": np.where(np.arange(n) < 3 * n // 4, 0, -1)}


def _adapt(make_estimator):
    """``call`` that fits ``make_estimator()`` on the case's inputs."""

    def call(inp):
        return make_estimator().fit(inp["X"], inp.get("y"), sample_domain=inp["sample_domain"])

    return call


def _iw():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import ImportanceWeighting

    return ImportanceWeighting(LogisticRegression(), random_state=0)


def _coral():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import CORAL

    return CORAL(LogisticRegression())


def _tradaboost():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import TrAdaBoostClassifier

    return TrAdaBoostClassifier(LogisticRegression(), random_state=0)


def _tradaboost_r2():
    from sklearn.linear_model import Ridge

    from sktransfer.adaptation import TrAdaBoostR2

    return TrAdaBoostR2(Ridge(), random_state=0)


def _source_weighted():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import SourceWeighted

    return SourceWeighted(LogisticRegression())


def _iw_knn():
    from sklearn.neighbors import KNeighborsClassifier

    return _iw().set_params(estimator=KNeighborsClassifier())


def _with(**changes):
    """``make`` of a shifted table with some inputs replaced (functions of the original)."""

    def make(tmp):
        inputs = shifted()
        return {**inputs, **{k: f(inputs) for k, f in changes.items()}}

    return make


def _sparse_fit(make_estimator, fmt):
    def call(inp):
        import scipy.sparse

        X = scipy.sparse.csr_matrix(inp["X"]).asformat(fmt)
        return make_estimator().fit(X, inp["y"], sample_domain=inp["sample_domain"])

    return call


def _no_target_warning():
    from sktransfer.adaptation import NoTargetRowsWarning

    return NoTargetRowsWarning


case("adaptation: 1-D X at predict", match=r"(?s)Expected 2D array, got 1D array.*Reshape")(
    (lambda tmp: shifted(), lambda inp: _adapt(_iw)(inp).predict(inp["X"][0]))
)
case("adaptation: predict X with another width", match="X has 6 features, but .* expecting 5")(
    (
        lambda tmp: shifted(),
        lambda inp: _adapt(_tradaboost)(inp).predict(np.hstack([inp["X"], inp["X"][:, :1]])),
    )
)
case("adaptation: 1-D X at fit", match="Expected 2D array, got 1D array")(
    (_with(X=lambda i: i["X"][:, 0]), _adapt(_source_weighted))
)
case("adaptation: sparse COO X for CORAL", TypeError, "Sparse data was passed for X, but dense")(
    (lambda tmp: shifted(), _sparse_fit(_coral, "coo"))
)
case("adaptation: sparse DIA X for KMM", TypeError, "Sparse data was passed for X, but dense")(
    (
        lambda tmp: shifted(),
        _sparse_fit(lambda: _iw().set_params(method="kmm"), "dia"),
    )
)
case("adaptation: NaN in X", match="Input X contains NaN")(
    (_with(X=lambda i: np.where(np.arange(40)[:, None] == 3, np.nan, i["X"])), _adapt(_iw))
)
case("adaptation: infinity in X for CORAL", match="Input X contains infinity")(
    (_with(X=lambda i: np.where(np.arange(40)[:, None] == 3, np.inf, i["X"])), _adapt(_coral))
)
case("adaptation: complex X", match="Complex data not supported")(
    (_with(X=lambda i: i["X"] + 1j), _adapt(_tradaboost))
)
case("adaptation: empty X", match=r"0 sample\(s\)")(
    (
        _with(
            X=lambda i: i["X"][:0],
            y=lambda i: i["y"][:0],
            sample_domain=lambda i: i["sample_domain"][:0],
        ),
        _adapt(_iw),
    )
)
case("adaptation: y is None", match="requires y to be passed, but the target y is None")(
    (_with(y=lambda i: None), _adapt(_source_weighted))
)
case("adaptation: y shorter than X", match=r"inconsistent numbers of samples: \[40, 39\]")(
    (_with(y=lambda i: i["y"][:-1]), _adapt(_coral))
)
case(
    "adaptation: string y for a regressor", match="A regressor needs numeric y; row 0 of y is 'yes'"
)((_with(y=lambda i: np.where(i["y"] == 1, "yes", "no")), _adapt(_tradaboost_r2)))
case("adaptation: infinite y for a regressor", match="Input y contains infinity")(
    (_with(y=lambda i: np.where(np.arange(40) == 5, np.inf, i["y"] * 1.0)), _adapt(_tradaboost_r2))
)
case("adaptation: continuous y for a classifier", match="Unknown label type: continuous")(
    (_with(y=lambda i: i["X"][:, 0]), _adapt(_tradaboost))
)
case("adaptation: NaN y for a classifier", match="Classifiers mark unlabelled .* y == -1")(
    (_with(y=lambda i: np.where(np.arange(40) >= 30, np.nan, i["y"] * 1.0)), _adapt(_coral))
)
case("adaptation: sample_domain one short", match="sample_domain has 39 entries but X has 40")(
    (_with(sample_domain=lambda i: i["sample_domain"][:-1]), _adapt(_iw))
)
case("adaptation: sample_domain of floats", match="sample_domain must hold integers")(
    (_with(sample_domain=lambda i: i["sample_domain"] * 1.0), _adapt(_coral))
)
case("adaptation: sample_domain of strings", match="sample_domain must hold integers")(
    (
        _with(sample_domain=lambda i: np.where(i["sample_domain"] < 0, "target", "source")),
        _adapt(_iw),
    )
)
case("adaptation: 2-D sample_domain", match="sample_domain must be 1-D")(
    (_with(sample_domain=lambda i: i["sample_domain"][None, :]), _adapt(_tradaboost))
)
case("adaptation: every row a target row", match="No source rows: every row is a target row")(
    (_with(sample_domain=lambda i: np.full(40, -1)), _adapt(_iw))
)
case("adaptation: source rows marked unlabelled", match="2 source rows are unlabelled")(
    (_with(y=lambda i: np.where(np.arange(40) < 2, -1, i["y"])), _adapt(_source_weighted))
)
case("adaptation: no labelled target rows for TrAdaBoost", match="needs labelled target rows")(
    (_with(y=lambda i: np.where(i["sample_domain"] < 0, -1, i["y"])), _adapt(_tradaboost))
)
case(
    "adaptation: an estimator without sample_weight",
    match="KNeighborsClassifier.fit does not accept sample_weight",
)((lambda tmp: shifted(), _adapt(_iw_knn)))
case(
    "adaptation: no target rows (warning)",
    warns=_no_target_warning(),
    match=r"CORAL got no target rows.*sample_domain < 0.*y == -1",
)((_with(sample_domain=lambda i: np.zeros(40, dtype=int)), _adapt(_coral)))


# =========================================================================== the runner


def test_the_catalogue_covers_at_least_40_kinds_of_bad_input():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    assert len(ids) >= 40, len(ids)


@pytest.mark.parametrize("bad", _params())
def test_bad_input_gets_a_clear_error_and_changes_nothing(bad, tmp_path):
    inputs = bad.make(tmp_path)
    before = {k: _snapshot(v) for k, v in inputs.items()}
    if bad.warns is not None:
        with pytest.warns(bad.warns, match=bad.match):
            bad.call(inputs)
    else:
        with pytest.raises(bad.error, match=bad.match):
            bad.call(inputs)
    for k, v in inputs.items():
        _assert_same(before[k], v, k)
