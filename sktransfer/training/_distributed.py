"""Data-parallel fine-tuning with torch.distributed (``strategy="ddp"``).

The processes are started by the user's launcher (``torchrun``, or
``torch.multiprocessing.spawn``), each running the same script and calling
``torch.distributed.init_process_group``; every process fits the same estimator on the
same data. What is distributed is the unfrozen phase: each optimiser step's global batch
(``batch_size`` rows, the single-process run's batch) is split between the processes,
torch's ``DistributedDataParallel`` averages the gradients, and the loss is scaled so
that the averaged gradient is the single-process one. Everything else (the linear probe,
validation, early stopping) runs identically on every process, so every process takes
the same decisions and ends with the same plain, picklable estimator.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from skorch.callbacks import Callback
from torch.utils.data import BatchSampler, RandomSampler, Sampler, SequentialSampler


def check_process_group(estimator) -> None:
    """The errors of ``strategy="ddp"`` set where it cannot run, before any row is read."""
    name = type(estimator).__name__
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{name}(strategy='ddp') needs an initialised torch.distributed process group: "
            "start the script with `torchrun --nproc_per_node=N script.py` and call "
            "torch.distributed.init_process_group() (backend 'gloo' on CPUs, 'nccl' on GPUs) "
            "before fit; see docs/scaling.md. In a single process use strategy=None."
        )
    if estimator.adaptation is not None:
        raise ValueError(
            f"{name}(strategy='ddp') does not support adaptation={estimator.adaptation!r}: "
            "the adaptation term compares the domains within a batch, and a process sees only "
            "its share of each batch. Use strategy=None for domain adaptation."
        )


def is_main_process() -> bool:
    """Process 0 of the group, or a process outside any group."""
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    return dist.get_world_size()


def shared_seed(seed: int | None) -> int:
    """``seed``, or when None a fresh one drawn by process 0 and sent to every process:
    the processes must shuffle the rows alike, or their shares of a batch would overlap."""
    t = torch.tensor([-1 if seed is None else int(seed)], dtype=torch.int64)
    if dist.get_rank() == 0 and seed is None:
        t[0] = int(torch.randint(2**31 - 1, ()).item())
    dist.broadcast(t, src=0)
    return int(t.item())


def rank_device(device: torch.device) -> torch.device:
    """One GPU per process: a bare "cuda" means this process's GPU (torchrun's LOCAL_RANK)."""
    if device.type == "cuda" and device.index is None:
        local = os.environ.get("LOCAL_RANK")
        index = int(local) if local is not None else dist.get_rank() % torch.cuda.device_count()
        return torch.device("cuda", index)
    return device


class ShardedBatches(Sampler):
    """This process's share of each of the single-process run's batches.

    The global batches are drawn exactly as ``DataLoader(shuffle=True)`` draws them (the
    same ``RandomSampler`` and ``BatchSampler``, hence the same random numbers, which
    every process draws alike from the seed they share); process ``r`` of ``w`` takes rows
    ``r, r + w, ...`` of each. A last batch with fewer rows than processes is left out (a
    process with no rows cannot join the gradient average).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, rank: int, world: int):
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rank, self.world = rank, world

    def __iter__(self):
        rows = range(self.n)
        order = RandomSampler(rows) if self.shuffle else SequentialSampler(rows)
        for batch in BatchSampler(order, self.batch_size, drop_last=False):
            if len(batch) >= self.world:
                yield batch[self.rank :: self.world]

    def __len__(self):
        full, last = divmod(self.n, self.batch_size)
        return full + (last >= self.world)


def sharded_loader(dataset, *, batch_size, shuffle=False, **kwargs):
    """A ``DataLoader`` over this process's share of the global batches; skorch calls it
    with ``iterator_train``'s arguments, ``batch_size`` being the global batch."""
    sampler = ShardedBatches(
        len(dataset), batch_size, shuffle, dist.get_rank(), dist.get_world_size()
    )
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **kwargs)


def wrap(module: torch.nn.Module, device) -> torch.nn.parallel.DistributedDataParallel:
    """torch's ``DistributedDataParallel`` around ``module`` (its weights are broadcast from
    process 0, so every process starts alike); only parameters that train are synchronised."""
    device = torch.device(device)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of a (detached) tensor over the processes."""
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


class GlobalBatchRecord(Callback):
    """Record each training batch as the single-process run would: the loss of the whole
    global batch and its number of rows, not this process's share (skorch's epoch
    ``train_loss`` is the mean of the batches' losses weighted by their sizes)."""

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not training or loss is None:
            return
        x = batch[0]
        n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
        # Each process's loss is its rows' share times the number of processes.
        t = global_sum(torch.tensor([float(loss.item()), float(n)], dtype=torch.float64))
        net.history.record_batch("train_loss", float(t[0]) / dist.get_world_size())
        net.history.record_batch("train_batch_size", int(t[1]))


def whole_batch_denominator(total: torch.Tensor) -> torch.Tensor:
    """The denominator of a share's loss under DDP: ``DistributedDataParallel`` averages
    the processes' gradients, so dividing each share's weighted loss by the whole batch's
    weight, times the number of processes, makes that average the gradient of the whole
    batch's weighted mean."""
    return global_sum(total) / world_size()
