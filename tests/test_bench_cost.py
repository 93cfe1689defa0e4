"""``benchmarks/bench_cost.py --quick`` runs, writes one JSON line per method, resumes."""

import importlib.util
import json
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cost.py"
spec = importlib.util.spec_from_file_location("bench_cost", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_quick_writes_each_method_once_resumes_and_tables(tmp_path, capsys):
    out = tmp_path / "cost.jsonl"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["dataset"], r["n"], r["seed"], r["method"]) for r in rows] == [
        ("digits", 20, 0, "probe"),
        ("digits", 20, 0, "default"),
    ]
    for r in rows:
        assert 0.0 <= r["acc"] <= 1.0 and r["fit_s"] > 0 and r["n_test"] == 50
    assert rows[0]["epochs"] is None and rows[1]["epochs"][1] == 1
    table = capsys.readouterr().out
    ratio = rows[1]["fit_s"] / rows[0]["fit_s"]
    assert f"| digits | 20 | default | {rows[1]['acc']:.3f} |" in table
    assert f"| {ratio:.1f}x | +0.000 |" in table

    # A second run finds every line done: nothing new is written.
    bench.main(["--quick", "--out", str(out)])
    assert len(out.read_text().splitlines()) == 2


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="'cheapest'"):
        bench.main(["--quick", "--methods", "cheapest", "--out", "/nonexistent/x.jsonl"])


def test_a_lever_needs_the_default_first(tmp_path):
    with pytest.raises(SystemExit, match="'half_epochs'.*'default' first"):
        bench.main(
            [
                "--datasets",
                "digits",
                "--sizes",
                "20",
                "--seeds",
                "1",
                "--methods",
                "half_epochs",
                "--out",
                str(tmp_path / "c.jsonl"),
            ]
        )
