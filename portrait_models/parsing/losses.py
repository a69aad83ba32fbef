"""Pixel-wise losses for the face parsers.

* :func:`pixel_cross_entropy`: plain per-pixel cross-entropy, the official CelebAMask-HQ U-Net loss.
* :class:`OhemCELoss`: online hard example mining cross-entropy, BiSeNet's loss in
  zllrunning/face-parsing.PyTorch (``thresh 0.7``, ``n_min = 16·448·448/16``, one per output, summed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OhemCELoss", "pixel_cross_entropy", "ohem_cross_entropy"]


def pixel_cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``."""
    return F.cross_entropy(logits.float(), label, ignore_index=ignore_index)


def ohem_cross_entropy(
    logits: torch.Tensor,
    label: torch.Tensor,
    thresh: float = 0.7,
    n_min: int | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Mean cross-entropy over the hardest pixels.

    A pixel is *hard* when its loss exceeds ``-log(thresh)`` (its true-class probability is below
    ``thresh``). All hard pixels are kept, but never fewer than the ``n_min`` highest-loss pixels; pixels
    labelled ``ignore_index`` never count. That equals the reference rule ("if the ``n_min``-th largest
    loss is above the threshold keep every loss above it, else keep the ``n_min`` largest"), except that
    the reference lets ignored pixels (loss 0) fill the ``n_min`` quota. ``n_min=None`` uses 1/16 of the
    batch's pixels, the reference's ``16·448·448/16`` for its batch of 16 crops at 448².

    The selection is done with a sort and a mask, with no host synchronisation, so it stays on device.
    """
    if logits.ndim != 4 or label.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"OHEM expects logits (B,C,H,W) and label (B,H,W); got {tuple(logits.shape)} and {tuple(label.shape)}"
        )
    if not 0.0 < thresh <= 1.0:
        raise ValueError(f"OHEM thresh is a probability in (0, 1], got {thresh}")
    per_pixel = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="none").reshape(-1)
    valid = (label != ignore_index).reshape(-1)
    if n_min is None:
        n_min = max(1, per_pixel.numel() // 16)
    loss_thresh = -math.log(thresh)

    ranked = torch.where(valid, per_pixel, torch.full_like(per_pixel, -1.0)).sort(descending=True).values
    num_hard = ((per_pixel > loss_thresh) & valid).sum()
    keep = torch.minimum(torch.clamp(num_hard, min=n_min), valid.sum())
    kept = torch.arange(ranked.numel(), device=ranked.device) < keep
    return (ranked * kept).sum() / keep.clamp(min=1)


class OhemCELoss(nn.Module):
    """Module form of :func:`ohem_cross_entropy` (``thresh`` is a probability, as in the reference)."""

    def __init__(self, thresh: float = 0.7, n_min: int | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"OHEM thresh is a probability in (0, 1], got {thresh}")
        if n_min is not None and n_min < 1:
            raise ValueError(f"n_min must be a positive pixel count or None, got {n_min}")
        self.thresh = thresh
        self.n_min = n_min
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return ohem_cross_entropy(logits, label, self.thresh, self.n_min, self.ignore_index)

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, n_min={self.n_min}, ignore_index={self.ignore_index}"
