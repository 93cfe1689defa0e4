"""What a safe file may name: the sktransfer estimators, a few scikit-learn heads and
preprocessors, the adaptation wrappers (and, in ``_save_modules``, plain ``torch.nn``
layers). ``save`` refuses anything else with ``UnsavableError``; ``load`` refuses a file
that names anything else."""

from __future__ import annotations

import importlib

# The sktransfer classes a file may name: public name -> defining module.
ESTIMATORS = {
    "FineTuneClassifier": "sktransfer.finetune",
    "FineTuneRegressor": "sktransfer.finetune",
    "MultiTaskFineTune": "sktransfer.multitask",
    "FeatureTransferClassifier": "sktransfer.feature_transfer",
    "FeatureTransferRegressor": "sktransfer.feature_transfer",
    "PretrainedFeatures": "sktransfer.features",
}

# The scikit-learn classes a file may name (by their public path), rebuilt from their
# attributes as a pickle would, but only these: linear heads, their multi-output
# wrappers, scalers and pipelines of them. Trees hold Cython objects: not here.
SKLEARN = {
    "sklearn.linear_model": (
        "LogisticRegression",
        "LogisticRegressionCV",
        "Ridge",
        "RidgeCV",
        "RidgeClassifier",
        "RidgeClassifierCV",
        "LinearRegression",
        "Lasso",
        "ElasticNet",
        "SGDClassifier",
        "SGDRegressor",
    ),
    "sklearn.svm": ("LinearSVC", "LinearSVR"),
    "sklearn.discriminant_analysis": ("LinearDiscriminantAnalysis",),
    "sklearn.multioutput": ("MultiOutputClassifier", "MultiOutputRegressor"),
    "sklearn.preprocessing": (
        "StandardScaler",
        "MinMaxScaler",
        "MaxAbsScaler",
        "LabelEncoder",
        "PolynomialFeatures",
    ),
    "sklearn.impute": ("SimpleImputer",),
    "sklearn.decomposition": ("PCA",),
    "sklearn.pipeline": ("Pipeline",),
    # The adaptation wrappers hold arrays and the estimators they wrap (each saved by
    # these same rules: a forest inside TrAdaBoost is refused as anywhere else).
    "sktransfer.adaptation": (
        "CORAL",
        "ImportanceWeighting",
        "SourceWeighted",
        "TrAdaBoostClassifier",
        "TrAdaBoostR2",
        "AdaBN",
        "TENT",
        "SHOT",
    ),
}

JOBLIB_HINT = (
    "To keep this model, use joblib.dump(estimator, path) instead: a pickle stores any "
    "object, but loading one runs code, so load only pickles you trust."
)


class UnsavableError(TypeError):
    """What ``save`` refuses: a part of the estimator the safe format cannot describe
    without code (an arbitrary object, a custom network class, an untrusted head).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from torch import nn
    >>> import sktransfer
    >>> X, y = np.random.RandomState(0).randn(20, 4), np.arange(20) % 2
    >>> clf = sktransfer.FeatureTransferClassifier(
    ...     nn.Sequential(nn.Linear(4, 3)), head=RandomForestClassifier(n_estimators=2)
    ... ).fit(X, y)
    >>> try:
    ...     sktransfer.save(clf, "model.skt")
    ... except sktransfer.UnsavableError as exc:
    ...     print(str(exc)[:84])
    sktransfer.save cannot store FeatureTransferClassifier(head=...): a sklearn.ensemble
    """


def trusted_types() -> list[str]:
    """The classes a safe file may name, besides plain values and arrays.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from sktransfer import trusted_types
    >>> "sklearn.linear_model.LogisticRegression" in trusted_types()
    True
    """
    from ._save_modules import layer_names

    return (
        [f"sktransfer.{n}" for n in ESTIMATORS]
        + [f"{m}.{n}" for m, names in SKLEARN.items() for n in names]
        + [f"torch.nn.{n}" for n in layer_names() if not n.startswith("sktransfer")]
    )


def sklearn_class(name: str, where: str):
    module, _, cls = name.rpartition(".")
    if cls not in SKLEARN.get(module, ()):
        raise ValueError(
            f"the file's {where} names the class {name!r}, which the safe format does not "
            "load (see sktransfer.trusted_types()); only a pickle could hold it."
        )
    return getattr(importlib.import_module(module), cls)


def sklearn_name(obj) -> str | None:
    cls = type(obj)
    for module, names in SKLEARN.items():
        if cls.__name__ in names and getattr(importlib.import_module(module), cls.__name__) is cls:
            return f"{module}.{cls.__name__}"
    return None
