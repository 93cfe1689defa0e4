"""BatchNorm statistics re-estimated on chosen rows (AdaBN, Li et al. 2016): after a fit
on source and target rows together, and in ``sktransfer.adaptation.AdaBN``; and the
source rows' own statistics, recorded after a fit that kept the pretrained ones, so that
AdaBN and TENT can start from a model whose statistics are the source data's."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .._device import autocast, autocast_dtype, to_device, use_channels_last
from ..inputs import Subset
from ._assemble import frozen_of
from ._data import SourceDataset


def batchnorms(module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(module, batches, run=None, keep=()) -> bool:
    """Every BatchNorm's running mean and variance in ``module`` become those of the
    batches (a cumulative average over all of them, not a momentum one), each passed to
    ``run`` (default: ``module`` itself); nothing else moves, nor do the BatchNorms inside
    the submodules named in ``keep``. Returns whether any BatchNorm was re-estimated."""
    kept = {id(m) for name in keep for m in batchnorms(module.get_submodule(name))}
    norms = [m for m in batchnorms(module) if id(m) not in kept]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    module.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the mean over batches
        m.train()
    try:
        for x in batches:
            (run or module)(x)
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        module.eval()
    return True


# Rows the source statistics are measured on: per-channel means and variances settle
# long before this (EfficientNet-Lite0's smallest map at 160 px has 25 positions a row,
# 6,400 values a channel over 256 rows), and the pass costs about one probe extraction.
SOURCE_STATISTICS_ROWS = 256


@torch.inference_mode()
def input_statistics(module, batches, run=None, prefix: str = "") -> dict:
    """Per BatchNorm of ``module`` (by its name, after ``prefix``): the mean and variance
    (population; float32 numpy arrays, so a fitted model saves them) of its input per
    channel over every row of the batches, each passed to ``run`` (default: ``module``)
    with the module in eval(), so every layer sees what it sees in ``predict``. Each
    batch's mean and variance are combined with the others' exactly (Chan et al.'s
    pairwise update, in float64)."""
    norms = {name: m for name, m in module.named_modules() if isinstance(m, _BatchNorm)}
    if not norms:
        return {}
    moments = {}

    def hook(name):
        def record(m, args):
            x = args[0].float()
            n_b = x.numel() // x.shape[1]
            if n_b < 2:  # one value a channel (batch_size=1 into BatchNorm1d): no spread
                mean, m2 = (
                    x.reshape(-1).double(),
                    torch.zeros_like(x.reshape(-1), dtype=torch.float64),
                )
                _combine(name, n_b, mean, m2)
                return
            # BatchNorm's own kernel for the batch's moments (a plain var_mean over the
            # non-channel axes costs twice the forward pass at 160 px): momentum 1
            # leaves the batch's mean and unbiased variance in the buffers.
            mean, var = x.new_zeros(x.shape[1]), x.new_ones(x.shape[1])
            F.batch_norm(x, mean, var, training=True, momentum=1.0)
            _combine(name, n_b, mean.double(), var.double() * (n_b - 1))

        return record

    def _combine(name, n_b, mean, m2):
        if name in moments:
            n_a, mean_a, m2_a = moments[name]
            n = n_a + n_b
            delta = mean - mean_a
            mean, m2 = mean_a + delta * (n_b / n), m2_a + m2 + delta**2 * (n_a * n_b / n)
            n_b = n
        moments[name] = (n_b, mean, m2)

    module.eval()
    handles = [m.register_forward_pre_hook(hook(name)) for name, m in norms.items()]
    try:
        for x in batches:
            (run or module)(x)
    finally:
        for h in handles:
            h.remove()
    return {
        prefix + name: (mean.float().cpu().numpy(), (m2 / n).float().cpu().numpy())
        for name, (n, mean, m2) in moments.items()
    }


@torch.no_grad()
def fold_statistics(module, statistics: dict) -> int:
    """Make each BatchNorm of ``module`` named in ``statistics`` (name -> (mean, var) of
    its input on the source rows) normalise with those statistics, its scale and shift
    changed so that ``module`` computes exactly what it did in eval(): with pretrained
    statistics (mu, sigma^2) and the source's (m, s^2), scale g and shift b become
    g * s / sigma and b + g * (m - mu) / sigma, the running statistics m and s^2 (both
    with the layer's eps). A BatchNorm without scale and shift gains them. Re-estimating
    the statistics on target rows (AdaBN) then maps the target's features to where the
    source's arrived, not to where ImageNet's did. Returns how many layers changed."""
    norms = dict(module.named_modules())
    done = 0
    for name, (mean, var) in statistics.items():
        m = norms.get(name)
        if not isinstance(m, _BatchNorm) or m.running_mean is None:
            continue
        dev = m.running_mean.device
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32, device=dev)
        var = torch.as_tensor(np.asarray(var), dtype=torch.float32, device=dev)
        if mean.shape != m.running_mean.shape:
            raise ValueError(
                f"source statistics of BatchNorm {name!r} have {mean.numel()} channels; "
                f"the layer has {m.running_mean.numel()}."
            )
        sigma = (m.running_var.float() + m.eps).sqrt()
        s = (var + m.eps).sqrt()
        if not m.affine:
            m.weight = torch.nn.Parameter(torch.ones_like(mean))
            m.bias = torch.nn.Parameter(torch.zeros_like(mean))
            m.affine = True
        g, b = m.weight.float(), m.bias.float()
        new_g, new_b = g * s / sigma, b + g * (mean - m.running_mean.float()) / sigma
        m.weight.copy_(new_g.to(m.weight.dtype))
        m.bias.copy_(new_b.to(m.bias.dtype))
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
        done += 1
    return done


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of ``n_rows``; a last batch of one row joins the one
    before, as BatchNorm cannot take the statistics of a single row."""
    starts = list(range(0, n_rows, batch_size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n_rows]))


def body_runner(body, plan):
    """``run(x)``: ``body`` on a batch under the plan's autocast, as it runs in training
    and predict (the passes here need its BatchNorm inputs, not its output)."""
    dtype = autocast_dtype(plan.device, plan.precision)

    def run(x):
        with autocast(plan.device, dtype):
            body(x)

    return run


def row_batches(backbone, source, rows, batch_size: int, device):
    """Model-ready batches of ``rows`` of ``source`` through the backbone's own input
    pipeline, on ``device`` (``batch_bounds``)."""
    ds = SourceDataset(Subset(source, rows), {}, backbone.preprocess, None, backbone.collate)
    layout = use_channels_last(device, backbone.is_conv)  # as predict feeds the body
    for start, stop in batch_bounds(len(rows), batch_size):
        x, _ = ds.__getitems__(np.arange(start, stop))
        yield to_device(x, device, channels_last=layout)


def target_batchnorm(model, backbone, data, plan) -> bool:
    """After an unfrozen phase with adaptation: the BatchNorm statistics of the target
    rows, the domain ``predict`` will see. Returns whether it ran.

    - BatchNorm that trained (``plan.batchnorm == "train"``): the running statistics
      re-estimated on the target rows alone, except in the blocks ``plan.freeze`` keeps
      frozen (their statistics never trained). Training on batches that mix both domains
      leaves statistics of the mixture, which normalise neither domain's rows as the
      network saw them (measured: LeNet on Fashion-MNIST -> low contrast, 0.108 at
      adaptation weight 0 against 0.370 for the source rows alone, 0.672 with the
      target's statistics).
    - Pretrained statistics kept (``"eval"``, the default for a pretrained body): what
      ``AdaBN`` does to such a source model, in every BatchNorm of the body. The source
      rows' own statistics are folded in (``fold_statistics``: the body computes what it
      did), then replaced by the target rows', so that target features arrive where the
      source's did in training, not where ImageNet's would.
    """
    d = data.targets.get("d")
    if d is None or not batchnorms(model.body):
        return False
    rows = np.flatnonzero(np.asarray(d) == 0)
    if len(rows) < 2:
        return False
    body = model.to(plan.device).body
    run = body_runner(body, plan)
    if plan.batchnorm == "train":
        _, keep = frozen_of(body, plan.freeze)
    else:
        stats = source_statistics(model, backbone, data, plan)
        if not stats:
            return False
        fold_statistics(model, stats)
        keep = ()
    batches = row_batches(backbone, data.source, rows, plan.batch_size, plan.device)
    done = reestimate_batchnorm(body, batches, run=run, keep=keep)
    if done:
        plan.say(f"BatchNorm statistics re-estimated on the {len(rows)} target rows")
    return done


def pretrained_statistics_kept(body, batchnorm: str, freeze) -> bool:
    """Whether some BatchNorm of ``body`` kept the statistics it started with: every one
    under ``batchnorm="eval"`` or a frozen body, those in frozen blocks otherwise."""
    if not batchnorms(body):
        return False
    if batchnorm == "eval" or freeze == "backbone":
        return True
    _, keep = frozen_of(body, freeze)
    return any(batchnorms(body.get_submodule(name)) for name in keep)


def source_statistics(model, backbone, data, plan) -> dict | None:
    """After a fit whose body kept some pretrained BatchNorm statistics
    (``pretrained_statistics_kept``): each BatchNorm's input statistics on (up to
    ``SOURCE_STATISTICS_ROWS``, evenly spaced) labelled rows, as ``predict`` runs the
    body; None when there are no BatchNorm layers or their statistics are the data's."""
    body = model.body
    if not pretrained_statistics_kept(body, plan.batchnorm, plan.freeze):
        return None
    rows = np.flatnonzero(np.asarray(data.labelled))
    if len(rows) > SOURCE_STATISTICS_ROWS:
        rows = rows[np.linspace(0, len(rows) - 1, SOURCE_STATISTICS_ROWS).astype(int)]
    if len(rows) < 2:  # BatchNorm's moments need two values a channel
        return None
    body = model.to(plan.device).body
    batches = row_batches(backbone, data.source, rows, plan.batch_size, plan.device)
    return input_statistics(body, batches, run=body_runner(body, plan), prefix="body.")


__all__ = [
    "SOURCE_STATISTICS_ROWS",
    "batch_bounds",
    "batchnorms",
    "fold_statistics",
    "input_statistics",
    "pretrained_statistics_kept",
    "reestimate_batchnorm",
    "row_batches",
    "source_statistics",
    "target_batchnorm",
]
