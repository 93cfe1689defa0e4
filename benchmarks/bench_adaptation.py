"""Target accuracy of the domain adaptation estimators, on generated and real shifts.

Table 1: each method on each shift of ``make_shifted_classification`` (300 source
rows, 300 target rows, 30 of them labelled), target accuracy mean ± std over 5
seeds on the 270 unlabelled target rows, and the mean fit CPU time. Unsupervised
methods never see the 30 target labels; "target only" and the semi-supervised
methods do. Table 2: the same for regression (target MSE, lower is better).

Table 3: the UCI heart-disease data, Cleveland (source) to each other hospital.
Source only is fitted on Cleveland alone; every other method gets the target
site's rows too (unlabelled, except 20 for the semi-supervised methods, drawn
stratified, 5 draws); accuracy on the target rows not drawn. "Target, 5-fold
CV" is the reference: a model trained on the target site itself. Preprocessing
(median imputation, standardisation) is part of each pipeline and so is fitted
on the rows that pipeline is given.

    python benchmarks/bench_adaptation.py [--seeds 5] [--skip-heart]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from sktransfer.adaptation import (
    CORAL,
    ImportanceWeighting,
    SourceWeighted,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
)
from sktransfer.datasets import (
    HEART_SITES,
    load_heart_disease,
    make_shifted_classification,
    make_shifted_regression,
)

N_LABELLED = 30
N_HEART_LABELLED = 20

# (name, factory, which labels it sees): "source", "target" (labelled target rows
# only), "unsupervised" (all rows, no target label) or "semi" (all rows, labelled ones).
CLASSIFIERS = [
    ("source only", LogisticRegression, "source"),
    (f"target only ({N_LABELLED} labels)", LogisticRegression, "target"),
    ("ImportanceWeighting", lambda: ImportanceWeighting(LogisticRegression()), "unsupervised"),
    (
        "ImportanceWeighting(kmm)",
        lambda: ImportanceWeighting(LogisticRegression(), method="kmm"),
        "unsupervised",
    ),
    ("CORAL", lambda: CORAL(LogisticRegression()), "unsupervised"),
    ("SourceWeighted", lambda: SourceWeighted(LogisticRegression()), "semi"),
    ("TrAdaBoostClassifier", lambda: TrAdaBoostClassifier(LogisticRegression()), "semi"),
]
REGRESSORS = [
    ("source only (linear)", LinearRegression, "source"),
    ("source only (tree)", lambda: DecisionTreeRegressor(max_depth=4), "source"),
    (f"target only ({N_LABELLED} labels, linear)", LinearRegression, "target"),
    ("ImportanceWeighting", lambda: ImportanceWeighting(LinearRegression()), "unsupervised"),
    (
        "ImportanceWeighting(kmm)",
        lambda: ImportanceWeighting(LinearRegression(), method="kmm"),
        "unsupervised",
    ),
    ("CORAL", lambda: CORAL(LinearRegression()), "unsupervised"),
    ("SourceWeighted (linear)", lambda: SourceWeighted(LinearRegression()), "semi"),
    ("TrAdaBoostR2 (tree)", lambda: TrAdaBoostR2(DecisionTreeRegressor(max_depth=4)), "semi"),
]


def fit_view(X, y, sample_domain, sees):
    """The rows, labels and sample_domain a method of kind ``sees`` is fitted on."""
    unlabelled = np.isnan(y) if y.dtype.kind == "f" else y == -1
    if sees == "source":
        rows = sample_domain >= 0
        return X[rows], y[rows], None
    if sees == "target":
        rows = (sample_domain < 0) & ~unlabelled
        return X[rows], y[rows], None
    if sees == "unsupervised":
        marker = np.nan if y.dtype.kind == "f" else -1
        return X, np.where(sample_domain < 0, marker, y), sample_domain
    return X, y, sample_domain


def timed_fit(model, X, y, sample_domain):
    params = {}
    if sample_domain is not None:
        # Without metadata routing a Pipeline takes <step>__<param>.
        prefix = f"{model.steps[-1][0]}__" if isinstance(model, Pipeline) else ""
        params = {f"{prefix}sample_domain": sample_domain}
    # CPU time of this process: on a shared machine, wall time measures the neighbours.
    start = time.process_time()
    model.fit(X, y, **params)
    return time.process_time() - start


def seeded(factory, seed):
    """``factory()`` with every random_state (pipeline steps' too) set to ``seed``."""
    model = factory()
    keys = [key for key in model.get_params() if key.split("__")[-1] == "random_state"]
    return model.set_params(**dict.fromkeys(keys, seed))


def synthetic_table(methods, make, shifts, seeds, score):
    results = {}
    for shift in shifts:
        for seed in range(seeds):
            X, y, sample_domain, y_true = make(
                shift=shift, n_target_labelled=N_LABELLED, random_state=seed
            )
            unlabelled = np.isnan(y) if y.dtype.kind == "f" else y == -1
            scored = (sample_domain < 0) & unlabelled
            for name, factory, sees in methods:
                model = seeded(factory, seed)
                seconds = timed_fit(model, *fit_view(X, y, sample_domain, sees))
                value = score(model, X[scored], y_true[scored])
                results.setdefault((name, shift), []).append((value, seconds))
    return results


def print_table(title, methods, columns, results, fmt="{:.3f}"):
    print(f"\n{title}\n")
    print("| method | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, _, _ in methods:
        cells = []
        for column in columns:
            runs = np.array(results.get((name, column), [(np.nan, np.nan)]))
            mean, std = runs[:, 0].mean(), runs[:, 0].std()
            cells.append(f"{fmt.format(mean)} ± {fmt.format(std)} ({runs[:, 1].mean():.2f} s)")
        print(f"| {name} | " + " | ".join(cells) + " |")


def heart_pipeline(estimator):
    # keep_empty_features: 20 labelled patients of a site may all lack a measurement.
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    return make_pipeline(imputer, StandardScaler(), estimator)


def heart_table(draws):
    heart = load_heart_disease()
    X, y_all, site = heart.data, heart.target, heart.site
    methods = [
        ("source only", lambda: heart_pipeline(LogisticRegression()), "source"),
        (
            f"target only ({N_HEART_LABELLED} labels)",
            lambda: heart_pipeline(LogisticRegression()),
            "target",
        ),
    ] + [
        (name, lambda factory=factory: heart_pipeline(factory()), sees)
        for name, factory, sees in CLASSIFIERS
        if sees in ("unsupervised", "semi")
    ]
    results, reference = {}, {}
    for target_site in HEART_SITES[1:]:
        rows = np.flatnonzero(np.isin(site, [HEART_SITES[0], target_site]))
        Xd, yd = X[rows], y_all[rows]
        sample_domain = np.where(site[rows] == HEART_SITES[0], 0, -1)
        target = np.flatnonzero(sample_domain < 0)
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        reference[target_site] = cross_val_score(
            heart_pipeline(LogisticRegression()), Xd[target], yd[target], cv=cv
        )
        draw = StratifiedShuffleSplit(draws, train_size=N_HEART_LABELLED, random_state=0)
        for seed, (labelled, _) in enumerate(draw.split(target, yd[target])):
            y = np.where(sample_domain < 0, -1, yd)
            y[target[labelled]] = yd[target[labelled]]
            scored = (sample_domain < 0) & (y == -1)
            for name, factory, sees in methods:
                model = seeded(factory, seed)
                seconds = timed_fit(model, *fit_view(Xd, y, sample_domain, sees))
                accuracy = model.score(Xd[scored], yd[scored])
                results.setdefault((name, target_site), []).append((accuracy, seconds))
    columns = list(HEART_SITES[1:])
    print_table(
        f"Heart disease, {HEART_SITES[0]} -> each site: target accuracy over {draws} draws "
        f"of the {N_HEART_LABELLED} labelled target rows (fit CPU time)",
        methods,
        columns,
        results,
    )
    majority = {s: max(y_all[site == s].mean(), 1 - y_all[site == s].mean()) for s in columns}
    print(
        "| target, 5-fold CV (reference) | "
        + " | ".join(f"{reference[s].mean():.3f} ± {reference[s].std():.3f}" for s in columns)
        + " |"
    )
    print("| majority class | " + " | ".join(f"{majority[s]:.3f}" for s in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--skip-heart", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    shifts = ["covariate", "label", "conditional", "affine"]
    results = synthetic_table(
        CLASSIFIERS,
        make_shifted_classification,
        shifts,
        args.seeds,
        lambda model, X, y: model.score(X, y),
    )
    print_table(
        f"Classification: target accuracy, mean ± std over {args.seeds} seeds (fit CPU time)",
        CLASSIFIERS,
        shifts,
        results,
    )
    shifts = ["covariate", "conditional", "affine"]
    results = synthetic_table(
        REGRESSORS,
        make_shifted_regression,
        shifts,
        args.seeds,
        lambda model, X, y: mean_squared_error(y, model.predict(X)),
    )
    print_table(
        f"Regression: target MSE (lower is better), mean ± std over {args.seeds} seeds "
        "(fit CPU time)",
        REGRESSORS,
        shifts,
        results,
    )
    if not args.skip_heart:
        heart_table(args.seeds)


if __name__ == "__main__":
    main()
