"""Generator EMA with a half-life counted in images (the StyleGAN/EDM formulation).

After each generator step on a batch of ``batch_size`` images the averaged copy moves by
``beta = 0.5 ** (batch_size / (halflife_kimg * 1000))``; during the first ``rampup`` fraction of
training the half-life is capped at ``rampup * images_seen`` so the average does not drag the random
initialisation along. Buffers (e.g. BatchNorm statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from portrait_models.distributed import world


class EMA(nn.Module):
    """Holds ``averaged``, a frozen copy of a network that tracks its weights."""

    def __init__(self, network: nn.Module, halflife_kimg: float = 10.0, rampup: float | None = 0.05):
        super().__init__()
        self.averaged = copy.deepcopy(network).requires_grad_(False).eval()
        self.halflife_kimg = halflife_kimg
        self.rampup = rampup
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.float64))

    def train(self, mode: bool = True) -> EMA:  # the average is always used in eval mode
        super().train(mode)
        self.averaged.eval()
        return self

    def beta(self, batch_size: int) -> float:
        halflife = self.halflife_kimg * 1000.0
        if self.rampup is not None:
            halflife = min(halflife, float(self.images_seen) * self.rampup)
        return 0.5 ** (batch_size / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, network: nn.Module, batch_size: int) -> None:
        """``batch_size``: this process's batch; under DDP the half-life counts the global batch (× world size)."""
        batch_size = batch_size * world()[0]
        self.images_seen += batch_size
        beta = self.beta(batch_size)
        averaged = dict(self.averaged.named_parameters())
        params = [(averaged[name], p) for name, p in network.named_parameters()]
        torch._foreach_lerp_([a for a, _ in params], [p.detach() for _, p in params], 1.0 - beta)
        for (_, b_avg), (_, b) in zip(self.averaged.named_buffers(), network.named_buffers(), strict=True):
            b_avg.copy_(b)

    def forward(self, *args, **kwargs):
        return self.averaged(*args, **kwargs)
