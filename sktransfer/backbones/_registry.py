"""The backbone registry: names that ``backbone=`` takes, and the builders behind them.

The packaged offline models are registered at the bottom of this module; a newcomer's
backbone is one ``register_backbone(name, builder, modality=...)`` call (see
``docs/design.md``, "Where a newcomer adds a backbone").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._base import Backbone
from ._text import MINILM, build_minilm
from ._vision import build_efficientnet_lite, torchvision_names


@dataclass(frozen=True)
class Entry:
    """A registered backbone: how to build it, and what input it takes (known unbuilt)."""

    builder: Callable[..., Backbone]
    modality: str
    description: str


_REGISTRY: dict[str, Entry] = {}


def register_backbone(
    name: str, builder: Callable[..., Backbone], *, modality: str = "image", description: str = ""
) -> None:
    """Register ``builder`` under ``name`` so that ``backbone=name`` works everywhere.

    Parameters
    ----------
    name : str
        The name estimators take as ``backbone=``. Registering an existing name
        replaces it.
    builder : callable
        ``builder(weights=..., layer=..., pooling=..., random_state=...)`` returns a
        ``Backbone`` (text builders also get ``max_length=`` when the user sets it);
        it is called in ``fit``, never at import or in ``__init__``.
    modality : {"image", "tabular", "text"}, default="image"
        What input the backbone takes, known without building it.
    description : str, default=""
        One line for the user (where the weights come from, what they were trained on).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sktransfer import Backbone, PretrainedFeatures, list_backbones, register_backbone
    >>> def build_projection(weights="DEFAULT", layer=None, pooling="avg", random_state=None):
    ...     return Backbone(module=nn.Linear(4, 2), modality="tabular", preprocess=None,
    ...                     name="projection")
    >>> register_backbone("projection", build_projection, modality="tabular")
    >>> "projection" in list_backbones()
    True
    >>> features = PretrainedFeatures("projection").fit(np.ones((3, 4)))
    >>> features.get_feature_names_out()
    array(['projection_0', 'projection_1'], dtype=object)
    """
    if modality not in ("image", "tabular", "text"):
        raise ValueError(f"modality={modality!r} must be 'image', 'tabular' or 'text'.")
    _REGISTRY[name] = Entry(builder, modality, description)


def registered(name) -> Entry | None:
    """The registry's entry for ``name``, or None when no backbone is registered under it.

    Re-registering a name gives a new entry: the feature cache and the backbone templates
    tell the two builders apart by it.
    """
    return _REGISTRY.get(name) if isinstance(name, str) else None


def list_backbones(*, include_torchvision: bool = False) -> list[str]:
    """Registered names (the packaged, offline models first); torchvision's on request.

    Parameters
    ----------
    include_torchvision : bool, default=False
        Also list torchvision's classification models (their weights download on first
        use, so they need a network or a filled torch hub cache).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from sktransfer import list_backbones
    >>> list_backbones()[:4]
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2', 'all-MiniLM-L6-v2']

    ``list_backbones(include_torchvision=True)`` adds ``"resnet18"`` and the rest of
    torchvision's models (importing ``torchvision.models`` takes a few seconds).
    """
    names = list(_REGISTRY)
    if include_torchvision:
        names += [n for n in torchvision_names() if n not in _REGISTRY]
    return names


for _v in (0, 1, 2):
    register_backbone(
        f"efficientnet_lite{_v}",
        build_efficientnet_lite(_v),
        description=f"EfficientNet-Lite{_v}, ImageNet-1k, packaged offline (sktransfer[assets])",
    )


for _name in (MINILM, f"sentence-transformers/{MINILM}"):
    register_backbone(
        _name,
        build_minilm,
        modality="text",
        description="all-MiniLM-L6-v2 sentence encoder (384-d), offline (sktransfer[assets])",
    )
