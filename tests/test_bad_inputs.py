"""A catalogue of bad inputs, tried as a new user would: each gets a clear error (or warning)
that says what was wrong and where, and none changes what the user passed.

Each case builds its own inputs (``X``, ``y``, ``sample_weight``, a module, ...) from
``make()``, then ``call(inputs)`` does the wrong thing. The runner checks the error type
and message, then that every input still equals a snapshot taken before the call.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TinyCNN
from torch import nn


@dataclass
class Case:
    id: str
    make: Callable[[Any], dict]
    call: Callable[[dict], Any]
    error: type | tuple | None = ValueError
    match: str = ""
    warns: type | None = None
    marks: tuple = field(default_factory=tuple)


CASES: list[Case] = []


def case(id, error=ValueError, match="", warns=None, marks=()):
    """Register ``call`` (a function of the inputs dict) with the inputs from ``make``."""

    def register(pair):
        make, call = pair
        CASES.append(Case(id, make, call, error, match, warns, tuple(marks)))
        return pair

    return register


def lazy_mlp(width=8):
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU())


def table(n=40, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = (X[:, 0] > 0).astype(int)
    return X, y


def _snapshot(value):
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        return pickle.dumps(value)
    if isinstance(value, nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}, repr(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _assert_same(before, after, name):
    if hasattr(after, "get_params") and hasattr(after, "fit"):
        assert pickle.dumps(after) == before, f"{name}: the estimator changed"
        return
    if isinstance(after, nn.Module):
        state, text = before
        assert repr(after) == text, f"{name}: the module's structure changed"
        now = after.state_dict()
        assert now.keys() == state.keys(), f"{name}: the module's parameters changed"
        for k, v in state.items():
            assert torch.equal(now[k], v), f"{name}: parameter {k} changed"
    elif isinstance(after, (pd.DataFrame, pd.Series)):
        assert after.equals(before), f"{name} changed"
    elif isinstance(after, torch.Tensor):
        assert torch.equal(after, before), f"{name} changed"
    elif isinstance(after, np.ndarray):
        assert after.dtype == before.dtype and after.shape == before.shape, f"{name} changed"
        np.testing.assert_array_equal(after, before, err_msg=f"{name} changed")
    elif isinstance(after, list):
        assert len(after) == len(before), f"{name} changed length"
        for i, (a, b) in enumerate(zip(after, before)):
            _assert_same(b, a, f"{name}[{i}]")
    else:
        assert after == before, f"{name} changed"


def _params():
    return [pytest.param(c, id=c.id, marks=c.marks) for c in CASES]


# =========================================================================== inputs and images
# (lead)


def images(n=4, size=8, seed=0):
    """``n`` grey uint8 images, the kind of array a user loads."""
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3), dtype=np.uint8)


def png_files(root, n=3):
    from PIL import Image

    paths = []
    for i, img in enumerate(images(n)):
        p = root / f"img_{i}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    return paths


def huge_png(path, size=15000):
    """A PNG whose header says ``size`` x ``size`` pixels (its data is one tiny image):
    what PIL reads before deciding it is a decompression bomb."""
    import struct
    import zlib

    from PIL import Image

    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", size, size)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return str(path)


def features(module=None, **kw):
    from sktransfer import PretrainedFeatures

    return PretrainedFeatures(TinyCNN() if module is None else module, **kw)


def _fit_features(inp, **kw):
    return features(inp["module"], **kw).fit(inp["X"])


def _tiny_images(tmp, **extra):
    return {"X": images(), "module": TinyCNN(), **extra}


case("empty image list", match="empty: 0 images")(
    (lambda tmp: {"X": [], "module": TinyCNN()}, _fit_features)
)
case("NaN pixel", match="NaN or infinity at row 2")(
    (
        lambda tmp: {
            "X": np.where(np.arange(4)[:, None, None] == 2, np.nan, 0.5) * np.ones((4, 8, 8)),
            "module": TinyCNN(),
        },
        _fit_features,
    )
)
case("float pixels above 1", match=r"row 1")(
    (
        lambda tmp: {"X": np.r_[np.zeros((1, 8, 8)), np.full((1, 8, 8), 3.0)], "module": TinyCNN()},
        _fit_features,
    )
)
case("integer pixels above 255", match=r"\[0, 255\]; row 0")(
    (lambda tmp: {"X": np.full((2, 8, 8), 300, np.int32), "module": TinyCNN()}, _fit_features)
)
case("5-D image array", match="5 dimensions")(
    (lambda tmp: {"X": np.zeros((2, 1, 8, 8, 3), np.uint8), "module": TinyCNN()}, _fit_features)
)
case("complex image array", error=TypeError, match="complex")(
    (lambda tmp: {"X": np.zeros((2, 8, 8), np.complex64), "module": TinyCNN()}, _fit_features)
)
case("boolean image array", error=TypeError, match="dtype bool")(
    (lambda tmp: {"X": np.zeros((2, 8, 8), bool), "module": TinyCNN()}, _fit_features)
)
case("2-D object array of images", match="object array of shape")(
    (lambda tmp: {"X": np.empty((2, 2), object), "module": TinyCNN()}, _fit_features)
)
case("a path and an array mixed", error=TypeError, match="mixes element types.*row 1")(
    (lambda tmp: {"X": [png_files(tmp, 1)[0], images(1)[0]], "module": TinyCNN()}, _fit_features)
)
case("None among paths", error=TypeError, match="row 1 is a NoneType")(
    (lambda tmp: {"X": [png_files(tmp, 1)[0], None], "module": TinyCNN()}, _fit_features)
)
case("missing image file", error=FileNotFoundError, match="row 2: image file not found")(
    (
        lambda tmp: {"X": [*png_files(tmp, 2), str(tmp / "gone.png")], "module": TinyCNN()},
        _fit_features,
    )
)
case("directory among image paths", match="row 1: .* is a directory, not an image file")(
    (lambda tmp: {"X": [png_files(tmp, 1)[0], str(tmp)], "module": TinyCNN()}, _fit_features)
)
case("corrupt image file", match="row 1: cannot read image file")(
    (
        lambda tmp: {
            "X": [
                png_files(tmp, 1)[0],
                str((tmp / "bad.png").write_bytes(b"not a png") and tmp / "bad.png"),
            ],
            "module": TinyCNN(),
        },
        lambda inp: features(inp["module"], image_size=8).fit_transform(inp["X"]),
    )
)
case("15000 x 15000 PNG among the paths", match="row 1: image file .*big.png.* too large")(
    (
        lambda tmp: {"X": [png_files(tmp, 1)[0], huge_png(tmp / "big.png")], "module": TinyCNN()},
        lambda inp: features(inp["module"], image_size=8).fit_transform(inp["X"]),
    )
)
case("one path instead of a list", error=TypeError, match=r"single image; pass a list")(
    (lambda tmp: {"X": png_files(tmp, 1)[0], "module": TinyCNN()}, _fit_features)
)
case("DataFrame with two columns", match="2 columns; pass a single column")(
    (
        lambda tmp: {"X": pd.DataFrame({"a": png_files(tmp, 2), "b": [0, 1]}), "module": TinyCNN()},
        _fit_features,
    )
)
case("numpy images of different sizes, no image_size", match="different sizes.*set image_size")(
    (
        lambda tmp: {"X": [images(1, 8)[0], images(1, 12)[0]], "module": TinyCNN()},
        lambda inp: features(inp["module"], cache=False).fit_transform(inp["X"]),
    )
)
case("a numpy image with a bad shape in a list", match=r"row 1 has shape \(2, 3, 4, 5\)")(
    (lambda tmp: {"X": [images(1)[0], np.zeros((2, 3, 4, 5))], "module": TinyCNN()}, _fit_features)
)
case("two-channel images for an RGB conv", match="cannot find a channel axis of size 1 or 3")(
    (
        lambda tmp: {"X": np.zeros((2, 2, 8, 8), np.float32), "module": TinyCNN()},
        lambda inp: features(inp["module"]).fit(torch.from_numpy(inp["X"])),
    )
)


# Text: every check runs before the encoder loads (no weights are read for these cases).


def _fit_text(inp, **kw):
    from sktransfer import PretrainedFeatures

    return PretrainedFeatures("all-MiniLM-L6-v2", **kw).fit(inp["X"])


case("one string instead of a list", error=TypeError, match="single string")(
    (lambda tmp: {"X": "a review"}, _fit_text)
)
case("None among texts", match=r"row 1 is missing \(None\).*missing='empty'")(
    (lambda tmp: {"X": ["good", None]}, _fit_text)
)
case("pd.NA in a pandas string column", match=r"row 1 is missing \(<NA>\)")(
    (lambda tmp: {"X": pd.Series(["good", pd.NA], dtype="string")}, _fit_text)
)
case("a number among texts", error=TypeError, match="row 1 is a int")(
    (lambda tmp: {"X": ["good", 3]}, _fit_text)
)
case("two text columns in one array", match=r"shape \(2, 2\); text input must be 1-D")(
    (lambda tmp: {"X": np.array([["a", "b"], ["c", "d"]])}, _fit_text)
)


# Backbones and their parameters: checked before any input is read or weights load.


case("an unknown (Hugging Face) model name", match="'bert-base-uncased' is not a known model")(
    (lambda tmp: {"X": ["hello"]}, lambda inp: features("bert-base-uncased").fit(inp["X"]))
)
case("a misspelt registered name", match=r"did you mean \['efficientnet_lite0'")(
    (lambda tmp: {"X": images()}, lambda inp: features("efficientnet_lite_0").fit(inp["X"]))
)


def _fitted_lr(tmp):
    from sklearn.linear_model import LogisticRegression

    X, y = table()
    return {"X": X, "y": y, "model": LogisticRegression().fit(X, y)}


case(
    "a fitted LogisticRegression as backbone",
    error=TypeError,
    match="fitted estimator with no torch network.*head=",
)((_fitted_lr, lambda inp: features(inp["model"]).fit(inp["X"])))
case("an unfitted sktransfer estimator as backbone", match="is not fitted; fit it on the source")(
    (
        lambda tmp: {"X": table()[0]},
        lambda inp: features(__import__("sktransfer").FineTuneClassifier(lazy_mlp())).fit(inp["X"]),
    )
)
case("an nn.Module class, not an instance", error=TypeError, match=r"is a class; pass an instance")(
    (lambda tmp: {"X": images()}, lambda inp: features(TinyCNN).fit(inp["X"]))
)
case("image_size=(32,)", match=r"image_size=\(32,\) must be an int or a \(height, width\)")(
    (_tiny_images, lambda inp: _fit_features(inp, image_size=(32,)))
)
case("image_size=0", error=ValueError, match="'image_size' parameter")(
    (_tiny_images, lambda inp: _fit_features(inp, image_size=0))
)
case("an unknown pooling", error=ValueError, match="'pooling' parameter")(
    (_tiny_images, lambda inp: _fit_features(inp, pooling="mean"))
)
case("a cache folder that cannot be created", match="cache=.* is not a writable directory")(
    (
        lambda tmp: {
            **_tiny_images(tmp),
            "where": str((tmp / "f").write_text("x") and tmp / "f" / "c"),
        },
        lambda inp: _fit_features(inp, cache=inp["where"]),
    )
)
case(
    "a weights file that does not exist", error=FileNotFoundError, match="no such state_dict file"
)((_tiny_images, lambda inp: features("efficientnet_lite0", weights="model.pt").fit(inp["X"])))
case("image_size far above the weights' size", warns=UserWarning, match="4x the 224 px")(
    (
        lambda tmp: {"X": images(1)},
        lambda inp: features("efficientnet_lite0", image_size=1000, cache=False).fit(inp["X"]),
    )
)
case(
    "transform before fit",
    error=__import__("sklearn").exceptions.NotFittedError,
    match="not fitted yet",
)((_tiny_images, lambda inp: features(inp["module"]).transform(inp["X"])))


# =========================================================================== fine-tuning and
# feature transfer (lead)


def _ft(kind="FineTuneClassifier", **kw):
    import sktransfer

    return getattr(sktransfer, kind)(lazy_mlp(), **kw)


def _table(tmp, **extra):
    X, y = table()
    return {"X": X, "y": y, **extra}


def _fit(kind, **kw):
    def call(inp):
        extra = {k: inp[k] for k in ("sample_weight", "sample_domain") if k in inp}
        return _ft(kind, **kw).fit(inp["X"], inp.get("y"), **extra)

    return call


for kind in ("FineTuneClassifier", "FeatureTransferClassifier"):
    case(
        f"{kind}: negative sample_weight", match="Negative values in data passed to `sample_weight`"
    )((lambda tmp: _table(tmp, sample_weight=np.r_[-np.ones(20), np.ones(20)]), _fit(kind)))
    case(f"{kind}: sample_weight of the wrong length", match="sample_weight has 39")(
        (lambda tmp: _table(tmp, sample_weight=np.ones(39)), _fit(kind))
    )
    case(f"{kind}: y is None", match="requires y to be passed")(
        (lambda tmp: {"X": table()[0]}, _fit(kind))
    )
    case(f"{kind}: continuous y", match="Unknown label type: continuous")(
        (lambda tmp: {"X": table()[0], "y": table()[0][:, 0]}, _fit(kind))
    )
case("FineTuneRegressor: string y", match="could not convert string to float|dtype='numeric'")(
    (lambda tmp: {"X": table()[0], "y": np.array(["a", "b"] * 20)}, _fit("FineTuneRegressor"))
)
case(
    "FineTuneClassifier: callbacks=['x']",
    error=TypeError,
    match=r"callbacks\[0\] is a str.*skorch Callback",
)((_table, _fit("FineTuneClassifier", callbacks=["x"])))
case("FineTuneClassifier: a negative learning rate", match="'lr' parameter")(
    (_table, _fit("FineTuneClassifier", lr=-1.0))
)
case("FineTuneClassifier: sample_domain without adaptation", match="adaptation=None")(
    (lambda tmp: _table(tmp, sample_domain=np.ones(40, int)), _fit("FineTuneClassifier"))
)
case(
    "FineTuneClassifier: adaptation without target rows",
    warns=__import__("sktransfer").adaptation.NoTargetRowsWarning,
    match="no target rows, so it fine-tunes on the source rows alone",
)((_table, _fit("FineTuneClassifier", adaptation="dann")))
case(
    "FineTuneClassifier: predict before fit",
    error=__import__("sklearn").exceptions.NotFittedError,
    match="not fitted yet",
)((_table, lambda inp: _ft().predict(inp["X"])))


def _fitted_transfer(tmp):
    X, y = table()
    return {"X": X, "y": y, "model": _ft("FeatureTransferClassifier").fit(X, y)}


case(
    "FeatureTransferClassifier: predict with another number of features",
    match="X has 3 features, but FeatureTransferClassifier is expecting 5",
)((_fitted_transfer, lambda inp: inp["model"].predict(inp["X"][:, :3])))
case("FeatureTransferClassifier: predict on one 1-D row", match="Expected 2D array, got 1D array")(
    (_fitted_transfer, lambda inp: inp["model"].predict(inp["X"][0]))
)


def _head(name):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier

    return {
        "Ridge": Ridge(),
        "LogisticRegression": LogisticRegression(),
        "KNeighborsClassifier": KNeighborsClassifier(3),
    }[name]


case(
    "FeatureTransferClassifier(head=Ridge())",
    error=TypeError,
    match=r"head=Ridge\(...\) is not a classifier.*FeatureTransferRegressor",
)(
    (
        _table,
        lambda inp: _ft("FeatureTransferClassifier", head=_head("Ridge")).fit(inp["X"], inp["y"]),
    )
)
case(
    "FeatureTransferRegressor(head=LogisticRegression())",
    error=TypeError,
    match=r"is not a regressor.*FeatureTransferClassifier",
)(
    (
        _table,
        lambda inp: _ft("FeatureTransferRegressor", head=_head("LogisticRegression")).fit(
            inp["X"], inp["y"]
        ),
    )
)
case(
    "sample_weight for a head that takes none",
    error=TypeError,
    match="head KNeighborsClassifier does not accept it",
)(
    (
        lambda tmp: _table(tmp, sample_weight=np.ones(40)),
        lambda inp: _ft("FeatureTransferClassifier", head=_head("KNeighborsClassifier")).fit(
            inp["X"], inp["y"], sample_weight=inp["sample_weight"]
        ),
    )
)


case(
    "FeatureTransferClassifier: a multilabel y for a single-target head",
    match=r"y has 2 columns.*head=MultiOutputClassifier\(LogisticRegression",
)(
    (
        lambda tmp: {"X": table()[0], "y": np.c_[table()[1], 1 - table()[1]]},
        lambda inp: _ft("FeatureTransferClassifier", head=_head("LogisticRegression")).fit(
            inp["X"], inp["y"]
        ),
    )
)

case(
    "FeatureTransferClassifier: a multilabel column that is never positive",
    match=r"y\[:, 1\] has the same value \(0\) in every row.*Drop the column",
)(
    (
        lambda tmp: {"X": table()[0], "y": np.c_[table()[1] % 2, np.zeros(len(table()[1]), int)]},
        lambda inp: _ft("FeatureTransferClassifier").fit(inp["X"], inp["y"]),
    )
)


def _labelled_images(tmp):
    return {"X": images(20), "y": np.arange(19) % 2, "module": TinyCNN()}


case(
    "200 images and 199 labels (said before extraction)",
    match="inconsistent numbers of rows: X has 20, y has 19",
)(
    (
        _labelled_images,
        lambda inp: (
            __import__("sktransfer")
            .FeatureTransferClassifier(inp["module"], image_size=8)
            .fit(inp["X"], inp["y"])
        ),
    )
)


# =========================================================================== adaptation
# estimators (helper: CORAL, ImportanceWeighting, SourceWeighted, TrAdaBoost*)


def shifted(n=40, d=5, seed=0):
    """A table with its last quarter marked target (``sample_domain`` -1), labels everywhere."""
    X, y = table(n, d, seed)
    return {"X": X, "y": y, "sample_domain": np.where(np.arange(n) < 3 * n // 4, 0, -1)}


def _adapt(make_estimator):
    """``call`` that fits ``make_estimator()`` on the case's inputs."""

    def call(inp):
        return make_estimator().fit(inp["X"], inp.get("y"), sample_domain=inp["sample_domain"])

    return call


def _iw():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import ImportanceWeighting

    return ImportanceWeighting(LogisticRegression(), random_state=0)


def _coral():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import CORAL

    return CORAL(LogisticRegression())


def _tradaboost():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import TrAdaBoostClassifier

    return TrAdaBoostClassifier(LogisticRegression(), random_state=0)


def _tradaboost_r2():
    from sklearn.linear_model import Ridge

    from sktransfer.adaptation import TrAdaBoostR2

    return TrAdaBoostR2(Ridge(), random_state=0)


def _source_weighted():
    from sklearn.linear_model import LogisticRegression

    from sktransfer.adaptation import SourceWeighted

    return SourceWeighted(LogisticRegression())


def _iw_knn():
    from sklearn.neighbors import KNeighborsClassifier

    return _iw().set_params(estimator=KNeighborsClassifier())


def _with(**changes):
    """``make`` of a shifted table with some inputs replaced (functions of the original)."""

    def make(tmp):
        inputs = shifted()
        return {**inputs, **{k: f(inputs) for k, f in changes.items()}}

    return make


def _sparse_fit(make_estimator, fmt):
    def call(inp):
        import scipy.sparse

        X = scipy.sparse.csr_matrix(inp["X"]).asformat(fmt)
        return make_estimator().fit(X, inp["y"], sample_domain=inp["sample_domain"])

    return call


def _no_target_warning():
    from sktransfer.adaptation import NoTargetRowsWarning

    return NoTargetRowsWarning


case("adaptation: 1-D X at predict", match=r"(?s)Expected 2D array, got 1D array.*Reshape")(
    (lambda tmp: shifted(), lambda inp: _adapt(_iw)(inp).predict(inp["X"][0]))
)
case("adaptation: predict X with another width", match="X has 6 features, but .* expecting 5")(
    (
        lambda tmp: shifted(),
        lambda inp: _adapt(_tradaboost)(inp).predict(np.hstack([inp["X"], inp["X"][:, :1]])),
    )
)
case("adaptation: 1-D X at fit", match="Expected 2D array, got 1D array")(
    (_with(X=lambda i: i["X"][:, 0]), _adapt(_source_weighted))
)
case("adaptation: sparse COO X for CORAL", TypeError, "Sparse data was passed for X, but dense")(
    (lambda tmp: shifted(), _sparse_fit(_coral, "coo"))
)
case("adaptation: sparse DIA X for KMM", TypeError, "Sparse data was passed for X, but dense")(
    (
        lambda tmp: shifted(),
        _sparse_fit(lambda: _iw().set_params(method="kmm"), "dia"),
    )
)
case("adaptation: NaN in X", match="Input X contains NaN")(
    (_with(X=lambda i: np.where(np.arange(40)[:, None] == 3, np.nan, i["X"])), _adapt(_iw))
)
case("adaptation: infinity in X for CORAL", match="Input X contains infinity")(
    (_with(X=lambda i: np.where(np.arange(40)[:, None] == 3, np.inf, i["X"])), _adapt(_coral))
)
case("adaptation: complex X", match="Complex data not supported")(
    (_with(X=lambda i: i["X"] + 1j), _adapt(_tradaboost))
)
case("adaptation: empty X", match=r"0 sample\(s\)")(
    (
        _with(
            X=lambda i: i["X"][:0],
            y=lambda i: i["y"][:0],
            sample_domain=lambda i: i["sample_domain"][:0],
        ),
        _adapt(_iw),
    )
)
case("adaptation: y is None", match="requires y to be passed, but the target y is None")(
    (_with(y=lambda i: None), _adapt(_source_weighted))
)
case("adaptation: y shorter than X", match=r"inconsistent numbers of samples: \[40, 39\]")(
    (_with(y=lambda i: i["y"][:-1]), _adapt(_coral))
)
case(
    "adaptation: string y for a regressor", match="A regressor needs numeric y; row 0 of y is 'yes'"
)((_with(y=lambda i: np.where(i["y"] == 1, "yes", "no")), _adapt(_tradaboost_r2)))
case("adaptation: infinite y for a regressor", match="Input y contains infinity")(
    (_with(y=lambda i: np.where(np.arange(40) == 5, np.inf, i["y"] * 1.0)), _adapt(_tradaboost_r2))
)
case("adaptation: continuous y for a classifier", match="Unknown label type: continuous")(
    (_with(y=lambda i: i["X"][:, 0]), _adapt(_tradaboost))
)
case("adaptation: NaN y for a classifier", match="Classifiers mark unlabelled .* y == -1")(
    (_with(y=lambda i: np.where(np.arange(40) >= 30, np.nan, i["y"] * 1.0)), _adapt(_coral))
)
case("adaptation: sample_domain one short", match="sample_domain has 39 entries but X has 40")(
    (_with(sample_domain=lambda i: i["sample_domain"][:-1]), _adapt(_iw))
)
case("adaptation: sample_domain of floats", match="sample_domain must hold integers")(
    (_with(sample_domain=lambda i: i["sample_domain"] * 1.0), _adapt(_coral))
)
case("adaptation: sample_domain of strings", match="sample_domain must hold integers")(
    (
        _with(sample_domain=lambda i: np.where(i["sample_domain"] < 0, "target", "source")),
        _adapt(_iw),
    )
)
case("adaptation: 2-D sample_domain", match="sample_domain must be 1-D")(
    (_with(sample_domain=lambda i: i["sample_domain"][None, :]), _adapt(_tradaboost))
)
case("adaptation: every row a target row", match="No source rows: every row is a target row")(
    (_with(sample_domain=lambda i: np.full(40, -1)), _adapt(_iw))
)
case("adaptation: source rows marked unlabelled", match="2 source rows are unlabelled")(
    (_with(y=lambda i: np.where(np.arange(40) < 2, -1, i["y"])), _adapt(_source_weighted))
)
case("adaptation: no labelled target rows for TrAdaBoost", match="needs labelled target rows")(
    (_with(y=lambda i: np.where(i["sample_domain"] < 0, -1, i["y"])), _adapt(_tradaboost))
)
case(
    "adaptation: an estimator without sample_weight",
    match="KNeighborsClassifier.fit does not accept sample_weight",
)((lambda tmp: shifted(), _adapt(_iw_knn)))
case(
    "adaptation: no target rows (warning)",
    warns=_no_target_warning(),
    match=r"CORAL got no target rows.*sample_domain < 0.*y == -1",
)((_with(sample_domain=lambda i: np.zeros(40, dtype=int)), _adapt(_coral)))


# =========================================================================== found by an
# independent catalogue (issue 23; helper: reliability)


class NaNNet(nn.Module):
    """A backbone whose forward makes NaN from finite input (a log of 0, 0/0)."""

    def forward(self, x):
        return torch.log(x * 0.0) * 0.0


case(
    "a lone surrogate in a text", match=r"X row 1 holds '\\ud800' at position 4, a lone surrogate"
)((lambda tmp: {"X": ["fine", "bad \ud800 text"]}, _fit_text))
case(
    "a string column in a table",
    match=r"X column 'colour' holds strings \(e.g. 'red'\).*ColumnTransformer\(\[\('colour', "
    r"OneHotEncoder\(\), \['colour'\]\)\]",
)(
    (
        lambda tmp: {
            "X": pd.DataFrame({"size": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"]})
        },
        lambda inp: features(lazy_mlp()).fit(inp["X"]),
    )
)
case(
    "device='mps' on a machine without MPS",
    match="device='mps' but Apple's MPS is not available",
    marks=(pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS"),),
)((_tiny_images, lambda inp: _fit_features(inp, device="mps")))
case("device='meta'", match="device='meta' holds shapes, not numbers")(
    (_tiny_images, lambda inp: _fit_features(inp, device="meta"))
)
case(
    "a state_dict as backbone (said in a few lines, not 11,000 characters)",
    error=TypeError,
    match=r"(?s)\Abackbone is a state_dict \(OrderedDict of 7 tensors: 'conv.weight', .{0,300}\Z",
)((_tiny_images, lambda inp: features(inp["module"].state_dict()).fit(inp["X"])))
case(
    "a fitted Pipeline as backbone (it is fitted)",
    error=TypeError,
    match=r"backbone=Pipeline\(...\) is a fitted estimator with no torch network.*head=",
)(
    (
        lambda tmp: {"X": table()[0], "y": table()[1]},
        lambda inp: features(
            __import__("sklearn.pipeline")
            .pipeline.make_pipeline(
                __import__("sklearn.preprocessing").preprocessing.StandardScaler(),
                __import__("sklearn.linear_model").linear_model.LogisticRegression(),
            )
            .fit(inp["X"], inp["y"])
        ).fit(inp["X"]),
    )
)
case(
    "a backbone that outputs NaN on a clean X",
    match=r"backbone 'NaNNet' returned NaN or infinity as the features of row 0: the input is "
    "finite",
)(
    (
        _table,
        lambda inp: (
            __import__("sktransfer").FeatureTransferClassifier(NaNNet()).fit(inp["X"], inp["y"])
        ),
    )
)


case(
    "uint8 masks of 0 and 1 (read as black)",
    warns=UserWarning,
    match=r"every pixel of these uint8 images is 0 or 1.*X \* 255",
)(
    (
        lambda tmp: {"X": (images() > 127).astype(np.uint8), "module": TinyCNN()},
        _fit_features,
    )
)
case(
    "images of shape (N, 3, 3, 3): channels first or last?",
    warns=__import__("sktransfer").inputs.AmbiguousChannelsWarning,
    match=r"read as \(N, H, W, C\), as numpy stores images.*torch.from_numpy\(X\)",
)((lambda tmp: {"X": images(size=3)[:, :3], "module": TinyCNN()}, _fit_features))


case(
    "image_size=True (a 1 px image)", match=r"image_size=True is a boolean; pass a number of pixels"
)((_tiny_images, lambda inp: _fit_features(inp, image_size=True)))


# =========================================================================== the runner


def test_the_catalogue_covers_at_least_40_kinds_of_bad_input():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    assert len(ids) >= 40, len(ids)


@pytest.mark.parametrize("bad", _params())
def test_bad_input_gets_a_clear_error_and_changes_nothing(bad, tmp_path):
    inputs = bad.make(tmp_path)
    before = {k: _snapshot(v) for k, v in inputs.items()}
    if bad.warns is not None:
        with pytest.warns(bad.warns, match=bad.match):
            bad.call(inputs)
    else:
        with pytest.raises(bad.error, match=bad.match):
            bad.call(inputs)
    for k, v in inputs.items():
        _assert_same(before[k], v, k)


def test_a_length_mismatch_is_found_before_any_image_is_embedded(image_row_counter):
    from sktransfer import FeatureTransferClassifier, FineTuneClassifier

    X = images(6)
    for est in (FeatureTransferClassifier, FineTuneClassifier):
        with pytest.raises(ValueError, match="X has 6, y has 5"):
            est(image_row_counter(), image_size=8).fit(X, np.arange(5) % 2)
    assert image_row_counter.seen == []


def test_a_bad_backbone_name_is_found_before_any_input_is_read(tmp_path):
    from sktransfer import PretrainedFeatures

    # A path that does not exist would be "image file not found" if X were read first.
    with pytest.raises(ValueError, match="not a known model name"):
        PretrainedFeatures("bert-base-uncased").fit([str(tmp_path / "missing.png")])
