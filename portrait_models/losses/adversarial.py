"""Adversarial losses as small named functions over multi-scale discriminator outputs.

Every function takes ``outputs``: a list with one entry per discriminator scale, each entry either the
prediction tensor itself or the list of intermediate features a
:class:`~portrait_models.layers.MultiscaleDiscriminator` returns (its last element is the prediction). A
single tensor is accepted as a one-scale list. Per-scale losses are means over all prediction elements and are
**summed** over scales, as pix2pixHD (and hence MaskGAN, Gu et al., PortraitGAN) do; pass
``scale_reduction="mean"`` for SPADE's average. Losses are computed in fp32.

Discriminator loss for a kind = ``<kind>_real(D(real)) + <kind>_fake(D(fake))`` (pix2pixHD additionally halves
it); generator loss = :func:`lsgan_real`, :func:`vanilla_real`, :func:`hinge_generator` or
:func:`wgan_generator` on ``D(fake)``. :func:`discriminator_loss` and :func:`generator_loss` select by a
``GANLossKind`` string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from portrait_models.distributed import rand_rows

GANLossKind = Literal["vanilla", "lsgan", "hinge", "wgan"]
ScaleOutputs = Tensor | Sequence[Tensor] | Sequence[Tensor | Sequence[Tensor]]
ScaleReduction = Literal["sum", "mean"]


def final_predictions(outputs: ScaleOutputs) -> list[Tensor]:
    """The prediction tensor of each scale (the last feature when a scale is a feature list)."""
    if isinstance(outputs, Tensor):
        return [outputs]
    if len(outputs) == 0:
        raise ValueError("discriminator outputs are empty; expected one entry per scale")
    return [o if isinstance(o, Tensor) else o[-1] for o in outputs]


def _reduce_scales(
    outputs: ScaleOutputs, per_scale: Callable[[Tensor], Tensor], scale_reduction: ScaleReduction
) -> Tensor:
    losses = [per_scale(pred.float()) for pred in final_predictions(outputs)]
    total = torch.stack(losses).sum()
    if scale_reduction == "mean":
        return total / len(losses)
    if scale_reduction != "sum":
        raise ValueError(f"scale_reduction must be 'sum' or 'mean', got {scale_reduction!r}")
    return total


# ------------------------------------------------------------------------------------------ LSGAN
def lsgan_real(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """Least squares towards the real label: ``mean((D - 1)^2)``. D's real term and G's loss."""
    return _reduce_scales(outputs, lambda p: (p - 1).square().mean(), scale_reduction)


def lsgan_fake(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """Least squares towards the fake label: ``mean(D^2)``. D's fake term."""
    return _reduce_scales(outputs, lambda p: p.square().mean(), scale_reduction)


# ------------------------------------------------------------------------------------------ vanilla (BCE)
def vanilla_real(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """BCE with target 1 on logits: ``mean(softplus(-D))``. D's real term and G's non-saturating loss."""
    return _reduce_scales(outputs, lambda p: F.softplus(-p).mean(), scale_reduction)


def vanilla_fake(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """BCE with target 0 on logits: ``mean(softplus(D))``. D's fake term."""
    return _reduce_scales(outputs, lambda p: F.softplus(p).mean(), scale_reduction)


# ------------------------------------------------------------------------------------------ hinge
def hinge_real(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``mean(relu(1 - D))``. D's real term."""
    return _reduce_scales(outputs, lambda p: F.relu(1 - p).mean(), scale_reduction)


def hinge_fake(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``mean(relu(1 + D))``. D's fake term."""
    return _reduce_scales(outputs, lambda p: F.relu(1 + p).mean(), scale_reduction)


def hinge_generator(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``-mean(D(fake))``. G's loss."""
    return _reduce_scales(outputs, lambda p: -p.mean(), scale_reduction)


# ------------------------------------------------------------------------------------------ WGAN
def wgan_real(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``-mean(D(real))``. The critic's real term."""
    return _reduce_scales(outputs, lambda p: -p.mean(), scale_reduction)


def wgan_fake(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``mean(D(fake))``. The critic's fake term."""
    return _reduce_scales(outputs, lambda p: p.mean(), scale_reduction)


def wgan_generator(outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """``-mean(D(fake))``. G's loss."""
    return _reduce_scales(outputs, lambda p: -p.mean(), scale_reduction)


# ------------------------------------------------------------------------------------------ selection by kind
_D_TERMS: dict[str, tuple[Callable[..., Tensor], Callable[..., Tensor]]] = {
    "vanilla": (vanilla_real, vanilla_fake),
    "lsgan": (lsgan_real, lsgan_fake),
    "hinge": (hinge_real, hinge_fake),
    "wgan": (wgan_real, wgan_fake),
}
_G_LOSS: dict[str, Callable[..., Tensor]] = {
    "vanilla": vanilla_real,
    "lsgan": lsgan_real,
    "hinge": hinge_generator,
    "wgan": wgan_generator,
}


def _check_kind(kind: str) -> None:
    if kind not in _G_LOSS:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(_G_LOSS)}")


def discriminator_loss(
    kind: GANLossKind,
    real_outputs: ScaleOutputs,
    fake_outputs: ScaleOutputs,
    scale_reduction: ScaleReduction = "sum",
) -> tuple[Tensor, Tensor]:
    """(real term, fake term) of the discriminator loss of ``kind``; the caller sums (or halves) them."""
    _check_kind(kind)
    real_fn, fake_fn = _D_TERMS[kind]
    return real_fn(real_outputs, scale_reduction), fake_fn(fake_outputs, scale_reduction)


def generator_loss(kind: GANLossKind, fake_outputs: ScaleOutputs, scale_reduction: ScaleReduction = "sum") -> Tensor:
    """The generator's adversarial loss of ``kind`` on the discriminator outputs for generated images."""
    _check_kind(kind)
    return _G_LOSS[kind](fake_outputs, scale_reduction)


# ------------------------------------------------------------------------------------------ gradient penalty
def gradient_penalty(
    critic: Callable[[Tensor], ScaleOutputs],
    real: Tensor,
    fake: Tensor,
    target_norm: float = 1.0,
    alpha: Tensor | None = None,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``mean((||grad_x D(x_hat)||_2 - target_norm)^2)``.

    ``x_hat = alpha * real + (1 - alpha) * fake`` with ``alpha ~ U(0, 1)`` per sample unless given (shape (B,)
    or broadcastable to ``real``). For a multi-scale critic the gradient is that of the sum of all scales'
    prediction sums. The graph is kept (``create_graph=True``) so the penalty can be back-propagated into the
    critic; pass an uncompiled critic (double backward does not go through ``torch.compile``).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    if alpha is None:
        alpha = rand_rows(real.shape[0], device=real.device, dtype=real.dtype)  # DDP: the global batch's draw
    if alpha.dim() == 1:
        alpha = alpha.view(-1, *([1] * (real.dim() - 1)))
    x_hat = torch.lerp(fake.detach(), real.detach(), alpha).requires_grad_(True)
    score = torch.stack([p.float().sum() for p in final_predictions(critic(x_hat))]).sum()
    (grad,) = torch.autograd.grad(score, x_hat, create_graph=True)
    norms = grad.float().flatten(1).norm(2, dim=1)
    return (norms - target_norm).square().mean()
