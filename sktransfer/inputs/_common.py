"""Helpers shared by the input sources: element kinds, pandas unwrapping, row hashes."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

_IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a hard dependency
        return False
    return isinstance(obj, Image.Image)


def _is_pathlike(obj) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _type_name(obj) -> str:
    if _is_pil(obj):
        return "PIL.Image"
    return type(obj).__name__


def _unwrap_pandas(X, *, name: str):
    """A one-column DataFrame or a Series becomes a plain 1-D sequence."""
    cls = type(X).__name__
    module = type(X).__module__
    if not module.startswith("pandas"):
        return X
    if cls == "DataFrame":
        if X.shape[1] != 1:
            raise ValueError(
                f"{name} is a DataFrame with {X.shape[1]} columns; pass a single column "
                "(e.g. df[['photo']]), or route each column through a ColumnTransformer."
            )
        X = X.iloc[:, 0]
    if type(X).__name__ == "Series":
        return X.to_numpy(dtype=object)
    return X


def _hash_bytes(*chunks: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for c in chunks:
        h.update(c)
    return h.digest()


class Source:
    """Rows a backbone can eat: ``len()``, ``load(indices, preprocess)`` (a batch) and
    ``row_keys(rows=None)`` (content hashes for the feature cache).

    A source is built once per ``fit``/``transform`` call and passed down to every phase
    (extraction, the probe, training), so each row is validated once; its keys are
    computed once per row (each file stat-ed, each array row hashed once), however many
    phases ask for them. Subclasses implement ``_compute_keys(rows)``.
    """

    def __len__(self) -> int:  # pragma: no cover - every source defines it
        raise NotImplementedError

    def _compute_keys(self, rows: list[int]) -> list[bytes]:  # pragma: no cover
        raise NotImplementedError

    def row_keys(self, rows=None) -> list[bytes]:
        memo = self.__dict__.setdefault("_key_memo", {})
        rows = range(len(self)) if rows is None else [int(i) for i in rows]
        todo = [i for i in rows if i not in memo]
        if todo:
            memo.update(zip(todo, self._compute_keys(todo)))
        return [memo[i] for i in rows]


class Subset(Source):
    """Rows ``rows`` of a source, as a source (a training split, the labelled rows)."""

    def __init__(self, source, rows):
        self.source, self.rows = source, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def _compute_keys(self, rows):
        return self.source.row_keys(self.rows[np.asarray(rows, dtype=int)])

    def load(self, idx, preprocess=None):
        return self.source.load(self.rows[np.asarray(idx)], preprocess)


class FeatureRows(Source):
    """Precomputed body features as a source (the frozen-body fast path)."""

    def __init__(self, Z: np.ndarray):
        self.Z = np.ascontiguousarray(Z, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.Z)

    def _compute_keys(self, rows):
        return [_hash_bytes(b"features", self.Z[i]) for i in rows]

    def load(self, idx, preprocess=None):
        return torch.from_numpy(self.Z[idx])
