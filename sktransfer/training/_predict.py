"""A fitted fine-tune's forward pass over new rows: the outputs ``predict`` reads."""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
import torch

from .._extract import extract
from ._data import SourceDataset


def predict_outputs(
    module,
    net,
    backbone,
    source,
    *,
    name: str,
    modality: str,
    family: str,
    frozen: bool,
    device,
    batch_size: int,
    precision,
    num_workers,
    cache,
    verbose,
) -> np.ndarray:
    """The model's outputs for every row of ``source``, as a float array: a small MLP on
    the CPU in float64, a frozen body's features from the cache under the head, otherwise
    ``net.forward`` batch by batch (under a progress bar when ``verbose``)."""
    if modality == "tabular" and family == "mlp" and device.type == "cpu":
        # float32 products depend on how many rows a batch holds (the kernels block
        # differently), so a row's prediction would depend on its neighbours; a small
        # MLP is cheap in float64, where that noise falls below any tolerance.
        double = copy.deepcopy(module).double().eval()
        X = torch.from_numpy(source.X)
        with torch.inference_mode():  # batch by batch: memory bounded by batch_size
            return np.concatenate(
                [
                    double(X[i : i + batch_size].double()).numpy()
                    for i in range(0, max(len(X), 1), batch_size)
                ]
            )
    if frozen:
        # The body never trained: its features come from the cache, only the head runs.
        Z = extract(
            backbone,
            source,
            batch_size=batch_size,
            device=device,
            precision=precision,
            num_workers=num_workers,
            cache=cache,
            verbose=verbose,
        )
        head = module.head.to(device).eval()
        with torch.inference_mode():
            return head(torch.from_numpy(Z).to(device)).float().cpu().numpy()
    ds = SourceDataset(source, {}, backbone.preprocess, None, backbone.collate)
    if not verbose:
        return net.forward(ds, training=False, device="cpu").float().numpy()
    return _forward_with_progress(net, ds, f"{name}.predict")


def _forward_with_progress(net, ds, name: str) -> np.ndarray:
    """``net.forward`` batch by batch under a tqdm bar, then one line with the rows per
    second (``verbose``: a long predict is not silent)."""
    from tqdm.auto import tqdm

    parts, start = [], time.perf_counter()
    with tqdm(total=len(ds), desc=name, unit="row", file=sys.stderr, leave=False) as bar:
        for out in net.forward_iter(ds, training=False, device="cpu"):
            parts.append(out)
            bar.update(len(out))
    seconds = time.perf_counter() - start
    rate = len(ds) / seconds if seconds > 0 else float("inf")
    print(f"{name}: {len(ds)} rows in {seconds:.1f} s ({rate:.1f} rows/s)", file=sys.stderr)
    return torch.cat(parts).float().numpy()


__all__ = ["predict_outputs"]
