"""The plan of one fit: the rows it trains on (``FitData``) and how (``Plan``).

An estimator's ``fit`` checks its parameters and input, then hands these two objects to
the phases; nothing in the engine reads the estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ._assemble import AdapterSpec


@dataclass(frozen=True)
class Plan:
    """How a fit trains, every "auto" already resolved (``lr``, ``batchnorm``, ``family``)."""

    name: str  # the estimator's class name, for messages
    device: torch.device
    precision: str
    batch_size: int
    lr: float
    lr_mult: float
    weight_decay: float
    l2sp: float
    batchnorm: str
    family: str
    freeze: object
    n_features: int
    is_conv: bool
    adapter: AdapterSpec | None = None
    adaptation: object = None
    adaptation_weight: float = 0.0
    augment: object = None
    callbacks: tuple = ()
    distributed: bool = False
    n_iter_no_change: int = 3
    verbosity: int = 0
    num_workers: int = 0
    cache: object = True

    def say(self, message: str) -> None:
        if self.verbosity:
            print(f"[{self.name}] {message}", flush=True)


@dataclass
class FitData:
    """The rows of one fit: the validated ``source`` of X, the encoded ``targets``
    (``y``; ``w`` sample weights, 0 on unlabelled rows; ``d`` domains with adaptation),
    which rows are labelled, and the training / validation rows, split once."""

    source: object
    targets: dict
    modality: str
    labelled: np.ndarray
    train: np.ndarray
    valid: np.ndarray | None = None  # early stopping's rows
    holdout: np.ndarray | None = None  # the guard's rows (wise="auto"); never trained on

    @property
    def train_labelled(self) -> np.ndarray:
        return self.train[self.labelled[self.train]]


def split_rows(labelled, y, *, validation_fraction, stratify, seed):
    """(train rows, validation rows) for early stopping: the validation rows are drawn
    from the labelled rows (stratified on a 1-D class target when every class can be);
    unlabelled target rows always train."""
    rows = np.flatnonzero(labelled)
    strat = y[rows] if stratify else None
    try:
        tr, va = train_test_split(
            rows, test_size=validation_fraction, stratify=strat, random_state=seed
        )
    except ValueError:  # too few rows per class to stratify
        tr, va = train_test_split(rows, test_size=validation_fraction, random_state=seed)
    unlabelled = np.flatnonzero(~labelled)
    return np.sort(np.concatenate([tr, unlabelled])), np.sort(va)
