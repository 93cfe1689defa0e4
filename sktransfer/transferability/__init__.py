"""Transferability scores and domain distances, on plain arrays.

Transferability scores estimate, without fine-tuning, how well a pretrained model will do
on a target task: ``logme_score`` and ``hscore`` from the features it produces,
``leep_score`` and ``nce_score`` from its source-task predictions (``_scores.py``); higher
is better for all four. ``mmd`` and ``proxy_a_distance`` measure how far apart two
domains are, lower being closer (``_distances.py``).

This package is pure: its modules import numpy, scipy and scikit-learn (the proxy
A-distance is defined by a classifier), never torch or an sktransfer estimator, so the
scores run on features from anywhere (``tests/test_transferability.py`` checks it; the
parent package ``sktransfer`` itself imports the estimators when loaded).
``sktransfer.ranking.rank_backbones`` is the estimator-driven side: it extracts each
candidate backbone's features and scores them with these.
"""

from ._distances import mmd, proxy_a_distance
from ._scores import hscore, leep_score, logme_score, nce_score

__all__ = [
    "hscore",
    "leep_score",
    "logme_score",
    "mmd",
    "nce_score",
    "proxy_a_distance",
]
