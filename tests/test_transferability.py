"""The layout promises of the score modules: ``sktransfer.transferability`` needs no torch
and no estimator, and ``rank_backbones`` returns one type whether or not pandas is there.

The scores' and distances' numbers are specified in tests/test_selection.py.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import sktransfer
from sktransfer.ranking import BackboneRanking, rank_backbones


def test_the_transferability_package_imports_neither_torch_nor_scikit_learn():
    # A fresh process with the real parent package: sktransfer/__init__.py loads its
    # estimators on first use, so only what the scores need is imported.
    code = textwrap.dedent(
        """
        import sys
        import sktransfer.transferability as scores
        print(round(scores.logme_score([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0, 1, 1]), 6))
        print(sorted(name for name in sys.modules if name.split(".")[0] in
                     ("torch", "skorch", "sklearn", "pandas", "sktransfer")))
        print(round(scores.mmd([[0.0], [1.0], [2.0]], [[5.0], [6.0], [7.0]]), 6))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert float(out[0]) == pytest.approx(
        sktransfer.logme_score([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0, 1, 1]), abs=1e-6
    )
    loaded = eval(out[1])
    assert not [name for name in loaded if not name.startswith("sktransfer")]
    assert all(
        name == "sktransfer" or name.startswith("sktransfer.transferability") for name in loaded
    )
    # the distances, loaded on first use, give the numbers they give in this process
    assert float(out[2]) == pytest.approx(
        sktransfer.mmd([[0.0], [1.0], [2.0]], [[5.0], [6.0], [7.0]]), abs=1e-6
    )


def test_the_public_names_are_the_transferability_functions():
    from sktransfer import transferability

    for name in transferability.__all__:
        assert getattr(sktransfer, name) is getattr(transferability, name)
    assert sktransfer.rank_backbones is rank_backbones


# -- rank_backbones' result --------------------------------------------------------------


def _first_columns(k, n_in=6):
    """A frozen linear backbone that outputs the first k input columns."""
    layer = nn.Linear(n_in, k, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(n_in)[:k])
    return layer


@pytest.fixture
def task():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    X[:, 0] += 3.0 * y  # only column 0 tells the classes apart
    return X, y


def test_rank_backbones_returns_the_same_type_with_and_without_pandas(task, monkeypatch):
    X, y = task
    candidates = {"none": nn.Identity(), "first": _first_columns(1)}
    with_pandas = rank_backbones(X, y, candidates)
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    without_pandas = rank_backbones(X, y, candidates)
    assert type(with_pandas) is type(without_pandas) is BackboneRanking
    assert with_pandas.names == without_pandas.names
    np.testing.assert_allclose(with_pandas.scores, without_pandas.scores)
    with pytest.raises(ImportError, match="pip install pandas"):
        without_pandas.to_frame()


def test_a_ranking_is_indexed_by_position_and_by_name(task):
    X, y = task
    ranking = rank_backbones(X, y, {"all six": nn.Identity(), "first": _first_columns(1)})
    assert len(ranking) == 2
    assert ranking.n_features.tolist() == [1, 6]
    assert ranking[0] == ranking["first"]
    assert ranking[0]["name"] == "first" and ranking[-1]["name"] == "all six"
    assert "first" in ranking and "second" not in ranking
    assert [row["name"] for row in ranking] == ranking.names
    with pytest.raises(KeyError, match=r"no candidate named 'second'.*\['first', 'all six'\]"):
        ranking["second"]
    with pytest.raises(TypeError, match="indexed by position .* or candidate name"):
        ranking[0.5]


def test_a_ranking_prints_as_a_table_and_becomes_a_dataframe():
    pd = pytest.importorskip("pandas")
    ranking = BackboneRanking(
        [
            {"name": "wide", "score": 0.28, "n_features": 64, "seconds": 0.5},
            {"name": "narrow", "score": -0.22, "n_features": 4, "seconds": 0.25},
        ]
    )
    assert str(ranking).splitlines() == [
        "name      score  n_features  seconds",
        "wide     0.2800          64     0.50",
        "narrow  -0.2200           4     0.25",
    ]
    frame = ranking.to_frame()
    pd.testing.assert_frame_equal(
        frame,
        pd.DataFrame(
            {"score": [0.28, -0.22], "n_features": [64, 4], "seconds": [0.5, 0.25]},
            index=pd.Index(["wide", "narrow"], name="name"),
        ),
    )


def test_a_ranking_copies_its_rows():
    rows = [{"name": "a", "score": 1.0, "n_features": 2, "seconds": 0.1}]
    ranking = BackboneRanking(rows)
    rows[0]["score"] = -5.0
    ranking[0]["score"] = -7.0
    assert ranking.scores.tolist() == [1.0]


def test_a_ranking_row_without_a_column_is_refused():
    with pytest.raises(ValueError, match=r"row 1 of a BackboneRanking must have the keys"):
        BackboneRanking(
            [
                {"name": "a", "score": 1.0, "n_features": 2, "seconds": 0.1},
                {"name": "b", "score": 0.5, "n_features": 2},
            ]
        )
