"""``benchmarks/bench_image_size.py --quick`` runs, writes one JSON line per cell, resumes."""

import importlib.util
import json
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_image_size.py"
spec = importlib.util.spec_from_file_location("bench_image_size", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_quick_writes_every_cell_once_and_resumes(tmp_path, capsys):
    out = tmp_path / "cells.jsonl"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["dataset"], r["method"], r["size"]) for r in rows] == [
        ("digits", "raw", None),
        ("digits", "probe", 32),
    ]
    for r in rows:
        assert 0.0 <= r["acc"] <= 1.0 and r["n_train"] == 20 and r["n_test"] == 50
        assert r["fit_s"] > 0 and r["predict_s"] > 0
    assert rows[1]["dim"] == 1280
    table = capsys.readouterr().out
    assert "| digits | probe | 32 | 20 |" in table

    # A second run finds every cell done: nothing new is written.
    bench.main(["--quick", "--out", str(out)])
    assert len(out.read_text().splitlines()) == 2


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="'probe2'"):
        bench.main(["--quick", "--methods", "probe2", "--out", "/nonexistent/x.jsonl"])
