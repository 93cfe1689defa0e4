"""Ranking candidate backbones for a target task by a transferability score.

``rank_backbones`` drives the estimators: it extracts each candidate's features with
``PretrainedFeatures`` and scores them with a function of ``sktransfer.transferability``.
It returns a ``BackboneRanking``, the same type whether or not pandas is installed.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import clone

from .features import PretrainedFeatures
from .transferability import hscore, infers_regression, logme_score

__all__ = ["BackboneRanking", "UnreliableRankingWarning", "rank_backbones"]

_COLUMNS = ("name", "score", "n_features", "seconds")


class BackboneRanking:
    """Candidate backbones ranked by a transferability score, best first.

    What ``rank_backbones`` returns, with or without pandas installed. Each row is a dict
    with the keys ``name``, ``score``, ``n_features`` (the width of the candidate's
    features) and ``seconds`` (its feature extraction plus scoring).

    Parameters
    ----------
    rows : iterable of dict
        The rows, in the order to keep (``rank_backbones`` passes them best first), each
        with the keys ``name``, ``score``, ``n_features`` and ``seconds``. They are copied.

    Attributes
    ----------
    names : list of str
        Candidate names, best first.
    scores : ndarray of shape (n_candidates,)
        Their scores, in the same order.
    n_features : ndarray of shape (n_candidates,)
        The width of each candidate's features.
    seconds : ndarray of shape (n_candidates,)
        Each candidate's feature extraction plus scoring time.

    Examples
    --------
    ``ranking[0]`` is the best row, ``ranking["name"]`` the row of a named candidate;
    ``print`` shows the table and ``to_frame()`` makes it a pandas DataFrame.

    >>> from sktransfer.ranking import BackboneRanking
    >>> ranking = BackboneRanking([
    ...     {"name": "wide", "score": 0.28, "n_features": 64, "seconds": 0.5},
    ...     {"name": "narrow", "score": -0.22, "n_features": 4, "seconds": 0.25},
    ... ])
    >>> ranking.names, ranking.scores.tolist()
    (['wide', 'narrow'], [0.28, -0.22])
    >>> ranking[0]["name"], ranking["narrow"]["n_features"]
    ('wide', 4)
    >>> print(ranking)
    name      score  n_features  seconds
    wide     0.2800          64     0.50
    narrow  -0.2200           4     0.25
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]]):
        self._rows = []
        for i, row in enumerate(rows):
            if set(row) != set(_COLUMNS):
                raise ValueError(
                    f"row {i} of a BackboneRanking must have the keys {list(_COLUMNS)}; "
                    f"got {sorted(row)}."
                )
            self._rows.append({key: row[key] for key in _COLUMNS})

    @property
    def names(self) -> list[str]:
        return [row["name"] for row in self._rows]

    @property
    def scores(self) -> np.ndarray:
        return np.array([row["score"] for row in self._rows], dtype=np.float64)

    @property
    def n_features(self) -> np.ndarray:
        return np.array([row["n_features"] for row in self._rows], dtype=np.int64)

    @property
    def seconds(self) -> np.ndarray:
        return np.array([row["seconds"] for row in self._rows], dtype=np.float64)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(row) for row in self._rows)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, key: int | str) -> dict[str, Any]:
        """The row at a position (best first) or of a candidate name, as a new dict."""
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no candidate named {key!r}; the candidates are {self.names}.")
            return dict(self._rows[self.names.index(key)])
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return dict(self._rows[key])
        raise TypeError(
            "a BackboneRanking is indexed by position (int) or candidate name (str); "
            f"got {type(key).__name__}."
        )

    def to_frame(self):
        """The ranking as a pandas DataFrame indexed by name, best first.

        Returns
        -------
        pandas.DataFrame
            Columns ``score``, ``n_features`` and ``seconds``.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "BackboneRanking.to_frame needs pandas: pip install pandas "
                "(or read the rows as dicts: list(ranking))."
            ) from None
        return pd.DataFrame(list(self), columns=list(_COLUMNS)).set_index("name")

    def __repr__(self) -> str:
        cells = [list(_COLUMNS)] + [
            [
                str(row["name"]),
                f"{row['score']:.4f}",
                str(row["n_features"]),
                f"{row['seconds']:.2f}",
            ]
            for row in self._rows
        ]
        widths = [max(len(line[j]) for line in cells) for j in range(len(_COLUMNS))]
        return "\n".join(
            "  ".join(
                [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
            ).rstrip()
            for line in cells
        )


class UnreliableRankingWarning(UserWarning):
    """The order ``rank_backbones`` returned is not one to trust as it stands.

    Issued by ``rank_backbones`` when

    - the first candidate is not first on most random halves of the labelled rows
      (``metric="logme"`` or ``"hscore"``): its lead over the next is within the noise of
      which rows were labelled, and the linear probes of those candidates measured on
      the benchmark then differ by no more than the test set's noise either; or
    - an image candidate is scored at an ``image_size`` at or below a fifth of the size
      its weights were trained at (44 px and below for 224 px weights): at such sizes
      the features are poor for every candidate and the order is not the one at the
      size a model would be fitted at.

    The message names the candidates and the numbers. ``docs/selection.md`` has the
    measurements behind both rules.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import rank_backbones
    >>> from sktransfer.ranking import UnreliableRankingWarning
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((60, 8)).astype(np.float32), rng.integers(0, 3, 60)
    >>> twins = {"a": nn.Identity(), "b": nn.Identity()}  # the same features twice
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ranking = rank_backbones(X, y, twins)
    >>> [w.category.__name__ for w in caught]
    ['UnreliableRankingWarning']
    """


_METRICS: dict[str, Callable[[np.ndarray, ArrayLike], float]] = {
    "logme": logme_score,
    "hscore": hscore,
}

# Random halves of the labelled rows behind the noise check, and the share of them
# on which the first candidate must stay first. Calibrated on benchmarks/bench_rank.py.
_N_RESAMPLES = 20
_MIN_FIRST_SHARE = 0.8
# Below native size / _MIN_SIZE_RATIO an image candidate's ranking is flagged.
_MIN_SIZE_RATIO = 5


def _resamples(y: ArrayLike, n_resamples: int, classes: bool) -> list[np.ndarray]:
    """Random halves of the rows, drawn within each class for class labels so that every
    half keeps the class proportions. Halves, not bootstrap resamples: a resample with
    repeated rows rewards features that tell every row apart, and random-init features
    then win it (EfficientNet-Lite0 at 32 px on MNIST: 19 of 20 resamples)."""
    rng = np.random.default_rng(0)
    y_arr = np.asarray(y)
    n = y_arr.shape[0]
    if not classes:
        return [rng.permutation(n)[: max(2, n // 2)] for _ in range(n_resamples)]
    _, codes = np.unique(y_arr.reshape(n, -1)[:, 0], return_inverse=True)
    groups = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    return [
        np.concatenate([rng.permutation(g)[: max(1, g.shape[0] // 2)] for g in groups])
        for _ in range(n_resamples)
    ]


def _first_share(features: list[np.ndarray], y: ArrayLike, score_fn, top: int, classes: bool):
    """How often candidate ``top`` scores strictly highest on a random half of the rows, and
    how often each candidate does (a tie counts for none)."""
    y_arr = np.asarray(y)
    wins = np.zeros(len(features), dtype=int)
    for rows in _resamples(y_arr, _N_RESAMPLES, classes):
        scores = np.array([score_fn(F[rows], y_arr[rows]) for F in features])
        best = np.flatnonzero(scores == scores.max())
        if best.shape[0] == 1:
            wins[best[0]] += 1
    return wins[top] / _N_RESAMPLES, wins


def _size_note(name: str, extractor: Any) -> str | None:
    """Why an image candidate's score is not the one at a useful size, or None."""
    bb = getattr(extractor, "backbone_", None)
    if bb is None or getattr(bb, "modality", None) != "image":
        return None
    crop = getattr(bb.preprocess, "crop", None) if bb.preprocess is not None else None
    native = bb.native_size
    if not crop or not native or max(crop) * _MIN_SIZE_RATIO > native:
        return None
    return (
        f"{name!r} was scored at {max(crop)} px, {native / max(crop):.0f}x below the "
        f"{native} px its weights were trained at"
    )


def _candidate_names(candidates: Sequence[Any]) -> list[str]:
    names = [c if isinstance(c, str) else type(c).__name__ for c in candidates]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    return [f"{name}_{i}" if name in repeated else name for i, name in enumerate(names)]


def rank_backbones(
    X: Any,
    y: ArrayLike,
    candidates: Sequence[Any] | Mapping[str, Any],
    *,
    metric: Literal["logme", "hscore"] | Callable[[np.ndarray, ArrayLike], float] = "logme",
    **feature_params: Any,
) -> BackboneRanking:
    """Rank pretrained backbones for a target task by a transferability score.

    Each candidate's features for ``X`` are extracted with
    ``PretrainedFeatures`` and scored against ``y``; no fine-tuning happens,
    so ranking a handful of backbones costs one forward pass each.

    Parameters
    ----------
    X : array-like
        Target inputs in any form ``PretrainedFeatures`` accepts (images, paths,
        strings, tables), typically a few hundred to a few thousand labelled
        samples.
    y : array-like of shape (n_samples,)
        Target labels (or real values for ``metric="logme"``, see
        ``logme_score``).
    candidates : list of backbone specs, or dict of name -> spec or PretrainedFeatures
        A list of specs (registered names such as ``"resnet18"``, ``nn.Module``
        instances, fitted sktransfer estimators) is named by ``str(spec)`` for
        strings and the class name for other objects, suffixed with
        ``_<position>`` when a name repeats. A dict gives the names; its values
        are specs or configured ``PretrainedFeatures`` (cloned before fitting).
    metric : "logme", "hscore" or callable, default="logme"
        A callable is called as ``metric(features, y)`` and must return a float,
        higher meaning better. LogME is the default: on real image sets it orders
        the candidates as their linear probes do wherever the test set can tell the
        probes apart, and no other score measured does better; H-score ranks random
        init first in many cells (``benchmarks/bench_rank.py``, the tables in
        ``docs/selection.md``).
    **feature_params
        Passed to every ``PretrainedFeatures`` (e.g. ``batch_size``,
        ``device``); for dict values that already are ``PretrainedFeatures``
        they are applied with ``set_params``. Leave ``image_size`` out to score
        images at the size the estimators use by default, or pass the one you
        will fit with: the order at one size need not hold at another.

    Returns
    -------
    BackboneRanking
        One row per candidate, best first: ``names``, ``scores``, ``n_features`` and
        ``seconds`` (feature extraction plus scoring) as arrays, ``ranking[i]`` or
        ``ranking[name]`` a row as a dict, ``print(ranking)`` the table and
        ``ranking.to_frame()`` a pandas DataFrame indexed by name. The same type
        whether or not pandas is installed.

    Warns
    -----
    UnreliableRankingWarning
        When the first candidate is not first on at least 16 of 20 random halves
        of the labelled rows (``metric="logme"`` or ``"hscore"``; a callable is not
        re-run), and when an image candidate is scored at or below a fifth of the
        size its weights were trained at. The message names the candidates.

    Examples
    --------
    Two candidate bodies for 300 real digits (as 64-pixel rows): the wider one keeps
    more of what tells the digits apart, and LogME ranks it first.

    >>> from sklearn.datasets import load_digits
    >>> from torch import nn
    >>> from sktransfer import rank_backbones
    >>> X, y = load_digits(return_X_y=True)
    >>> X, y = X[:300] / 16, y[:300]
    >>> candidates = {
    ...     "narrow": nn.Sequential(nn.LazyLinear(4), nn.ReLU()),
    ...     "wide": nn.Sequential(nn.LazyLinear(64), nn.ReLU()),
    ... }
    >>> ranking = rank_backbones(X, y, candidates, random_state=0)
    >>> ranking.names, ranking.n_features.tolist()
    (['wide', 'narrow'], [64, 4])
    >>> ranking.scores.round(2).tolist()
    [0.28, -0.22]
    """
    if isinstance(metric, str):
        if metric not in _METRICS:
            raise ValueError(
                f"metric must be one of {sorted(_METRICS)} or a callable; got {metric!r}."
            )
        score_fn = _METRICS[metric]
    elif callable(metric):
        score_fn = metric
    else:
        raise ValueError(f"metric must be one of {sorted(_METRICS)} or a callable; got {metric!r}.")
    if isinstance(candidates, Mapping):
        names, specs = [str(k) for k in candidates], list(candidates.values())
    elif isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise ValueError(
            "candidates must be a list of backbone specs or a dict of name -> spec; "
            f"got {type(candidates).__name__}. Wrap a single backbone in a list."
        )
    else:
        specs = list(candidates)
        names = _candidate_names(specs)
    if not specs:
        raise ValueError("candidates is empty; pass at least one backbone.")

    rows, features, small = [], {}, []
    for name, spec in zip(names, specs):
        start = time.perf_counter()
        if isinstance(spec, PretrainedFeatures):
            extractor = clone(spec).set_params(**feature_params)
        else:
            extractor = PretrainedFeatures(spec, **feature_params)
        F = np.asarray(extractor.fit(X).transform(X))
        score = float(score_fn(F, y))
        rows.append(
            {
                "name": name,
                "score": score,
                "n_features": int(F.shape[1]),
                "seconds": time.perf_counter() - start,
            }
        )
        features[name] = F
        note = _size_note(name, extractor)
        if note is not None:
            small.append(note)
    # NaN scores (possible from a user metric) sort last rather than scrambling the order.
    rows.sort(key=lambda row: -row["score"] if row["score"] == row["score"] else np.inf)
    if small:
        warnings.warn(
            "the ranking is made at a size no model should be fitted at: "
            + "; ".join(small)
            + ". There every candidate's features are poor and the order measured on "
            "benchmarks/bench_rank.py differs from the order at the weights' size; rank at "
            "the image_size you will fit with (the default, image_size=None, is the size "
            "the estimators use).",
            UnreliableRankingWarning,
            stacklevel=2,
        )
    if isinstance(metric, str) and len(rows) > 1:
        # Only the built-in scores are re-run: a user's metric may cost far more than one
        # call per candidate.
        order = [row["name"] for row in rows]
        classes = metric == "hscore" or not infers_regression(y)
        share, wins = _first_share([features[n] for n in order], y, score_fn, 0, classes)
        if share < _MIN_FIRST_SHARE:
            runner = order[int(np.argsort(-wins[1:], kind="stable")[0]) + 1]
            warnings.warn(
                f"{order[0]!r} ranks first on only {round(share * _N_RESAMPLES)} of "
                f"{_N_RESAMPLES} random halves of the {len(np.asarray(y))} labelled rows "
                f"({runner!r} on {wins[order.index(runner)]}); scores "
                f"{rows[0]['score']:.4f} and {rows[order.index(runner)]['score']:.4f}. Their "
                "lead is within the noise of which rows were labelled: treat them as tied "
                "(choose by cost), or label more rows.",
                UnreliableRankingWarning,
                stacklevel=2,
            )
    return BackboneRanking(rows)
