"""Backbone specs resolve to a module, its own preprocessing, and frozen features."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
import torchvision
from conftest import TinyCNN
from torch import nn

import sktransfer.backbones as backbones
import sktransfer.backbones._registry as registry
from sktransfer import (
    Backbone,
    PretrainedFeatures,
    list_backbones,
    register_backbone,
    resolve_backbone,
)
from sktransfer.backbones import param_blocks
from sktransfer.backbones._base import pool
from sktransfer.inputs import ImagePreprocess


def seeded_resnet18(seed=0):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None)


@pytest.fixture(scope="module")
def small_rgb():
    return np.random.RandomState(0).rand(6, 20, 20, 3).astype(np.float32)


# --------------------------------------------------------------------------- preprocessing


def test_efficientnet_lite0_preprocessing_comes_from_its_weights():
    bb = resolve_backbone("efficientnet_lite0")
    assert bb.preprocess == ImagePreprocess(
        crop=(224, 224), resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        interpolation="bicubic", channels=3,
    )  # fmt: skip


def test_image_size_overrides_the_crop_and_keeps_the_resize_ratio():
    bb = resolve_backbone("efficientnet_lite0", image_size=32)
    assert (bb.preprocess.crop, bb.preprocess.resize) == ((32, 32), round(32 * 256 / 224))
    assert bb.preprocess.mean == (0.5, 0.5, 0.5)


def test_resnet18_without_weights_keeps_imagenet_preprocessing_from_the_weights_metadata():
    t = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    bb = resolve_backbone("resnet18", weights=None)
    assert bb.preprocess == ImagePreprocess(
        crop=(224, 224), resize=256, mean=tuple(t.mean), std=tuple(t.std),
        interpolation="bilinear", channels=3,
    )  # fmt: skip
    assert bb.preprocess.mean == (0.485, 0.456, 0.406)


def test_packaged_efficientnet_lite0_recognises_a_cat():
    from skimage.data import chelsea

    pf = PretrainedFeatures("efficientnet_lite0", cache=False).fit(chelsea()[None])
    logits = pf.backbone_.head(torch.from_numpy(pf.transform(chelsea()[None])))
    assert 281 <= int(logits.argmax()) <= 285  # ImageNet's domestic cats


def test_timm_names_take_preprocessing_from_timm_config():
    bb = resolve_backbone("timm/resnet18", weights=None, random_state=0)
    assert bb.preprocess.crop == (224, 224)
    assert bb.preprocess.mean == (0.485, 0.456, 0.406)


# --------------------------------------------------------------------------- weights


def test_random_init_is_reproducible_with_random_state(small_rgb):
    def feats(seed):
        pf = PretrainedFeatures("resnet18", weights=None, image_size=16, random_state=seed)
        return pf.fit_transform(small_rgb)

    np.testing.assert_array_equal(feats(0), feats(0))
    assert not np.allclose(feats(0), feats(1))


def test_weights_from_a_state_dict_file(tmp_path, small_rgb):
    model = seeded_resnet18()
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    pf = PretrainedFeatures("resnet18", weights=str(tmp_path / "resnet18.pth"), image_size=16)
    Z = pf.fit_transform(small_rgb)
    model.fc = nn.Identity()
    with torch.no_grad():
        x = pf.backbone_.preprocess(torch.from_numpy(small_rgb).permute(0, 3, 1, 2))
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(Z, expected, rtol=1e-4, atol=1e-5)


def test_a_state_dict_of_another_architecture_is_refused(tmp_path, small_rgb):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(
        ValueError,
        match=r"r34.pth' do not fit torchvision's 'resnet18': "
        r"missing keys \[\], unexpected keys \['layer1.2",
    ):
        PretrainedFeatures("resnet18", weights=str(tmp_path / "r34.pth")).fit(small_rgb)


def test_a_state_dict_with_other_shapes_names_the_tensors_and_both_shapes(tmp_path, small_rgb):
    torch.save(
        torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), tmp_path / "r.pth"
    )
    with pytest.raises(ValueError) as err:
        PretrainedFeatures("resnet18", weights=str(tmp_path / "r.pth")).fit(small_rgb)
    assert str(err.value) == (
        f"weights={str(tmp_path / 'r.pth')!r} do not fit torchvision's 'resnet18': missing keys "
        "[], unexpected keys [], shapes that differ (file vs model): fc.weight (10, 512) vs "
        "(1000, 512), fc.bias (10,) vs (1000,). The file must hold the state_dict of the whole "
        "classification model."
    )


def test_a_file_holding_something_else_than_a_state_dict_is_named(tmp_path, small_rgb):
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="tensor.pth' holds a Tensor, not a state_dict"):
        PretrainedFeatures("resnet18", weights=str(tmp_path / "tensor.pth")).fit(small_rgb)


def test_an_unreadable_weights_file_is_named(tmp_path, small_rgb):
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth': cannot read a state_dict from that file"):
        PretrainedFeatures("resnet18", weights=str(tmp_path / "junk.pth")).fit(small_rgb)


def test_an_unknown_weights_name_lists_the_choices(small_rgb):
    expected = (
        "weights='IMAGENET9K' is neither a file nor a weights name of 'resnet18'; "
        "choose from ['DEFAULT', 'IMAGENET1K_V1'], None, or a state_dict path."
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        PretrainedFeatures("resnet18", weights="IMAGENET9K").fit(small_rgb)


def test_offline_pretrained_torchvision_weights_fail_fast_naming_the_alternatives(
    offline, small_rgb
):
    pf = PretrainedFeatures("resnet18")  # nothing is loaded or checked in __init__
    with pytest.raises(RuntimeError, match="cannot be reached") as err:
        pf.fit(small_rgb)
    message = str(err.value)
    assert "this machine is offline" in message
    for alternative in (
        "weights=None",
        "weights='path/to/state_dict.pth'",
        "backbone='efficientnet_lite0'",
    ):
        assert alternative in message


def test_offline_pretrained_timm_weights_fail_fast(offline, monkeypatch, small_rgb):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(
        RuntimeError, match="timm's pretrained weights for 'resnet18'.*weights=None"
    ):
        PretrainedFeatures("timm/resnet18").fit(small_rgb)


# --------------------------------------------------------------------------- specs


def test_a_users_module_is_never_mutated(small_rgb):
    model = seeded_resnet18()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pf = PretrainedFeatures(model, layer=None, image_size=16).fit(small_rgb)
    pf.transform(small_rgb)
    assert isinstance(model.fc, nn.Linear) and model.training
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ours = {p.data_ptr() for p in pf.backbone_.module.parameters()}
    assert ours.isdisjoint(p.data_ptr() for p in model.parameters())


def test_layer3_with_pooling_on_a_torchvision_model(small_rgb):
    model = seeded_resnet18()
    pf = PretrainedFeatures(model, layer="layer3", pooling="avgmax", image_size=16, cache=False)
    Z = pf.fit_transform(small_rgb)
    body = nn.Sequential(*list(model.children())[:7]).eval()  # conv1 ... layer3
    x = torch.from_numpy(small_rgb).permute(0, 3, 1, 2)
    x = pf.backbone_.preprocess(x)
    with torch.no_grad():
        maps = body(x)
    expected = torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1)
    assert Z.shape == (6, 512)
    np.testing.assert_allclose(Z, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_a_misspelt_layer_suggests_names(small_rgb):
    with pytest.raises(
        ValueError,
        match=r"layer='layer33' is not a node of ResNet; did you mean "
        r"one of \['layer3'",
    ):
        PretrainedFeatures("resnet18", weights=None, layer="layer33").fit(small_rgb)


def test_a_fitted_estimator_as_backbone_gives_the_same_features(small_rgb):
    source = PretrainedFeatures("resnet18", weights=None, image_size=16, random_state=0)
    source.fit(small_rgb)
    target = PretrainedFeatures(source, cache=False).fit(small_rgb)
    np.testing.assert_allclose(target.transform(small_rgb), source.transform(small_rgb), atol=1e-5)
    assert target.backbone_.module is not source.backbone_.module


def test_an_unknown_name_suggests_close_ones():
    with pytest.raises(
        ValueError,
        match=r"backbone='resnet81' is not a known model name; "
        r"did you mean \['resnet18'",
    ):
        resolve_backbone("resnet81")


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (nn.Linear, TypeError, "backbone=Linear is a class; pass an instance, e.g. Linear()."),
        (
            PretrainedFeatures("resnet18"),
            ValueError,
            "backbone=PretrainedFeatures(...) is not fitted; fit it on the source task first",
        ),
        (42, TypeError, "backbone=42 (int) is not a backbone spec"),
    ],
    ids=["class", "unfitted_estimator", "int"],
)
def test_specs_that_are_not_backbones_are_explained(spec, error, message):
    with pytest.raises(error, match=re.escape(message)):
        resolve_backbone(spec)


def test_list_backbones_starts_with_the_packaged_models():
    assert list_backbones()[:3] == [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
    assert "resnet18" in list_backbones(include_torchvision=True)
    assert "resnet18" not in list_backbones()


def test_a_registered_backbone_is_usable_by_name(monkeypatch, small_rgb):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    calls = []

    def build(weights="DEFAULT", layer=None, pooling="avg", random_state=None):
        calls.append(weights)
        return Backbone(
            module=backbones.Pooled(TinyCNN(), pooling),
            modality="image",
            preprocess=ImagePreprocess(channels=3),
            name="tiny",
        )

    register_backbone("tiny", build, description="a test net")
    assert "tiny" in list_backbones() and calls == []  # built in fit, not at registration
    pf = PretrainedFeatures("tiny").fit(small_rgb)
    assert pf.transform(small_rgb).shape == (6, 4) and calls == ["DEFAULT"]
    assert list(pf.get_feature_names_out()[:2]) == ["tiny_0", "tiny_1"]


def test_register_backbone_refuses_an_unknown_modality():
    with pytest.raises(ValueError, match="modality='audio' must be 'image', 'tabular' or 'text'"):
        register_backbone("x", lambda **kw: None, modality="audio")


# --------------------------------------------------------------------------- frozen


def test_frozen_backbone_runs_in_eval_mode_and_batchnorm_statistics_do_not_move(small_rgb):
    pf = PretrainedFeatures("resnet18", weights=None, image_size=16, random_state=0, cache=False)
    pf.fit(small_rgb)
    buffers = {k: v.clone() for k, v in pf.backbone_.module.state_dict().items()}
    one = pf.set_params(batch_size=1).transform(small_rgb)
    six = pf.set_params(batch_size=6).transform(small_rgb)
    assert not pf.backbone_.module.training
    assert all(torch.equal(v, pf.backbone_.module.state_dict()[k]) for k, v in buffers.items())
    np.testing.assert_allclose(one, six, rtol=1e-4, atol=1e-5)  # no batch statistics used


# --------------------------------------------------------------------------- pieces


def test_pooling_of_feature_maps_and_token_sequences():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pool(maps, "avg"), maps.mean((2, 3)))
    assert torch.equal(pool(maps, "max"), maps[..., 1, 1])
    assert pool(maps, "avgmax").shape == (2, 6)
    assert pool(maps, "flatten").shape == (2, 12)
    tokens = torch.randn(2, 5, 4)
    assert torch.equal(pool(tokens, "token"), tokens[:, 0])
    assert torch.equal(pool(tokens, "avg"), tokens.mean(1))


def test_param_blocks_cover_every_parameter_once_in_order():
    model = seeded_resnet18()
    blocks = param_blocks(model)
    flat = [n for b in blocks for n in b]
    assert flat == [n for n, _ in model.named_parameters()]
    assert blocks[0] == ["conv1.weight"] and blocks[-1] == ["fc.weight", "fc.bias"]


def test_pickling_a_cpu_backbone_keeps_its_module():
    bb = Backbone(module=TinyCNN(), modality="image", preprocess=None, name="tiny")
    assert bb.__getstate__()["module"] is bb.module
    clone = pickle.loads(pickle.dumps(bb))
    assert torch.equal(clone.module.conv.weight, bb.module.conv.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pickling_a_gpu_backbone_moves_it_to_the_cpu_without_touching_the_original():
    bb = Backbone(module=TinyCNN().cuda(), modality="image", preprocess=None, name="tiny")
    state = bb.__getstate__()
    assert all(t.device.type == "cpu" for t in state["module"].state_dict().values())
    assert bb.module.conv.weight.device.type == "cuda"


def test_pickling_a_backbone_off_the_cpu_copies_it_to_the_cpu(monkeypatch):
    import sktransfer.backbones._base as base

    bb = Backbone(module=TinyCNN(), modality="image", preprocess=None, name="tiny")
    monkeypatch.setattr(base, "on_cpu", lambda module: False)  # as if it lived on a GPU
    state = bb.__getstate__()
    assert state["module"] is not bb.module
    assert torch.equal(state["module"].conv.weight, bb.module.conv.weight)


def test_layer_features_from_four_threads_match_one_thread(small_rgb):
    import threading

    pf = PretrainedFeatures("resnet18", weights=None, layer="layer2", image_size=16,
                            random_state=0, cache=False).fit(small_rgb)  # fmt: skip
    expected = pf.transform(small_rgb)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(pf.transform(small_rgb))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for Z in results:
        np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)


def test_a_layer_backbone_round_trips_through_pickle(small_rgb):
    pf = PretrainedFeatures("resnet18", weights=None, layer="layer2", image_size=16,
                            random_state=0, cache=False).fit(small_rgb)  # fmt: skip
    loaded = pickle.loads(pickle.dumps(pf))
    np.testing.assert_array_equal(loaded.transform(small_rgb), pf.transform(small_rgb))


def test_seed_gives_the_same_draws_and_leaves_the_callers_stream_alone():
    from sktransfer._torch import Seed

    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    with Seed(0):
        first = torch.rand(3)
    with Seed(0):
        second = torch.rand(3)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_next)  # as if the blocks had not run


def test_a_missing_optional_package_names_the_pip_install():
    from sktransfer._torch import require

    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[timm\]'"):
        require("sktransfer_no_such_package", "timm")
