"""Transferability scores and domain distances, on plain arrays.

Transferability scores estimate, without fine-tuning, how well a pretrained model will do
on a target task: ``logme_score`` and ``hscore`` from the features it produces,
``leep_score`` and ``nce_score`` from its source-task predictions (``_scores.py``); higher
is better for all four. ``mmd`` and ``proxy_a_distance`` measure how far apart two
domains are, lower being closer (``_distances.py``).

This package is pure: ``_scores.py`` imports numpy and scipy only, ``_distances.py`` also
scikit-learn (the proxy A-distance is defined by a classifier), never torch or an
sktransfer estimator, so the scores run on features from anywhere. ``mmd`` and
``proxy_a_distance`` are loaded on first use, so that importing the scores costs no
scikit-learn (``tests/test_transferability.py`` checks both).
``sktransfer.ranking.rank_backbones`` is the estimator-driven side: it extracts each
candidate backbone's features and scores them with these.
"""

from ._scores import hscore, leep_score, logme_score, nce_score
from ._scores import infers_regression as infers_regression  # for rank_backbones

__all__ = [
    "hscore",
    "leep_score",
    "logme_score",
    "mmd",
    "nce_score",
    "proxy_a_distance",
]


def __getattr__(name):
    if name in ("mmd", "proxy_a_distance"):
        from . import _distances

        value = getattr(_distances, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
