"""sktransfer: transfer learning as scikit-learn estimators.

The public names are loaded on first use (PEP 562): ``import sktransfer`` and
``import sktransfer.transferability`` stay light (no torch, skorch or scikit-learn, so
no pandas either), and a script pays for torch only when it touches an estimator.
``from sktransfer import FineTuneClassifier`` and pickles that name ``sktransfer.X`` work
as before.
"""

import importlib
import importlib.util

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "feature_cache": "._cache",
    **dict.fromkeys(
        [
            "CORAL",
            "SHOT",
            "TENT",
            "AdaBN",
            "ImportanceWeightedScorer",
            "ImportanceWeighting",
            "PredictionEntropyScorer",
            "SourceTargetShuffleSplit",
            "SourceWeighted",
            "TrAdaBoostClassifier",
            "TrAdaBoostR2",
        ],
        ".adaptation",
    ),
    **dict.fromkeys(
        ["Backbone", "list_backbones", "register_backbone", "resolve_backbone"], ".backbones"
    ),
    "FeatureTransferClassifier": ".feature_transfer",
    "FeatureTransferRegressor": ".feature_transfer",
    "PretrainedFeatures": ".features",
    "FineTuneClassifier": ".finetune",
    "FineTuneRegressor": ".finetune",
    "MultiTaskFineTune": ".multitask",
    "rank_backbones": ".ranking",
    **dict.fromkeys(["save", "load"], "._save"),
    **dict.fromkeys(["trusted_types", "UnsavableError"], "._save_types"),
    "onnx_inputs": "._onnx",
    "to_onnx": "._onnx",
    **dict.fromkeys(
        ["hscore", "leep_score", "logme_score", "mmd", "nce_score", "proxy_a_distance"],
        ".transferability",
    ),
}

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
    "load",
    "onnx_inputs",
    "save",
    "to_onnx",
    "trusted_types",
    "UnsavableError",
    "register_backbone",
    "resolve_backbone",
]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    # The eager package made ``import sktransfer; sktransfer.finetune`` work as a side
    # effect of its imports; keep it for every submodule.
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
