"""``make demo``: real transfer learning on packaged real models and real images.

Runs offline on a 2-core CPU in a few minutes:

1. feature transfer — EfficientNet-Lite0 ImageNet features vs the same architecture
   randomly initialised vs raw pixels, each followed by LogisticRegression,
   cross-validated on real Fashion-MNIST images (digits when it is absent);
2. fine-tuning — pretrained fine-tune vs from-scratch fine-tune vs feature transfer
   on a few hundred labelled images, scored on held-out images.

Prints a table and saves a plot. ``python -m sktransfer.demo --help`` for options.
"""

from __future__ import annotations

import argparse
import gzip
import os
import textwrap
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
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
]


def load_fashion_mnist(split: str = "train", directory: Path = FASHION_DIR):
    """Fashion-MNIST images (N, 28, 28) uint8 and labels, from Debian's dataset-fashion-mnist."""
    prefix = "train" if split == "train" else "t10k"
    img_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.is_file():
        raise FileNotFoundError(
            f"{img_path} not found: install Debian's dataset-fashion-mnist (make data, as root)."
        )
    with gzip.open(img_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(lbl_path) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def balanced_sample(y, per_class, rng, exclude=None):
    rows = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        if exclude is not None:
            pool = np.setdiff1d(pool, exclude)
        rows.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(rows))


def load_images(rng):
    """(name, images uint8 (N, H, W), labels); Fashion-MNIST if installed, else digits."""
    try:
        X, y = load_fashion_mnist("train")
        return "Fashion-MNIST", X, y
    except FileNotFoundError as exc:
        print(f"note: {exc}\n      falling back to scikit-learn's 8x8 digits.")
        from sklearn.datasets import load_digits

        d = load_digits()
        return "digits", (d.images * (255 / 16)).round().astype(np.uint8), d.target


def feature_transfer_table(X, y, *, image_size, cv, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktransfer import FeatureTransferClassifier

    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    candidates = {
        "EfficientNet-Lite0, ImageNet weights": FeatureTransferClassifier(
            "efficientnet_lite0", head=head, image_size=image_size
        ),
        "EfficientNet-Lite0, random init": FeatureTransferClassifier(
            "efficientnet_lite0", weights=None, head=head, image_size=image_size, random_state=seed
        ),
    }
    rows = []
    for name, est in candidates.items():
        t = time.perf_counter()
        s = cross_val_score(est, X, y, cv=folds)
        rows.append((name, s.mean(), s.std(), time.perf_counter() - t))
    t = time.perf_counter()
    s = cross_val_score(head, X.reshape(len(X), -1) / 255.0, y, cv=folds)
    rows.append(("raw pixels", s.mean(), s.std(), time.perf_counter() - t))
    return rows


def finetune_table(X_train, y_train, X_test, y_test, *, image_size, epochs, seed):
    from sktransfer import FeatureTransferClassifier, FineTuneClassifier

    common = {"image_size": image_size, "random_state": seed, "batch_size": 32}
    candidates = {
        "fine-tune, ImageNet weights": FineTuneClassifier(
            "efficientnet_lite0", max_epochs=epochs, **common
        ),
        "fine-tune, random init (from scratch)": FineTuneClassifier(
            "efficientnet_lite0", weights=None, max_epochs=epochs, **common
        ),
        "feature transfer (frozen + LogisticRegression)": FeatureTransferClassifier(
            "efficientnet_lite0", image_size=image_size
        ),
    }
    rows = []
    for name, est in candidates.items():
        t = time.perf_counter()
        est.fit(X_train, y_train)
        rows.append((name, est.score(X_test, y_test), 0.0, time.perf_counter() - t))
    return rows


def print_table(title, rows, score_name):
    print(f"\n{title}")
    print(f"{'model':<48} {score_name:>16} {'seconds':>8}")
    for name, mean, std, sec in rows:
        score = f"{mean:.3f} ± {std:.3f}" if std else f"{mean:.3f}"
        print(f"{name:<48} {score:>16} {sec:>8.1f}")


def plot(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4))
    axes = np.atleast_1d(axes)
    for ax, (title, rows) in zip(axes, tables):
        names = [r[0] for r in rows]
        ax.barh(names, [r[1] for r in rows], xerr=[r[2] for r in rows], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy")
        ax.set_title(textwrap.fill(title, 48), fontsize=10)
        ax.invert_yaxis()
        for i, r in enumerate(rows):
            ax.text(r[1] + 0.01, i, f"{r[1]:.3f}", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n-cv", type=int, default=600, help="images in the cross-validated comparison"
    )
    parser.add_argument("--n-train", type=int, default=300, help="labelled images for fine-tuning")
    parser.add_argument("--n-test", type=int, default=500, help="held-out images for fine-tuning")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="unfrozen fine-tuning epochs")
    parser.add_argument("--out", default="demo_output", help="directory for the plot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    name, images, labels = load_images(rng)
    k = len(np.unique(labels))
    cv_rows = balanced_sample(labels, args.n_cv // k, rng)
    print(
        f"sktransfer demo: {name}, real images, {k} classes, {args.image_size} px, "
        "CPU-friendly sizes"
    )

    ft = feature_transfer_table(
        images[cv_rows], labels[cv_rows], image_size=args.image_size, cv=3, seed=args.seed
    )
    t1 = f"Feature transfer: 3-fold CV accuracy on {len(cv_rows)} {name} images"
    print_table(t1, ft, "accuracy")

    train = balanced_sample(labels, args.n_train // k, rng)
    test = balanced_sample(labels, args.n_test // k, rng, exclude=train)
    fine = finetune_table(
        images[train],
        labels[train],
        images[test],
        labels[test],
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
    )
    t2 = f"Fine-tuning on {len(train)} labelled images, accuracy on {len(test)} held-out"
    print_table(t2, fine, "test accuracy")

    tables = [(t1, ft), (t2, fine)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.png"
    plot(tables, path)
    print(f"\nplot saved to {path.resolve()}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return tables


if __name__ == "__main__":
    main()
