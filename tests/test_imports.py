"""What ``import sktransfer`` costs: the public names load on first use, so a script that
only imports the package (or its numpy scores) pays for no torch and no optional extra.

Each check runs in a fresh interpreter: this test process has long imported everything.
"""

import subprocess
import sys
import textwrap

import sktransfer

HEAVY = ("torch", "skorch", "sklearn")
# The extras ``pip install sktransfer[...]`` adds: loaded only by the code that uses them.
OPTIONAL = ("pandas", "timm", "transformers", "sentence_transformers", "peft", "dask")


def _run(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _loaded(packages) -> str:
    return f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(packages)!r})"


def test_importing_the_package_loads_neither_torch_nor_an_optional_extra():
    out = _run(
        f"""
        import sys
        import sktransfer
        print({_loaded(HEAVY + OPTIONAL)})
        print(sktransfer.__version__)
        """
    )
    assert out == ["[]", sktransfer.__version__]


def test_every_public_name_resolves_to_the_object_its_module_defines():
    out = _run(
        f"""
        import importlib, sys
        import sktransfer
        for name in sktransfer.__all__:
            obj = getattr(sktransfer, name)
            home = getattr(obj, "__module__", None) or type(obj).__module__
            print(name, home, getattr(importlib.import_module(home), name, obj) is obj)
        print(sorted(set(sktransfer.__all__) - set(dir(sktransfer))))
        # the estimators themselves need no optional extra either (scikit-learn itself
        # imports pandas when it is installed, so pandas is not checked here)
        print({_loaded(OPTIONAL[1:])})
        """
    )
    rows = [line.split() for line in out[:-2]]
    assert [name for name, _, _ in rows] == sktransfer.__all__
    assert all(home.startswith("sktransfer.") for _, home, _ in rows)
    assert [name for name, _, same in rows if same != "True"] == []
    assert out[-2:] == ["[]", "[]"]


def test_a_pickle_naming_a_class_on_the_package_loads_in_a_fresh_process():
    # protocol-0 GLOBAL opcode for the package attribute ``sktransfer.FineTuneClassifier``,
    # as pickled by code that looked the class up on the package, not on its own module
    out = _run(
        """
        import pickle
        cls = pickle.loads(b"csktransfer\\nFineTuneClassifier\\n.")
        print(cls.__module__, cls.__name__)
        """
    )
    assert out == ["sktransfer.finetune FineTuneClassifier"]


def test_a_submodule_is_an_attribute_of_the_package_as_before():
    out = _run(
        """
        import sktransfer
        print(sktransfer.finetune.FineTuneClassifier is sktransfer.FineTuneClassifier)
        print(hasattr(sktransfer, "no_such_module"))
        """
    )
    assert out == ["True", "False"]
