"""Deep domain adaptation inside fine-tuning: adaptation="dann" | "coral"."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from sktransfer import AdaBN, FineTuneClassifier, FineTuneRegressor
from sktransfer.training import AdaptationLoss, coral_loss


def affine_shift(seed, n=300):
    """Source ~ N(0, I); target = the same task seen through a scale, shear and translation."""
    rng = np.random.default_rng(seed)
    Xs = rng.normal(size=(n, 2))
    Xt0 = rng.normal(size=(n, 2))
    label = lambda Z: (Z[:, 0] + 0.5 * Z[:, 1] > 0).astype(int)  # noqa: E731
    Xt = Xt0 @ np.array([[2.0, 0.8], [-0.6, 0.5]]) + [3.0, -2.0]
    X = np.vstack([Xs, Xt]).astype(np.float32)
    y = np.r_[label(Xs), -np.ones(n, int)]
    return X, y, Xt.astype(np.float32), label(Xt0)


def body():
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())


def fit(adaptation, X, y, seed, **kw):
    if adaptation is None:  # source-only: the labelled rows alone
        X, y = X[y >= 0], y[y >= 0]
    torch.manual_seed(seed)
    return FineTuneClassifier(
        body(),
        adaptation=adaptation,
        lr=5e-3,
        lr_mult=1,
        max_epochs=30,
        linear_probe=False,
        random_state=seed,
        **kw,
    ).fit(X, y)


def test_dann_beats_source_only_on_the_target():
    # DANN's gain here hangs on its discriminator's initial draw: building the loss once
    # instead of three times (the engine's re-layout) moved the mean over seeds 0-7 from
    # +0.075 (two seeds losing 0.053 and 0.007) to +0.020 (none losing). Six seeds, so the
    # claim is DANN's, not one draw's.
    gains = []
    for seed in range(6):
        X, y, Xt, yt = affine_shift(seed)
        gains.append(fit("dann", X, y, seed).score(Xt, yt) - fit(None, X, y, seed).score(Xt, yt))
    assert np.mean(gains) > 0.01, gains
    assert min(gains) > -0.02, gains


def test_coral_aligns_source_and_target_feature_covariances():
    X, y, Xt, _ = affine_shift(0)
    src = X[y >= 0]

    def gap(clf):
        with torch.no_grad():
            m = clf.backbone_.module.eval()
            return coral_loss(m(torch.from_numpy(src)), m(torch.from_numpy(Xt))).item()

    assert gap(fit("coral", X, y, 0, adaptation_weight=10.0)) < 0.5 * gap(fit(None, X, y, 0))


def test_coral_at_the_default_weight_beats_source_only_on_the_target():
    gains = []
    for seed in range(2):
        X, y, Xt, yt = affine_shift(seed)
        gains.append(fit("coral", X, y, seed).score(Xt, yt) - fit(None, X, y, seed).score(Xt, yt))
    assert np.mean(gains) > 0.05, gains


def test_coral_loss_is_a_relative_gap_between_covariances():
    rng = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(500, 8, generator=rng), torch.randn(500, 8, generator=rng) * 3
    assert coral_loss(zs, zs).item() == pytest.approx(0.0, abs=1e-12)
    # The same gap in other units is the same loss: shrinking the features is no way out.
    assert coral_loss(10 * zs, 10 * zt).item() == pytest.approx(coral_loss(zs, zt).item())
    assert 0.5 < coral_loss(zs, zt).item() <= 2.0


def test_unlabelled_target_rows_are_never_a_class():
    X, y, Xt, _ = affine_shift(1, n=60)
    clf = fit("dann", X, y, 0)
    assert list(clf.classes_) == [0, 1]
    assert set(clf.predict(Xt)) <= {0, 1}


def test_sample_domain_marks_target_rows_like_y_minus_one():
    X, y, Xt, _ = affine_shift(2, n=60)
    sd = np.where(y >= 0, 1, -1)
    a = fit("coral", X, y, 0).predict_proba(Xt)
    torch.manual_seed(0)
    b = FineTuneClassifier(
        body(),
        adaptation="coral",
        lr=5e-3,
        lr_mult=1,
        max_epochs=30,
        linear_probe=False,
        random_state=0,
    ).fit(X, y, sample_domain=sd)
    np.testing.assert_allclose(a, b.predict_proba(Xt), rtol=1e-5)


def test_regressor_takes_nan_targets_as_unlabelled_target_rows():
    X, y, Xt, _ = affine_shift(3, n=60)
    yr = np.where(y >= 0, X[:, 0], np.nan)
    reg = FineTuneRegressor(body(), adaptation="dann", random_state=0).fit(X, yr)
    assert reg.predict(Xt).shape == (len(Xt),)
    assert np.isfinite(reg.predict(Xt)).all()


def regression_shift(seed, n=300):
    """affine_shift's rows with a real-valued target, x0 + 0.5 x1 before the target's map."""
    X, _, Xt, _ = affine_shift(seed, n)
    rng = np.random.default_rng(seed)  # the same draws as affine_shift's
    Xs, Xt0 = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    value = lambda Z: Z[:, 0] + 0.5 * Z[:, 1]  # noqa: E731
    return X, np.r_[value(Xs), np.full(n, np.nan)], Xt, value(Xt0)


@pytest.mark.parametrize("adaptation", ["dann", "coral"])
def test_both_losses_lower_a_regressors_target_error_at_their_defaults(adaptation):
    # Measured at the defaults (seeds 0-3, target MSE source only -> dann / coral):
    # 4.74 -> 1.38 / 0.54, 7.13 -> 1.83 / 1.85, 4.32 -> 2.66 / 1.88, 6.51 -> 3.91 / 2.96.
    ratios = []
    for seed in range(3):
        X, y, Xt, yt = regression_shift(seed)
        labelled = ~np.isnan(y)
        mse = []
        for a, rows in ((None, labelled), (adaptation, slice(None))):
            torch.manual_seed(seed)
            reg = FineTuneRegressor(body(), adaptation=a, random_state=seed)
            reg.fit(X[rows], y[rows])
            mse.append(np.mean((reg.predict(Xt) - yt) ** 2))
        ratios.append(mse[1] / mse[0])
    assert max(ratios) < 0.9, ratios
    assert np.mean(ratios) < 0.6, ratios


def test_a_label_free_search_chooses_the_weight_on_the_target_rows_predictions():
    from sklearn.model_selection import GridSearchCV

    from sktransfer.adaptation import PredictionEntropyScorer, SourceTargetShuffleSplit

    X, y, Xt, _ = affine_shift(4, n=60)
    scorer = PredictionEntropyScorer(diversity=1.0)
    search = GridSearchCV(
        FineTuneClassifier(body(), adaptation="coral", random_state=0),
        {"adaptation_weight": [0.0, 1.0]},
        scoring=scorer,
        cv=SourceTargetShuffleSplit(n_splits=1, random_state=0),
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores[0] != scores[1]
    assert search.best_params_["adaptation_weight"] == [0.0, 1.0][int(np.argmax(scores))]
    # The refit saw every row: the target rows adapted it and are still never a class.
    best = search.best_estimator_
    assert list(best.classes_) == [0, 1] and best.n_features_in_ == 2
    assert set(best.predict(Xt)) <= {0, 1}


@pytest.mark.parametrize("adaptation", ["dann", "coral"])
def test_adaptation_without_target_rows_warns_and_fine_tunes_on_the_source_rows(adaptation):
    """As the adaptation estimators do: a user who forgot sample_domain gets a warning and
    the model plain fine-tuning gives (the adaptation term needs both domains)."""
    from sktransfer.adaptation import NoTargetRowsWarning

    X, y, _, _ = affine_shift(0, n=30)
    Xs, ys = X[y >= 0], y[y >= 0]
    with pytest.warns(NoTargetRowsWarning, match="no target rows.*sample_domain < 0"):
        adapted = FineTuneClassifier(body(), adaptation=adaptation, random_state=0).fit(Xs, ys)
    plain = FineTuneClassifier(body(), random_state=0).fit(Xs, ys)
    np.testing.assert_array_equal(adapted.predict(Xs), plain.predict(Xs))


class MeanGap(AdaptationLoss):
    """A plugged-in adaptation term: the squared distance between the domains' mean
    features (a linear-kernel MMD)."""

    calls = 0

    def forward(self, zs, zt):
        MeanGap.calls += 1
        return (zs.mean(0) - zt.mean(0)).pow(2).sum()


def test_an_adaptation_loss_object_plugs_in_and_pulls_the_domains_together():
    X, y, Xt, _ = affine_shift(0, n=120)
    src = X[y >= 0]

    def mean_gap(clf):
        with torch.no_grad():
            m = clf.backbone_.module.eval()
            return (m(torch.from_numpy(src)).mean(0) - m(torch.from_numpy(Xt)).mean(0)).norm()

    MeanGap.calls = 0
    plugged = fit(MeanGap(16), X, y, 0, adaptation_weight=10.0)
    assert MeanGap.calls > 0
    assert mean_gap(plugged) < 0.5 * mean_gap(fit(None, X, y, 0))
    assert clone(plugged).adaptation is not plugged.adaptation  # clone copies the object


def test_dann_ramps_its_reversed_gradient_as_ganin_et_al():
    from sktransfer.training import DANNLoss

    loss = DANNLoss(4, ramp=True)
    expected = {0.0: 0.0, 0.1: 0.4621, 0.25: 0.8483, 0.5: 0.9866, 1.0: 0.9999}
    for p, lam in expected.items():
        loss.progress = p
        assert loss.reversal() == pytest.approx(lam, abs=1e-4)
    flat = DANNLoss(4)  # the default: full strength from the first step
    flat.progress = 0.0
    assert flat.reversal() == 1.0


def test_an_adaptation_term_sees_the_progress_of_the_steps():
    class Recording(AdaptationLoss):
        def __init__(self, n_features):
            super().__init__(n_features)
            self.seen = []

        def forward(self, zs, zt):
            self.seen.append(self.progress)
            return (zs.mean() - zt.mean()) ** 2

    X, y, _, _ = affine_shift(0, n=64)
    torch.manual_seed(0)
    clf = FineTuneClassifier(
        body(), adaptation=Recording(16), max_epochs=2, linear_probe=False, random_state=0
    ).fit(X, y)
    seen = clf.net_.criterion_.adaptation.seen
    # 128 rows a phase, batches of 32: 4 steps an epoch, 8 in all, progress k / 8
    assert seen[:3] == [0.0, 0.125, 0.25] and seen == sorted(seen) and max(seen) < 1
    assert clf.net_.criterion_.adaptation.progress == 1.0  # after the fit: full strength


def _bn_body():
    return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU())


@pytest.mark.parametrize("adaptation", ["dann", "coral"])
def test_a_body_whose_batchnorm_trained_ends_with_the_targets_statistics(adaptation):
    X, y, Xt, _ = affine_shift(0)
    torch.manual_seed(0)
    clf = FineTuneClassifier(_bn_body(), weights=None, adaptation=adaptation, random_state=0)
    clf.fit(X, y)
    assert clf.batchnorm_ == "train" and clf.target_batchnorm_ is True
    fitted = clf.backbone_.module
    linear, norm = (m for m in fitted.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d)))
    with torch.no_grad():
        h = linear(torch.from_numpy(X[y < 0]))  # the target rows, as the first layer sees them
    # BatchNorm's cumulative average: the mean over the fit's batches of 32 target rows
    chunks = torch.split(h, 32)
    mean = torch.stack([c.mean(0) for c in chunks]).mean(0)
    var = torch.stack([c.var(0) for c in chunks]).mean(0)
    np.testing.assert_allclose(norm.running_mean.numpy(), mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.running_var.numpy(), var.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("adaptation", ["dann", "coral"])
def test_pretrained_statistics_end_as_the_targets_with_the_sources_folded_in(
    adaptation, monkeypatch
):
    # The default for a pretrained body keeps its BatchNorm statistics in training
    # (batchnorm_ == "eval"); a fit with adaptation ends as AdaBN would adapt that model:
    # the source rows' statistics folded in, then the target rows' in their place.
    from sktransfer.training import _batchnorm

    folded = []
    fold = _batchnorm.fold_statistics
    monkeypatch.setattr(
        _batchnorm, "fold_statistics", lambda m, st: folded.append(st) or fold(m, st)
    )
    X, y, _, _ = affine_shift(0)
    torch.manual_seed(0)
    clf = FineTuneClassifier(_bn_body(), adaptation=adaptation, random_state=0).fit(X, y)
    assert clf.batchnorm_ == "eval" and clf.target_batchnorm_ is True
    assert clf.batchnorm_statistics_ is None  # they are the target's now, not pretrained
    linear, norm = (
        m for m in clf.backbone_.module.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))
    )
    with torch.no_grad():
        src, tgt = linear(torch.from_numpy(X[y >= 0])), linear(torch.from_numpy(X[y < 0]))
    # Folded first: the source rows' statistics (the 256 evenly spaced of 300 rows) ...
    ((name, (mean, var)),) = folded[0].items()
    rows = np.linspace(0, len(src) - 1, 256).astype(int)
    np.testing.assert_allclose(mean, src[rows].mean(0).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, src[rows].var(0, unbiased=False), rtol=1e-4, atol=1e-5)
    # ... then replaced by the target rows' (BatchNorm's mean over batches of 32).
    chunks = torch.split(tgt, 32)
    np.testing.assert_allclose(
        norm.running_mean.numpy(),
        torch.stack([c.mean(0) for c in chunks]).mean(0).numpy(),
        rtol=1e-4,
        atol=1e-5,
    )
    # AdaBN on this model has nothing to warn about: its statistics are the data's.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdaBN(clf).fit(X[y < 0])


def test_bodies_without_batchnorm_and_fits_without_adaptation_are_left_alone():
    X, y, _, _ = affine_shift(0)
    torch.manual_seed(0)
    none = FineTuneClassifier(body(), weights=None, adaptation="coral", random_state=0)
    assert none.fit(X, y).target_batchnorm_ is False
    plain = FineTuneClassifier(_bn_body(), random_state=0).fit(X[y >= 0], y[y >= 0])
    assert plain.target_batchnorm_ is False and plain.batchnorm_statistics_ is not None


def _first_norm(clf):
    return next(m for m in clf.backbone_.module.modules() if isinstance(m, nn.BatchNorm1d))


def test_a_warm_started_fit_and_partial_fit_end_with_the_targets_statistics_again():
    X, y, _, _ = affine_shift(0)
    torch.manual_seed(0)
    clf = FineTuneClassifier(
        _bn_body(), weights=None, adaptation="coral", warm_start=True, random_state=0
    ).fit(X, y)
    after_first = _first_norm(clf).running_mean.clone()
    clf.fit(X, y)  # continues: the statistics trained again on mixed batches
    assert clf.target_batchnorm_ is True
    assert not torch.equal(_first_norm(clf).running_mean, after_first)  # the new body's
    clf.partial_fit(X, y)
    assert clf.target_batchnorm_ is True


def test_frozen_blocks_and_a_fit_without_epochs_keep_their_statistics():
    X, y, _, _ = affine_shift(0)
    body = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16))
    torch.manual_seed(0)
    clf = FineTuneClassifier(body, weights=None, adaptation="coral", freeze=2, random_state=0).fit(
        X, y
    )
    norm = _first_norm(clf)  # in the frozen blocks: never trained, never re-estimated
    assert torch.equal(norm.running_mean, torch.zeros(16)) and clf.target_batchnorm_ is False
    none = FineTuneClassifier(_bn_body(), weights=None, adaptation="coral", max_epochs=0)
    assert none.set_params(random_state=0).fit(X, y).target_batchnorm_ is False
