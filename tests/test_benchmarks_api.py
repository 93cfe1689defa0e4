"""The benchmark scripts call the estimators with parameters they still have.

CI never runs the benchmarks (they take minutes to hours), so a renamed or removed
parameter would break them silently: ``gpu_check.py`` still passed ``freeze_epochs``
months after it went. This reads each script's calls to sktransfer's estimators and
checks every keyword against the estimator's signature.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import sktransfer

BENCHMARKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
ESTIMATORS = {
    name: obj
    for name, obj in ((name, getattr(sktransfer, name)) for name in sktransfer.__all__)
    if inspect.isclass(obj) and hasattr(obj, "get_params")
}


def _bad_keywords(path):
    tree = ast.parse(path.read_text())
    # Only names the script takes from sktransfer: peers (ADAPT's CORAL, ...) share names.
    ours = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sktransfer")
        for alias in node.names
    }
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            name = ours.get(func.id)
        elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "sktransfer":
            name = func.attr
        else:
            name = None
        if name not in ESTIMATORS:
            continue
        params = inspect.signature(ESTIMATORS[name].__init__).parameters
        for kw in node.keywords:
            if kw.arg is not None and kw.arg not in params:
                bad.append(f"{path.name}:{node.lineno}: {name}({kw.arg}=...)")
    return bad


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmarks_pass_only_parameters_the_estimators_take(path):
    assert _bad_keywords(path) == []


def test_the_check_finds_a_removed_parameter(tmp_path):
    script = tmp_path / "old.py"
    script.write_text(
        "from sktransfer import FineTuneClassifier\n"
        "FineTuneClassifier('x', freeze_epochs=1, max_epochs=2)\n"
    )
    assert _bad_keywords(script) == ["old.py:2: FineTuneClassifier(freeze_epochs=...)"]
