"""Label encodings the fine-tuning faces share: class indices, columns stacked back."""

from __future__ import annotations

import numpy as np


def class_index(classes, labels, where):
    """Index of each label in the sorted ``classes``; unknown labels are an error."""
    idx = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    unknown = classes[idx] != labels
    if np.any(unknown):
        raise ValueError(
            f"{where} contains labels {np.unique(labels[unknown])[:5]} not in the classes "
            f"seen at fit {classes}."
        )
    return idx


def stack_columns(cols):
    """Columns side by side, as one array (object dtype when numbers meet other types)."""
    if len({c.dtype for c in cols}) == 1 or all(c.dtype.kind in "biuf" for c in cols):
        return np.column_stack(cols)
    out = np.empty((len(cols[0]), len(cols)), dtype=object)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


def as_tuple(weights):
    return None if weights is None else tuple(float(v) for v in weights)
