"""The contrastive phase: a transformer body taught, before its head is solved, that
rows of one class lie together and rows of two classes apart.

SetFit (Tunstall et al. 2022) fine-tunes a sentence encoder on pairs of labelled rows,
the cosine of the two embeddings regressed on 1 (same class) or 0 (two classes), then
fits a logistic regression on the new embeddings: with 8-64 labelled rows it beats
fine-tuning the encoder with a classification head. SetFit draws the pairs one by one
(two forward passes per pair, 2,000 pairs at 64 rows); here every pair of a batch counts,
so one forward pass of 32 rows trains on its 496 pairs, and the positive and negative
pairs weigh half each (SetFit oversamples the rarer kind to the same end).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skorch.utils import to_device
from torch.nn.modules.batchnorm import _BatchNorm

from ..inputs import Subset
from ._assemble import frozen_of
from ._data import SourceDataset


def pair_loss(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """SetFit's cosine-similarity loss over every pair of the batch: the mean squared
    gap between cos(z_i, z_j) and 1 for pairs of one class, 0 for pairs of two; the
    positive and the negative pairs weigh half each (a kind that is absent, none). With
    sample weights ``w`` a pair weighs ``w_i · w_j``."""
    u = F.normalize(z.float(), dim=1)
    cos = u @ u.T
    same = y[:, None] == y[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    pair_w = torch.ones_like(cos) if w is None else w.float()[:, None] * w.float()[None, :]
    losses = []
    for mask, target in ((same & upper, 1.0), (~same & upper, 0.0)):
        weight = pair_w[mask]
        if mask.any() and weight.sum() > 0:
            losses.append((weight * (cos[mask] - target) ** 2).sum() / weight.sum())
    return torch.stack(losses).mean() if losses else cos.sum() * 0.0


def contrastive_phase(model, backbone, data, plan, epochs: int, lr: float):
    """Train ``model.body`` for ``epochs`` on ``pair_loss`` over the labelled training
    rows (AdamW at ``lr``, no weight decay on norms and biases, linear warm-up over a
    tenth of the steps then linear decay, as SetFit's encoder phase). Returns (one record
    per epoch, its ``train_loss`` the pair loss; the number of parameters that trained;
    whether a KeyboardInterrupt stopped it, keeping the weights of that moment).

    Rows of weight 0 (unlabelled, or given ``sample_weight`` 0) take no part (class
    weights do not enter: positive and negative pairs weigh half each instead). The
    parameters ``plan.freeze`` names stay as they are, the blocks they fill stay in
    eval(), and so do BatchNorm layers under ``plan.batchnorm == "eval"``."""
    w_all = np.asarray(data.targets["w"], dtype=np.float32)
    rows = data.train_labelled
    rows = rows[w_all[rows] > 0]  # a row of weight 0 would weigh none of its pairs
    y_all = np.asarray(data.targets["y"])
    body = model.body.to(plan.device)
    named = list(body.named_parameters())
    frozen, frozen_modules = frozen_of(body, plan.freeze)
    train = [(n, p) for n, p in named if n not in frozen]
    if epochs == 0 or len(rows) < 2 or not train:
        return [], 0, False
    ds = SourceDataset(Subset(data.source, rows), {}, backbone.preprocess, None, backbone.collate)
    batch = min(plan.batch_size, len(rows))
    n_batches = -(-len(rows) // batch)
    opt, sched = _optimiser(train, lr, plan.weight_decay, epochs * n_batches)
    # The order of the rows: drawn from the global stream, which a seeded fit has seeded.
    gen = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,)).item()))
    history, interrupted = [], False
    for n, p in named:
        p.requires_grad_(n not in frozen)
    _train_mode(body, frozen_modules, plan.batchnorm)
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(rows), generator=gen).numpy()
            seen, loss_sum = 0, 0.0
            for b in range(n_batches):
                idx = order[b * batch : (b + 1) * batch]
                if len(idx) < 2:
                    continue
                x, _ = ds.__getitems__(idx)
                z = body(to_device(x, plan.device))
                at = rows[idx]
                loss = pair_loss(
                    z,
                    torch.as_tensor(y_all[at], device=z.device),
                    torch.as_tensor(w_all[at], device=z.device),
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(idx)
                loss_sum += float(loss.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1)})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        body.eval()
        for _, p in named:
            p.requires_grad_(True)
            p.grad = None
    if history:
        plan.say(
            f"contrastive: {len(history)} epochs on {len(rows)} rows (every pair of a batch of "
            f"{batch}), lr {lr:g}, pair loss {history[0]['train_loss']:.4f} -> "
            f"{history[-1]['train_loss']:.4f}"
        )
    return history, sum(p.numel() for _, p in train), interrupted


def _optimiser(train, lr: float, weight_decay: float, total: int):
    """AdamW (no decay on norms and biases) and a linear warm-up over a tenth of the
    ``total`` steps, then a linear decay to 0."""
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in train if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for _, p in train if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(total - warm, 1)))
    )
    return opt, sched


def _train_mode(body, frozen_modules: list[str], batchnorm: str) -> None:
    """body.train(), but the ``frozen_modules`` and (``batchnorm == "eval"``) every
    BatchNorm stay in eval(), as ``TransferModel.train`` keeps them in the other phases."""
    body.train()
    for name in frozen_modules:
        (body.get_submodule(name) if name else body).eval()
    if batchnorm == "eval":
        for m in body.modules():
            if isinstance(m, _BatchNorm):
                m.eval()


__all__ = ["contrastive_phase", "pair_loss"]
