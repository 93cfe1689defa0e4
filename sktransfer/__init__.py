"""sktransfer: transfer learning as scikit-learn estimators."""

from ._cache import feature_cache
from .adaptation import (
    CORAL,
    SHOT,
    TENT,
    AdaBN,
    ImportanceWeightedScorer,
    ImportanceWeighting,
    PredictionEntropyScorer,
    SourceTargetShuffleSplit,
    SourceWeighted,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
)
from .backbones import Backbone, list_backbones, register_backbone, resolve_backbone
from .feature_transfer import FeatureTransferClassifier, FeatureTransferRegressor
from .features import PretrainedFeatures
from .finetune import FineTuneClassifier, FineTuneRegressor
from .multitask import MultiTaskFineTune
from .ranking import rank_backbones
from .transferability import (
    hscore,
    leep_score,
    logme_score,
    mmd,
    nce_score,
    proxy_a_distance,
)

__version__ = "0.1.0"

__all__ = [
    "CORAL",
    "AdaBN",
    "SHOT",
    "TENT",
    "ImportanceWeightedScorer",
    "ImportanceWeighting",
    "PredictionEntropyScorer",
    "SourceTargetShuffleSplit",
    "SourceWeighted",
    "TrAdaBoostClassifier",
    "TrAdaBoostR2",
    "Backbone",
    "FeatureTransferClassifier",
    "FeatureTransferRegressor",
    "FineTuneClassifier",
    "FineTuneRegressor",
    "MultiTaskFineTune",
    "PretrainedFeatures",
    "feature_cache",
    "hscore",
    "leep_score",
    "logme_score",
    "mmd",
    "nce_score",
    "proxy_a_distance",
    "rank_backbones",
    "list_backbones",
    "register_backbone",
    "resolve_backbone",
]
