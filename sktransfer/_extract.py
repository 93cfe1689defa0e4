"""Run a frozen backbone over a source, batch by batch, through the feature cache."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._cache import feature_cache
from ._device import autocast, autocast_dtype, is_oom, to_device
from .backbones import Backbone


class _Batches(Dataset):
    """Item ``b`` is the whole preprocessed batch ``b``: lets DataLoader workers decode files."""

    def __init__(self, source, rows, batch_size, backbone: Backbone):
        self.source, self.rows, self.batch_size, self.backbone = source, rows, batch_size, backbone

    def __len__(self):
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b):
        idx = self.rows[b * self.batch_size : (b + 1) * self.batch_size]
        batch = self.source.load(idx, self.backbone.preprocess)
        if self.backbone.collate is not None:
            batch = self.backbone.collate(batch)
        return batch


def _batches(source, rows, batch_size, backbone, num_workers, pin):
    ds = _Batches(source, rows, batch_size, backbone)
    if num_workers == 0:
        return (ds[b] for b in range(len(ds)))
    return iter(
        DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin)
    )


def forward_rows(backbone: Backbone, source, rows: np.ndarray, *, batch_size: int,
                 device: torch.device, precision: str = "auto", num_workers: int = 0) -> np.ndarray:
    """Features (len(rows), dim) float32 of ``source[rows]``; halves the batch on GPU OOM."""
    module = backbone.module
    module.eval()
    channels_last = device.type == "cuda" and backbone.is_conv
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device, precision)
    out: list[np.ndarray] = []
    done = 0
    while done < len(rows):
        try:
            it = _batches(source, rows[done:], batch_size, backbone, num_workers, device.type == "cuda")
            for batch in it:
                x = to_device(batch, device, channels_last=channels_last)
                with torch.inference_mode(), autocast(device, dtype):
                    z = _call(module, x, backbone.name)
                out.append(z.float().cpu().numpy())
                done += len(out[-1])
        except RuntimeError as exc:
            if not (is_oom(exc) and device.type == "cuda" and batch_size > 1):
                raise
            batch_size //= 2
            torch.cuda.empty_cache()
            warnings.warn(f"CUDA out of memory; retrying with batch_size={batch_size}.", stacklevel=2)
    if not out:
        return np.zeros((0, backbone.dim or 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def _call(module, x, name):
    try:
        z = module(x)
    except RuntimeError as exc:
        if is_oom(exc):
            raise
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"backbone {name!r} failed on a batch of shape {shape}: {exc}") from None
    if z.ndim != 2:
        raise ValueError(
            f"backbone {name!r} returned features of shape {tuple(z.shape)}; expected (batch, dim)."
        )
    return z


def extract(backbone: Backbone, source, *, batch_size: int, device: torch.device,
            precision: str = "auto", num_workers: int = 0, cache=True) -> np.ndarray:
    """Features of every row of ``source``; rows seen before (same content, same backbone
    fingerprint, preprocessing, device type and precision) come from the cache."""
    n = len(source)
    if not cache:
        return forward_rows(backbone, source, np.arange(n), batch_size=batch_size, device=device,
                            precision=precision, num_workers=num_workers)
    directory = cache if isinstance(cache, str) else None
    namespace = f"{backbone.fingerprint}-{device.type}-{precision}"
    keys = source.row_keys()
    # Duplicate rows within X are computed once, too.
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    uniq = list(first.values())
    found, missing = feature_cache.get(namespace, [keys[i] for i in uniq], directory)
    if missing:
        rows = np.array([uniq[j] for j in missing])
        new = forward_rows(backbone, source, rows, batch_size=batch_size, device=device,
                           precision=precision, num_workers=num_workers)
        feature_cache.put(namespace, [keys[r] for r in rows], new, directory)
        found.update(zip(missing, new))
    feats = np.empty((n, backbone.dim), dtype=np.float32)
    for j, u in enumerate(uniq):
        feats[u] = found[j]
    for i, k in enumerate(keys):  # duplicates take their first occurrence's row
        if first[k] != i:
            feats[i] = feats[first[k]]
    return feats
