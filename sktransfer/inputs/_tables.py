"""Tabular rows for tabular backbones."""

from __future__ import annotations

import numpy as np
import torch

from ._common import Source, _hash_bytes

# --------------------------------------------------------------------------- tables


class TabularRows(Source):
    """A validated 2-D float table (sklearn's ``check_array`` has already run)."""

    def __init__(self, X: np.ndarray):
        self.X = np.asarray(X, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.X)

    def _compute_keys(self, rows) -> list[bytes]:
        meta = f"f32{self.X.shape[1]}".encode()
        X = self.X if rows is None else self.X[np.asarray(rows)]
        return [_hash_bytes(meta, r.tobytes()) for r in X]

    def load(self, indices, preprocess=None) -> torch.Tensor:
        return torch.from_numpy(self.X[indices])


# --------------------------------------------------------------------------- text
