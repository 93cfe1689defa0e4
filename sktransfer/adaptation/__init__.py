"""Domain adaptation as scikit-learn estimators.

Data convention (shared with skada): one ``X`` holds source and target rows;
``fit(X, y, sample_domain=None)`` takes ``sample_domain`` >= 0 on source rows
and < 0 on target rows; without it, rows with ``y == -1`` (NaN for
regressors) are the unlabelled target rows. ``predict``, ``transform`` and
``score`` take plain target rows.
"""

from ._base import NoTargetRowsWarning
from ._coral import CORAL
from ._model_selection import (
    ImportanceWeightedScorer,
    PredictionEntropyScorer,
    SourceTargetShuffleSplit,
    estimate_adaptation_gain,
)
from ._reweight import ImportanceWeighting, LowCoverageWarning
from ._source_free import SHOT, TENT, AdaBN
from ._source_weighted import SourceWeighted
from ._tradaboost import TrAdaBoostClassifier, TrAdaBoostR2

__all__ = [
    "AdaBN",
    "SHOT",
    "TENT",
    "CORAL",
    "ImportanceWeightedScorer",
    "ImportanceWeighting",
    "LowCoverageWarning",
    "NoTargetRowsWarning",
    "PredictionEntropyScorer",
    "SourceTargetShuffleSplit",
    "SourceWeighted",
    "TrAdaBoostClassifier",
    "TrAdaBoostR2",
    "estimate_adaptation_gain",
]
