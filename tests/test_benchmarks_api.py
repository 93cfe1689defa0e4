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


def _calls(path, modules=("sktransfer",), known=None):
    """(line, name, keywords) of every call in ``path`` to a name it imports from
    ``modules`` (or ``sktransfer.X(...)``) that ``known`` (name -> callable) holds."""
    known = ESTIMATORS if known is None else known
    tree = ast.parse(path.read_text())
    # Only names the script takes from those modules: peers (ADAPT's CORAL, ...) share names.
    ours = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(modules)
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            name = ours.get(func.id)
        elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "sktransfer":
            name = func.attr
        elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) in ours:
            name = f"{ours[func.value.id]}.{func.attr}"  # SetFitModel.from_pretrained(...)
        else:
            name = None
        if name in known:
            found.append((node.lineno, name, [kw.arg for kw in node.keywords if kw.arg]))
    return found


def _bad_keywords(path, modules=("sktransfer",), known=None):
    known = ESTIMATORS if known is None else known
    bad = []
    for lineno, name, keywords in _calls(path, modules, known):
        target = known[name]
        params = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        if any(p.kind is p.VAR_KEYWORD for p in params.parameters.values()):
            continue  # takes any keyword: nothing to check
        for kw in keywords:
            if kw not in params.parameters:
                bad.append(f"{path.name}:{lineno}: {name}({kw}=...)")
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


def test_the_suite_builds_every_estimator_in_calls_the_check_reads():
    # bench_suite.py must write its estimators as literal calls (no **params), or the check
    # above would pass without reading them.
    suite = pathlib.Path(BENCHMARKS[0]).parent / "bench_suite.py"
    assert suite in BENCHMARKS
    names = [name for _, name, _ in _calls(suite)]
    assert names.count("FineTuneClassifier") >= 3  # text, images native, images at a size
    assert names.count("FeatureTransferClassifier") >= 3
    sized = {name for _, name, kws in _calls(suite) if "image_size" in kws}
    assert sized == {"FineTuneClassifier", "FeatureTransferClassifier"}
    assert _bad_keywords(suite) == []


def test_the_suite_passes_setfit_only_parameters_it_takes():
    setfit = pytest.importorskip("setfit")  # in the peers' venv only (make peers)
    suite = pathlib.Path(BENCHMARKS[0]).parent / "bench_suite.py"
    known = {
        "TrainingArguments": setfit.TrainingArguments,
        "Trainer": setfit.Trainer,
        "SetFitModel.from_pretrained": setfit.SetFitModel.from_pretrained,
    }
    calls = _calls(suite, ("setfit",), known)
    assert {name for _, name, _ in calls} == set(known)
    assert _bad_keywords(suite, ("setfit",), known) == []


def test_the_check_reads_a_peer_call_through_its_class(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text(
        "from setfit import TrainingArguments\n"
        "TrainingArguments(num_epochs=1, max_steps_per_epoch=3)\n"
    )

    def training_arguments(num_epochs=1, seed=42):
        pass

    known = {"TrainingArguments": training_arguments}
    assert _bad_keywords(script, ("setfit",), known) == [
        "peer.py:2: TrainingArguments(max_steps_per_epoch=...)"
    ]
