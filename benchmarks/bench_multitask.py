"""When does one shared body with a head per task beat one model per task? On real tables.

Each scenario is a real data set with two real targets, a few labelled rows per task and a
fixed held-out set on which every task is labelled. Two arms, the same body (a fresh
``nn.Sequential(nn.LazyLinear(64), nn.ReLU())``), the same preprocessing in a ``Pipeline``
and every estimator at its defaults (``random_state=seed`` only):

- single-task: one ``FineTuneClassifier`` / ``FineTuneRegressor`` per task, fitted on the
  rows where that task is labelled;
- multi-task: one ``MultiTaskFineTune`` fitted on the union of those rows, ``Y`` a DataFrame
  with NaN where a task is not labelled (``tasks="auto"`` infers each column's kind; the
  script checks that it inferred the intended one).

Scores on the held-out rows: accuracy for classification, R^2 for regression (what
``score_tasks`` returns). Mean ± std over ``--seeds`` random splits (default 10), and the
paired difference multi - single, its mean ± std over the same splits, and in how many
splits the multi-task model scored higher. For scale, a linear model per task on the same
rows (``RidgeCV`` / ``LogisticRegression``, defaults). A second table: on digits with parity
labelled on every training row and the digit on 30, the multi-task model with the digit's
``task_weights`` 1 (the default), 0.3 and 0.1, against the single-task models.

Data sets (all offline):

auto MPG   ``mlxtend.data.autompg_data()``: 392 cars; mpg (regression) and origin (USA / Europe
           / Japan, classification, the 7th column of X, dropped from the features), from
           cylinders, displacement, horsepower, weight, acceleration and model year. Test:
           150 cars.
heart      ``sktransfer.datasets.load_heart_disease()``: 920 patients from 4 hospitals;
           presence of disease (``target``, 0/1) and its severity (``severity``, 0-4), from
           22 features with NaN (median imputer + scaler in the Pipeline). Test: 300 patients.
digits     ``sklearn.datasets.load_digits``: 1,797 8x8 images as 64 features; the digit (10
           classes) and its parity (even/odd). Test: 600 images.

Scenarios: ``few`` labels both tasks on the same few rows; ``lopsided`` labels one task on
every training row and the other on a few of them (NaN elsewhere), where sharing should
matter most; each data set has it both ways round.

    python benchmarks/bench_multitask.py [--seeds 10] [--quick]

``--quick`` runs 2 seeds, only to check that everything runs. The markdown table is printed
and written to ``benchmarks/results/multitask.md`` (``multitask-quick.md``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune
from sktransfer.datasets import load_heart_disease

RESULTS = Path(__file__).resolve().parent / "results"


def body():
    """The shared tabular body; lazy, so its weights are drawn in ``fit`` from random_state."""
    return nn.Sequential(nn.LazyLinear(64), nn.ReLU())


def load_autompg():
    from mlxtend.data import autompg_data

    X, mpg = autompg_data()
    features = X[:, :6].astype(np.float32)  # the 7th is origin, the 8th the (NaN) car name
    Y = pd.DataFrame({"mpg": mpg.astype(float), "origin": X[:, 6].astype(int)})
    return features, Y, {"mpg": "regression", "origin": "classification"}, 150


def load_heart():
    heart = load_heart_disease()
    Y = pd.DataFrame({"disease": heart.target, "severity": heart.severity})
    return heart.data.astype(np.float32), Y, dict.fromkeys(Y, "classification"), 300


def load_digit_tasks():
    X, digit = load_digits(return_X_y=True)
    Y = pd.DataFrame({"digit": digit, "parity": digit % 2})
    return X.astype(np.float32), Y, dict.fromkeys(Y, "classification"), 600


DATASETS = {"auto MPG": load_autompg, "heart": load_heart, "digits": load_digit_tasks}

# (data set, scenario, labelled rows per task: an int, or "all" = every training row).
SCENARIOS = [
    ("auto MPG", "few", {"mpg": 30, "origin": 30}),
    ("auto MPG", "lopsided", {"mpg": "all", "origin": 20}),
    ("auto MPG", "lopsided", {"origin": "all", "mpg": 20}),
    ("heart", "few", {"disease": 40, "severity": 40}),
    ("heart", "lopsided", {"disease": "all", "severity": 40}),
    ("heart", "lopsided", {"severity": "all", "disease": 40}),
    ("digits", "few", {"digit": 50, "parity": 50}),
    ("digits", "lopsided", {"parity": "all", "digit": 30}),
    ("digits", "lopsided", {"digit": "all", "parity": 30}),
]


def preprocessing(X):
    """A median imputer where the features have NaN (heart), then a scaler."""
    steps = [SimpleImputer(strategy="median")] if np.isnan(X).any() else []
    return [*steps, StandardScaler()]


def draw_rows(n, n_test, labelled, rng):
    """Test rows, and for each task the training rows that carry its label.

    The few-labelled tasks share their rows (the first k of one shuffled training set), as
    when every labelled row has all its labels; "all" is the whole training set."""
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    return test, {t: train if k == "all" else train[:k] for t, k in labelled.items()}


def linear_model(X, Y, kinds, test, rows):
    """For scale: scikit-learn's linear model per task on the same rows (RidgeCV or
    LogisticRegression at their defaults)."""
    scores = {}
    for task, idx in rows.items():
        est = RidgeCV() if kinds[task] == "regression" else LogisticRegression(max_iter=5000)
        y = Y[task].to_numpy()
        model = make_pipeline(*preprocessing(X), est).fit(X[idx], y[idx])
        scores[task] = model.score(X[test], y[test])
    return scores


def single_task(X, Y, kinds, test, rows, seed):
    scores = {}
    for task, idx in rows.items():
        Est = FineTuneRegressor if kinds[task] == "regression" else FineTuneClassifier
        model = make_pipeline(*preprocessing(X), Est(body(), random_state=seed))
        y = Y[task].to_numpy()
        model.fit(X[idx], y[idx])
        scores[task] = model.score(X[test], y[test])
    return scores


def multi_task(X, Y, kinds, test, rows, seed, task_weights=None):
    # The labelled rows in the order the single-task arms see them. Not sorted: auto MPG is
    # sorted by model year, and the linear probe's 3-fold CV (unshuffled, as scikit-learn's
    # LogisticRegressionCV) then picks another C on sorted rows: 1-3 points of accuracy.
    union = pd.unique(np.concatenate(list(rows.values())))
    Ytrain = pd.DataFrame(index=range(len(union)))
    for task in Y:
        # NaN where this task is not labelled: that row still trains the other tasks.
        values = Y[task].to_numpy(dtype=float)[union]
        values[~np.isin(union, rows[task])] = np.nan
        Ytrain[task] = values
    model = make_pipeline(
        *preprocessing(X),
        MultiTaskFineTune(body(), task_weights=task_weights, random_state=seed),
    )
    model.fit(X[union], Ytrain)
    mt = model[-1]
    if mt.task_kinds_ != kinds:
        raise AssertionError(f"tasks='auto' inferred {mt.task_kinds_}, expected {kinds}")
    scores = mt.score_tasks(model[:-1].transform(X[test]), Y.iloc[test])
    # score_tasks is accuracy / R^2 per task: check it against sklearn on the predictions.
    predicted = model.predict(X[test])
    for task in Y:
        metric = r2_score if kinds[task] == "regression" else accuracy_score
        expected = metric(Y[task].to_numpy()[test], np.asarray(predicted[task]))
        if not np.isclose(scores[task], expected):
            raise AssertionError(f"score_tasks[{task!r}] = {scores[task]}, metric {expected}")
    return scores


def weight_tradeoff(seeds):
    """Digits, parity on every training row and the digit on 30: the few-labelled task's
    weight against the data-rich task's score (the single-task arms for reference)."""
    X, Y, kinds, n_test = load_digit_tasks()
    labelled = {"parity": "all", "digit": 30}
    arms = {"single-task": None, "multi-task, digit weight 1 (default)": None}
    arms.update({f"multi-task, digit weight {w}": {"digit": w} for w in (0.3, 0.1)})
    scores = {arm: {t: [] for t in labelled} for arm in arms}
    for seed in seeds:
        test, rows = draw_rows(len(X), n_test, labelled, np.random.default_rng(seed))
        for arm, weights in arms.items():
            if arm == "single-task":
                result = single_task(X, Y, kinds, test, rows, seed)
            else:
                result = multi_task(X, Y, kinds, test, rows, seed, task_weights=weights)
            for t, v in result.items():
                scores[arm][t].append(v)
    lines = [
        "| digits, lopsided | parity (1197 labelled) | digit (30 labelled) |",
        "| --- | ---: | ---: |",
    ]
    for arm, by_task in scores.items():
        lines.append(f"| {arm} | {fmt(by_task['parity'])} | {fmt(by_task['digit'])} |")
    return "\n".join(lines)


def fmt(values):
    v = np.asarray(values)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = range(2 if args.quick else args.seeds)

    lines = [
        "| data set | scenario | task | n labelled | linear model | single-task | multi-task "
        "| difference | multi better |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    start = time.perf_counter()
    for name, scenario, labelled in SCENARIOS:
        X, Y, kinds, n_test = DATASETS[name]()
        linear = {t: [] for t in labelled}
        single = {t: [] for t in labelled}
        multi = {t: [] for t in labelled}
        counts = {}
        t0 = time.perf_counter()
        for seed in seeds:
            test, rows = draw_rows(len(X), n_test, labelled, np.random.default_rng(seed))
            counts = {t: len(r) for t, r in rows.items()}
            for t, s in linear_model(X, Y, kinds, test, rows).items():
                linear[t].append(s)
            for t, s in single_task(X, Y, kinds, test, rows, seed).items():
                single[t].append(s)
            for t, s in multi_task(X, Y, kinds, test, rows, seed).items():
                multi[t].append(s)
        print(f"{name}, {scenario}: {time.perf_counter() - t0:.0f} s", flush=True)
        for t in labelled:
            metric = "R^2" if kinds[t] == "regression" else "accuracy"
            diff = np.subtract(multi[t], single[t])
            lines.append(
                f"| {name} | {scenario} | {t} ({metric}) | {counts[t]} | {fmt(linear[t])} "
                f"| {fmt(single[t])} "
                f"| {fmt(multi[t])} | {diff.mean():+.3f} ± {diff.std():.3f} "
                f"| {(diff > 0).sum()}/{len(diff)} |"
            )
    t0 = time.perf_counter()
    tradeoff = weight_tradeoff(seeds)
    print(f"task weights: {time.perf_counter() - t0:.0f} s", flush=True)
    header = (
        f"Held-out score, mean ± std over {len(seeds)} splits; difference = multi - single, "
        f"paired by split; multi better = splits where the difference is > 0. "
        f"{time.perf_counter() - start:.0f} s in all, load average "
        f"{os.getloadavg()[0]:.1f}.\n"
    )
    table = header + "\n" + "\n".join(lines) + "\n\nTask weights:\n\n" + tradeoff
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"multitask{'-quick' if args.quick else ''}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
