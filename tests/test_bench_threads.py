"""``benchmarks/bench_threads.py --quick`` runs and prints a row per thread count and
loader setting, each with its speed-up over the first."""

import importlib.util
import pathlib
import re

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_threads.py"
spec = importlib.util.spec_from_file_location("bench_threads", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_quick_prints_rates_and_ratios(capsys):
    assert bench.main(["--quick", "--threads", "1,2"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^\| (extract|epoch|files) \| ([^|]+) \| ([\d.]+) \| ([\d.]+)x \|", out, re.M
    )
    assert [(w, s.strip()) for w, s, _, _ in rows] == [
        ("extract", "1 thread(s)"),
        ("extract", "2 thread(s)"),
        ("epoch", "1 thread(s)"),
        ("epoch", "2 thread(s)"),
        ("files", "0 workers, 2 thread(s)"),
        ("files", "2 workers, 2 thread(s)"),
    ]
    assert all(float(rate) > 0 for _, _, rate, _ in rows)
    assert [ratio for _, _, _, ratio in rows[::2]] == ["1.00"] * 3
    assert "N=32" in out
