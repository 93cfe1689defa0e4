"""Label encodings the estimators share: class indices, columns stacked back, the
classes of each column checked."""

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


def check_column_classes(y, who: str) -> None:
    """Each column of a 2-D classification ``y`` needs two classes: a multilabel column
    that is never (or always) positive has nothing to learn, and a solver would say so
    without naming the column."""
    if np.ndim(y) != 2:
        return
    for j in range(y.shape[1]):
        values = np.unique(np.asarray(y[:, j]).tolist())
        if len(values) < 2:
            value = values[0].item() if hasattr(values[0], "item") else values[0]
            raise ValueError(
                f"y[:, {j}] has the same value ({value!r}) in every row: {who} fits a "
                "classifier per column, and each needs at least two classes. Drop the "
                "column, or add rows of its other class."
            )
