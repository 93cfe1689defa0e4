"""The package's layout rules, read from the source: one home per concept.

A module may use its own folder's private names and modules freely. Across package
folders it takes only public names from public modules; the root-level private modules
(``sktransfer/_device.py``, ``sktransfer/_torch.py``, ...) are the shared low layer and
may be imported from every folder, for their public names.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sktransfer"


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _is_package(module: str) -> bool:
    return ROOT.joinpath(*module.split(".")).is_dir()


def _is_module(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _folder(module: str) -> str:
    """The package folder a module lives in (a package is its own folder)."""
    return module if _is_package(module) else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _crosses(home: str, module: str, names: list[str]) -> bool:
    """Whether importing ``names`` from ``module`` reaches into another folder's privates."""
    folder = _folder(module)
    if folder == home:
        return False
    low_layer = folder == "sktransfer"  # root-level _x.py modules: the shared low layer
    private_module = not low_layer and any(_private(p) for p in module.split(".")[1:])
    return private_module or any(_private(n) for n in names)


def crossing_imports(source: str, importer: str, is_package: bool = False) -> list[str]:
    """``"importer: statement"`` for each use of another folder's private name or module:
    imports, and attributes read through an imported module (``backbones._REGISTRY``)."""
    home = importer if is_package else importer.rpartition(".")[0]
    tree = ast.parse(source)
    found = []
    modules_bound = {}  # local name -> the sktransfer module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, is_package)
            if not base.startswith("sktransfer"):
                continue
            plain = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if _is_module(sub):  # ``from pkg import module``
                    modules_bound[alias.asname or alias.name] = sub
                    bad = _crosses(home, sub, [])
                else:
                    plain.append(alias.name)
                    bad = False
                if bad:
                    found.append(node)
            if _crosses(home, base, plain):
                found.append(node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sktransfer"):
                    if alias.asname:
                        modules_bound[alias.asname] = alias.name
                    if _crosses(home, alias.name, []):
                        found.append(node)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules_bound
            and _crosses(home, modules_bound[node.value.id], [node.attr])
        ):
            found.append(node)
    lines = dict.fromkeys(" ".join(ast.get_source_segment(source, n).split()) for n in found)
    return [f"{importer}: {line}" for line in lines]


def all_crossing_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        importer = ".".join(parts[:-1] if is_package else parts)
        found += crossing_imports(path.read_text(), importer, is_package)
    return found


def test_the_rule_flags_only_another_folders_private_names_and_modules():
    source = (
        "from ..backbones._base import on_cpu\n"
        "from ..backbones import _fitted_backbone, resolve_backbone\n"
        "from .. import backbones as bbs\n"
        "from .._device import resolve_device\n"
        "from ._base import validate_fit\n"
        "from . import _coral\n"
        "import sktransfer.backbones._vision\n"
        "entry = bbs._REGISTRY.get('x')\n"
        "ok = bbs.resolve_backbone\n"
    )
    assert crossing_imports(source, "sktransfer.adaptation._probe") == [
        "sktransfer.adaptation._probe: from ..backbones._base import on_cpu",
        "sktransfer.adaptation._probe: from ..backbones import _fitted_backbone, resolve_backbone",
        "sktransfer.adaptation._probe: import sktransfer.backbones._vision",
        "sktransfer.adaptation._probe: bbs._REGISTRY",
    ]


def test_a_package_init_may_re_export_its_own_private_modules():
    source = "from ._base import Backbone, _settings\nfrom .._inputs import ImagePreprocess\n"
    assert crossing_imports(source, "sktransfer.backbones", is_package=True) == []


def test_no_module_imports_a_private_name_or_module_of_another_package_folder():
    assert all_crossing_imports() == []


def _module_names():
    """{dotted name: source} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path.read_text(), is_package)
    return out


def imported_modules(source: str, importer: str, is_package: bool) -> list[tuple[str, list]]:
    """(module, names) for each import statement: ``from m import a, b`` -> (m, [a, b])
    (a name that is itself a module counts as that module), ``import m`` -> (m, [])."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, is_package)
            names = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if base.startswith("sktransfer") and _is_module(sub):
                    found.append((sub, []))
                else:
                    names.append(alias.name)
            found.append((base, names))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def estimator_modules(modules) -> set[str]:
    """The scikit-learn faces: modules that import ``sklearn.base``, or a class (a
    capitalised name) from a face, as a base to build on."""
    imports = {name: imported_modules(src, name, pkg) for name, (src, pkg) in modules.items()}
    faces = {n for n, found in imports.items() if any(m == "sklearn.base" for m, _ in found)}
    while True:
        more = {
            n
            for n, found in imports.items()
            if n not in faces
            and not n.endswith("__init__")
            and any(m in faces and any(x[:1].isupper() for x in names) for m, names in found)
            and not _is_package(n)
        }
        if not more:
            return faces
        faces |= more


def engine_violations(modules) -> list[str]:
    """An engine module (``sktransfer.training``) importing ``sklearn.base`` or a face."""
    faces = estimator_modules(modules)
    found = []
    for name, (source, is_package) in modules.items():
        if not name.startswith("sktransfer.training"):
            continue
        for module, _ in imported_modules(source, name, is_package):
            if module == "sklearn.base" or module in faces:
                found.append(f"{name}: imports {module}")
    return found


def face_violations(modules) -> list[str]:
    """A face importing a private name of another face (what two faces share is public
    inside the package, or lives in the engine)."""
    faces = estimator_modules(modules)
    found = []
    for name in sorted(faces):
        source, is_package = modules[name]
        for module, names in imported_modules(source, name, is_package):
            if module in faces and module != name:
                found += [f"{name}: {module}.{n}" for n in names if _private(n)]
    return found


def test_the_engine_rule_flags_a_face_or_sklearn_base_imported_by_the_engine():
    modules = {
        "sktransfer.finetune": ("from sklearn.base import ClassifierMixin\n", False),
        "sktransfer.training._phases": (
            "from ..finetune import FineTuneClassifier\nfrom sklearn.base import clone\n"
            "from .._extract import extract\n",
            False,
        ),
    }
    assert engine_violations(modules) == [
        "sktransfer.training._phases: imports sktransfer.finetune",
        "sktransfer.training._phases: imports sklearn.base",
    ]


def test_the_face_rule_flags_a_private_name_taken_from_another_face():
    modules = {
        "sktransfer.finetune": ("from sklearn.base import BaseEstimator\n", False),
        "sktransfer.multitask": (
            "import sklearn.base\nfrom .finetune import _FineTune, FineTuneClassifier\n",
            False,
        ),
    }
    assert face_violations(modules) == ["sktransfer.multitask: sktransfer.finetune._FineTune"]


def test_the_engine_imports_no_estimator_module_nor_sklearn_base():
    modules = _module_names()
    faces = {"sktransfer.finetune", "sktransfer.multitask", "sktransfer._finetune_base"}
    assert faces <= estimator_modules(modules)
    assert any(name.startswith("sktransfer.training.") for name in modules)
    assert engine_violations(modules) == []


def test_no_estimator_module_imports_a_private_name_of_another():
    assert face_violations(_module_names()) == []
