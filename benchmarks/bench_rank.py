"""Does ``rank_backbones`` order the backbones as their linear probes do, at every size?

Issue 20, item 5. For each real image set of the suite (``_suite_data.py``), each
``image_size`` and each seed: N class-balanced labelled rows, the candidates
EfficientNet-Lite0/1/2 (packaged ImageNet weights) and Lite0 randomly initialised. Per
candidate: the probe's test accuracy (frozen features + ``LogisticRegression(max_iter=1000)``,
what ``FeatureTransferClassifier`` does at its defaults) on the data set's fixed test rows,
and every score of the N training rows: what ``rank_backbones`` returns for each metric it
offers, plus scores the bench computes from the same features to compare (LogME on
standardised features, H-score without shrinkage, LEEP / NCE through the ImageNet head, the
probe's own 3-fold cross-validated accuracy on the N rows). Kendall's tau between each
metric's order and the probes' test-accuracy order, per data set x size x seed.

- Sizes: ``native`` is each candidate's own weights' size (224 / 240 / 260 px); the other
  sizes are ``image_size=S`` for every candidate.
- Features are extracted once per (data set, candidate, size) through sktransfer's feature
  cache (``--cache``, a folder on disk), for the training rows of every seed and the test
  rows together; ``rank_backbones`` is then called with ``cache=`` the same folder, so its
  scores come from the very features the probe is fitted on.
- Resumable: one JSON line per (data set, size, candidate) with every seed's probe and
  scores, and one per (data set, size, seed, metric) with ``rank_backbones``' table, in
  ``--out``; what is there is skipped. The markdown table is printed at the end
  (``--table-only`` reprints it).

    python benchmarks/bench_rank.py [--datasets mnist,fashion-mnist,digits]
        [--sizes 32,64,160,native] [--n-train 300] [--seeds 0,1] [--out PATH]
        [--cache DIR] [--quick] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = HERE / "results" / "rank.jsonl"
DEFAULT_CACHE = HERE / "results" / "rank_cache"

CANDIDATES = {
    "lite0": ("efficientnet_lite0", "DEFAULT"),
    "lite1": ("efficientnet_lite1", "DEFAULT"),
    "lite2": ("efficientnet_lite2", "DEFAULT"),
    "lite0 random init": ("efficientnet_lite0", None),
}
# rank_backbones' own metrics (its default first); the bench's extra scores follow.
# "default" is LogME; metric="logme" would repeat it.
RANK_METRICS = ("default", "hscore")
EXTRA_SCORES = ("logme_std", "hscore_none", "leep", "nce", "cv_probe")


def _features(name, size, cache, seed=0):
    from sktransfer import PretrainedFeatures

    backbone, weights = CANDIDATES[name]
    return PretrainedFeatures(
        backbone, weights=weights, image_size=size, cache=str(cache), random_state=seed
    )


def draw_rows(data, n, seed):
    """The rows of the pool that ``_suite_data.draw(data, n, seed)`` returns."""
    from bench_recipe import balanced

    return balanced(data.y_pool, n, np.random.default_rng(1000 + seed))


def _size_arg(size):
    return None if size == "native" else int(size)


def done(path: Path):
    cands, ranks = {}, {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r["kind"] == "candidate":
                    cands[(r["dataset"], r["size"], r["candidate"], r["n_train"])] = r
                else:
                    ranks[(r["dataset"], r["size"], r["seed"], r["metric"], r["n_train"])] = r
    return cands, ranks


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row)[:300], flush=True)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def extra_scores(F_tr, y_tr, head, seed):
    """Scores rank_backbones does not (yet) compute, on the same training features."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import StandardScaler

    from sktransfer.transferability import hscore, leep_score, logme_score, nce_score

    out = {
        "logme_std": logme_score(
            np.c_[StandardScaler().fit_transform(F_tr), np.ones(len(F_tr))], y_tr
        ),
        "hscore_none": hscore(F_tr, y_tr, shrinkage="none"),
    }
    if head is not None:
        with torch.no_grad():
            logits = head(torch.as_tensor(F_tr, dtype=torch.float32)).double().numpy()
        probs = _softmax(logits)
        out["leep"] = leep_score(probs, y_tr)
        out["nce"] = nce_score(probs.argmax(axis=1), y_tr)
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    out["cv_probe"] = float(
        cross_val_score(LogisticRegression(max_iter=1000), F_tr, y_tr, cv=cv).mean()
    )
    return {k: float(v) for k, v in out.items()}


def run_candidate(data, name, size, n_train, seeds, cache):
    from sklearn.linear_model import LogisticRegression

    from sktransfer.transferability import hscore, logme_score

    draws = {s: draw_rows(data, n_train, s) for s in seeds}
    X_all = np.concatenate([data.X_pool[r] for r in draws.values()] + [data.X_test])
    t0 = time.perf_counter()
    pf = _features(name, _size_arg(size), cache)
    F_all = pf.fit_transform(X_all)
    extract_s = time.perf_counter() - t0
    F_te = F_all[-len(data.y_test) :]
    per_seed = {}
    for i, (seed, rows) in enumerate(draws.items()):
        F_tr, y_tr = F_all[i * n_train : (i + 1) * n_train], data.y_pool[rows]
        lr = LogisticRegression(max_iter=1000).fit(F_tr, y_tr)
        per_seed[str(seed)] = {
            "probe_acc": float(np.mean(lr.predict(F_te) == data.y_test)),
            "logme": float(logme_score(F_tr, y_tr)),
            "hscore": float(hscore(F_tr, y_tr)),
            **extra_scores(F_tr, y_tr, pf.backbone_.head, seed),
        }
    crop = pf.backbone_.preprocess.crop if pf.backbone_.preprocess is not None else None
    return {
        "kind": "candidate",
        "dataset": data.name,
        "size": size,
        "px": list(crop) if crop is not None else None,
        "candidate": name,
        "n_train": n_train,
        "n_test": int(len(data.y_test)),
        "dim": int(F_all.shape[1]),
        "extract_s": extract_s,
        "rows_extracted": int(len(X_all)),
        "seeds": per_seed,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
        "machine": platform.machine(),
    }


def run_rank(data, size, seed, metric, n_train, cache):
    from sktransfer import rank_backbones

    rows = draw_rows(data, n_train, seed)
    cands = {name: _features(name, _size_arg(size), cache) for name in CANDIDATES}
    kwargs = {} if metric == "default" else {"metric": metric}
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = rank_backbones(data.X_pool[rows], data.y_pool[rows], cands, **kwargs)
    return {
        "kind": "rank",
        "dataset": data.name,
        "size": size,
        "seed": seed,
        "metric": metric,
        "n_train": n_train,
        "names": table.names,
        "scores": table.scores.tolist(),
        "seconds": table.seconds.tolist(),
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught}),
    }


def _tau(scores: dict, truth: dict) -> float:
    from scipy.stats import kendalltau

    names = list(truth)
    return float(kendalltau([scores[n] for n in names], [truth[n] for n in names]).statistic)


METRICS = ["rank_backbones default", "hscore", *EXTRA_SCORES]
SIZES_ORDER = {"32": 0, "64": 1, "160": 2, "224": 3, "native": 4}


def cells(path: Path) -> dict:
    """(data set, size, N, seed) -> {"probe": {name: acc}, metric: {name: score}} for every
    cell where all candidates were measured."""
    cands, ranks = done(path)
    groups: dict = {}
    for (ds, size, name, n), r in cands.items():
        groups.setdefault((ds, size, n), {})[name] = r
    out = {}
    for (ds, size, n), by_name in groups.items():
        if set(by_name) != set(CANDIDATES):
            continue
        for seed in next(iter(by_name.values()))["seeds"]:
            s = {name: r["seeds"][seed] for name, r in by_name.items()}
            cell = {
                "probe": {name: s[name]["probe_acc"] for name in CANDIDATES},
                "n_test": next(iter(by_name.values()))["n_test"],
            }
            for m in METRICS:
                if m == "rank_backbones default":
                    r = ranks.get((ds, size, int(seed), "default", n))
                    if r is not None:
                        cell[m] = dict(zip(r["names"], r["scores"]))
                        cell["warnings"] = r["warnings"]
                elif all(m in s[name] for name in CANDIDATES):
                    cell[m] = {name: s[name][m] for name in CANDIDATES}
            out[(ds, size, n, int(seed))] = cell
    return out


def _resolved_pairs(scores: dict, truth: dict, n_test: int) -> tuple[int, int]:
    """Of the candidate pairs whose probe accuracies differ by more than two standard
    errors of the difference on ``n_test`` rows, how many the scores put in that order."""
    names = list(truth)
    agree = total = 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pa, pb = truth[a], truth[b]
            se = np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_test)
            if abs(pa - pb) > 2 * se:
                total += 1
                agree += (scores[a] - scores[b]) * (pa - pb) > 0
    return int(agree), total


def _order_key(k):
    return (k[0], k[2], SIZES_ORDER.get(str(k[1]), 9), k[3])


def table(path: Path) -> str:
    """Three tables: tau per cell and metric; the probe accuracy lost by taking each
    metric's first pick; tau of the ranking at each size against the probes at 160 px."""
    data = cells(path)
    names = list(CANDIDATES)
    head = (
        "| data set | size | N | seed | probe test acc: " + " / ".join(names) + " | probe order | "
    )
    lines = [
        "τ between each metric's order and the probes' test-accuracy order (4 candidates: "
        "+1 same order, each swapped pair −1/3):",
        "",
        head
        + " | ".join(f"τ {m}" for m in METRICS)
        + " | default: resolved pairs in order | default: warned |",
        "|---|---|---:|---:|---|---|" + "---:|" * len(METRICS) + "---:|---|",
    ]
    regret_lines = [
        "Probe accuracy lost by taking each metric's first pick instead of the best probe "
        "(0 = it picked the best):",
        "",
        "| data set | size | N | seed | best probe | " + " | ".join(METRICS) + " |",
        "|---|---|---:|---:|---|" + "---:|" * len(METRICS),
    ]
    taus: dict = {}
    regrets: dict = {}
    for key in sorted(data, key=_order_key):
        ds, size, n, seed = key
        cell = data[key]
        truth = cell["probe"]
        order = " > ".join(sorted(truth, key=truth.get, reverse=True))
        best = max(truth.values())
        tau_cells, regret_cells = [], []
        for m in METRICS:
            if m not in cell:
                tau_cells.append("")
                regret_cells.append("")
                continue
            tau = _tau(cell[m], truth)
            pick = max(cell[m], key=cell[m].get)
            taus.setdefault(m, []).append(tau)
            regrets.setdefault(m, []).append(best - truth[pick])
            tau_cells.append(f"{tau:+.2f}")
            regret_cells.append(f"{best - truth[pick]:.3f}")
        resolved, warned = "", ""
        if "rank_backbones default" in cell:
            agree, total = _resolved_pairs(cell["rank_backbones default"], truth, cell["n_test"])
            resolved = f"{agree}/{total}"
            warned = ", ".join(
                "noise" if "random halves" in w else "size" if " px" in w else "other"
                for w in cell["warnings"]
            )
        lines.append(
            f"| {ds} | {size} | {n} | {seed} | "
            + " / ".join(f"{truth[name]:.3f}" for name in names)
            + f" | {order} | "
            + " | ".join(tau_cells)
            + f" | {resolved} | {warned} |"
        )
        regret_lines.append(
            f"| {ds} | {size} | {n} | {seed} | {max(truth, key=truth.get)} {best:.3f} | "
            + " | ".join(regret_cells)
            + " |"
        )
    lines.append(
        "| **mean** | | | | | | "
        + " | ".join(f"**{np.mean(taus[m]):+.2f}**" if m in taus else "" for m in METRICS)
        + " | | |"
    )
    regret_lines.append(
        "| **mean** | | | | | "
        + " | ".join(f"**{np.mean(regrets[m]):.3f}**" if m in regrets else "" for m in METRICS)
        + " |"
    )
    # Across sizes: the ranking made at one size against the probes at another, as a user
    # who ranks at 32 px and then fits at the default size would see it.
    cross = [
        "τ between the default ranking (LogME) at each size and the probes' order at each "
        "size (rows: ranked at; columns: probes at):",
        "",
    ]
    sizes = sorted({k[1] for k in data}, key=lambda s: SIZES_ORDER.get(str(s), 9))
    cross.append(
        "| data set | N | seed | ranked at | " + " | ".join(f"probes at {s}" for s in sizes) + " |"
    )
    cross.append("|---|---:|---:|---|" + "---:|" * len(sizes))
    for ds, n, seed in sorted({(k[0], k[2], k[3]) for k in data}):
        for s_rank in sizes:
            c = data.get((ds, s_rank, n, seed))
            if c is None or "rank_backbones default" not in c:
                continue
            row = []
            for s_probe in sizes:
                p = data.get((ds, s_probe, n, seed))
                row.append(
                    "" if p is None else f"{_tau(c['rank_backbones default'], p['probe']):+.2f}"
                )
            cross.append(f"| {ds} | {n} | {seed} | {s_rank} | " + " | ".join(row) + " |")
    return "\n".join(summary(data) + [""] + lines + [""] + regret_lines + [""] + cross)


def summary(data: dict) -> list[str]:
    """One line per (N, size) over data sets and seeds: how the default ranking did."""
    out = [
        "Summary per N and size, over data sets and seeds (default = rank_backbones' LogME):",
        "",
        "| N | size | cells | mean τ default | mean τ hscore | mean τ cv_probe | resolved pairs "
        "in order (default) | mean acc lost (default) | cells warned: noise / size | mean acc "
        "lost where not warned |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    groups: dict = {}
    for (_, size, n, _), cell in data.items():
        if "rank_backbones default" in cell:
            groups.setdefault((n, size), []).append(cell)
    for n, size in sorted(groups, key=lambda k: (k[0], SIZES_ORDER.get(str(k[1]), 9))):
        cs = groups[(n, size)]
        agree = total = 0
        lost, quiet, noise, small = [], [], 0, 0
        for c in cs:
            a, t = _resolved_pairs(c["rank_backbones default"], c["probe"], c["n_test"])
            agree, total = agree + a, total + t
            scores = c["rank_backbones default"]
            loss = max(c["probe"].values()) - c["probe"][max(scores, key=scores.get)]
            lost.append(loss)
            warned_noise = any("random halves" in w for w in c["warnings"])
            warned_size = any(" px" in w for w in c["warnings"])
            noise += warned_noise
            small += warned_size
            if not (warned_noise or warned_size):
                quiet.append(loss)

        def mean_tau(m, cs=cs):
            return np.mean([_tau(c[m], c["probe"]) for c in cs if m in c])

        out.append(
            f"| {n} | {size} | {len(cs)} | {mean_tau('rank_backbones default'):+.2f} | "
            f"{mean_tau('hscore'):+.2f} | {mean_tau('cv_probe'):+.2f} | {agree}/{total} | "
            f"{np.mean(lost):.3f} | {noise} / {small} | "
            + (f"{np.mean(quiet):.3f} ({len(quiet)} cells)" if quiet else "-")
            + " |"
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="mnist,fashion-mnist,digits")
    p.add_argument("--sizes", default="32,64,160,native")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--quick", action="store_true", help="digits, 32 px, N=40, one seed")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.table_only:
        print(table(out))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    if args.quick:
        args.datasets, args.sizes, args.n_train, args.seeds = "digits", "32", 40, "0"
    import _suite_data

    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [s.strip() for s in args.sizes.split(",")]
    for s in sizes:
        if s != "native" and not s.isdigit():
            raise SystemExit(f"--sizes: {s!r} is neither a number of pixels nor 'native'.")
    for ds in args.datasets.split(","):
        if ds not in _suite_data.IMAGES:
            raise SystemExit(f"--datasets: {ds!r}; choose from {sorted(_suite_data.IMAGES)}.")
        data = _suite_data.load(ds, **({"n_test": 50} if args.quick else {}))
        n = min(args.n_train, len(data.y_pool))
        for size in sizes:
            cands, _ = done(out)
            for name in CANDIDATES:
                if (data.name, size, name, n) not in cands:
                    append(out, run_candidate(data, name, size, n, seeds, args.cache))
            _, ranks = done(out)
            for seed in seeds:
                for metric in RANK_METRICS:
                    if (data.name, size, seed, metric, n) not in ranks:
                        append(out, run_rank(data, size, seed, metric, n, args.cache))
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
