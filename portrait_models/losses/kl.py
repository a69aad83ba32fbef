"""KL divergence of a diagonal Gaussian posterior from the standard normal prior (VAE regulariser).

``KL(N(mu, exp(logvar)) || N(0, I)) = 0.5 * sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1)`` per sample
(MaskGAN Eq. 4, where the paper's sigma is the log-variance).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

KLReduction = Literal["batchmean", "sum", "mean", "none"]


def kl_normal_standard(mu: Tensor, logvar: Tensor, reduction: KLReduction = "batchmean") -> Tensor:
    """KL divergence per sample, summed over the latent dimensions, then reduced.

    ``batchmean``: mean over the batch of the per-sample sums (the usual VAE term); ``sum``: total; ``mean``:
    mean over all elements; ``none``: (B,) per-sample values. Computed in fp32.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    mu, logvar = mu.float(), logvar.float()
    elementwise = 0.5 * (mu.square() + logvar.exp() - logvar - 1)
    if reduction == "mean":
        return elementwise.mean()
    per_sample = elementwise.flatten(1).sum(dim=1)
    if reduction == "batchmean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"unknown reduction {reduction!r}; expected 'batchmean', 'sum', 'mean' or 'none'")
