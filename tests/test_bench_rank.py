"""``benchmarks/bench_rank.py --quick`` runs, writes one JSON line per cell, resumes."""

import importlib.util
import json
import pathlib
import sys

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rank.py"
sys.path.insert(0, str(PATH.parent))
spec = importlib.util.spec_from_file_location("bench_rank", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_quick_scores_every_candidate_ranks_them_and_resumes(tmp_path, capsys):
    out, cache = tmp_path / "cells.jsonl", tmp_path / "cache"
    assert bench.main(["--quick", "--out", str(out), "--cache", str(cache)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    cands = [r for r in rows if r["kind"] == "candidate"]
    ranks = [r for r in rows if r["kind"] == "rank"]
    assert [r["candidate"] for r in cands] == list(bench.CANDIDATES)
    for r in cands:
        cell = r["seeds"]["0"]
        assert 0.0 <= cell["probe_acc"] <= 1.0 and r["dim"] == 1280 and r["px"] == [32, 32]
        assert set(cell) >= {"logme", "hscore", "leep", "nce", "cv_probe"}
    assert [r["metric"] for r in ranks] == list(bench.RANK_METRICS)
    for r in ranks:
        assert sorted(r["names"]) == sorted(bench.CANDIDATES)
    # rank_backbones scored the very features the probe was fitted on
    by_name = {r["candidate"]: r["seeds"]["0"]["logme"] for r in cands}
    default = dict(zip(ranks[0]["names"], ranks[0]["scores"]))
    assert default == by_name
    # 32 px is below a fifth of the weights' 224 px: every rank call says so
    assert all(any("32 px" in w for w in r["warnings"]) for r in ranks)
    assert "| digits | 32 | 40 | 0 |" in capsys.readouterr().out

    bench.main(["--quick", "--out", str(out), "--cache", str(cache)])
    assert len(out.read_text().splitlines()) == len(rows)
