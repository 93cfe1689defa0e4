"""The epoch table in a redirected log is plain text; on a terminal it keeps its colours."""

import io
import sys

import numpy as np
import pytest
import skorch
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sktransfer._log import PrintLog

ESC = "\x1b["


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit_verbose(print_log):
    """Five epochs of a tiny classifier at skorch's verbose=1, the table on sys.stdout."""
    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    extra = {} if print_log is None else {"callbacks__print_log": print_log}
    net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1)), max_epochs=5, lr=0.5, **extra
    )
    net.fit(X, y)


@pytest.fixture
def no_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_skorchs_own_table_writes_colour_codes_into_a_redirected_log(capsys, no_no_color):
    # what sktransfer's estimators printed before: the reason for sktransfer._log
    _fit_verbose(None)
    assert ESC in capsys.readouterr().out


def test_a_redirected_log_gets_the_table_without_colour_codes(capsys, no_no_color):
    _fit_verbose(PrintLog())
    out = capsys.readouterr().out
    assert ESC not in out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["epoch", "train_loss"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "3", "4", "5"]


def test_a_terminal_keeps_the_colours_unless_no_color_is_set(monkeypatch, no_no_color):
    for no_color, expected in ((None, True), ("1", False)):
        if no_color:
            monkeypatch.setenv("NO_COLOR", no_color)
        terminal = Terminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        _fit_verbose(PrintLog())
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        assert (ESC in terminal.getvalue()) is expected, no_color


def test_a_sink_other_than_print_gets_plain_text(no_no_color, monkeypatch):
    monkeypatch.setattr(sys, "stdout", Terminal())  # even with a terminal on stdout
    lines = []
    _fit_verbose(PrintLog(sink=lines.append))
    assert len(lines) == 7 and not any(ESC in line for line in lines)


def test_the_table_is_skorchs(no_no_color):
    assert issubclass(PrintLog, skorch.callbacks.PrintLog)
