"""Text rows for text backbones."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np

from ._common import Source, _hash_bytes, _unwrap_pandas


class TextRows(Source):
    """A list of strings for text backbones; tokenised by the backbone, batch by batch."""

    def __init__(self, items: Sequence[str]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def _compute_keys(self, rows) -> list[bytes]:
        items = self.items if rows is None else [self.items[i] for i in rows]
        return [_hash_bytes(b"text", s.encode("utf-8", "surrogatepass")) for s in items]

    def load(self, indices, preprocess=None) -> list[str]:
        return [self.items[int(i)] for i in indices]

    def lengths(self, rows) -> np.ndarray:
        """Characters per row: the extraction loop batches texts of similar length."""
        return np.array([len(self.items[int(i)]) for i in rows])


def _is_missing(s) -> bool:
    """None, NaN, and pandas' missing markers (``pd.NA`` in "string" columns, ``NaT``)."""
    if s is None or (isinstance(s, numbers.Real) and s != s):
        return True
    return type(s).__name__ in ("NAType", "NaTType") and type(s).__module__.startswith("pandas")


def as_text(X, *, name: str = "X", missing: str = "raise") -> TextRows:
    """The text source for ``X``: strings only; ``missing="empty"`` maps None/NaN to ''."""
    X = _unwrap_pandas(X, name=name)
    if isinstance(X, str):
        raise TypeError(f"{name} is a single string; pass a list of strings (e.g. [{name}]).")
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]  # one column of strings, as a one-column DataFrame gives
        if X.ndim != 1:
            raise ValueError(
                f"{name} has shape {X.shape}; text input must be 1-D (one string a row) or "
                "one column."
            )
        X = X.tolist()
    if not isinstance(X, Sequence):
        raise TypeError(f"{name} is a {type(X).__name__}; expected a list/array/Series of strings.")
    if len(X) == 0:
        raise ValueError(f"{name} is empty: 0 texts were given.")
    out = []
    for i, s in enumerate(X):
        if _is_missing(s):
            if missing == "empty":
                out.append("")
                continue
            raise ValueError(
                f"{name} row {i} is missing ({s!r}); fill it, or pass missing='empty' to embed "
                "it as an empty string."
            )
        if not isinstance(s, str):
            raise TypeError(
                f"{name} row {i} is a {type(s).__name__} ({s!r:.40}); expected a string."
            )
        if not s.isascii():
            _check_encodable(s, f"{name} row {i}")
        out.append(s)
    if len(out) > 1 and not any(s.strip() for s in out):
        warnings.warn(
            f"{name}: all {len(out)} texts are empty or blank, so they all get the same "
            "features (those of an empty input) and carry no information. Is it the right "
            "column?",
            UserWarning,
            stacklevel=3,
        )
    return TextRows(out)


def _check_encodable(s: str, where: str) -> None:
    """Tokenizers take valid Unicode only; a lone surrogate (what decoding bytes with
    ``errors="surrogateescape"`` leaves) would be their opaque TypeError."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{where} holds {s[exc.start]!r} at position {exc.start}, a lone surrogate: not "
            "valid Unicode text (bytes decoded with errors='surrogateescape' leave them). "
            "Decode the file with its real encoding, or replace them: "
            "s.encode('utf-8', 'replace').decode('utf-8')."
        ) from None
