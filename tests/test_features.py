"""PretrainedFeatures: a frozen backbone as a scikit-learn transformer."""

from __future__ import annotations

import copy

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from sktransfer import PretrainedFeatures


@pytest.fixture(scope="module")
def lite0(digits):
    """efficientnet_lite0 at 32 px, fitted on the real digits."""
    return PretrainedFeatures("efficientnet_lite0", image_size=32).fit(digits[0])


def test_transform_returns_float32_rows_by_feature_dimension(lite0, digits):
    Z = lite0.transform(digits[0])
    assert Z.dtype == np.float32 and Z.shape == (40, 1280)
    assert lite0.n_features_out_ == 1280 and lite0.modality_ == "image"


def test_feature_names_are_the_backbone_name_and_an_index(lite0):
    names = lite0.get_feature_names_out()
    assert len(names) == 1280
    assert list(names[[0, 1279]]) == ["efficientnet_lite0_0", "efficientnet_lite0_1279"]


def test_set_output_pandas_gives_a_dataframe_with_the_feature_names(lite0, digits):
    pf = clone(lite0).set_output(transform="pandas")
    df = pf.fit_transform(digits[0][:5])
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (5, 1280) and df.columns[0] == "efficientnet_lite0_0"


def test_pretrained_features_separate_the_digits_in_a_pipeline(digits):
    X, y = digits
    pipe = make_pipeline(
        PretrainedFeatures("efficientnet_lite0", image_size=32), LogisticRegression(max_iter=500)
    )
    assert cross_val_score(pipe, X, y, cv=2).mean() > 0.8  # 4 classes: chance is 0.25


def test_fit_on_a_single_image(digits):
    pf = PretrainedFeatures("efficientnet_lite0", image_size=32).fit(digits[0][:1])
    assert pf.transform(digits[0][:3]).shape == (3, 1280)


def test_transform_before_fit_is_not_fitted_error(digits):
    with pytest.raises(NotFittedError):
        PretrainedFeatures("efficientnet_lite0").transform(digits[0])


def test_tabular_backbone_checks_the_number_of_features_like_sklearn(table):
    pf = PretrainedFeatures(nn.Linear(5, 2)).fit(table[0])
    with pytest.raises(ValueError, match="X has 4 features, but PretrainedFeatures is expecting 5"):
        pf.transform(table[0][:, :4])


def test_a_tabular_backbone_that_fails_on_x_raises_a_value_error_naming_it(table):
    with pytest.raises(ValueError, match=r"backbone 'Linear' failed on a batch of shape \(1, 5\)"):
        PretrainedFeatures(nn.Linear(3, 2)).fit(table[0])


def test_a_backbone_whose_output_is_not_a_matrix_is_explained(table):
    class Scalar(nn.Module):
        def forward(self, x):
            return x.sum()

    with pytest.raises(
        ValueError, match=r"returned features of shape \(\); expected \(batch, dim\)"
    ):
        PretrainedFeatures(Scalar()).fit(table[0])


def test_lazy_modules_are_materialised_reproducibly_with_random_state(table):
    def feats(seed):
        lazy = nn.Sequential(nn.LazyLinear(8), nn.ReLU())
        return PretrainedFeatures(lazy, random_state=seed).fit_transform(table[0])

    np.testing.assert_array_equal(feats(0), feats(0))
    assert not np.allclose(feats(0), feats(1))


def test_fitting_does_not_touch_torchs_global_random_stream(table):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PretrainedFeatures(nn.Sequential(nn.LazyLinear(8)), random_state=0).fit(table[0])
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pooling": "median"}, "The 'pooling' parameter of PretrainedFeatures must be"),
        ({"precision": "64"}, "The 'precision' parameter of PretrainedFeatures must be"),
        ({"batch_size": 0}, "The 'batch_size' parameter of PretrainedFeatures must be"),
        ({"device": "gpu9"}, "device='gpu9' is not a torch device"),
    ],
    ids=["pooling", "precision", "batch_size", "device"],
)
def test_invalid_parameters_are_reported_at_fit(params, message, table):
    with pytest.raises((InvalidParameterError, ValueError), match=message):
        PretrainedFeatures(nn.Linear(5, 2), **params).fit(table[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_asking_for_cuda_without_a_gpu_says_so(table):
    with pytest.raises(
        ValueError, match="CUDA is not available on this machine; use device='auto'"
    ):
        PretrainedFeatures(nn.Linear(5, 2), device="cuda").fit(table[0])


def test_init_stores_parameters_and_loads_nothing():
    pf = PretrainedFeatures("resnet18", weights="IMAGENET1K_V1", image_size=64)
    assert pf.get_params()["backbone"] == "resnet18" and not hasattr(pf, "backbone_")


def test_clone_is_unfitted_and_shares_no_module(table):
    module = nn.Linear(5, 2)
    pf = PretrainedFeatures(module).fit(table[0])
    twin = clone(pf)
    assert not hasattr(twin, "backbone_")
    assert twin.backbone is not module


def test_a_fitted_transformer_round_trips_through_joblib(lite0, digits, tmp_path):
    joblib.dump(lite0, tmp_path / "pf.joblib")
    loaded = joblib.load(tmp_path / "pf.joblib")
    original = copy.deepcopy(lite0).set_params(cache=False)
    np.testing.assert_array_equal(
        loaded.set_params(cache=False).transform(digits[0]), original.transform(digits[0])
    )
