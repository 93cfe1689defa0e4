"""FeatureTransferClassifier / Regressor: frozen features and any scikit-learn head."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
from conftest import RowCounter
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from sktransfer import FeatureTransferClassifier, FeatureTransferRegressor, PretrainedFeatures


@pytest.fixture
def labelled_table(table):
    X, y = table
    return X, np.array(["cat", "dog", "emu"])[y]


def test_string_labels_come_back_as_strings(labelled_table):
    X, y = labelled_table
    clf = FeatureTransferClassifier(RowCounter(n_out=8)).fit(X, y)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    assert clf.score(X, y) > 0.7


def test_head_parameters_are_tunable_in_a_grid_search(labelled_table):
    X, y = labelled_table
    search = GridSearchCV(
        FeatureTransferClassifier(RowCounter()), {"head__C": [1e-4, 1.0]}, cv=3
    ).fit(X, y)
    assert search.best_params_ == {"head__C": 1.0}
    assert search.best_estimator_.head_.C == 1.0


def test_a_grid_over_the_head_itself(labelled_table):
    X, y = labelled_table
    heads = [LogisticRegression(), KNeighborsClassifier(3)]
    search = GridSearchCV(FeatureTransferClassifier(RowCounter()), {"head": heads}, cv=3)
    assert search.fit(X, y).best_score_ > 0.5


def test_probabilities_and_decision_function_follow_the_head(labelled_table):
    X, y = labelled_table
    logistic = FeatureTransferClassifier(RowCounter()).fit(X, y)
    svm = FeatureTransferClassifier(RowCounter(), head=LinearSVC()).fit(X, y)
    assert logistic.predict_proba(X).shape == (60, 3)
    np.testing.assert_allclose(logistic.predict_proba(X).sum(axis=1), 1.0)
    assert hasattr(logistic, "decision_function")
    assert not hasattr(svm, "predict_proba") and not hasattr(svm, "predict_log_proba")
    assert svm.decision_function(X).shape == (60, 3)


def test_availability_is_known_before_fit():
    assert hasattr(FeatureTransferClassifier(RowCounter()), "predict_proba")
    assert not hasattr(FeatureTransferClassifier(RowCounter(), head=LinearSVC()), "predict_proba")


def test_zero_sample_weight_is_the_same_as_leaving_rows_out(table):
    X, y = table[0], table[0] @ [1.0, -2.0, 0.5, 0.0, 3.0]
    weights = np.r_[np.ones(40), np.zeros(20)]
    weighted = FeatureTransferRegressor(RowCounter()).fit(X, y, sample_weight=weights)
    subset = FeatureTransferRegressor(RowCounter()).fit(X[:40], y[:40])
    np.testing.assert_allclose(weighted.predict(X), subset.predict(X), rtol=1e-6)


def test_sample_weight_with_a_head_that_cannot_take_it_is_explained(table):
    X, y = table
    clf = FeatureTransferClassifier(RowCounter(), head=KNeighborsClassifier())
    with pytest.raises(TypeError, match="the head KNeighborsClassifier does not accept it"):
        clf.fit(X, y, sample_weight=np.ones(len(y)))


def test_regressor_defaults_to_ridge_and_predicts_several_outputs(table):
    X = table[0]
    Y = np.c_[X @ [1.0, 0, 0, 0, 0], X @ [0, 1.0, 0, 0, 0]]
    reg = FeatureTransferRegressor(RowCounter(n_out=8)).fit(X, Y)
    assert isinstance(reg.head_, Ridge)
    assert reg.predict(X).shape == (60, 2) and reg.predict(X).dtype == np.float64


def test_fit_without_y_is_an_error(table):
    with pytest.raises(ValueError, match="requires y to be passed, but the target y is None"):
        FeatureTransferClassifier(RowCounter()).fit(table[0], None)


def test_a_continuous_target_for_the_classifier_is_an_error(table):
    with pytest.raises(ValueError, match="Unknown label type"):
        FeatureTransferClassifier(RowCounter()).fit(table[0], table[0][:, 0])


def test_a_fitted_estimator_as_backbone_survives_clone_in_cross_validation(table):
    X, y = table
    source = PretrainedFeatures(RowCounter(seed=3)).fit(X)
    scores = cross_val_score(FeatureTransferClassifier(source), X, y, cv=3)
    expected = cross_val_score(FeatureTransferClassifier(RowCounter(seed=3)), X, y, cv=3)
    np.testing.assert_allclose(scores, expected)


def test_a_fitted_classifier_round_trips_through_joblib(labelled_table, tmp_path):
    X, y = labelled_table
    clf = FeatureTransferClassifier(RowCounter()).fit(X, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_fitted_image_classifier_round_trips_through_joblib_with_identical_predictions(
    digits, tmp_path
):
    X, y = digits
    clf = FeatureTransferClassifier("efficientnet_lite0", image_size=32, cache=False).fit(X, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_fitted_classifier_loads_and_predicts_on_a_cpu_only_machine(
    labelled_table, tmp_path, monkeypatch
):
    X, y = labelled_table
    clf = FeatureTransferClassifier(RowCounter(), device="cuda").fit(X, y)
    expected = clf.predict_proba(X)
    joblib.dump(clf, tmp_path / "clf.joblib")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = joblib.load(tmp_path / "clf.joblib").set_params(device="auto")
    assert all(p.device.type == "cpu" for p in loaded.backbone_.module.parameters())
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ several targets


def _multi_table(seed=0, n=80):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    return X, np.c_[X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0].astype(int)


def test_a_multilabel_y_fits_the_default_head_once_per_label():
    from torch import nn

    X, Y = _multi_table()
    clf = FeatureTransferClassifier(nn.Sequential(nn.LazyLinear(16), nn.ReLU()), random_state=0)
    clf.fit(X, Y)
    assert clf.predict(X).shape == (80, 3)
    proba = clf.predict_proba(X)
    assert len(proba) == 3 and all(p.shape == (80, 2) for p in proba)  # sklearn's format
    assert [list(c) for c in clf.classes_] == [[0, 1]] * 3
    assert (clf.predict(X) == Y).mean() > 0.7


def test_a_multiclass_multioutput_y_has_a_list_of_classes():
    from torch import nn

    X, Y = _multi_table()
    Y = np.c_[Y[:, 0] + Y[:, 1], np.where(Y[:, 2] == 1, "yes", "no")]  # 3 classes; strings
    clf = FeatureTransferClassifier(nn.Sequential(nn.LazyLinear(16), nn.ReLU()), random_state=0)
    clf.fit(X, Y)
    assert [list(c) for c in clf.classes_] == [["0", "1", "2"], ["no", "yes"]]
    assert clf.predict(X).shape == (80, 2)


def test_a_head_that_predicts_one_target_is_told_to_wrap_before_any_extraction(row_counter):
    from sklearn.svm import SVR

    X, Y = _multi_table()
    with pytest.raises(ValueError, match=r"head=MultiOutputClassifier\(LogisticRegression"):
        FeatureTransferClassifier(row_counter(), head=LogisticRegression()).fit(X, Y)
    with pytest.raises(ValueError, match=r"head=MultiOutputRegressor\(SVR"):
        FeatureTransferRegressor(row_counter(), head=SVR()).fit(X, X[:, :2])
    assert row_counter.seen == []
