"""The image-size rule: images whose shorter side is under 96 px are fed at 160 px, not
the weights' 224 (issue 20, item 3; measured in docs/feature_transfer.md "Image size")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sktransfer import Backbone, FeatureTransferClassifier, FineTuneClassifier, PretrainedFeatures
from sktransfer.inputs import ImagePreprocess


def _features(X, **params):
    return PretrainedFeatures("efficientnet_lite0", cache=False, **params).fit(X)


def test_small_images_are_fed_at_160_px_and_the_verbose_line_says_why(digits, capsys):
    X, _ = digits  # 8 x 8 px
    pf = _features(X[:4], verbose=1)
    assert pf.image_size_ == 160
    assert pf.backbone_.preprocess.crop == (160, 160)
    assert pf.backbone_.preprocess.resize == 183  # the weights' resize/crop ratio, 256/224
    out = capsys.readouterr().out
    assert "image_size_=160" in out and "shorter side is 8 px" in out and "224 px" in out


def test_the_rule_computes_what_image_size_160_computes(digits):
    X, _ = digits
    np.testing.assert_array_equal(
        _features(X[:4]).transform(X[:4]), _features(X[:4], image_size=160).transform(X[:4])
    )


def test_images_of_96_px_and_more_keep_the_weights_size():
    X = np.random.RandomState(0).randint(0, 256, (2, 96, 300, 3), dtype=np.uint8)
    assert _features(X).image_size_ == 224


def test_an_explicit_image_size_is_kept_and_nothing_is_said(digits, capsys):
    pf = _features(digits[0][:2], image_size=32, verbose=1)
    assert pf.image_size_ == 32
    assert "image_size_" not in capsys.readouterr().out
    assert _features(digits[0][:2], image_size=(48, 64)).image_size_ == (48, 64)


@pytest.mark.parametrize("kind", ["pil", "path", "list"])
def test_the_rule_reads_the_size_of_pil_images_files_and_lists(kind, tmp_path, digits):
    X = np.repeat(digits[0][:3, :, :, None], 3, axis=3)  # 8 x 8 RGB
    big = np.zeros((120, 100, 3), np.uint8)
    rows = [*X, big]
    if kind == "pil":
        rows = [Image.fromarray(x) for x in rows]
    elif kind == "path":
        paths = []
        for i, x in enumerate(rows):
            paths.append(tmp_path / f"{i}.png")
            Image.fromarray(x).save(paths[-1])
        rows = paths
    # The shorter side of the largest image decides: one image of 100 px keeps 224.
    assert _features(rows, image_size=None).image_size_ == 224
    assert _features(rows[:3]).image_size_ == 160


def test_the_rule_never_feeds_more_than_the_weights_own_size(digits):
    """A backbone trained at 64 px is fed at 64 px, not enlarged to 160."""
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    pre = ImagePreprocess(crop=(64, 64), resize=73, mean=(0.5,) * 3, std=(0.5,) * 3)
    bb = Backbone(module=module, modality="image", preprocess=pre, name="tiny")
    pf = PretrainedFeatures(bb, cache=False).fit(digits[0][:2])
    assert pf.image_size_ == 64


def test_tabular_and_module_backbones_have_no_image_size(table, digits):
    X, _ = table
    assert PretrainedFeatures(nn.Sequential(nn.Linear(X.shape[1], 3))).fit(X).image_size_ is None
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert PretrainedFeatures(conv).fit(digits[0][:2]).image_size_ is None


def test_the_estimators_report_the_size_they_used(digits):
    X, y = digits
    clf = FeatureTransferClassifier("efficientnet_lite0", cache=False).fit(X[:12], y[:12])
    assert clf.image_size_ == 160
    ft = FineTuneClassifier("efficientnet_lite0", max_epochs=0, cache=False, random_state=0)
    assert ft.fit(X[:12], y[:12]).image_size_ == 160
    assert ft.backbone_.preprocess.crop == (160, 160)
    with torch.no_grad():  # the fitted model predicts at the size it was fitted at
        assert ft.predict_proba(X[:3]).shape == (3, 4)


def test_a_fitted_source_keeps_the_size_it_was_fitted_at(digits):
    source = _features(digits[0][:2], image_size=48)
    assert PretrainedFeatures(source, cache=False).fit(digits[0][:2]).image_size_ == 48
    chosen = _features(digits[0][:2])
    assert PretrainedFeatures(chosen, cache=False).fit(digits[0][:2]).image_size_ == 160
