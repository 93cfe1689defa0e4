"""Device, precision and memory-layout choices, made once and in one place."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

PRECISIONS = ("auto", "32", "bf16", "16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else Apple's MPS, else the CPU."""
    if device == "auto" or device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:1')."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; use device='auto'."
        )
    if dev.type == "mps" and not _mps_available():
        raise ValueError(
            f"device={device!r} but Apple's MPS is not available on this machine (it needs "
            "a Mac with Apple silicon and a torch built for it); use device='auto'."
        )
    if dev.type == "meta":
        raise ValueError(
            f"device={device!r} holds shapes, not numbers: nothing can be computed on it. Use "
            "device='auto', 'cpu' or 'cuda'."
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        backend = getattr(torch, dev.type, None)  # torch.xpu, torch.mtia, ...
        if not getattr(backend, "is_available", lambda: False)():
            raise ValueError(
                f"device={device!r} is not available on this machine; use device='auto', "
                "'cpu' or 'cuda'."
            )
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype, or None for full float32.

    ``"auto"``: bf16 on CUDA GPUs that support it, fp16 on older ones, float32
    on the CPU (CPU autocast is slower than float32 on most machines).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {PRECISIONS}.")
    if precision == "32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


CHANNELS_LAST_ENV = "SKTRANSFER_CHANNELS_LAST"
# channels_last on the CPU: measured by benchmarks/bench_memory_format.py (see
# docs/finetuning.md, "Memory layout on the CPU"); the environment variable overrides it
# ("1" or "0").
CPU_CHANNELS_LAST = True


def use_channels_last(device: torch.device, is_conv: bool) -> bool:
    """Whether a convolutional body runs in the channels_last memory format (extraction,
    training, predict): on CUDA always (its tensor cores want it); on the CPU
    ``CPU_CHANNELS_LAST`` unless ``SKTRANSFER_CHANNELS_LAST`` is "1" or "0"."""
    if not is_conv:
        return False
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    env = os.environ.get(CHANNELS_LAST_ENV, "").strip()
    if env in ("0", "1"):
        return env == "1"
    if env:
        raise ValueError(
            f"{CHANNELS_LAST_ENV}={env!r}: set it to 1 (channels_last on the CPU) or 0 "
            "(torch's default layout), or unset it."
        )
    return CPU_CHANNELS_LAST


def to_device(batch, device: torch.device, *, channels_last: bool = False):
    """Move a tensor (or a dict, list or tuple of them, e.g. tokens) to ``device`` without
    blocking; ``channels_last``: 4-D tensors in that memory format."""
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last=channels_last) for k, v in batch.items()}
    if type(batch) in (list, tuple):
        return type(batch)(to_device(v, device, channels_last=channels_last) for v in batch)
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=device.type == "cuda")
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def halve_on_oom(run, batch_size: int, device: torch.device, *, restart=None):
    """``run(batch_size)``; on CUDA out-of-memory, halve the batch, warn, ``restart()`` (undo
    what the failed attempt changed) and run again. The one place the batch shrinks, for
    extraction and for training alike; on the CPU an out-of-memory error is raised."""
    while True:
        try:
            return run(batch_size)
        except RuntimeError as exc:
            if not (is_oom(exc) and device.type == "cuda" and batch_size > 1):
                raise
            batch_size //= 2
            torch.cuda.empty_cache()
            if restart is not None:
                restart()
            warnings.warn(
                f"CUDA out of memory; retrying with batch_size={batch_size}.", stacklevel=3
            )
