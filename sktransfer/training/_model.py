"""The trained module: body → head, one head per task, a body branched per task."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class TransferModel(nn.Module):
    """body (pretrained, features) → head (new, the transfer layer).

    In training mode ``forward`` returns ``(logits, features)``, so that an adaptation
    loss sees the body's features without any module state; in eval mode the logits.
    ``train()`` keeps the submodules named in ``keep_eval`` (frozen blocks) and, with
    ``batchnorm_eval``, every BatchNorm in eval mode: torch's own hook for modes, so no
    training loop (skorch's or another) needs to know.
    """

    def __init__(self, body: nn.Module, head: nn.Module):
        super().__init__()
        self.body = body
        self.head = head
        self.keep_eval: tuple[str, ...] = ()
        self.batchnorm_eval = False

    def forward(self, x=None, **tokens):
        z = self.body(x if x is not None else tokens)
        out = self.head(z)
        return (out, z) if self.training else out

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for name in self.keep_eval:
                (self.get_submodule(name) if name else self).eval()
            if self.batchnorm_eval:
                # Normalise with the pretrained running statistics, as the probe saw them;
                # the affine parameters still train.
                for m in self.modules():
                    if isinstance(m, _BatchNorm):
                        m.eval()
        return self


class TaskHeads(nn.Module):
    """One head per task on the shared features, outputs concatenated in task order.

    ``hidden`` > 0 gives each head a task-specific hidden layer (Linear, ReLU) before
    its output layer; ``sizes`` are the tasks' numbers of outputs.
    """

    def __init__(self, n_features: int, sizes, hidden: int = 0):
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.hidden = int(hidden or 0)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, s))
            if self.hidden
            else nn.Linear(n_features, s)
            for s in self.sizes
        )

    def forward(self, z):
        if z.ndim == 3:  # (batch, task, features) from a BranchedBody: a branch per head
            return torch.cat([h(z[:, t]) for t, h in enumerate(self.heads)], dim=1)
        return torch.cat([h(z) for h in self.heads], dim=1)


class BranchedBody(nn.Module):
    """A body shared up to a point, then one branch per task.

    ``copies[0]`` is the given body; each other task gets a deep copy whose parameters
    (and the buffers of their modules) outside ``private`` are the very tensors of
    ``copies[0]``: tied, so they train as one. Each copy runs whole on every batch, so a
    forward pass costs ``n_tasks`` bodies; ``forward`` returns (batch, task, features).
    """

    def __init__(self, body: nn.Module, n_tasks: int, private: set[str]):
        super().__init__()
        self.private = frozenset(private)
        copies = [body] + [copy.deepcopy(body) for _ in range(n_tasks - 1)]
        for other in copies[1:]:
            for name, m in body.named_modules():
                own = [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
                if any(o in self.private for o in own):
                    continue
                target = other.get_submodule(name)
                for p, param in m.named_parameters(recurse=False):
                    setattr(target, p, param)
                for b, buf in m.named_buffers(recurse=False):
                    target._buffers[b] = buf
        self.copies = nn.ModuleList(copies)

    def names_of(self, name: str, aliases: bool = False) -> list[str]:
        """This module's names for the body's parameter ``name``: one per copy when it is
        task-specific, copy 0's alone when shared (``aliases``: every copy's name of it)."""
        if aliases or name in self.private:
            return [f"copies.{t}.{name}" for t in range(len(self.copies))]
        return [f"copies.0.{name}"]

    def forward(self, x):
        return torch.stack([c(x) for c in self.copies], dim=1)


def body_names_of(model: TransferModel):
    """The model's names for a body parameter (several when a task branch owns it)."""
    return getattr(model.body, "names_of", lambda n, aliases=False: [n])


def first_branch(body: nn.Module) -> nn.Module:
    """The plain body a ``Backbone`` holds: a branched body's first task's copy."""
    return body.copies[0] if isinstance(body, BranchedBody) else body


def make_trainable(module: nn.Module) -> None:
    """Lazy modules materialised under ``inference_mode`` hold inference tensors, which
    autograd refuses; give them ordinary storage."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_inference():
                t.data = t.data.clone()


def load_linear_heads(head: nn.Module, weight, bias) -> None:
    """Copy a solved (weight, bias) into the head's linear layers, rows in task order."""
    linears = head.heads if isinstance(head, TaskHeads) else [head]
    start = 0
    with torch.no_grad():
        for lin in linears:
            stop = start + lin.out_features
            lin.weight.copy_(torch.from_numpy(weight[start:stop]))
            lin.bias.copy_(torch.from_numpy(bias[start:stop]))
            start = stop
