"""Which ``adaptation_weight`` for DANN and Deep CORAL, chosen without target labels.

On the real shifts of ``bench_source_free.py`` (MNIST <-> digits, Fashion-MNIST under
four corruptions), each loss is fitted at every weight of ``--weights`` on the labelled
source rows and the unlabelled target rows, with the same source recipe (``--body``).
Each fit is scored twice on the target rows: by its accuracy (which needs the labels a
user does not have) and by two label-free scores of its predictions there,
``PredictionEntropyScorer()`` (minus the mean entropy) and
``PredictionEntropyScorer(diversity=1.0)`` (information maximisation: the entropy of
the mean prediction minus the mean entropy). The source model alone is fitted too, in
the same process, for the reference.

The tables: accuracy per weight; the weight each label-free score picks on each draw,
and the accuracy of that pick against the default weight's and the best weight's (the
oracle, which reads the labels); and the weight a label-free score ranks best over all
the shifts, which is how the default can be chosen without target labels.

    OMP_NUM_THREADS=1 python benchmarks/bench_adaptation_weight.py --quick
    OMP_NUM_THREADS=1 python benchmarks/bench_adaptation_weight.py --out w.jsonl --seeds 0 1 2

With ``--out`` each fit is appended as a JSON line as soon as it is measured and the
tables are printed from every line in the file (a (shift, loss, weight, seed) already in
it is not fitted again), so runs split over processes add up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_source_free import SHIFTS, draw, results, shift_arguments, source_model

from sktransfer.adaptation import PredictionEntropyScorer

LOSSES = ("dann", "coral")
SCORES = {
    "entropy": PredictionEntropyScorer(),
    "infomax": PredictionEntropyScorer(diversity=1.0),
}
DEFAULT_WEIGHT = 1.0  # FineTuneClassifier's adaptation_weight


def run(body, shifts, losses, weights, seeds, n_source, n_target, done, emit):
    for seed in seeds:
        for shift in shifts:
            todo = [("source only", None)] + [(a, w) for a in losses for w in weights]
            todo = [(a, w) for a, w in todo if (shift, a, w, seed) not in done]
            if not todo:
                continue
            Xs, ys, Xt, yt = draw(shift, seed, n_source, n_target)
            unlabelled = -np.ones(len(Xt), int)
            for adaptation, weight in todo:
                t0 = time.process_time()
                if adaptation == "source only":
                    model = source_model(body, seed).fit(Xs, ys)
                else:
                    model = source_model(
                        body, seed, adaptation=adaptation, adaptation_weight=weight
                    ).fit(np.concatenate([Xs, Xt]), np.r_[ys, unlabelled])
                row = {
                    "body": body,
                    "shift": shift,
                    "loss": adaptation,
                    "weight": weight,
                    "seed": seed,
                    "accuracy": float(model.score(Xt, yt)),
                    "fit_seconds": time.process_time() - t0,
                }
                for name, scorer in SCORES.items():
                    row[name] = scorer(model, Xt, unlabelled)
                emit(row)


def _by(rows, *keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def accuracy_table(rows, shifts, losses, weights):
    cell = _by(rows, "loss", "weight", "shift")
    shifts = [s for s in shifts if any(k[2] == s for k in cell)]
    lines = [
        "| loss | weight | " + " | ".join(shifts) + " |",
        "| --- | ---: |" + " ---: |" * len(shifts),
    ]
    for loss, weight in [("source only", None)] + [(a, w) for a in losses for w in weights]:
        cells = []
        for s in shifts:
            acc = [r["accuracy"] for r in cell.get((loss, weight, s), [])]
            cells.append(f"{np.mean(acc):.3f} ({len(acc)})" if acc else "—")
        if any(c != "—" for c in cells):
            w = "—" if weight is None else f"{weight:g}"
            lines.append(f"| {loss} | {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def picks(rows, losses):
    """Per loss and label-free score: on each (shift, seed) drawn at every weight, the
    weight the score ranks best, and its accuracy minus the default's and the oracle's."""
    lines = [
        "| loss | picked by | weights picked | pick − default | pick − oracle "
        "| default − oracle | draws |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    summary = {}
    for loss in losses:
        draws = _by([r for r in rows if r["loss"] == loss], "shift", "seed")
        weights = sorted({r["weight"] for r in rows if r["loss"] == loss})
        full = {k: {r["weight"]: r for r in v} for k, v in draws.items()}
        full = {k: v for k, v in full.items() if set(v) == set(weights)}
        if not full or DEFAULT_WEIGHT not in weights:
            continue
        for name in SCORES:
            chosen, vs_default, vs_oracle, default_gap = [], [], [], []
            ranks = {w: [] for w in weights}
            for fits in full.values():
                order = sorted(weights, key=lambda w: -fits[w][name])
                for i, w in enumerate(order):
                    ranks[w].append(i + 1)
                best = max(r["accuracy"] for r in fits.values())
                pick = fits[order[0]]["accuracy"]
                chosen.append(order[0])
                vs_default.append(pick - fits[DEFAULT_WEIGHT]["accuracy"])
                vs_oracle.append(pick - best)
                default_gap.append(fits[DEFAULT_WEIGHT]["accuracy"] - best)
            counts = ", ".join(f"{w:g}: {chosen.count(w)}" for w in weights if chosen.count(w))
            lines.append(
                f"| {loss} | {name} | {counts} | {np.mean(vs_default):+.3f} | "
                f"{np.mean(vs_oracle):+.3f} | {np.mean(default_gap):+.3f} | {len(full)} |"
            )
            summary[(loss, name)] = {w: float(np.mean(v)) for w, v in ranks.items()}
    return "\n".join(lines), summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shift_arguments(ap)
    ap.add_argument("--quick", action="store_true", help="one seed, one shift, few rows")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0, 3.0])
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.shifts, args.weights = [0], ["mnist->digits"], [0.0, 1.0]
        args.n_source, args.n_target = 200, 100
    rows, emit = results(args.out, args.body)
    done = {(r["shift"], r["loss"], r["weight"], r["seed"]) for r in rows}

    run(
        args.body,
        args.shifts,
        args.losses,
        args.weights,
        args.seeds,
        args.n_source,
        args.n_target,
        done,
        emit,
    )
    weights = sorted({r["weight"] for r in rows if r["weight"] is not None})
    print(f"\n{args.body}: target accuracy per adaptation_weight, mean over seeds (seeds)\n")
    print(accuracy_table(rows, SHIFTS, args.losses, weights))
    text, ranks = picks(rows, args.losses)
    print("\nThe weight a label-free score picks on each draw (accuracy differences, mean)\n")
    print(text)
    print("\nMean rank of each weight by each label-free score over the draws (1 = best)\n")
    for (loss, name), by_weight in ranks.items():
        best = min(by_weight, key=by_weight.get)
        cells = ", ".join(f"{w:g}: {r:.2f}" for w, r in by_weight.items())
        print(f"- {loss}, {name}: {cells}; best ranked {best:g}")


if __name__ == "__main__":
    main()
