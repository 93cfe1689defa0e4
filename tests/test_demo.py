"""The demo's learning curve: one row per model and size, at every estimator's defaults."""

import pytest
import torch
from torch import nn

from sktransfer.demo import LEARNING_CURVE, Steps, learning_curve, plot_curve


def grey_convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def test_learning_curve_gives_one_row_per_model_and_size(digits):
    X, y = digits
    rows = learning_curve(
        X[:30], y[:30], X[30:], y[30:], [8, 4], image_size=None, seed=0, backbone=grey_convnet()
    )
    assert [(name, n) for name, n, _, _ in rows] == [
        (name, n) for n in (4, 8) for name in LEARNING_CURVE
    ]
    for _, _, accuracy, seconds in rows:
        assert 0.0 <= accuracy <= 1.0
        assert seconds >= 0.0


def test_learning_curve_refuses_sizes_smaller_than_the_classes(digits):
    X, y = digits
    with pytest.raises(ValueError, match="at least the 4 classes"):
        learning_curve(X, y, X, y, [2, 8], image_size=None, seed=0, backbone=grey_convnet())


def test_plot_curve_writes_a_png(tmp_path):
    rows = [
        (name, n, 0.1 * i + n / 1000, 1.0)
        for i, name in enumerate(LEARNING_CURVE)
        for n in (50, 150, 500)
    ]
    path = tmp_path / "curve.png"
    plot_curve("accuracy vs labelled images", rows, path, chance=0.1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_fit_of_the_curve_prints_a_line_with_its_accuracy_and_seconds(digits, capsys):
    X, y = digits
    rows = learning_curve(
        X[:30],
        y[:30],
        X[30:],
        y[30:],
        [4, 8],
        image_size=None,
        seed=0,
        backbone=grey_convnet(),
        steps=Steps(2 * len(LEARNING_CURVE)),
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(rows) == 2 * len(LEARNING_CURVE)
    for i, (line, (name, n, accuracy, _)) in enumerate(zip(lines, rows), start=1):
        assert line.startswith(f"  [{i}/8] N={n} ")
        assert f" {name} ... test accuracy {accuracy:.3f}, " in line
        assert line.endswith(" s") and line.split()[-2].isdigit()


def test_a_step_that_fails_ends_its_line_saying_so(capsys):
    steps = Steps()
    with pytest.raises(RuntimeError, match="boom"), steps("extracting") as step:
        step["got"] = "accuracy 1.000"
        raise RuntimeError("boom")
    out = capsys.readouterr().out
    assert out.startswith("  extracting ... failed after ") and out.endswith(" s\n")
    assert "accuracy" not in out
