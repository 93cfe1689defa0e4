"""channels_last on the CPU: the switch, and the same predictions in either layout."""

import numpy as np
import pytest
import torch
from conftest import TinyCNN

from sktransfer import FeatureTransferClassifier, FineTuneClassifier
from sktransfer._device import CHANNELS_LAST_ENV, use_channels_last

CPU = torch.device("cpu")


def test_convolutional_bodies_run_channels_last_on_the_cpu_unless_switched_off(monkeypatch):
    monkeypatch.delenv(CHANNELS_LAST_ENV, raising=False)
    assert use_channels_last(CPU, True)
    assert not use_channels_last(CPU, False)  # no convolution: nothing to gain
    monkeypatch.setenv(CHANNELS_LAST_ENV, "0")
    assert not use_channels_last(CPU, True)
    monkeypatch.setenv(CHANNELS_LAST_ENV, "1")
    assert use_channels_last(CPU, True)


def test_a_bad_switch_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(CHANNELS_LAST_ENV, "yes")
    with pytest.raises(ValueError, match="SKTRANSFER_CHANNELS_LAST='yes'.*1.*or 0"):
        use_channels_last(CPU, True)


def _fit(monkeypatch, flag, X, y):
    monkeypatch.setenv(CHANNELS_LAST_ENV, flag)
    clf = FineTuneClassifier(TinyCNN(), image_size=16, random_state=0)
    return clf.fit(X, y)


def test_a_fine_tune_trains_in_channels_last_and_predicts_as_in_the_default_layout(
    rgb_images, digits, monkeypatch
):
    X, y = rgb_images, digits[1]
    nhwc = _fit(monkeypatch, "1", X, y)
    weight = nhwc.module_.body.body.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    nchw = _fit(monkeypatch, "0", X, y)
    assert nchw.module_.body.body.conv.weight.is_contiguous()
    # Two layouts are two float32 code paths: the same model to rounding, not bit for bit.
    np.testing.assert_allclose(nhwc.predict_proba(X), nchw.predict_proba(X), rtol=1e-3, atol=1e-4)


def test_extraction_gives_the_same_features_in_either_layout(rgb_images, digits, monkeypatch):
    X, y = rgb_images, digits[1]
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(CHANNELS_LAST_ENV, flag)
        probe = FeatureTransferClassifier(TinyCNN(), image_size=16, cache=False).fit(X, y)
        out[flag] = probe.features_.transform(X)
    np.testing.assert_allclose(out["1"], out["0"], rtol=1e-4, atol=1e-5)


def test_the_layout_benchmark_runs_and_prints_both_ratios():
    import pathlib
    import subprocess
    import sys

    bench = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_memory_format.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(ln for ln in out.stdout.splitlines() if ln.startswith("| efficientnet_lite0 | 32"))
    ratios = [float(c.strip().rstrip("x")) for c in row.split("|")[1:-1] if c.strip().endswith("x")]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
