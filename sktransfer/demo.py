"""``make demo``: real transfer learning on packaged real models and real images.

Runs offline on a 2-core CPU in about 3 minutes of CPU time, printing one line per step
(its result and seconds) as it goes. The question it asks: does transfer help most when
labels are few?

1. a learning curve — test accuracy against the number of labelled images (20, 50,
   150) for raw pixels + LogisticRegression, EfficientNet-Lite0 fine-tuned from random
   weights, the linear probe on its frozen ImageNet features, and the pretrained
   fine-tune, every estimator at its defaults, on real Fashion-MNIST images (scored on
   its official test split; digits when it is absent); saved as ``learning_curve.png``;
2. feature transfer — EfficientNet-Lite0 ImageNet features vs the same architecture
   randomly initialised vs raw pixels, each followed by LogisticRegression,
   cross-validated;
3. text — frozen MiniLM sentence features vs the same architecture randomly
   initialised vs TF-IDF, on real Rotten Tomatoes review snippets;
4. a mixed table — photo files, review text, a category and a number in one
   ColumnTransformer, cross-validated, against each modality alone.

Prints the tables and saves two plots in ``demo_output/``; ``python -m sktransfer.demo
--help`` for options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import textwrap
import time
from pathlib import Path

import numpy as np

from sktransfer.datasets import load_fashion_mnist, load_rotten_tomatoes


class Steps:
    """One line per step: its name when it starts and, on the same line, what it gave and
    the seconds it took when it ends. The estimators stay at their default ``verbose=0``,
    so without these lines a fit of a minute would show nothing at all."""

    def __init__(self, total=None):
        self.total, self.done = total, 0

    @contextlib.contextmanager
    def __call__(self, name):
        self.done += 1
        count = f"[{self.done:>{len(str(self.total))}}/{self.total}] " if self.total else ""
        print(f"  {count}{name} ...", end=" ", flush=True)
        start = time.perf_counter()
        result = {}
        try:
            yield result
        except BaseException:
            # end the line, so that the traceback does not start after "..."
            print(f"failed after {time.perf_counter() - start:.0f} s", flush=True)
            raise
        got = f"{result['got']}, " if "got" in result else ""
        print(f"{got}{time.perf_counter() - start:.0f} s", flush=True)


def _quiet(name):
    return contextlib.nullcontext({})


def balanced_sample(y, per_class, rng, exclude=None):
    rows = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        if exclude is not None:
            pool = np.setdiff1d(pool, exclude)
        rows.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(rows))


def load_images(rng=None):
    """(name, images uint8 (N, H, W), labels); Fashion-MNIST if installed, else digits."""
    try:
        X, y = load_fashion_mnist("train")
        return "Fashion-MNIST", X, y
    except FileNotFoundError as exc:
        print(f"note: {exc}\n      falling back to scikit-learn's 8x8 digits.")
        from sklearn.datasets import load_digits

        d = load_digits()
        return "digits", (d.images * (255 / 16)).round().astype(np.uint8), d.target


def feature_transfer_table(X, y, *, image_size, cv, seed, steps=_quiet):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

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
    candidates["raw pixels"] = make_pipeline(FunctionTransformer(_flat_pixels), head)
    rows = []
    for name, est in candidates.items():
        with steps(name) as step:
            t = time.perf_counter()
            s = cross_val_score(est, X, y, cv=folds)
            rows.append((name, s.mean(), s.std(), time.perf_counter() - t))
            step["got"] = f"accuracy {s.mean():.3f}"
    return rows


LEARNING_CURVE = (
    "raw pixels + LogisticRegression",
    "fine-tune, random init (weights=None)",
    "linear probe (frozen features + LogisticRegression)",
    "fine-tune, pretrained (defaults)",
)


def learning_curve(
    X_pool,
    y_pool,
    X_test,
    y_test,
    sizes,
    *,
    image_size,
    seed,
    backbone="efficientnet_lite0",
    steps=_quiet,
):
    """Test accuracy against the number of labelled images, every estimator at its defaults.

    For each N in ``sizes``, N class-balanced images are drawn from the pool (the smaller
    draws nested in the larger ones) and four models are fitted on them: raw pixels +
    LogisticRegression, the architecture fine-tuned from random weights, the linear probe
    on frozen pretrained features, and the pretrained fine-tune. Returns one row
    ``(model, n, accuracy, fit seconds)`` per model and N, models in ``LEARNING_CURVE`` order.
    ``steps`` (a ``Steps``) reports each fit as it runs.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sktransfer import FeatureTransferClassifier, FineTuneClassifier

    k = len(np.unique(y_pool))
    if min(sizes) < k:
        raise ValueError(f"sizes {list(sizes)}: each must be at least the {k} classes.")
    per_class = max(sizes) // k + 1
    order = balanced_sample(y_pool, per_class, np.random.default_rng(seed))
    order = np.random.default_rng(seed).permutation(order)
    rows = []
    for n in sorted(sizes):
        # the first n//k (+1 for the first n % k classes) of each class, in draw order
        take = []
        for i, c in enumerate(np.unique(y_pool)):
            of_c = order[y_pool[order] == c]
            take.append(of_c[: n // k + (i < n % k)])
        train = np.concatenate(take)
        X, y = X_pool[train], y_pool[train]
        models = dict(
            zip(
                LEARNING_CURVE,
                [
                    make_pipeline(
                        FunctionTransformer(_flat_pixels), LogisticRegression(max_iter=2000)
                    ),
                    FineTuneClassifier(
                        backbone, weights=None, image_size=image_size, random_state=seed
                    ),
                    FeatureTransferClassifier(backbone, image_size=image_size),
                    FineTuneClassifier(backbone, image_size=image_size, random_state=seed),
                ],
            )
        )
        for name, est in models.items():
            with steps(f"N={n:<{len(str(max(sizes)))}}  {name}") as step:
                t = time.perf_counter()
                est.fit(X, y)
                seconds = time.perf_counter() - t
                rows.append((name, n, float(est.score(X_test, y_test)), seconds))
                step["got"] = f"test accuracy {rows[-1][2]:.3f}"
    return rows


def _flat_pixels(X):
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1) / 255.0


def print_curve(title, rows):
    sizes = sorted({r[1] for r in rows})
    print(f"\n{title}")
    print(f"{'model':<54}" + "".join(f"{f'N={n}':>16}" for n in sizes))
    for name in dict.fromkeys(r[0] for r in rows):
        cells = {r[1]: f"{r[2]:.3f} ({r[3]:.0f} s)" for r in rows if r[0] == name}
        print(f"{name:<54}" + "".join(f"{cells[n]:>16}" for n in sizes))


def plot_curve(title, rows, path, chance=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r[1] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 6))
    styles = ["s:", "v--", "o-.", "D-"]
    for name, style in zip(dict.fromkeys(r[0] for r in rows), styles):
        pts = sorted((r[1], r[2]) for r in rows if r[0] == name)
        ax.plot(*zip(*pts), style, label=name, lw=2, ms=7)
    if chance is not None:
        ax.axhline(chance, color="grey", lw=1)
        # below the line: a curve at chance level would run through a label above it
        ax.text(sizes[0], chance - 0.045, "chance", color="grey", fontsize=9)
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_ylim(0, 1)
    ax.set_xlabel("labelled training images (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(textwrap.fill(title, 72), fontsize=11)
    ax.grid(alpha=0.3)
    # Below the axes: inside, it would hide whichever curve runs under it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def text_table(n_train, n_test, seed, steps=_quiet):
    """Rotten Tomatoes fresh vs rotten: frozen MiniLM vs random-init MiniLM vs TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from sktransfer import FeatureTransferClassifier

    df = load_rotten_tomatoes().sample(n_train + n_test, random_state=seed)
    train, test = df.iloc[:n_train], df.iloc[n_train:]
    candidates = {
        "MiniLM (all-MiniLM-L6-v2), pretrained": FeatureTransferClassifier("all-MiniLM-L6-v2"),
        "MiniLM architecture, random init": FeatureTransferClassifier(
            "all-MiniLM-L6-v2", weights=None, random_state=seed
        ),
        "TF-IDF": make_pipeline(
            TfidfVectorizer(min_df=2, ngram_range=(1, 2)), LogisticRegression(max_iter=1000)
        ),
    }
    rows = []
    for name, est in candidates.items():
        with steps(name) as step:
            t = time.perf_counter()
            est.fit(train["text"], train["y"])
            rows.append((name, est.score(test["text"], test["y"]), 0.0, time.perf_counter() - t))
            step["got"] = f"test accuracy {rows[-1][1]:.3f}"
    return rows


def mixed_table(images, labels, n, image_size, seed, folder, steps=_quiet):
    """One ColumnTransformer over photo files, review text, a category and a number.

    A product table made of real parts: each row's photo is a Fashion-MNIST image saved as
    PNG, its review a real Rotten Tomatoes snippet. The target, "kept" vs "returned",
    depends on both: an item is returned when it is footwear or a bag (seen in the photo)
    or when its review is rotten (read in the text), so neither modality alone can reach
    what both reach together. Cross-validated with all columns vs each modality alone.
    """
    import pandas as pd
    from PIL import Image
    from sklearn.compose import make_column_transformer
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from sktransfer import PretrainedFeatures

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(labels), n, replace=False)
    reviews = load_rotten_tomatoes().sample(n, random_state=seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, r in enumerate(rows):
        path = folder / f"item_{i:04d}.png"
        Image.fromarray(images[r]).save(path)
        paths.append(str(path))
    footwear_or_bag = np.isin(labels[rows], [5, 7, 8, 9])
    rotten = reviews["y"].to_numpy() == 0
    table = pd.DataFrame(
        {
            "photo": paths,
            "review": reviews["text"].to_numpy(),
            "shop": rng.choice(["north", "south", "online"], n),
            "price": rng.uniform(5, 80, n).round(2),
        }
    )
    y = np.where(footwear_or_bag | rotten, "returned", "kept")

    def scaled(transformer):
        return make_pipeline(transformer, StandardScaler())

    photo = (scaled(PretrainedFeatures("efficientnet_lite0", image_size=image_size)), "photo")
    review = (scaled(PretrainedFeatures("all-MiniLM-L6-v2")), "review")
    rest = [(OneHotEncoder(), ["shop"]), ("passthrough", ["price"])]
    setups = {
        "all columns (photo + review + shop + price)": [photo, review, *rest],
        "photo only": [photo],
        "review only": [review],
    }
    out = []
    for name, parts in setups.items():
        model = make_pipeline(
            make_column_transformer(*parts),
            LogisticRegression(C=0.05, max_iter=2000),
        )
        with steps(name) as step:
            t = time.perf_counter()
            s = cross_val_score(model, table, y, cv=3)
            out.append((name, s.mean(), s.std(), time.perf_counter() - t))
            step["got"] = f"accuracy {s.mean():.3f}"
    s = cross_val_score(DummyClassifier(), table, y, cv=3)
    out.append(("majority class", s.mean(), s.std(), 0.0))
    return out


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

    ncols = 2
    nrows = -(-len(tables) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 4 * nrows))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(tables) :]:
        ax.axis("off")
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


DEFAULT_SIZES = "20,50,150"
# Said up front, so that nobody waits blind: 189 s of CPU (user + system) at one torch
# thread, cold feature cache, 9 minutes wall on a shared 2-core machine under load 6.
DURATION = "about 3 minutes of CPU time (more wall time on a busy machine)"


def _sizes(text):
    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 50,150,500.")
    return sizes


def curve_data(name, images, labels, n_test, rng):
    """(pool images, pool labels, test images, test labels): Fashion-MNIST's official test
    split when the pool is Fashion-MNIST, else images held out of the pool."""
    k = len(np.unique(labels))
    if name == "Fashion-MNIST":
        X_all, y_all = load_fashion_mnist("test")
        test = balanced_sample(y_all, n_test // k, rng)
        return images, labels, X_all[test], y_all[test]
    test = balanced_sample(labels, n_test // k, rng)
    pool = np.setdiff1d(np.arange(len(labels)), test)
    return images[pool], labels[pool], images[test], labels[test]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n-cv", type=int, default=600, help="images in the cross-validated comparison"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        # Sized for the time budget: the two fine-tunes are most of the demo's time, and
        # max_epochs="auto" trains 150 steps of 32 images, at most 20 epochs, so a fit
        # costs about 20 passes over N images up to N = 240, then 150 steps whatever N.
        # 30,100,300 meant about 7,000 training images per fine-tune; 20,50,150 about 4,100.
        default=_sizes(DEFAULT_SIZES),
        help=f"labelled images on the learning curve (default {DEFAULT_SIZES})",
    )
    parser.add_argument("--n-test", type=int, default=500, help="test images of the curve")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n-text", type=int, default=400, help="labelled review snippets")
    parser.add_argument("--n-mixed", type=int, default=300, help="rows of the mixed table")
    parser.add_argument("--out", default="demo_output", help="directory for the plots")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(args.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name, images, labels = load_images(rng)
    k = len(np.unique(labels))
    print(
        f"sktransfer demo: {name}, real images, {k} classes, {args.image_size} px. "
        f"At the default sizes it takes {DURATION}; each step prints its result and "
        "seconds as it ends."
    )

    X_pool, y_pool, X_test, y_test = curve_data(name, images, labels, args.n_test, rng)
    print(
        f"\n1/4 Learning curve: {len(LEARNING_CURVE)} models at their defaults, each fitted "
        f"on {', '.join(map(str, args.sizes))} labelled images and scored on {len(y_test)} "
        "test images"
    )
    curve = learning_curve(
        X_pool,
        y_pool,
        X_test,
        y_test,
        args.sizes,
        image_size=args.image_size,
        seed=args.seed,
        steps=Steps(len(LEARNING_CURVE) * len(args.sizes)),
    )
    t0 = (
        f"Learning curve: accuracy on {len(y_test)} held-out {name} images vs labelled "
        "training images, every model at its defaults (fit seconds)"
    )
    print_curve(t0, curve)
    curve_path = out / "learning_curve.png"
    plot_curve(t0.split(" (fit")[0], curve, curve_path, chance=1 / k)
    print(f"plot saved to {curve_path.resolve()}")

    cv_rows = balanced_sample(labels, args.n_cv // k, rng)
    print(f"\n2/4 Feature transfer: 3-fold cross-validation on {len(cv_rows)} images")
    ft = feature_transfer_table(
        images[cv_rows],
        labels[cv_rows],
        image_size=args.image_size,
        cv=3,
        seed=args.seed,
        steps=Steps(3),
    )
    t1 = f"Feature transfer: 3-fold CV accuracy on {len(cv_rows)} {name} images"
    print_table(t1, ft, "accuracy")

    tables = [(t1, ft)]
    try:
        print(f"\n3/4 Text: {args.n_text} labelled review snippets, 400 test snippets")
        text = text_table(args.n_text, 400, args.seed, steps=Steps(3))
        t3 = f"Text: Rotten Tomatoes fresh vs rotten, {args.n_text} train, 400 test"
        print_table(t3, text, "test accuracy")
        print(f"\n4/4 A table of photo files, reviews, a category and a price: {args.n_mixed} rows")
        mixed = mixed_table(
            images,
            labels,
            args.n_mixed,
            args.image_size,
            args.seed,
            out / "table_photos",
            steps=Steps(3),
        )
        t4 = f"Photo files + reviews + a category + a price: 3-fold CV, {args.n_mixed} rows"
        print_table(t4, mixed, "accuracy")
        tables += [(t3, text), (t4, mixed)]
    except ImportError as exc:
        print(f"\nnote: text part skipped: {exc}")
    path = out / "demo.png"
    plot(tables, path)
    print(f"\nplot saved to {path.resolve()}")
    print(
        f"total time {time.perf_counter() - start:.0f} s "
        f"(CPU time {time.process_time() - cpu_start:.0f} s; more wall time on a busy machine)"
    )
    return {"learning_curve": curve, "tables": tables}


if __name__ == "__main__":
    main()
