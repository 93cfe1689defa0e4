"""scikit-learn's own estimator checks on every public estimator: a tabular backbone that
takes any width for the transfer estimators, small default inner estimators for the
adaptation ones."""

from __future__ import annotations

import pytest
from sklearn.base import is_classifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sktransfer import (
    FeatureTransferClassifier,
    FeatureTransferRegressor,
    FineTuneClassifier,
    FineTuneRegressor,
    MultiTaskFineTune,
    PretrainedFeatures,
)
from sktransfer.adaptation import (
    CORAL,
    ImportanceWeighting,
    SourceWeighted,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
)


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
    # Fine-tuning at its defaults (a user sets nothing but the backbone and a seed), and
    # with deep adaptation (no target rows in the checks: the NoTargetRowsWarning fallback).
    FineTuneClassifier(lazy_mlp(), random_state=0),
    FineTuneRegressor(lazy_mlp(), random_state=0),
    FineTuneClassifier(lazy_mlp(), adaptation="dann", random_state=0),
    FineTuneRegressor(lazy_mlp(), adaptation="coral", random_state=0),
    # Several tasks on one body; sklearn's checks give it one column (a 1-D y) at a time.
    MultiTaskFineTune(lazy_mlp(), random_state=0),
    # The adaptation estimators, each around the default linear model of its kind.
    # sklearn's checks pass no sample_domain and no unlabelled rows, so every fit
    # here is the documented no-target fallback: a NoTargetRowsWarning, then the
    # estimator fitted on the source rows.
    CORAL(LogisticRegression()),
    CORAL(Ridge()),
    ImportanceWeighting(LogisticRegression(), random_state=0),
    ImportanceWeighting(LogisticRegression(), method="kmm", random_state=0),
    SourceWeighted(LogisticRegression()),
    TrAdaBoostClassifier(LogisticRegression(), random_state=0),
    TrAdaBoostR2(Ridge(), random_state=0),
]

ADAPTATION_ESTIMATORS = (
    CORAL,
    ImportanceWeighting,
    SourceWeighted,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
)


MINUS_ONE_IS_UNLABELLED = {
    "check_classifiers_classes": (
        "its last problem has the labels {-1, 1}; y == -1 marks an unlabelled "
        "target row (skada's convention, shared by every adaptation estimator), so "
        "the data reads as one class plus unlabelled rows and the fit refuses it"
    )
}

STOCHASTIC_MINI_BATCHES = {
    # Mini-batch SGD visits duplicated rows in other batches than weighted ones, so
    # weighting by 2 is not bit-equivalent to repeating a row (sklearn's SGD* mark it too).
    "check_sample_weight_equivalence_on_dense_data": "stochastic mini-batch training",
}


def expected_failed_checks(estimator):
    if isinstance(estimator, (FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune)):
        expected = dict(STOCHASTIC_MINI_BATCHES)
        if getattr(estimator, "adaptation", None) is not None and is_classifier(estimator):
            expected.update(MINUS_ONE_IS_UNLABELLED)
        return expected
    if isinstance(estimator, ADAPTATION_ESTIMATORS) and is_classifier(estimator):
        return MINUS_ONE_IS_UNLABELLED
    if isinstance(estimator, FeatureTransferRegressor) and estimator.backbone[0].out_features == 8:
        return {
            "check_regressors_train": (
                "asserts R^2 > 0.5 on a 10-feature regression; 8 random ReLU units keep "
                "0.2-0.49 of the variance (seeds 0-4), a limit of this tiny test backbone "
                "and not of the estimator: the 64-unit one passes"
            )
        }
    return {}


@pytest.mark.filterwarnings("ignore::sktransfer.adaptation.NoTargetRowsWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
