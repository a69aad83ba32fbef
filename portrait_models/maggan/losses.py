"""MagGAN's loss terms as small named functions (Wei et al. 2020, eqs. 1, 3, 6–11, 14; spec §1).

Images are in [-1, 1]. Every reduction is a mean (STGAN's ``tf.losses.absolute_difference`` and sigmoid
cross-entropy), so λ1 = 100, λ2 = 10 and λ3 (default 100) act on terms of one scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.labels import EDIT_ATTRIBUTES
from portrait_models.distributed import rand_rows, rank_rows, shuffled_rows
from portrait_models.losses import gradient_penalty
from portrait_models.maggan.attributes import WORLD_CONFLICTS
from portrait_models.maggan.networks import AttributeCondition, DiscriminatorOutput, preserved_mask_at


def shuffled_targets(att_source: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """STGAN's training targets: the batch's own attribute vectors in a random order (no conflict check)."""
    return shuffled_rows(att_source, generator)  # under DDP a shuffle of the global batch, as on one process


def boosted_targets(att_target: Tensor, boost: Mapping[str, float], generator: torch.Generator | None = None) -> Tensor:
    """``att_target`` with each attribute of ``boost`` (name -> probability p) turned on, with probability p, on
    the rows where it is off, and the world's consistency applied to those rows (:data:`WORLD_CONFLICTS`: Bald on
    turns Bangs and the hair colours off). Attributes are drawn in ``EDIT_ATTRIBUTES`` order, one uniform per row
    of the global batch each (on the CPU, from ``generator``); an attribute with p = 0 draws nothing, so an empty or
    all-zero ``boost`` returns ``att_target`` unchanged and leaves the random stream untouched."""
    target = att_target
    for i, name in enumerate(EDIT_ATTRIBUTES):
        p = float(boost.get(name, 0.0))
        if p <= 0:
            continue
        u = rank_rows(lambda n: torch.rand(n, generator=generator), target.shape[0]).to(target.device)
        turn_on = (target[:, i] < 0.5) & (u < p)
        target = target.clone()
        target[turn_on, i] = 1
        for other in WORLD_CONFLICTS.get(name, ()):
            target[turn_on, EDIT_ATTRIBUTES.index(other)] = 0
    return target


def attribute_difference(att_source: Tensor, att_target: Tensor, thres_int: float = 0.5) -> Tensor:
    """Eq. (1)'s ``att_diff`` as STGAN feeds it: ``(b·2 − 1)·thres_int − (a·2 − 1)·thres_int`` (= b − a at 0.5)."""
    return (att_target * 2 - 1) * thres_int - (att_source * 2 - 1) * thres_int


def reconstruction_loss(reconstruction: Tensor, image: Tensor) -> Tensor:
    """Eq. (6): ``mean |G(x, 0) − x|``."""
    return F.l1_loss(reconstruction.float(), image.float())


def mask_guided_reconstruction_loss(
    edited: Tensor, image: Tensor, soft_masks: Tensor, att_diff: Tensor, condition: AttributeCondition
) -> Tensor:
    """Eq. (3): ``mean(M(att_diff, x) ⊙ |x − G(x, att_diff)|)`` over B·3·H·W, M the preserved mask of eq. (5)."""
    keep = preserved_mask_at(soft_masks, att_diff, condition, tuple(image.shape[-2:]))
    return (keep * (image.float() - edited.float()).abs()).mean()


def attribute_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Eqs. (9)/(10): per-attribute sigmoid BCE, mean over B×C (the paper's "KL"; the sign of eq. 10 is a typo:
    the generator minimises BCE towards ``att_t``)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def critic_terms(
    real: Sequence[DiscriminatorOutput], fake: Sequence[DiscriminatorOutput], att_source: Tensor
) -> dict[str, Tensor]:
    """Eq. (14) without the penalty: per level ``E[D(x̂)] − E[D(x)]`` and BCE(C(x), att_s), averaged over levels."""
    levels = len(real)
    return {
        "adv_real": sum(-o.adversarial.float().mean() for o in real) / levels,
        "adv_fake": sum(o.adversarial.float().mean() for o in fake) / levels,
        "cls": sum(attribute_bce(o.attributes, att_source) for o in real) / levels,
    }


def multilevel_gradient_penalty(
    level_critics: Sequence[Callable[[Tensor], Tensor]],
    real_levels: Sequence[Tensor],
    fake_levels: Sequence[Tensor],
    alpha: Tensor | None = None,
) -> Tensor:
    """Mean over levels of WGAN-GP (eq. 7) at each level's own input, with one α per sample for all levels
    (interpolating and then resizing equals resizing and then interpolating: the resize is linear)."""
    if alpha is None:
        alpha = rand_rows(real_levels[0].shape[0], device=real_levels[0].device)
    penalties = [
        gradient_penalty(critic, real.float(), fake.float(), alpha=alpha.to(torch.float32))
        for critic, real, fake in zip(level_critics, real_levels, fake_levels, strict=True)
    ]
    return torch.stack(penalties).mean()


def generator_adversarial_terms(fake: Sequence[DiscriminatorOutput], att_target: Tensor) -> dict[str, Tensor]:
    """Eqs. (8), (10) averaged over levels (spec A13): ``−E[D_adv^k(x̂)]`` and BCE(C_k(x̂), att_t)."""
    levels = len(fake)
    return {
        "gan": sum(-o.adversarial.float().mean() for o in fake) / levels,
        "cls": sum(attribute_bce(o.attributes, att_target) for o in fake) / levels,
    }
