"""Is the default fine-tuning recipe the one to use? Against what a user writes otherwise.

One table per data set, every cell from this one process, on real data:

images  Fashion-MNIST at 64 px, N class-balanced labelled training images (default 100, 300,
        1,000, 3,000) from the official training split, scored on the same 1,000 images (100 a
        class) of the official test split. Rows:
        - ``FineTuneClassifier("efficientnet_lite0", image_size=64, random_state=seed)``, nothing
          else set: the defaults are the product;
        - the linear probe, ``FeatureTransferClassifier("efficientnet_lite0", image_size=64)``;
        - the classic PyTorch transfer-learning tutorial ("finetuning the ConvNet"): the same
          body and preprocessing, a new ``nn.Linear`` classifier, every layer trained, SGD
          lr 1e-3 momentum 0.9, ``StepLR(step_size=7, gamma=0.1)``, batch 32, for as many
          epochs as the default fine-tune ran in all (head-only epochs included). Unlike the
          tutorial it has no RandomResizedCrop/flip augmentation (the default has none either),
          it does not keep the epoch that scored best on the test set (that would select on
          the test set), and it preprocesses its images once, not every epoch (which favours
          its time a little);
        - the same architecture from random weights, ``weights=None``, defaults otherwise;
        - raw pixels + ``LogisticRegression``;
        - fastai 2.8 ``Learner.fine_tune`` on the same body + ``create_head`` at the same total
          epoch budget (fastai's own split: one frozen epoch, the rest unfrozen); only when
          fastai is importable (``/work/main/.venv-peers/bin/python``), else a note.
text    Rotten Tomatoes snippets, fresh vs rotten, N class-balanced (default 200, 1,000), scored
        on 1,000 snippets of movies that never appear in training. Rows: the default
        ``FineTuneClassifier("all-MiniLM-L6-v2", random_state=seed)``, the linear probe, the
        Hugging Face course's loop (AdamW lr 5e-5, linear decay to 0, no warm-up, same epochs,
        a new linear head on mean-pooled token states, no L2 normalisation; batch 32, the
        default's, where the course uses 8), random init, and TF-IDF + ``LogisticRegression``.

Seconds are fit time only (wall clock; prediction excluded), with the feature cache and the
backbone templates emptied before every fit, so no method reuses another's work. The ratio
is default fit time / tutorial loop time. The machine's load average is printed: on a
shared machine the seconds move with it.

    python benchmarks/bench_recipe.py [--quick] [--only images|text] [--sizes 100,300]
                                      [--seeds 3]

``--quick`` runs tiny sizes, 1+1 epochs and 200 test rows, only to check that everything
runs. The markdown table goes to ``benchmarks/results/recipe.md`` (``recipe-quick.md``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove that nothing is downloaded

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sktransfer
from sktransfer import FeatureTransferClassifier, FineTuneClassifier, feature_cache
from sktransfer.backbones import resolve_backbone
from sktransfer.inputs import as_images

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = "default FineTuneClassifier"
PROBE = "linear probe (FeatureTransferClassifier)"
RANDOM = "random init (weights=None)"
TORCH_TUTORIAL = "PyTorch tutorial loop (SGD, StepLR)"
HF_TUTORIAL = "Hugging Face tutorial loop (AdamW, linear)"
FASTAI = "fastai fine_tune (create_head)"
PIXELS = "raw pixels + LogisticRegression"
TFIDF = "TF-IDF + LogisticRegression"
CE_DEFAULT = "FineTuneClassifier(contrastive=False)"
# --quick only: shorter training, for the parameters the estimator has.
QUICK_PARAMS = {"max_epochs": 1}


# --------------------------------------------------------------------------- shared


def resolved_epochs(est) -> tuple[int, int]:
    """(head-only epochs, unfrozen epochs) that a fitted FineTuneClassifier resolved to."""
    unfrozen = getattr(est, "max_epochs_", None)
    if unfrozen is None:
        unfrozen = est.max_epochs
    head = sum(1 for row in est.history_ if row.get("phase") == "head")
    return head, int(unfrozen)


# A cold start is cold on disk too: the feature cache's shards outlive a fit (and a
# process), and would hand a fine-tune's probe phase the rows the probe just extracted.
# The first clear points the cache at a folder of this process's own, emptied before every
# fit: a user's cache is never read or deleted. (Before 2026-12-03 only the memory cache
# was emptied.)
_BENCH_CACHE_DIR: list[str] = []


def clear_caches() -> None:
    """Every fit starts cold: no features (in memory or on disk) or loaded backbone left
    by the previous one."""
    if not _BENCH_CACHE_DIR:
        _BENCH_CACHE_DIR.append(tempfile.mkdtemp(prefix="sktransfer-bench-"))
        os.environ["SKTRANSFER_CACHE_DIR"] = _BENCH_CACHE_DIR[0]
    feature_cache.clear(disk=True)
    templates = getattr(sys.modules.get("sktransfer.features"), "_templates", None)
    if templates is not None:
        templates.clear()


def with_quick(est, quick: bool):
    if quick:
        est.set_params(**{k: v for k, v in QUICK_PARAMS.items() if k in est.get_params()})
    return est


class Predictor:
    """A hand-trained torch model behind ``predict``: ``prepare`` turns raw X into batches."""

    def __init__(self, model: nn.Module, classes, prepare: Callable, batch_size: int = 64):
        self.model, self.classes, self.prepare = model, classes, prepare
        self.batch_size = batch_size

    def predict(self, X):
        self.model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(X), self.batch_size):
                out.append(self.model(self.prepare(X[i : i + self.batch_size])).argmax(1))
        return self.classes[torch.cat(out).numpy()]


SHORT = {
    "probe": PROBE,
    "random": RANDOM,
    "tutorial": (TORCH_TUTORIAL, HF_TUTORIAL),
    "fastai": FASTAI,
    "pixels": PIXELS,
    "tfidf": TFIDF,
}


def only_methods(methods: dict, skip: list[str]) -> dict:
    """``methods`` without the rows named in ``--skip`` (the default fine-tune always runs:
    its resolved epochs set the other loops' budget)."""
    names = set()
    for key in skip:
        val = SHORT[key]
        names.update(val if isinstance(val, tuple) else (val,))
    return {k: v for k, v in methods.items() if k not in names}


def grid(methods: dict, sample: Callable, X_test, y_test, *, sizes, seeds, log=print):
    """Fit every method on every (N, seed) draw; the first method is the default fine-tune,
    whose resolved epochs set the others' budget.

    ``methods``: name -> ``fit(X, y, seed, epochs) -> object with predict``, where ``epochs``
    is (head-only, unfrozen) of the default on the same draw (None for the default itself).
    Returns ``results[name][n] = [(accuracy, fit seconds), ...]`` (one per seed) and
    ``budgets[n] = [(head, unfrozen), ...]``.
    """
    results = {name: {n: [] for n in sizes} for name in methods}
    budgets = {n: [] for n in sizes}
    for n in sizes:
        for seed in seeds:
            X, y = sample(n, seed)
            epochs = None
            for name, fit in methods.items():
                clear_caches()
                t = time.perf_counter()
                model = fit(X, y, seed, epochs)
                seconds = time.perf_counter() - t
                acc = accuracy_score(y_test, model.predict(X_test))
                if epochs is None:
                    epochs = resolved_epochs(model)
                    budgets[n].append(epochs)
                results[name][n].append((acc, seconds))
                log(f"  N={n:<6,} seed {seed}  {name:<44} acc {acc:.3f}  {seconds:7.1f} s")
    return results, budgets


def _cell(values, fmt):
    v = np.asarray(values, dtype=float)
    return f"{v.mean():{fmt}} ± {v.std():{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}"


def markdown_table(title: str, results: dict, budgets: dict, *, tutorial: str, notes=()) -> str:
    """The results as a markdown table: accuracy and fit seconds per N, the time ratio of the
    default to ``tutorial``, and the epochs the default resolved to."""
    sizes = list(budgets)
    header = ["method"] + [h for n in sizes for h in (f"N={n:,} acc", "s")]
    rows = []
    for name, per_n in results.items():
        cells = [name]
        for n in sizes:
            accs, secs = zip(*per_n[n])
            cells += [_cell(accs, ".3f"), _cell(secs, ".1f")]
        rows.append(cells)
    ratio = ["time ratio default / tutorial"]
    epochs = ["epochs of the default (head + unfrozen)"]
    for n in sizes:
        d = np.mean([s for _, s in results[DEFAULT][n]])
        t = np.mean([s for _, s in results[tutorial][n]])
        ratio += [f"{d / t:.2f}", ""]
        epochs += [", ".join(sorted({f"{h} + {u}" for h, u in budgets[n]})), ""]
    lines = [f"### {title}", ""]
    for i, r in enumerate([header, *rows, ratio, epochs]):
        lines.append("| " + " | ".join(r) + " |")
        if i == 0:
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(r) - 1)) + "|")
    lines += ["", *notes]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- images


def preprocessed(bb, X, chunk: int = 256) -> torch.Tensor:
    """X as the model sees it: the backbone's own resize, crop, grey->RGB and normalisation."""
    source = as_images(X)
    n = len(source)
    return torch.cat(
        [source.load(np.arange(i, min(i + chunk, n)), bb.preprocess) for i in range(0, n, chunk)]
    )


def _feature_dim(body: nn.Module, x: torch.Tensor) -> int:
    was = body.training
    with torch.no_grad():
        dim = body.eval()(x[:1]).shape[1]
    body.train(was)
    return dim


def tutorial_images(bb, X, y, *, epochs: int, seed: int, batch_size: int = 32) -> Predictor:
    """The classic PyTorch transfer-learning tutorial's fine-tuning, on a resolved backbone
    ``bb`` (its module is copied: ``bb`` is left as it was)."""
    torch.manual_seed(seed)
    classes, y_enc = np.unique(y, return_inverse=True)
    x = preprocessed(bb, X)
    body = copy.deepcopy(bb.module)
    model = nn.Sequential(body, nn.Linear(_feature_dim(body, x), len(classes)))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    # Decay LR by a factor of 0.1 every 7 epochs, as the tutorial does (over its 25).
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    loader = DataLoader(
        TensorDataset(x, torch.as_tensor(y_enc)), batch_size=batch_size, shuffle=True
    )
    for _ in range(epochs):
        model.train()
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return Predictor(model, classes, lambda batch: preprocessed(bb, batch))


def fastai_images(bb, X, y, *, epochs: int, seed: int, batch_size: int = 32) -> Predictor:
    """fastai's ``fine_tune`` on the same body, a ``create_head`` head, ``epochs`` in all."""
    # Learner.fine_tune and Learner.no_bar are patched in by these, as fastai.vision.all does.
    import fastai.callback.progress  # noqa: F401
    import fastai.callback.schedule  # noqa: F401
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.torch_core import params, set_seed
    from fastai.vision.learner import create_head

    set_seed(seed)
    classes, y_enc = np.unique(y, return_inverse=True)
    x = preprocessed(bb, X)
    body = copy.deepcopy(bb.module)
    model = nn.Sequential(body, create_head(_feature_dim(body, x), len(classes), pool=False))
    data = TensorDataset(x, torch.as_tensor(y_enc))
    # fastai's own loaders drop the last partial training batch (its BatchNorm1d head needs
    # more than one row); validation is one batch of training rows, as cheap as possible.
    train = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    valid = DataLoader(
        TensorDataset(x[:batch_size], torch.as_tensor(y_enc[:batch_size])), batch_size=batch_size
    )
    learn = Learner(
        DataLoaders(train, valid),
        model,
        loss_func=CrossEntropyLossFlat(),
        splitter=lambda m: [params(m[0]), params(m[1])],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(max(epochs - 1, 0), freeze_epochs=1)
    return Predictor(model, classes, lambda batch: preprocessed(bb, batch))


def image_methods(backbone="efficientnet_lite0", *, image_size=64, quick=False, fastai=False):
    """name -> fit(X, y, seed, epochs), the default fine-tune first."""

    def body():  # from the files on disk in every fit, as the estimators do: timed
        return resolve_backbone(backbone, image_size=image_size)

    def total(epochs):
        return sum(epochs)

    methods = {
        DEFAULT: lambda X, y, seed, ep: with_quick(
            FineTuneClassifier(backbone, image_size=image_size, random_state=seed), quick
        ).fit(X, y),
        PROBE: lambda X, y, seed, ep: FeatureTransferClassifier(
            backbone, image_size=image_size
        ).fit(X, y),
        TORCH_TUTORIAL: lambda X, y, seed, ep: tutorial_images(
            body(), X, y, epochs=total(ep), seed=seed
        ),
        RANDOM: lambda X, y, seed, ep: with_quick(
            FineTuneClassifier(backbone, weights=None, image_size=image_size, random_state=seed),
            quick,
        ).fit(X, y),
        PIXELS: lambda X, y, seed, ep: make_pipeline(
            FunctionTransformer(_flat_pixels), LogisticRegression(max_iter=2000)
        ).fit(X, y),
    }
    if fastai:
        methods[FASTAI] = lambda X, y, seed, ep: fastai_images(
            body(), X, y, epochs=total(ep), seed=seed
        )
    return methods


def _flat_pixels(X):
    X = np.asarray(X)
    return X.reshape(len(X), -1) / (255.0 if X.dtype == np.uint8 else 1.0)


def fastai_note() -> tuple[bool, str]:
    """Whether fastai rows run, and the line that says so. fastai is imported here, before
    anything is timed, so that no row pays for the import."""
    if importlib.util.find_spec("fastai") is None:
        return False, (
            f"fastai rows skipped: fastai is not importable from {sys.executable} "
            "(run with /work/main/.venv-peers/bin/python to include them)."
        )
    import fastai
    import fastai.callback.progress  # noqa: F401
    import fastai.callback.schedule  # noqa: F401
    import fastai.vision.learner  # noqa: F401

    return True, f"fastai {fastai.__version__}"


def balanced(y, n, rng):
    """n rows, as evenly spread over the classes as n allows."""
    classes = np.unique(y)
    per = np.full(len(classes), n // len(classes))
    per[: n % len(classes)] += 1
    rows = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, per)]
    return rng.permutation(np.concatenate(rows))


def bench_images(args, *, fastai: bool, notes: list[str]) -> str:
    from sktransfer.datasets import load_fashion_mnist

    X_pool, y_pool = load_fashion_mnist("train")
    X_all, y_all = load_fashion_mnist("test")
    n_test = 200 if args.quick else 1000
    test = balanced(y_all, n_test, np.random.default_rng(0))
    X_test, y_test = X_all[test], y_all[test]

    def sample(n, seed):
        rows = balanced(y_pool, n, np.random.default_rng(1000 + seed))
        return X_pool[rows], y_pool[rows]

    sizes = args.sizes or ([40] if args.quick else [100, 300, 1000, 3000])
    print(f"\nFashion-MNIST, 64 px, {n_test} test images, sizes {sizes}", flush=True)
    results, budgets = grid(
        only_methods(image_methods(quick=args.quick, fastai=fastai), args.skip),
        sample,
        X_test,
        y_test,
        sizes=sizes,
        seeds=range(args.seeds),
    )
    return markdown_table(
        f"Fashion-MNIST, EfficientNet-Lite0 at 64 px: test accuracy on {n_test} official test "
        f"images and fit seconds, {_seeds(args.seeds)}",
        results,
        budgets,
        tutorial=TORCH_TUTORIAL,
        notes=notes,
    )


# --------------------------------------------------------------------------- text


class MeanPooledClassifier(nn.Module):
    """A Hugging Face encoder, its token states averaged over the attention mask, a Linear."""

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, tokens):
        states = self.encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9))


def tutorial_text(
    bb, texts, y, *, epochs: int, seed: int, lr: float = 5e-5, batch_size: int = 32
) -> Predictor:
    """The Hugging Face course's training loop on the encoder of a resolved text backbone
    ``bb`` (copied) and its tokeniser."""
    from transformers import get_scheduler

    torch.manual_seed(seed)
    texts = list(texts)
    classes, y_enc = np.unique(np.asarray(y), return_inverse=True)
    model = MeanPooledClassifier(copy.deepcopy(bb.module.encoder), len(classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    scheduler = get_scheduler(
        "linear",
        optimizer=optimizer,
        num_warmup_steps=0,
        num_training_steps=epochs * steps_per_epoch,
    )
    labels = torch.as_tensor(y_enc)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(texts)).split(batch_size):
            tokens = bb.collate([texts[i] for i in idx])
            loss = nn.functional.cross_entropy(model(tokens), labels[idx])
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    return Predictor(model, classes, lambda batch: bb.collate(list(batch)))


def text_methods(backbone="all-MiniLM-L6-v2", *, quick=False):
    def body():  # loaded in every fit, as the estimators do: timed
        return resolve_backbone(backbone)

    # The first method sets the epochs of the loops after it: the classification fine-tune
    # (on few texts the default trains on pairs and runs no epoch, max_epochs_ == 0).
    return {
        CE_DEFAULT: lambda X, y, seed, ep: with_quick(
            FineTuneClassifier(backbone, contrastive=False, random_state=seed), quick
        ).fit(X, y),
        DEFAULT: lambda X, y, seed, ep: with_quick(
            FineTuneClassifier(backbone, random_state=seed), quick
        ).fit(X, y),
        PROBE: lambda X, y, seed, ep: FeatureTransferClassifier(backbone).fit(X, y),
        HF_TUTORIAL: lambda X, y, seed, ep: tutorial_text(body(), X, y, epochs=sum(ep), seed=seed),
        RANDOM: lambda X, y, seed, ep: with_quick(
            FineTuneClassifier(backbone, weights=None, random_state=seed), quick
        ).fit(X, y),
        TFIDF: lambda X, y, seed, ep: make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(max_iter=1000),
        ).fit(X, y),
    }


def bench_text(args) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_text import movie_split

    from sktransfer.datasets import load_rotten_tomatoes

    n_test = 200 if args.quick else 1000
    pool, test = movie_split(load_rotten_tomatoes(), n_test, seed=0)
    texts, y_pool = pool["text"].to_numpy(dtype=object), pool["y"].to_numpy()

    def sample(n, seed):
        rows = balanced(y_pool, n, np.random.default_rng(2000 + seed))
        return np.asarray(texts[rows]), y_pool[rows]

    sizes = args.sizes or ([40] if args.quick else [200, 1000])
    print(f"\nRotten Tomatoes, {n_test} test snippets of unseen movies, sizes {sizes}", flush=True)
    results, budgets = grid(
        only_methods(text_methods(quick=args.quick), args.skip),
        sample,
        np.asarray(test["text"].to_numpy(dtype=object)),
        test["y"].to_numpy(),
        sizes=sizes,
        seeds=range(args.seeds),
    )
    majority = max(test["y"].mean(), 1 - test["y"].mean())
    return markdown_table(
        f"Rotten Tomatoes fresh vs rotten, all-MiniLM-L6-v2: test accuracy on {n_test} snippets "
        f"of unseen movies (majority class {majority:.3f}) and fit seconds, {_seeds(args.seeds)}",
        results,
        budgets,
        tutorial=HF_TUTORIAL,
    )


# --------------------------------------------------------------------------- main


def _seeds(k: int) -> str:
    return "1 seed" if k == 1 else f"mean ± std over {k} seeds"


def _sizes(text: str) -> list[int]:
    sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: give integers >= 2, e.g. 100,300.")
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and epochs")
    parser.add_argument("--only", choices=["images", "text"], help="one data set only")
    parser.add_argument("--sizes", type=_sizes, help="training-set sizes, e.g. 100,300")
    parser.add_argument("--seeds", type=int, default=1, help="draws per size (default 1)")
    parser.add_argument(
        "--skip",
        type=lambda t: [k for k in t.split(",") if k],
        default=[],
        help=f"rows to leave out, comma-separated, of {sorted(SHORT)}",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be >= 1.")
    fastai, fastai_line = fastai_note()
    header = (
        f"sktransfer {sktransfer.__version__} ({Path(sktransfer.__file__).parent}), "
        f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, CPU only: {not torch.cuda.is_available()}; {fastai_line}; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(header, flush=True)
    tables = []
    started = time.perf_counter()
    if args.only in (None, "images"):
        tables.append(bench_images(args, fastai=fastai, notes=[] if fastai else [fastai_line]))
    if args.only in (None, "text"):
        tables.append(bench_text(args))
    footer = (
        f"total {time.perf_counter() - started:.0f} s, load average at end {os.getloadavg()[0]:.1f}"
    )
    report = "\n".join([header, "", *tables, footer, ""])
    print("\n" + report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("recipe-quick.md" if args.quick else "recipe.md")
    path.write_text(report)
    print(f"written to {path}")
    return report


if __name__ == "__main__":
    main()
