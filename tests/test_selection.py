"""Transferability scores and domain distances (sktransfer.transferability), and
rank_backbones (sktransfer.ranking)."""

import sys
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from sktransfer.ranking import rank_backbones
from sktransfer.transferability import (
    hscore,
    leep_score,
    logme_score,
    mmd,
    nce_score,
    proxy_a_distance,
)


def _blobs(n, d, n_classes=3, separation=2.0, seed=0):
    """Features whose first column shifts with the class, plus the labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    F = rng.standard_normal((n, d))
    F[:, 0] += separation * y
    return F, y


def _neg_log_evidence(theta, y, K):
    """-log N(y; 0, I/beta + K/alpha) at theta = (log alpha, log beta), densely."""
    C = np.exp(-theta[1]) * np.eye(K.shape[0]) + np.exp(-theta[0]) * K
    _, logdet = np.linalg.slogdet(C)
    return 0.5 * (K.shape[0] * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(C, y))


def _exact_logme(F, Y):
    """max over (log alpha, log beta) of log N(y; 0, I/beta + F F^T/alpha) / N, averaged
    over the columns of Y: dense N x N algebra and a generic optimiser from nine
    starts, sharing nothing with the implementation under test."""
    K = F @ F.T
    starts = [(a, b) for a in (-3.0, 0.0, 3.0) for b in (-3.0, 0.0, 3.0)]
    options = {"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000}
    best = [
        min(
            minimize(_neg_log_evidence, s, args=(y, K), method="Nelder-Mead", options=options).fun
            for s in starts
        )
        for y in Y.T
    ]
    return -float(np.mean(best)) / F.shape[0]


# --------------------------------------------------------------------------- LogME


@pytest.mark.parametrize("n, d", [(30, 60), (80, 10)], ids=["N<D", "N>D"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_logme_equals_exact_maximised_evidence(n, d, task):
    rng = np.random.default_rng(n + d)
    F = rng.standard_normal((n, d))
    if task == "classification":
        y = rng.integers(0, 3, n)
        F[:, 0] += y
        Y = np.eye(3)[y]
    else:
        y = F[:, :3] @ rng.standard_normal(3) + 0.5 * rng.standard_normal(n)
        Y = y[:, None]
    assert logme_score(F, y) == pytest.approx(_exact_logme(F, Y), abs=1e-4)


def test_logme_equals_exact_evidence_for_rank_deficient_features():
    F, y = _blobs(50, 4, seed=1)
    F = np.c_[F, F[:, :2] - F[:, 2:]]  # six columns, rank four
    assert logme_score(F, y) == pytest.approx(_exact_logme(F, np.eye(3)[y]), abs=1e-4)


def test_logme_higher_for_informative_features_than_noise():
    F, y = _blobs(300, 20)
    noise = np.random.default_rng(1).standard_normal(F.shape)
    assert logme_score(F, y) > logme_score(noise, y) + 0.1


def test_logme_averages_evidence_over_regression_targets():
    rng = np.random.default_rng(2)
    F = rng.standard_normal((60, 5))
    Y = F @ rng.standard_normal((5, 2)) + rng.standard_normal((60, 2))
    mean = (logme_score(F, Y[:, 0]) + logme_score(F, Y[:, 1])) / 2
    assert logme_score(F, Y) == pytest.approx(mean, rel=1e-12)


def test_logme_treats_fractional_float_targets_as_regression():
    rng = np.random.default_rng(3)
    F = rng.standard_normal((60, 5))
    y = F[:, 0] + 0.1 * rng.standard_normal(60)
    assert logme_score(F, y) == logme_score(F, y, regression=True)
    assert logme_score(F, y) != logme_score(F, y > 0)


def test_logme_treats_whole_number_floats_as_class_labels():
    F, y = _blobs(60, 5)
    assert logme_score(F, y.astype(float)) == logme_score(F, y)
    assert logme_score(F, y.astype(str)) == logme_score(F, y)


def test_logme_is_finite_when_features_encode_labels_exactly():
    F, y = _blobs(100, 5)
    exact = np.c_[np.eye(3)[y], F]
    assert np.isfinite(logme_score(exact, y))
    assert logme_score(exact, y) > logme_score(F, y)


# --------------------------------------------------------------------------- H-score


def _between_class_features(F, y):
    g = np.empty_like(F)
    for c in np.unique(y):
        g[y == c] = F[y == c].mean(axis=0)
    return g


@pytest.mark.parametrize("n, d", [(200, 8), (20, 40)], ids=["N>D", "N<D"])
def test_hscore_equals_bao_trace_formula(n, d):
    F, y = _blobs(n, d)
    g = _between_class_features(F, y)
    expected = np.trace(np.linalg.pinv(np.cov(F.T)) @ np.cov(g.T))
    assert hscore(F, y, shrinkage="none") == pytest.approx(expected, rel=1e-8)


def test_hscore_shrinks_by_default_when_samples_are_fewer_than_features():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)  # 200 rows, 10 classes
    noise = rng.standard_normal((200, 1280))
    informative = noise + 0.3 * rng.standard_normal((10, 1280))[y]  # a class mean each
    # the plain score saturates at n_classes - 1 for any features when N < D
    assert hscore(noise, y, shrinkage="none") == pytest.approx(9.0)
    assert hscore(informative, y, shrinkage="none") == pytest.approx(9.0)
    assert hscore(noise, y) < 1.0
    assert 5 * hscore(noise, y) < hscore(informative, y) < 9.0
    assert hscore(noise, y) == hscore(noise, y, shrinkage="auto")


def test_regularised_hscore_uses_ledoit_wolf_shrinkage():
    from sklearn.covariance import LedoitWolf

    F, y = _blobs(30, 20)
    lw = LedoitWolf().fit(F)
    between = np.cov(_between_class_features(F, y).T, bias=True)
    expected = np.trace(np.linalg.solve(lw.covariance_, (1 - lw.shrinkage_) * between))
    assert hscore(F, y, shrinkage="auto") == pytest.approx(expected, rel=1e-8)


def test_hscore_with_zero_shrinkage_is_the_plain_hscore():
    F, y = _blobs(200, 8)
    assert hscore(F, y, shrinkage=0.0) == pytest.approx(hscore(F, y), rel=1e-10)


def test_hscore_higher_for_informative_features_than_noise():
    F, y = _blobs(300, 20)
    noise = np.random.default_rng(1).standard_normal(F.shape)
    assert hscore(F, y) > 5 * hscore(noise, y)


# --------------------------------------------------------------------------- LEEP and NCE


def _source_probs(y, n_source=6, fidelity=0.9, seed=0):
    """Source-model probabilities whose argmax is the source class 2*y (+1) when
    fidelity is high, or random classes when it is 0."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((y.shape[0], n_source))
    logits[np.arange(y.shape[0]), 2 * y + rng.integers(0, 2, y.shape[0])] += 6 * fidelity
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def test_leep_higher_when_source_predictions_track_target_labels():
    y = np.random.default_rng(0).integers(0, 3, 500)
    assert leep_score(_source_probs(y), y) > leep_score(_source_probs(y, fidelity=0.0), y) + 0.3


def test_leep_is_zero_when_each_source_class_determines_the_target_label():
    y = np.random.default_rng(0).integers(0, 3, 100)
    one_hot_source = np.eye(6)[2 * y + 1]
    assert leep_score(one_hot_source, y) == pytest.approx(0.0, abs=1e-12)


def test_leep_ignores_source_classes_never_predicted():
    y = np.random.default_rng(0).integers(0, 3, 100)
    probs = _source_probs(y)
    padded = np.c_[probs, np.zeros((100, 4))]
    assert leep_score(padded, y) == pytest.approx(leep_score(probs, y), rel=1e-12)


def test_nce_higher_when_source_labels_track_target_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    tracking = np.where(rng.random(500) < 0.8, 2 * y, rng.integers(0, 6, 500))
    assert nce_score(tracking, y) > nce_score(rng.integers(0, 6, 500), y) + 0.3


def test_nce_is_zero_when_source_labels_determine_target_labels():
    y = np.random.default_rng(0).integers(0, 3, 100)
    assert nce_score(np.array(["a", "b", "c", "d"])[y], y) == 0.0


def test_nce_is_minus_target_entropy_when_source_labels_carry_no_information():
    y = np.repeat([0, 1], 50)
    assert nce_score(np.zeros(100), y) == pytest.approx(-np.log(2), rel=1e-12)


# --------------------------------------------------------------------------- domain distances


def test_mmd_near_zero_for_samples_of_one_distribution():
    rng = np.random.default_rng(0)
    assert abs(mmd(rng.standard_normal((300, 5)), rng.standard_normal((300, 5)))) < 0.01


def test_mmd_clearly_positive_for_shifted_samples():
    rng = np.random.default_rng(0)
    assert mmd(rng.standard_normal((300, 5)), rng.standard_normal((300, 5)) + 1.0) > 0.1


def test_mmd_default_bandwidth_is_half_inverse_median_squared_distance():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((40, 3)), rng.standard_normal((50, 3)) + 0.5
    Z = np.r_[Xs, Xt]
    sq = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=-1)
    gamma = 1 / (2 * np.median(sq[np.triu_indices(90, 1)]))
    assert mmd(Xs, Xt) == pytest.approx(mmd(Xs, Xt, gamma=gamma), rel=1e-10)


def test_mmd_matches_unbiased_estimator_with_linear_kernel():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 0.3
    Kss, Ktt, Kst = Xs @ Xs.T, Xt @ Xt.T, Xs @ Xt.T
    expected = (
        (Kss.sum() - np.trace(Kss)) / (30 * 29)
        + (Ktt.sum() - np.trace(Ktt)) / (20 * 19)
        - 2 * Kst.mean()
    )
    assert mmd(Xs, Xt, kernel="linear") == pytest.approx(expected, rel=1e-10)


def test_mmd_subsamples_reproducibly_with_random_state():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((1500, 4)), rng.standard_normal((1200, 4)) + 0.5
    first = mmd(Xs, Xt, max_samples=400, random_state=0)
    assert first == mmd(Xs, Xt, max_samples=400, random_state=0)
    assert first == pytest.approx(mmd(Xs, Xt, max_samples=None), abs=0.02)


def test_proxy_a_distance_near_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((200, 5)), rng.standard_normal((200, 5))
    assert proxy_a_distance(Xs, Xt, random_state=0) < 0.3


def test_proxy_a_distance_near_two_for_separable_domains():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((200, 5)), rng.standard_normal((200, 5)) + 3.0
    assert proxy_a_distance(Xs, Xt, random_state=0) > 1.8


def test_proxy_a_distance_not_inflated_by_unequal_domain_sizes():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((400, 5)), rng.standard_normal((100, 5))
    assert proxy_a_distance(Xs, Xt, random_state=0) < 0.3


def _missing_in_one_domain():
    """A feature measured in the source and never in the target (NaN there)."""
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((200, 3)), rng.standard_normal((200, 3))
    Xt[:, 1] = np.nan
    return Xs, Xt


def test_proxy_a_distance_takes_nan_where_its_estimator_does():
    from sklearn.ensemble import HistGradientBoostingClassifier

    Xs, Xt = _missing_in_one_domain()
    # Which rows have the value is all it takes to tell the domains apart.
    hgb = HistGradientBoostingClassifier(max_iter=20)
    assert proxy_a_distance(Xs, Xt, estimator=hgb, random_state=0) > 1.8
    assert proxy_a_distance(Xs, Xt, random_state=0) > 1.8  # the default imputes


def test_proxy_a_distance_names_an_estimator_that_refuses_nan():
    from sklearn.linear_model import LogisticRegression

    Xs, Xt = _missing_in_one_domain()
    with pytest.raises(ValueError, match=r"Xt has NaN \(first in row 0\).*LogisticRegression"):
        proxy_a_distance(Xs, Xt, estimator=LogisticRegression())
    Xs[3, 0] = np.inf
    with pytest.raises(ValueError, match="Xs contains NaN or infinity"):
        proxy_a_distance(Xs, Xt)


# --------------------------------------------------------------------------- bad input

_F = np.random.default_rng(0).standard_normal((10, 3))
_Y = np.arange(10) % 2
_P = np.full((10, 4), 0.25)
_F_NAN = _F.copy()
_F_NAN[3, 1] = np.nan


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: logme_score(_F[:, 0], _Y), r"features must be 2-D.*reshape\(-1, 1\)"),
        (lambda: logme_score(_F, _Y[:9]), "y has 9 entries but features has 10 rows"),
        (lambda: logme_score(_F_NAN, _Y), r"features contains NaN or infinity \(first in row 3\)"),
        (lambda: logme_score(_F, np.zeros(10, dtype=int)), "single class"),
        (lambda: logme_score(_F, np.r_[_Y[:9], np.nan]), "missing label .* row 9"),
        (lambda: logme_score(_F, np.zeros((10, 2)) + 0.5, regression=False), "regression target"),
        (lambda: logme_score(_F, np.c_[_F[:, 0], np.zeros(10)]), "y column 1 is all zeros"),
        (
            lambda: logme_score(_F.astype(str).astype(object) + "x", _Y),
            "features must be .*numeric",
        ),
        (
            lambda: hscore(_F, _Y, shrinkage=2.0),
            "shrinkage must be None, 'auto', 'none' or a float",
        ),
        (lambda: hscore(_F, ["a"] * 10), "single class"),
        (lambda: leep_score(2 * _P, _Y), "row 0 sums to 2"),
        (lambda: leep_score(_P - 0.5, _Y), "negative entry .* softmax"),
        (lambda: leep_score(_P, _Y[:9]), "y has 9 entries but source_probs has 10 rows"),
        (lambda: nce_score(_P, _Y), "source_labels must be 1-D"),
        (lambda: nce_score(_Y, _Y[:9]), "y has 9 entries but source_labels has 10 rows"),
        (lambda: mmd(_F, _F[:, :2]), "Xs has 3 features but Xt has 2"),
        (lambda: mmd(_F, _F, kernel="cosine"), "kernel must be 'rbf', 'linear' or a callable"),
        (lambda: mmd(_F, _F[:1]), r"Xt needs at least 2 rows"),
        (lambda: proxy_a_distance(_F, _F, cv=20), "cv must be between 2"),
        (lambda: rank_backbones(_F, _Y, ["a"], metric="leep"), "metric must be one of"),
        (lambda: rank_backbones(_F, _Y, []), "candidates is empty"),
        (lambda: rank_backbones(_F, _Y, "resnet18"), "Wrap a single backbone in a list"),
    ],
)
def test_bad_input_raises_a_message_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- rank_backbones


def _column_picker(columns, n_in=6):
    """A frozen linear backbone that outputs the given input columns."""
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(n_in, len(columns), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(n_in)[list(columns)])
    return layer


@pytest.fixture
def tabular_task():
    pytest.importorskip("sktransfer.features")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    X = rng.standard_normal((150, 6)).astype(np.float32)
    X[:, :2] += 2.0 * np.eye(3, 2)[y] * 1.5  # classes separate on columns 0 and 1 only
    return X, y


def test_rank_backbones_puts_the_informative_backbone_first(tabular_task):
    X, y = tabular_task
    table = rank_backbones(
        X, y, {"noise": _column_picker([2, 3, 4]), "signal": _column_picker([0, 1, 5])}
    )
    assert table.names == ["signal", "noise"]


def test_rank_backbones_table_has_score_size_and_time_per_candidate(tabular_task):
    pd = pytest.importorskip("pandas")
    X, y = tabular_task
    table = rank_backbones(
        X, y, [_column_picker([2, 3]), _column_picker([0, 1, 4])], metric="hscore"
    )
    frame = table.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["score", "n_features", "seconds"]
    assert list(frame.index) == ["Linear_1", "Linear_0"]
    assert frame["n_features"].tolist() == [3, 2]
    assert (frame["seconds"] > 0).all()


def test_rank_backbones_accepts_a_metric_callable(tabular_task):
    X, y = tabular_task
    table = rank_backbones(
        X,
        y,
        {"wide": _column_picker([2, 3, 4]), "narrow": _column_picker([0])},
        metric=lambda features, _: -features.shape[1],
    )
    assert table.names == ["narrow", "wide"]
    assert table.scores.tolist() == [-1.0, -3.0]


def test_rank_backbones_returns_ranked_dicts_without_pandas(tabular_task, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    X, y = tabular_task
    rows = rank_backbones(X, y, {"noise": _column_picker([2, 3]), "signal": _column_picker([0, 1])})
    assert [row["name"] for row in rows] == ["signal", "noise"]
    assert set(rows[0]) == {"name", "score", "n_features", "seconds"}


# ------------------------------------------------- when the ranking is not to be trusted


def _unreliable(caught):
    from sktransfer.ranking import UnreliableRankingWarning

    return [str(w.message) for w in caught if w.category is UnreliableRankingWarning]


def _rank_recording(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = rank_backbones(*args, **kwargs)
    return table, _unreliable(caught)


def test_candidates_whose_lead_is_noise_warn_and_are_named(tabular_task):
    X, y = tabular_task
    # The same two informative columns, each with one column of pure noise: equal in
    # expectation, so which one leads depends on the rows drawn.
    table, messages = _rank_recording(
        X, y, {"a": _column_picker([0, 1, 2]), "b": _column_picker([0, 1, 3])}
    )
    assert len(messages) == 1
    first, second = table.names
    assert f"{first!r} ranks first on only" in messages[0]
    assert "of 20 random halves of the 150 labelled rows" in messages[0]
    assert f"({second!r} on" in messages[0]


def test_a_clear_lead_gives_no_warning(tabular_task):
    X, y = tabular_task
    table, messages = _rank_recording(
        X, y, {"noise": _column_picker([2, 3, 4]), "signal": _column_picker([0, 1, 5])}
    )
    assert table.names == ["signal", "noise"] and messages == []


def test_the_noise_check_reads_real_targets_as_regression(tabular_task):
    X, _ = tabular_task
    target = X[:, 0] * 0.7 + 0.1  # fractional: LogME reads it as a regression target
    _, messages = _rank_recording(
        X, target, {"a": _column_picker([0, 2]), "b": _column_picker([0, 3])}
    )
    assert len(messages) == 1 and "random halves" in messages[0]
    _, messages = _rank_recording(
        X, target, {"with": _column_picker([0, 2]), "without": _column_picker([3, 4])}
    )
    assert messages == []


def test_an_image_size_far_below_the_weights_size_warns_with_both_sizes():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.images[:30] / 16, digits.target[:30]
    _, messages = _rank_recording(X, y, ["efficientnet_lite0"], image_size=32)
    assert len(messages) == 1
    assert "'efficientnet_lite0' was scored at 32 px, 7x below the 224 px" in messages[0]
    _, messages = _rank_recording(X, y, ["efficientnet_lite0"], image_size=64)
    assert messages == []
