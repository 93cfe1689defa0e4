"""One fit reads its input once: the source is built once and passed to every phase, and
the estimators that take a backbone share one declaration of its parameters."""

from __future__ import annotations

import inspect

import pytest
from conftest import TinyCNN
from torch import nn

import sktransfer
import sktransfer._finetune_base
import sktransfer.inputs as inputs
import sktransfer.inputs._images as images_mod
from sktransfer import (
    FeatureTransferClassifier,
    FineTuneClassifier,
    FineTuneRegressor,
    PretrainedFeatures,
)
from sktransfer._backbone_estimator import BACKBONE_DEFAULTS, BACKBONE_PARAMS, BackboneEstimator


class Spy:
    """Wraps ``owner.name`` and counts its calls (and the rows it was asked for)."""

    def __init__(self, monkeypatch, owner, name, rows=None):
        self.calls, self.rows = 0, []
        original = getattr(owner, name)

        def spy(*args, **kwargs):
            self.calls += 1
            if rows is not None:
                self.rows.extend(int(i) for i in rows(*args, **kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)


def test_pretrained_features_fit_transform_reads_each_image_file_once(image_files, monkeypatch):
    paths = image_files["grey"][:12]
    built = Spy(monkeypatch, images_mod.PathImages, "__init__")
    decoded = Spy(monkeypatch, images_mod.PathImages, "_decode", rows=lambda self, i: [i])
    keyed = Spy(monkeypatch, images_mod.PathImages, "_compute_keys", rows=lambda self, r: r)
    Z = PretrainedFeatures(TinyCNN(in_channels=1), image_size=8).fit_transform(paths)
    assert Z.shape == (12, 4)
    assert built.calls == 1  # every path checked (stat-ed) once
    assert sorted(decoded.rows) == list(range(12))  # every file decoded once
    assert sorted(keyed.rows) == list(range(12))  # every cache key computed once


def test_one_fine_tune_fit_validates_the_images_once(rgb_images, digits, monkeypatch):
    scans = Spy(monkeypatch, images_mod, "_check_pixel_values")
    sniffs = Spy(monkeypatch, sktransfer._finetune_base, "spec_modality")
    X, y = rgb_images[:24], digits[1][:24]
    FineTuneClassifier(TinyCNN(), image_size=16, random_state=0).fit(X, y)
    assert scans.calls == 1  # the full pixel-range scan, once per fit
    assert sniffs.calls == 1


@pytest.mark.parametrize("Est", [FineTuneClassifier, FineTuneRegressor, FeatureTransferClassifier])
def test_one_fit_on_a_table_validates_it_once(Est, monkeypatch, table):
    checks = [
        Spy(monkeypatch, module, "validate_data")
        for module in (inputs, sktransfer.feature_transfer, sktransfer._finetune_base)
        if hasattr(module, "validate_data")
    ]
    X, y = table
    est = Est(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), random_state=0)
    est.fit(X, y if Est is not FineTuneRegressor else X[:, 0])
    assert sum(c.calls for c in checks) == 1
    est.predict(X)
    assert sum(c.calls for c in checks) == 2  # and once per predict


def test_every_estimator_that_takes_a_backbone_declares_the_same_backbone_parameters():
    estimators = [
        cls
        for cls in (getattr(sktransfer, name) for name in sktransfer.__all__)
        if inspect.isclass(cls) and issubclass(cls, BackboneEstimator)
    ]
    assert len(estimators) >= 5
    assert set(BACKBONE_DEFAULTS) == set(BACKBONE_PARAMS)
    for cls in estimators:
        params = inspect.signature(cls.__init__).parameters
        for name, default in {**BACKBONE_DEFAULTS, **cls._backbone_defaults}.items():
            assert name in params, f"{cls.__name__} lacks {name}"
            assert params[name].default == default, f"{cls.__name__}.{name}"
        assert set(BACKBONE_PARAMS) <= set(cls._parameter_constraints)
