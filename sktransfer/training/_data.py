"""What the training loop iterates: the rows of a source with their targets."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class SourceDataset(Dataset):
    """Rows of a source with their targets; ``__getitems__`` builds whole batches at once
    so preprocessing is batched (see ``identity_collate``)."""

    def __init__(
        self, source, targets: dict[str, np.ndarray], preprocess=None, augment=None, collate=None
    ):
        self.source, self.targets = source, targets
        self.preprocess, self.augment, self.collate = preprocess, augment, collate
        self.training = False

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        idx = np.asarray(indices)
        x = self.source.load(idx, self.preprocess)
        if self.augment is not None and self.training:
            x = self.augment(x)
        if self.collate is not None:
            x = self.collate(x)
        y = {k: torch.as_tensor(v[idx]) for k, v in self.targets.items()}
        return x, y


def identity_collate(batch):
    """Batches arrive whole from ``SourceDataset.__getitems__``."""
    return batch


class TrainingDataset(SourceDataset):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.training = True
