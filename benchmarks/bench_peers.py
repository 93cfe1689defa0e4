"""sktransfer's adaptation estimators side by side with skada 0.6 and ADAPT 0.4.5.

Same data, same base estimator (LogisticRegression for classification, Ridge for
regression), default parameters everywhere; target accuracy (or MSE) mean ± std over
seeds, on the target rows whose label no method saw, and the mean fit time.

- skada's ``make_shifted_datasets`` (covariate, target, conditional shift, subspace;
  noise 0.5; 400 source and 400 target rows), 10 seeds (``--quick``: 3);
- UCI heart disease, Cleveland -> Switzerland / Hungary / VA Long Beach;
- the same four shifts with skada's regression targets (``label="regression"``);
- auto MPG (regression), USA -> Japan / Europe.

Unsupervised methods see every target row unlabelled; TrAdaBoost (and "target only")
also get 20 labelled target rows (a different draw per seed). The real data are
imputed (median) and standardised once over all rows, so every method gets the same X.

The transferability scores (LogME, LEEP, H-score, NCE) are checked against the
textbook formulas re-derived here (``reference_*``), on random features and labels.

The peers are never a dependency: ``make peers`` installs them in ``.venv-peers``, and

    .venv-peers/bin/python benchmarks/bench_peers.py [--quick] [--part regression]

Run with any other Python, the script says what is missing and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings

import numpy as np

# torch before tensorflow (which ADAPT and POT import): the other order segfaults here.
import torchvision.ops  # noqa: F401
from scipy.optimize import minimize
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import mean_squared_error
from sklearn.preprocessing import StandardScaler

from sktransfer.adaptation import (
    CORAL,
    ImportanceWeighting,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
)
from sktransfer.datasets import load_heart_disease
from sktransfer.transferability import hscore, leep_score, logme_score, nce_score

N_LABELLED = 20
SHIFTS = ("covariate_shift", "target_shift", "conditional_shift", "subspace")


def peers_missing() -> list[str]:
    return [name for name in ("skada", "adapt", "cvxopt") if importlib.util.find_spec(name) is None]


# -- the methods: (name, library, kind, factory) -----------------------------------------
# kind: "source" fits on source rows, "target" on the labelled target rows, "skada" with
# skada's (X, y, sample_domain), "adapt" with ADAPT's fit(Xs, ys) and the target rows
# given to the factory, "ours" with sktransfer's (X, y, sample_domain); "-semi": the
# labelled target rows are given too (to ADAPT as Xt, yt).


def methods(base, regression):
    import adapt.feature_based as af
    import adapt.instance_based as ai
    import skada

    quiet = {"verbose": 0, "random_state": 0}

    def weighted():  # skada routes the weights only to an estimator that requests them
        return base().set_fit_request(sample_weight=True)

    rows = [
        ("source only", "sklearn", "source", lambda **_: base()),
        (f"target only ({N_LABELLED})", "sklearn", "target", lambda **_: base()),
        ("IW discriminator", "sktransfer", "ours", lambda **_: ImportanceWeighting(base())),
        (
            "IW discriminator",
            "skada",
            "skada",
            lambda **_: skada.DiscriminatorReweight(weighted(), LogisticRegression()),
        ),
        ("IW discriminator", "ADAPT", "adapt", lambda Xt: ai.IWC(base(), Xt=Xt, **quiet)),
        ("KMM", "sktransfer", "ours", lambda **_: ImportanceWeighting(base(), method="kmm")),
        ("KMM", "skada", "skada", lambda **_: skada.KMMReweight(weighted())),
        ("KMM", "ADAPT", "adapt", lambda Xt: ai.KMM(base(), Xt=Xt, **quiet)),
        ("CORAL", "sktransfer", "ours", lambda **_: CORAL(base())),
        ("CORAL", "skada", "skada", lambda **_: skada.CORAL(base())),
        ("CORAL", "ADAPT", "adapt", lambda Xt: af.CORAL(base(), Xt=Xt, **quiet)),
    ]
    if regression:
        rows += [
            ("TrAdaBoostR2", "sktransfer", "ours-semi", lambda **_: TrAdaBoostR2(base())),
            (
                "TrAdaBoostR2",
                "ADAPT",
                "adapt-semi",
                lambda Xt, yt: ai.TrAdaBoostR2(base(), Xt=Xt, yt=yt, **quiet),
            ),
            (
                "TwoStageTrAdaBoostR2",
                "ADAPT",
                "adapt-semi",
                lambda Xt, yt: ai.TwoStageTrAdaBoostR2(base(), Xt=Xt, yt=yt, **quiet),
            ),
        ]
    else:
        rows += [
            ("TrAdaBoost", "sktransfer", "ours-semi", lambda **_: TrAdaBoostClassifier(base())),
            (
                "TrAdaBoost",
                "ADAPT",
                "adapt-semi",
                lambda Xt, yt: ai.TrAdaBoost(base(), Xt=Xt, yt=yt, **quiet),
            ),
        ]
    return rows


def run_one(kind, factory, X, y_true, sample_domain, labelled, regression):
    """Fit one method; return (predictions on the scored target rows, fit seconds)."""
    source, target = sample_domain >= 0, sample_domain < 0
    scored = target & ~labelled
    marker = np.nan if regression else -1
    y_seen = np.where(target & ~labelled, marker, y_true).astype(float if regression else int)
    y_unsup = np.where(target, marker, y_true).astype(float if regression else int)
    start = time.process_time()
    if kind == "source":
        model = factory().fit(X[source], y_true[source])
    elif kind == "target":
        model = factory().fit(X[labelled], y_true[labelled])
    elif kind == "skada":
        model = factory().fit(X, y_unsup, sample_domain=sample_domain)
    elif kind == "adapt":
        model = factory(Xt=X[target]).fit(X[source], y_true[source])
    elif kind == "adapt-semi":
        model = factory(Xt=X[labelled], yt=y_true[labelled]).fit(X[source], y_true[source])
    elif kind == "ours":
        model = factory().fit(X, y_unsup, sample_domain=sample_domain)
    else:
        model = factory().fit(X, y_seen, sample_domain=sample_domain)
    seconds = time.process_time() - start
    return np.asarray(model.predict(X[scored])).ravel(), seconds


def draw_labelled(sample_domain, y, rng, regression):
    """N_LABELLED target rows, both classes present for classification."""
    target = np.flatnonzero(sample_domain < 0)
    while True:
        rows = rng.choice(target, N_LABELLED, replace=False)
        if regression or np.unique(y[rows]).size > 1:
            mask = np.zeros(sample_domain.size, dtype=bool)
            mask[rows] = True
            return mask


def evaluate(datasets, base, regression, seeds):
    """{(method, library): {dataset: (scores, seconds)}} over seeds."""
    results = {}
    for name, make in datasets:
        for seed in range(seeds):
            X, y, sample_domain = make(seed)
            labelled = draw_labelled(sample_domain, y, np.random.RandomState(seed), regression)
            scored = (sample_domain < 0) & ~labelled
            for method, library, kind, factory in methods(base, regression):
                pred, seconds = run_one(kind, factory, X, y, sample_domain, labelled, regression)
                truth = y[scored]
                score = (
                    mean_squared_error(truth, pred) if regression else float(np.mean(pred == truth))
                )
                cell = results.setdefault((method, library), {}).setdefault(name, ([], []))
                cell[0].append(score)
                cell[1].append(seconds)
    return results


def table(results, names, metric):
    head = f"| method | library | {' | '.join(names)} |"
    lines = [head, "|" + " --- |" * (2 + len(names))]
    for (method, library), cells in results.items():
        row = [
            f"{np.mean(cells[n][0]):.3f} ± {np.std(cells[n][0]):.3f} ({np.mean(cells[n][1]):.2f} s)"
            for n in names
        ]
        lines.append(f"| {method} | {library} | {' | '.join(row)} |")
    return f"{metric}, mean ± std (mean fit CPU time)\n\n" + "\n".join(lines)


# -- data ---------------------------------------------------------------------------------


def skada_shift(shift, regression=False):
    from skada.datasets import make_shifted_datasets

    label = "regression" if regression else "binary"

    def make(seed):
        X, y, sample_domain = make_shifted_datasets(
            shift=shift, noise=0.5, label=label, random_state=seed
        )
        return X, y.astype(float if regression else int), sample_domain.astype(int)

    return make


def _standardised(X):
    return StandardScaler().fit_transform(SimpleImputer(strategy="median").fit_transform(X))


def heart(site):
    data = load_heart_disease()
    keep = np.isin(data.site, ["Cleveland", site])
    X = _standardised(data.data[keep])
    y = np.asarray(data.target)[keep].astype(int)
    sample_domain = np.where(np.asarray(data.site)[keep] == "Cleveland", 1, -2)
    return lambda seed: (X, y, sample_domain)


def autompg(origin):
    from mlxtend.data import autompg_data

    X, y = autompg_data()
    codes = {"USA": 1.0, "Europe": 2.0, "Japan": 3.0}
    keep = np.isin(X[:, 6], [codes["USA"], codes[origin]])
    Xk = _standardised(X[keep, :6])
    sample_domain = np.where(X[keep, 6] == codes["USA"], 1, -2)
    return lambda seed: (Xk, y[keep].astype(float), sample_domain)


# -- transferability scores against re-derived references ---------------------------------


def reference_logme(F, y):
    """Mean over classes of max over alpha, beta of (1/N) log N(t; 0, I/beta + F F^T/alpha),
    the Gaussian density evaluated directly (N x N), maximised by Nelder-Mead."""
    n = len(F)
    G = F @ F.T

    def negative(log_ab, t):
        cov = np.exp(-log_ab[1]) * np.eye(n) + np.exp(-log_ab[0]) * G
        sign, logdet = np.linalg.slogdet(cov)
        return 0.5 * (logdet + t @ np.linalg.solve(cov, t) + n * np.log(2 * np.pi)) / n

    values = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        starts = [(-4.0, 0.0), (0.0, 0.0), (4.0, 0.0)]
        best = min(
            (
                minimize(
                    negative,
                    x0,
                    args=(t,),
                    method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000},
                )
                for x0 in starts
            ),
            key=lambda r: r.fun,
        )
        values.append(-best.fun)
    return float(np.mean(values))


def fixed_point_logme(F, y):
    """You et al. (2021), Algorithm 1: the alpha / beta fixed point, 11 iterations at most,
    1% tolerance, evidence with (D/2) log alpha over all D prior dimensions."""
    n, d = F.shape
    sigma, V = np.linalg.eigh(F.T @ F)
    sigma = np.maximum(sigma, 0.0)
    values = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        z = V.T @ (F.T @ t)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            gamma = np.sum(beta * sigma / (alpha + beta * sigma))
            m = V @ (beta * z / (alpha + beta * sigma))
            alpha_de, beta_de = m @ m, np.sum((t - F @ m) ** 2)
            new_alpha, new_beta = gamma / alpha_de, (n - gamma) / beta_de
            converged = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 0.01
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        m = V @ (beta * z / (alpha + beta * sigma))
        alpha_de, beta_de = m @ m, np.sum((t - F @ m) ** 2)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2 * beta_de
            - alpha / 2 * alpha_de
            - n / 2 * np.log(2 * np.pi)
        )
        values.append(evidence / n)
    return float(np.mean(values))


def reference_leep(P, y):
    """LEEP (Nguyen et al., 2020): mean log of Σ_z P(y | z) θ(z | x)."""
    joint = np.stack([P[y == c].sum(0) for c in np.unique(y)], 1) / len(y)
    cond = joint / joint.sum(1, keepdims=True)
    codes = np.searchsorted(np.unique(y), y)
    return float(np.mean(np.log((P @ cond)[np.arange(len(y)), codes])))


def reference_nce(z, y):
    """NCE (Tran et al., 2019): −H(Y | Z) from the empirical joint."""
    joint = np.zeros((z.max() + 1, y.max() + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= joint.sum()
    pz = joint.sum(1, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / np.where(pz > 0, pz, 1))[nz])))


def reference_hscore(F, y):
    """H-score (Bao et al., 2019): tr(cov(F)^-1 cov(E[F | y])), both with 1/N."""
    Fc = F - F.mean(0)
    cov = Fc.T @ Fc / len(F)
    means = np.stack([Fc[y == c].mean(0) for c in y])
    return float(np.trace(np.linalg.pinv(cov) @ (means.T @ means / len(F))))


def score_checks():
    rng = np.random.RandomState(0)
    k = 4
    lines = [
        "| score | data | sktransfer | reference | difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, d in ((300, 16), (60, 100)):
        y = rng.randint(k, size=n)
        F = rng.normal(size=(n, d)) + 0.5 * np.eye(k, d)[y]
        shape = f"N={n}, D={d}"
        ours = logme_score(F, y)
        for name, ref in (
            ("LogME vs direct maximised evidence", reference_logme(F, y)),
            ("LogME vs fixed point (You et al. Alg. 1)", fixed_point_logme(F, y)),
            ("H-score vs tr(cov^+ cov(E[f given y])), 1/N", reference_hscore(F, y)),
        ):
            value = hscore(F, y) if name.startswith("H-score") else ours
            lines.append(f"| {name} | {shape} | {value:.8f} | {ref:.8f} | {value - ref:.1e} |")
    n = 300
    y = rng.randint(k, size=n)
    logits = rng.normal(size=(n, 7)) + np.eye(k, 7)[y]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    z = np.argmax(logits + rng.normal(size=logits.shape), 1)
    for name, ours, ref in (
        ("LEEP vs its definition", leep_score(P, y), reference_leep(P, y)),
        ("NCE vs -H(Y given Z)", nce_score(z, y), reference_nce(z, y)),
    ):
        lines.append(
            f"| {name} | N={n}, 7 source classes | {ours:.8f} | {ref:.8f} | {ours - ref:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds instead of 10")
    parser.add_argument(
        "--part",
        choices=("all", "classification", "regression", "scores"),
        default="all",
        help="run only the classification tables, the regression tables or the score checks",
    )
    args = parser.parse_args(argv)
    missing = peers_missing()
    if missing:
        print(
            f"bench_peers: {', '.join(missing)} not installed in {sys.executable}; run "
            "`make peers`, then .venv-peers/bin/python benchmarks/bench_peers.py. Skipped."
        )
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    seeds = 3 if args.quick else 10
    started = time.time()

    if args.part in ("all", "classification"):
        synthetic = [(s.replace("_shift", ""), skada_shift(s)) for s in SHIFTS]
        results = evaluate(synthetic, LogisticRegression, False, seeds)
        print(f"## skada make_shifted_datasets, {seeds} seeds: target accuracy\n")
        print(table(results, [n for n, _ in synthetic], "target accuracy") + "\n")

        sites = [
            (f"Cleveland -> {s}", heart(s)) for s in ("Switzerland", "Hungary", "VA Long Beach")
        ]
        results = evaluate(sites, LogisticRegression, False, seeds)
        print(f"## Heart disease, {seeds} draws of the {N_LABELLED} target labels\n")
        print(table(results, [n for n, _ in sites], "target accuracy") + "\n")

    if args.part in ("all", "regression"):
        synthetic = [(s.replace("_shift", ""), skada_shift(s, True)) for s in SHIFTS]
        results = evaluate(synthetic, Ridge, True, seeds)
        print(f"## skada make_shifted_datasets, regression, {seeds} seeds: target MSE\n")
        print(table(results, [n for n, _ in synthetic], "target MSE (lower is better)") + "\n")

        origins = [(f"USA -> {o}", autompg(o)) for o in ("Japan", "Europe")]
        results = evaluate(origins, Ridge, True, seeds)
        print(f"## Auto MPG, {seeds} draws of the {N_LABELLED} target labels\n")
        print(table(results, [n for n, _ in origins], "target MSE (lower is better)") + "\n")

    if args.part in ("all", "scores"):
        print("## Transferability scores against re-derived references\n")
        print(score_checks() + "\n")
    print(f"total {time.time() - started:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
