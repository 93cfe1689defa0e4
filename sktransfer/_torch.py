"""Torch helpers every layer shares: a seeded block, and optional packages imported on use.

A root-level private module: the package's own low layer, importable from every folder.
"""

from __future__ import annotations

import importlib

import torch


class Seed:
    """Seed torch's CPU generator for a block without disturbing the caller's stream.

    ``with Seed(random_state):`` — ``None`` leaves the stream as it is (still restored
    at the end of the block).
    """

    def __init__(self, random_state):
        self.random_state = random_state
        self._fork = torch.random.fork_rng(devices=[])

    def __enter__(self):
        self._fork.__enter__()
        if self.random_state is not None:
            torch.manual_seed(int(self.random_state))

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def require(module: str, extra: str):
    """Import the optional package ``module``, or say which ``pip install`` provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this backbone needs the optional package {module!r}: "
            f"pip install 'sktransfer[{extra}]'"
        ) from None
