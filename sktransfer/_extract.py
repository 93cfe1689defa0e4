"""Run a frozen backbone over a source, batch by batch, through the feature cache."""

from __future__ import annotations

import functools
import hashlib
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._cache import feature_cache
from ._device import (
    autocast,
    autocast_dtype,
    halve_on_oom,
    is_oom,
    to_device,
    use_channels_last,
)
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
    progress=None,
) -> np.ndarray:
    """Features (len(rows), dim) float32 of ``source[rows]``; halves the batch on GPU OOM.
    ``progress`` (a tqdm bar, or None) advances by the rows of each batch."""
    module = backbone.module
    module.eval()
    channels_last = use_channels_last(device, backbone.is_conv)
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

    def run(batch_size):
        nonlocal out, done  # resumes after the rows already done
        for batch in _batches(
            source, rows[done:], batch_size, backbone, num_workers, device.type == "cuda"
        ):
            x = to_device(batch, device, channels_last=channels_last)
            with torch.inference_mode(), autocast(device, dtype):
                z = _call(module, x, backbone.name)
            z = z.float().cpu().numpy()
            if not np.isfinite(z).all():
                bad = int(rows[done + np.argmax(~np.isfinite(z).all(axis=1))])
                raise ValueError(_non_finite_message(backbone, bad, dtype))
            if done == 0 and out.shape != (len(rows), z.shape[1]):
                out = np.empty((len(rows), z.shape[1]), dtype=np.float32)
            out[done : done + len(z)] = z
            done += len(z)
            if progress is not None:
                progress.update(len(z))

    halve_on_oom(run, batch_size, device)
    if order is not None:
        restored = np.empty_like(out)
        restored[order] = out
        out = restored
    return out


def _non_finite_message(backbone: Backbone, row: int, dtype) -> str:
    # The inputs were checked (no NaN or infinity passes validation): the network made them.
    weights = [n for n, p in backbone.module.named_parameters() if not torch.isfinite(p).all()]
    why = (
        f"its parameters hold NaN or infinity ({', '.join(weights[:3])}"
        + (", ..." if len(weights) > 3 else "")
        + "): was it trained with a learning rate that diverged?"
        if weights
        else "the input is finite, so its forward computes them (a division by zero, a log "
        "of 0, an overflow)"
    )
    if dtype is not None:
        why += f"; it ran in {str(dtype).removeprefix('torch.')}: try precision='32'"
    return (
        f"backbone {backbone.name!r} returned NaN or infinity as the features of row {row}: {why}."
    )


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


def namespace_of(backbone: Backbone, device: torch.device, precision: str) -> str:
    """The cache namespace: the backbone's fingerprint (weights, architecture,
    preprocessing), the device type, the precision, and the code that runs it. The disk
    cache outlives the process, so a module class whose ``forward`` was edited since, or
    another torch, must not be served the old features."""
    h = hashlib.blake2b(digest_size=8)
    h.update(torch.__version__.encode())
    for cls in sorted({type(m) for m in backbone.module.modules()}, key=_qualname):
        h.update(_qualname(cls).encode())
        h.update(_forward_code(cls))
    return f"{backbone.fingerprint}-{device.type}-{precision}-{h.hexdigest()}"


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.lru_cache(maxsize=1024)
def _forward_code(cls) -> bytes:
    """The bytecode and constants of ``cls.forward``: stable across processes (no
    addresses), changed by any edit of the method's body."""
    if cls.__module__.startswith("torch."):
        return b""  # torch's own modules: covered by its version
    code = getattr(getattr(cls, "forward", None), "__code__", None)
    return b"" if code is None else _code_bytes(code)


def _code_bytes(code) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode()]
    for c in code.co_consts:  # nested functions are code objects: their repr has an address
        parts.append(_code_bytes(c) if hasattr(c, "co_code") else repr(c).encode())
    return b"".join(parts)


class _Progress:
    """A tqdm bar over the rows to extract (notebook or terminal), then one line with
    the rows per second; nothing at all when ``verbose`` is 0."""

    def __init__(self, verbose, name: str, total: int, n_rows: int):
        self.verbose, self.name, self.n_rows = verbose, name, n_rows
        self.done, self.bar = 0, None
        self.start = time.perf_counter()
        if verbose and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=name, unit="row", file=sys.stderr, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if not self.verbose:
            return
        if self.done:
            seconds = time.perf_counter() - self.start
            rate = self.done / seconds if seconds > 0 else float("inf")
            msg = (
                f"{self.name}: {self.done} rows extracted in {seconds:.1f} s "
                f"({rate:.1f} rows/s); {self.n_rows - self.done} from the cache"
            )
        else:
            msg = f"{self.name}: {self.n_rows} rows, all from the cache"
        print(msg, file=sys.stderr)


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
    verbose=0,
) -> np.ndarray:
    """Features of ``source[rows]`` (all rows by default); rows seen before (same
    content, same backbone and code, device type and precision) come from the cache:
    this process's memory, or the shared directory (``cache=True`` or a path)."""
    kw = dict(batch_size=batch_size, device=device, precision=precision, num_workers=num_workers)
    n_rows = len(source) if rows is None else len(rows)
    if not cache:
        rows = np.arange(len(source)) if rows is None else np.asarray(rows)
        progress = _Progress(verbose, backbone.name, len(rows), n_rows)
        out = forward_rows(backbone, source, rows, progress=progress, **kw)
        progress.close()
        return out
    directory = feature_cache.resolve(cache)
    namespace = namespace_of(backbone, device, precision)
    if rows is None:
        rows, keys = np.arange(len(source)), source.row_keys()
    else:
        rows = np.asarray(rows)
        keys = source.row_keys(rows)
    # A row repeated within X is computed once: look up and compute unique keys only.
    uniq = list(dict.fromkeys(keys))
    found = feature_cache.get(namespace, uniq, directory)
    todo = [k for k in uniq if k not in found]
    progress = _Progress(verbose, backbone.name, len(todo), n_rows)
    if todo:
        first = {}
        for r, k in zip(rows, keys):
            first.setdefault(k, r)

        def compute(wanted):
            idx = np.array([first[k] for k in wanted])
            return forward_rows(backbone, source, idx, progress=progress, **kw)

        found.update(feature_cache.fill(namespace, todo, compute, directory))
    progress.close()
    if not keys:
        return np.zeros((0, backbone.dim or 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
