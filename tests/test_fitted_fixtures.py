"""Estimators fitted and pickled by an earlier version (``tests/fixtures/fitted``) load,
predict as they did, and a seeded fit today reproduces what that version fitted.

The fixtures were written before the fine-tuning engine moved to ``sktransfer/training``
(version 0.1.0's layout: ``sktransfer._training``, ``sktransfer._peft``): they are the
pickles a user may hold. Regenerate them only for a deliberate change of the numbers.
"""

import pathlib

import joblib
import numpy as np
import pytest
from fitted_cases import CASES, ddp_fit, fit_case, outputs

HERE = pathlib.Path(__file__).resolve().parent / "fixtures" / "fitted"
SAVED = np.load(HERE / "outputs.npz")
# Deliberate changes of a fit's numbers since the fixtures were written, each named in
# make_fixtures.py and in its commit; the pickles must still predict as they did.
REFIT = np.load(HERE / "refit.npz")

# A forward pass of the same weights on the same rows: float32 kernels may block the sums
# differently on another CPU or thread count (last bits), nothing more.
PREDICT_TOL = {"rtol": 1e-5, "atol": 1e-6}
# A whole seeded fit: hundreds of Adam steps carry those last-bit differences along.
# The fixtures pass at OMP_NUM_THREADS=1 and 2 on the machine that wrote them.
FIT_TOL = {"rtol": 1e-4, "atol": 1e-5}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def saved(name, files=SAVED):
    prefix = f"{name}/"
    return {k[len(prefix) :]: files[k] for k in files.files if k.startswith(prefix)}


def mismatches(got, want, tol) -> list[str]:
    """The outputs that differ from the fixture beyond ``tol`` (or are missing), by name."""
    bad = sorted(set(want) - {"X_new"} ^ set(got))
    for key in sorted(set(got) & set(want)):
        if not np.allclose(got[key], want[key], **tol):
            err = np.abs(np.asarray(got[key]) - np.asarray(want[key])).max()
            bad.append(f"{key} (max abs difference {err:.3g})")
    return bad


@pytest.mark.parametrize("name", [*CASES, "ddp"])
def test_a_pickled_fixture_loads_and_predicts_as_when_it_was_written(name):
    want = saved(name) or saved(name, REFIT)  # a case newer than 0.1.0: its first pickle
    est = joblib.load(HERE / f"{slug(name)}.joblib")
    assert mismatches(outputs(est, want["X_new"]), want, PREDICT_TOL) == []


@pytest.mark.parametrize("name", list(CASES))
def test_a_seeded_fit_reproduces_the_fixture(name):
    want = saved(name, REFIT) or saved(name)
    est, X_new = fit_case(name)
    np.testing.assert_array_equal(X_new, want["X_new"])
    assert mismatches(outputs(est, X_new), want, FIT_TOL) == []


@pytest.mark.slow  # two processes start and import torch
def test_a_seeded_ddp_fit_reproduces_the_fixture(tmp_path):
    want = saved("ddp")
    est, X_new = ddp_fit(tmp_path / "ddp.joblib")
    np.testing.assert_array_equal(X_new, want["X_new"])
    assert mismatches(outputs(est, X_new), want, FIT_TOL) == []
