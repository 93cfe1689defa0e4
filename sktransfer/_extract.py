"""Run a frozen backbone over a source, batch by batch, through the feature cache."""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._cache import feature_cache
from ._device import autocast, autocast_dtype, is_oom, to_device
from .backbones import Backbone


class _Failed:
    """An input error raised in a DataLoader worker, carried back as a value so that
    the user sees our message, not torch's wrapped worker traceback."""

    def __init__(self, exc: Exception):
        self.exc = exc


class _Batches(Dataset):
    """Item ``b`` is the whole preprocessed batch ``b``: lets DataLoader workers decode
    files. It holds the source and preprocessing only, never the model, so workers
    started by spawn or forkserver do not receive a copy of the weights."""

    def __init__(self, source, rows, batch_size, preprocess, collate):
        self.source, self.rows, self.batch_size = source, rows, batch_size
        self.preprocess, self.collate = preprocess, collate

    def __len__(self):
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b):
        idx = self.rows[b * self.batch_size : (b + 1) * self.batch_size]
        batch = self.source.load(idx, self.preprocess)
        return self.collate(batch) if self.collate is not None else batch


class _WorkerBatches(_Batches):
    def __getitem__(self, b):
        try:
            return super().__getitem__(b)
        except (ValueError, TypeError, OSError) as exc:
            return _Failed(exc)


def _batches(source, rows, batch_size, backbone: Backbone, num_workers, pin):
    args = (source, rows, batch_size, backbone.preprocess, backbone.collate)
    if num_workers == 0:
        ds = _Batches(*args)
        yield from (ds[b] for b in range(len(ds)))
        return
    loader = DataLoader(
        _WorkerBatches(*args),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin,
    )
    for batch in loader:
        if isinstance(batch, _Failed):
            raise batch.exc
        yield batch


def forward_rows(
    backbone: Backbone,
    source,
    rows: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
    num_workers: int = 0,
) -> np.ndarray:
    """Features (len(rows), dim) float32 of ``source[rows]``; halves the batch on GPU OOM."""
    module = backbone.module
    module.eval()
    channels_last = device.type == "cuda" and backbone.is_conv
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device, precision)
    order = None
    lengths = getattr(source, "lengths", None)
    if lengths is not None and len(rows) > batch_size:
        # As sentence-transformers' encode does: batches of similar lengths pad less.
        order = np.argsort(-lengths(rows), kind="stable")
        rows = rows[order]
    # Filled in place once the first batch gives the width: the peak is one copy of
    # the result, not a list of batches plus their concatenation.
    out = np.zeros((0, backbone.dim or 0), dtype=np.float32)
    done = 0
    while done < len(rows):
        try:
            for batch in _batches(
                source, rows[done:], batch_size, backbone, num_workers, device.type == "cuda"
            ):
                x = to_device(batch, device, channels_last=channels_last)
                with torch.inference_mode(), autocast(device, dtype):
                    z = _call(module, x, backbone.name)
                z = z.float().cpu().numpy()
                if done == 0 and out.shape != (len(rows), z.shape[1]):
                    out = np.empty((len(rows), z.shape[1]), dtype=np.float32)
                out[done : done + len(z)] = z
                done += len(z)
        except RuntimeError as exc:
            if not (is_oom(exc) and device.type == "cuda" and batch_size > 1):
                raise
            batch_size //= 2
            torch.cuda.empty_cache()
            warnings.warn(
                f"CUDA out of memory; retrying with batch_size={batch_size}.", stacklevel=2
            )
    if order is not None:
        restored = np.empty_like(out)
        restored[order] = out
        out = restored
    return out


def _call(module, x, name):
    try:
        z = module(x)
    except RuntimeError as exc:
        if is_oom(exc):
            raise
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"backbone {name!r} failed on a batch of shape {shape}: {exc}") from None
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"backbone {name!r} returned a {type(z).__name__}; expected a tensor.")
    if z.ndim != 2:
        raise ValueError(
            f"backbone {name!r} returned features of shape {tuple(z.shape)}; expected (batch, dim)."
        )
    return z


def extract(
    backbone: Backbone,
    source,
    rows=None,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
    num_workers: int = 0,
    cache=True,
) -> np.ndarray:
    """Features of ``source[rows]`` (all rows by default); rows seen before (same
    content, same backbone fingerprint, device type and precision) come from the cache."""
    kw = dict(batch_size=batch_size, device=device, precision=precision, num_workers=num_workers)
    if not cache:
        rows = np.arange(len(source)) if rows is None else np.asarray(rows)
        return forward_rows(backbone, source, rows, **kw)
    directory = None if isinstance(cache, bool) else os.fspath(cache)
    namespace = f"{backbone.fingerprint}-{device.type}-{precision}"
    if rows is None:
        rows, keys = np.arange(len(source)), source.row_keys()
    else:
        rows = np.asarray(rows)
        keys = source.row_keys(rows)
    # A row repeated within X is computed once: look up and compute unique keys only.
    uniq = list(dict.fromkeys(keys))
    found = feature_cache.get(namespace, uniq, directory)
    todo = [k for k in uniq if k not in found]
    if todo:
        first = {}
        for r, k in zip(rows, keys):
            first.setdefault(k, r)
        new = forward_rows(backbone, source, np.array([first[k] for k in todo]), **kw)
        feature_cache.put(namespace, todo, new, directory)
        found.update(zip(todo, new))
    if not keys:
        return np.zeros((0, backbone.dim or 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
