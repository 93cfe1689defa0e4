"""scikit-learn's own estimator checks, with a tabular backbone that takes any width."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sktransfer import FeatureTransferClassifier, FeatureTransferRegressor, PretrainedFeatures


def lazy_mlp(width=8):
    """The issue's tabular backbone: accepts any number of features, seeded in fit."""
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU())


ESTIMATORS = [
    PretrainedFeatures(lazy_mlp(), random_state=0),
    FeatureTransferClassifier(lazy_mlp(), random_state=0),
    FeatureTransferRegressor(lazy_mlp(), random_state=0),
    # The same regressor with room to fit the target: passes every check, including
    # the one the 8-unit backbone is expected to fail below.
    FeatureTransferRegressor(lazy_mlp(64), random_state=0),
]


def expected_failed_checks(estimator):
    width = estimator.backbone[0].out_features
    if isinstance(estimator, FeatureTransferRegressor) and width == 8:
        return {
            "check_regressors_train": (
                "asserts R^2 > 0.5 on a 10-feature regression; 8 random ReLU units keep "
                "0.2-0.49 of the variance (seeds 0-4), a limit of this tiny test backbone "
                "and not of the estimator: the 64-unit one passes"
            )
        }
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
