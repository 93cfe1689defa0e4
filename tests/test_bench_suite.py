"""benchmarks/bench_suite.py: its data sets, its resumable records and its table; and one
real ``--quick`` run end to end (slow: two processes on the packaged EfficientNet-Lite0)."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # as the scripts import each other: by their file names
import _suite_data as data  # noqa: E402
import bench_suite as suite  # noqa: E402


def _rec(n, method, seed, acc, fit_s, image_size=None, **extra):
    return {
        "dataset": "digits",
        "kind": "images",
        "n": n,
        "n_test": 497,
        "majority": 0.101,
        "method": method,
        "image_size": image_size,
        "seed": seed,
        "accuracy": acc,
        "fit_s": fit_s,
        "env": {"threads": 1},
        **extra,
    }


def test_draws_are_balanced_repeatable_and_outside_the_test_set():
    digits = data.digits()
    X, y = data.draw(digits, 100, seed=3)
    assert X.shape == (100, 8, 8) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [10] * 10
    X2, y2 = data.draw(digits, 100, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(data.draw(digits, 100, seed=4)[0], X)
    # 1,797 digits: 497 held out, N=1,000 fits in the pool of 1,300 and N=1,301 does not.
    assert len(digits.y_test) == 497 and digits.fits(1000) and not digits.fits(1301)
    test = {x.tobytes() for x in digits.X_test}
    pool = [x.tobytes() for x in digits.X_pool]
    # Digits has a few exact duplicate images; no more may be shared than those.
    assert sum(p in test for p in pool) <= 20


def test_texture_test_patches_come_from_the_other_half_of_each_photo():
    tex = data.textures()
    assert tex.X_pool.shape[1:] == (32, 32) and len(tex.y_pool) == len(tex.y_test) == 384
    assert np.bincount(tex.y_test).tolist() == [128, 128, 128]
    pool = {x.tobytes() for x in tex.X_pool}
    assert not any(x.tobytes() in pool for x in tex.X_test)


def test_a_cell_runs_every_fine_tune_before_the_loops_that_take_its_epochs():
    plan = suite.tasks("images", ["fastai", "torch", "finetune", "raw"], [None, 64])
    assert plan == [
        ("raw", None),
        ("finetune", None),
        ("finetune", 64),
        ("torch", None),
        ("torch", 64),
        ("fastai", None),
        ("fastai", 64),
    ]
    # the Hugging Face loop runs finetune_ce's epochs (the default may run none: pairs)
    assert suite.tasks("text", ["setfit", "hf", "finetune_ce", "finetune"], [64]) == [
        ("finetune", None),
        ("finetune_ce", None),
        ("hf", None),
        ("setfit", None),
    ]


def test_a_failed_line_is_not_done_and_a_cut_line_is_skipped(tmp_path):
    path = tmp_path / "suite.jsonl"
    good = _rec(100, "raw", 0, 0.8, 0.1)
    failed = _rec(100, "probe", 0, None, None, image_size=64, error="RuntimeError: boom")
    path.write_text(json.dumps(good) + "\n" + json.dumps(failed) + "\n" + '{"dataset": "dig')
    records = suite.read_records(path)
    assert len(records) == 2
    assert list(suite.finished(records)) == [("digits", 100, "raw", None, 0)]


def test_the_table_shows_every_seed_the_ratio_the_rule_and_what_has_not_run():
    records = [
        _rec(100, "raw", 0, 0.80, 0.1),
        _rec(100, "raw", 1, 0.82, 0.1),
        _rec(100, "probe", 0, 0.70, 2.0, image_size=64),
        _rec(100, "probe", 1, 0.72, 2.0, image_size=64),
        _rec(100, "finetune", 0, 0.76, 10.0, image_size=64, epochs=[0, 5]),
        _rec(100, "finetune", 1, 0.78, 14.0, image_size=64, epochs=[0, 5]),
        _rec(300, "finetune", 0, 0.90, 30.0, image_size=64, epochs=[0, 4]),
        _rec(300, "raw", 0, 0.85, 0.2),
        _rec(300, "torch", 0, None, None, image_size=64, error="ValueError: bad"),
    ]
    table = suite.markdown(records, sizes=[100, 300, 2000], datasets=["digits"])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    raw = rows["raw pixels + LogisticRegression"].split(" | ")
    assert raw[1] == "0.810 ± 0.010 [s0 0.800, s1 0.820] · 0.1 s"
    assert raw[3].startswith("n/a")  # the pool has 1,300 rows
    ft = rows["default FineTuneClassifier, image_size=64"].split(" | ")
    assert ft[1] == "0.770 ± 0.010 [s0 0.760, s1 0.780] · 12.0 s"
    assert ft[2] == "0.900 [s0 0.900] · 30.0 s"
    assert rows["linear probe (FeatureTransferClassifier), image_size=64"].split(" | ")[2] == (
        "not run"
    )
    assert rows["fit time, fine-tune / probe (64 px)"].split(" | ")[1] == "6.0x"
    # 0.770 < 0.810 - sqrt(0.81 * 0.19 / 497) = 0.792: broken; 0.900 >= 0.850: holds.
    rule = rows["rule: fine-tune >= max(raw, probe) - 1 SE (64 px)"].split(" | ")
    assert rule[1] == "BROKEN (-0.040)" and rule[2] == "holds (+0.050)"
    assert "0+4" in table and "0+5" in table
    assert "digits N=300 seed 0 torch@64: ValueError: bad" in table
    # A row of the grid with no result at any N is named, not tabled.
    assert "fastai fine_tune, the fine-tune's epochs, image_size=64" not in rows
    assert "Not run yet at any N: PyTorch tutorial loop" in table


@pytest.mark.slow  # three processes import torch, one fits EfficientNet-Lite0: 90 s loaded
def test_quick_runs_one_cell_resumes_and_writes_the_table(tmp_path):
    out = tmp_path / "quick.jsonl"
    cmd = [sys.executable, str(BENCH / "bench_suite.py"), "--quick", "--threads", "1"]
    cmd += ["--out", str(out), "--python", sys.executable]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["method"], r["image_size"]) for r in lines] == [
        ("raw", None),
        ("probe", 32),
        ("finetune", 32),
    ]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["fit_s"] > 0 for r in lines)
    assert all(r["n"] == 20 and r["n_test"] == 100 and r["dataset"] == "digits" for r in lines)
    assert lines[2]["epochs"][1] == 1  # --quick: one epoch
    # Pixels beat chance on ten classes by far: the data and labels line up.
    assert lines[0]["accuracy"] > 0.4
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "all 3 done, skipped" in again.stdout
    assert len(out.read_text().splitlines()) == 3
    table = out.with_suffix(".md").read_text()
    assert "| default FineTuneClassifier, image_size=32 | " in table
