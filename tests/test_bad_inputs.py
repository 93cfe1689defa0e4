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
