"""Training-time augmentation of image batches, applied per sample on tensors."""

from __future__ import annotations

import torch


class Augment:
    """Random horizontal flip (``"flip"``) and/or random resized crop back to the same size.

    Works on preprocessed (B, C, H, W) batches, so it adds no decode cost; each
    sample draws its own crop from torch's generator (seeded by ``random_state``).
    """

    def __init__(self, flip: bool = True, crop_scale: tuple[float, float] = (0.6, 1.0)):
        self.flip = flip
        self.crop_scale = crop_scale

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        b, _, h, w = batch.shape
        out = torch.empty_like(batch)
        for i in range(b):
            x = batch[i : i + 1]
            scale = float(torch.empty(1).uniform_(*self.crop_scale))
            ch, cw = max(1, int(h * scale**0.5)), max(1, int(w * scale**0.5))
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            x = x[..., top : top + ch, left : left + cw]
            if (ch, cw) != (h, w):
                x = F.interpolate(
                    x, size=(h, w), mode="bilinear", align_corners=False, antialias=True
                )
            if self.flip and bool(torch.rand(1) < 0.5):
                x = x.flip(-1)
            out[i] = x[0]
        return out


def make_augment(spec):
    """None/False → none; True or "flip" → flip + crop; "crop" → crop only; a callable as is."""
    if spec is None or spec is False:
        return None
    if spec is True or spec == "flip":
        return Augment(flip=True)
    if spec == "crop":
        return Augment(flip=False)
    if callable(spec):
        return spec
    raise ValueError(f"augment={spec!r} must be None, 'flip', 'crop' or a callable.")
