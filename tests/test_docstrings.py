"""Docstrings are part of the product: every example in them runs, and every parameter a
user can pass is documented.

The examples run here, under the suite's fixtures (a disk feature cache of the test's own,
never the user's ~/.cache), rather than through ``--doctest-modules``: one test per
docstring, in a temporary working directory, with a copy of the backbone registry so that
an example that registers a name leaves no trace in other tests.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pkgutil
import re

import pytest

import sktransfer
import sktransfer.adaptation
import sktransfer.backbones
import sktransfer.backbones._registry as registry
import sktransfer.datasets

# Examples that read data which only some machines have, and why.
NEEDS = {
    "sktransfer.datasets.load_fashion_mnist": (
        os.path.join(sktransfer.datasets.FASHION_DIR, "t10k-images-idx3-ubyte.gz"),
        "Debian's dataset-fashion-mnist is not installed (make data installs it as root)",
    ),
}


# What ``pip install sktransfer`` installs: a module may need nothing else to import.
REQUIRED = {"numpy", "sklearn", "scipy", "torch", "torchvision", "skorch", "PIL", "tqdm"}


def _modules():
    """Every module of the package, and those that cannot be imported here (name -> error):
    an optional extra that is not installed must not stop the others' examples running."""
    names = ["sktransfer"] + [
        m.name for m in pkgutil.walk_packages(sktransfer.__path__, prefix="sktransfer.")
    ]
    modules, unimportable = [], {}
    for name in sorted(names):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            unimportable[name] = exc
    return modules, unimportable


MODULES, UNIMPORTABLE = _modules()


def _docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for module in MODULES:
        for test in finder.find(module):
            # A name re-exported by a package is found again there; keep it once.
            if test.examples and (test.filename, test.lineno) not in found:
                found[(test.filename, test.lineno)] = test
    return sorted(found.values(), key=lambda t: t.name)


EXAMPLES = _docstring_examples()


def _optionflags(config) -> int:
    """pytest's ``doctest_optionflags`` (pyproject.toml), so that this test and
    ``pytest --doctest-modules sktransfer`` judge the examples alike."""
    flags = 0
    for name in config.getini("doctest_optionflags"):
        flags |= doctest.OPTIONFLAGS_BY_NAME[name]
    return flags


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda t: t.name)
def test_docstring_example_runs(example, tmp_path, monkeypatch, pytestconfig):
    if example.name in NEEDS:
        path, reason = NEEDS[example.name]
        if not os.path.exists(path):
            pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    # A fresh namespace each run: the runner clears the one it is given.
    test = doctest.DocTest(
        example.examples,
        dict(example.globs),
        example.name,
        example.filename,
        example.lineno,
        example.docstring,
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=_optionflags(pytestconfig))
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
    assert result.attempted == len(example.examples)


def test_only_a_missing_optional_extra_hides_a_module():
    broken = {
        name: exc
        for name, exc in UNIMPORTABLE.items()
        if (exc.name or "").split(".")[0] in REQUIRED | {"sktransfer"}
    }
    assert not broken, f"modules that do not import with the required dependencies: {broken}"


def test_docstring_examples_are_found(pytestconfig):
    """The finder sees the examples of the estimators, not only of helper modules."""
    assert _optionflags(pytestconfig) == doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    names = {t.name for t in EXAMPLES}
    assert {
        "sktransfer.finetune.FineTuneClassifier",
        "sktransfer.finetune.FineTuneRegressor",
        "sktransfer.features.PretrainedFeatures",
        "sktransfer.adaptation._coral.CORAL",
    } <= names


# -- what the docstrings say ------------------------------------------------------------


def _public_objects():
    """(public name, class or function) for everything the three public namespaces export;
    an exported instance (``feature_cache``) stands for its class."""
    seen, objects = set(), []
    for module in (sktransfer, sktransfer.adaptation, sktransfer.datasets):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                obj = type(obj)
                if not obj.__module__.startswith("sktransfer"):
                    continue  # a constant such as HEART_SITES
            if id(obj) not in seen:
                seen.add(id(obj))
                objects.append((f"{module.__name__}.{name}", obj))
    return objects


PUBLIC = _public_objects()
SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}\n", re.M)


def _sections(doc: str | None) -> dict[str, str]:
    """numpydoc sections of a docstring: title -> body."""
    parts = SECTION.split(inspect.cleandoc(doc or ""))
    return dict(zip(parts[1::2], parts[2::2]))


def _documented_parameters(doc: str | None) -> list[str]:
    """Names in the Parameters section: ``name : type`` lines, ``a, b : type`` and
    ``a, b, c`` groups, and ``**kwargs``."""
    names = []
    for line in _sections(doc).get("Parameters", "").splitlines():
        if line and not line[0].isspace():
            names += [n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")]
    return names


def _signature_parameters(obj) -> list[str]:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []  # warnings and errors take the message, as Python's own do
    func = obj.__init__ if inspect.isclass(obj) else obj
    return [p for p in inspect.signature(func).parameters if p != "self"]


def test_the_public_namespace_is_covered():
    names = {name for name, _ in PUBLIC}
    assert {"sktransfer.FineTuneClassifier", "sktransfer.feature_cache"} <= names
    assert "sktransfer.datasets.make_shifted_classification" in names
    assert len(PUBLIC) >= 30


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_every_parameter_is_documented(name, obj):
    documented = _documented_parameters(obj.__doc__)
    expected = _signature_parameters(obj)
    missing = [p for p in expected if p not in documented]
    stale = [p for p in documented if p not in expected]
    assert not missing, f"{name}: parameters missing from the docstring: {missing}"
    assert not stale, f"{name}: the docstring documents parameters it does not take: {stale}"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_every_public_object_has_a_runnable_example(name, obj):
    examples = _sections(obj.__doc__).get("Examples", "")
    assert ">>> " in examples, f"{name} has no Examples section with code"
    assert "doctest: +SKIP" not in examples, f"{name}: its example is skipped, so never checked"


def test_the_parameter_parser_reads_numpydoc_groups():
    def f(a, b, *, c=1, **kw):
        """Summary.

        Parameters
        ----------
        a, b : int
            Two.
        c
            One.
        **kw
            More.

        Returns
        -------
        x : int
        """

    assert _documented_parameters(f.__doc__) == ["a", "b", "c", "kw"]
    assert _signature_parameters(f) == ["a", "b", "c", "kw"]
