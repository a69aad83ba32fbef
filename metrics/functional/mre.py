"""MagGAN's mask-aware reconstruction error (MRE) and its region masks, as pure tensor functions.

Notation (Wei et al. 2020, §3): ``C`` attributes, ``P`` parser classes (19), soft parser masks
``M ∈ [0,1]^{P×H×W}`` summing to 1 over ``P``, attribute change ``att_diff = att_t − att_s ∈ R^C``,
attribute–part matrices ``AR⁺, AR⁻ ∈ {0,1}^{C×P}`` (``datamodules.attribute_regions``, which also holds eqs. (4), (5)
and the influence regions, so that generator, loss and metric share one implementation).

* eq. (4): parts touched by an edit, ``AR* = min{1, [att_diff > 0]ᵀ AR⁺ + [att_diff < 0]ᵀ AR⁻}``;
* eq. (5): preserved region, ``M_hw = 1 − Σ_p M_phw AR*_p`` (the paper writes the sum over ``C``; it runs over
  the parser classes, the index of ``AR*``);
* influence regions ``M_i^± = 1 − M(±e_i, x)`` (the sentence after eq. (5)), used by eqs. (2) and (12);
* eq. (2): ``MRE = 1/(HWC) Σ_i ‖(1 − M_i^{sgn(att_diff_i)}) (G(x, att_diff_i e_i) − x)‖₁`` with
  ``att_diff = 1 − 2 att_s`` (every attribute flipped, one at a time).

The ℓ1 norm in eq. (2) is taken literally over the whole image tensor, colour channels included, while
the normaliser is ``H·W·C`` with ``C`` the number of attributes (the paper's symbols): the per-image MRE
is the mean over the ``C`` edits of the per-pixel, colour-summed absolute error in the preserved region.
Image values are used as given (the project's images are in [-1, 1]).
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.attribute_regions import (  # noqa: F401  (re-exported: eqs. 4, 5 and the influence regions)
    check_att_diff,
    influence_regions,
    influenced_parts,
    preserved_region_mask,
)


def attribute_change_vector(att_source: Tensor) -> Tensor:
    """MagGAN's evaluation edit ``att_diff = 1 − 2·att_s``: flip every binary attribute (+1: 0→1, −1: 1→0)."""
    return 1.0 - 2.0 * att_source.float()


def single_attribute_edits(att_diff: Tensor) -> Tensor:
    """(B, C) → (B, C, C) whose ``[:, i]`` is ``att_diff_i · e_i``, the condition of edit ``i`` in eq. (2)."""
    if att_diff.ndim != 2:
        raise ValueError(f"att_diff must be (B, C), got {tuple(att_diff.shape)}")
    return torch.diag_embed(att_diff)


def mre_per_attribute(
    images: Tensor, edited: Tensor, soft_masks: Tensor, att_diff: Tensor, ar_plus: Tensor, ar_minus: Tensor
) -> Tensor:
    """The terms of eq. (2) before the mean over attributes: (B, C), ``‖(1 − M_i^{sgn})(x̂_i − x)‖₁ / (H·W)``.

    Args:
        images: (B, 3, H, W) originals ``x``.
        edited: (B, C, 3, H, W), ``edited[:, i] = G(x, att_diff_i · e_i)``.
        soft_masks: (B, P, H, W) soft parse of ``x`` at the image size.
        att_diff: (B, C) the change applied in each single-attribute edit.
        ar_plus, ar_minus: (C, P) attribute–part matrices.
    """
    check_att_diff(att_diff, ar_plus)
    batch, num_attributes = att_diff.shape
    if images.ndim != 4 or images.shape[0] != batch:
        raise ValueError(f"images must be (B={batch}, 3, H, W) to match att_diff, got {tuple(images.shape)}")
    if edited.shape != (batch, num_attributes, *images.shape[1:]):
        raise ValueError(
            f"edited must be (B, C, 3, H, W) = {(batch, num_attributes, *images.shape[1:])}, one edit per"
            f" attribute of every image; got {tuple(edited.shape)}"
        )
    if soft_masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"soft_masks {tuple(soft_masks.shape)} and images {tuple(images.shape)} differ in spatial size;"
            " resize the masks to the image first"
        )
    edits = single_attribute_edits(att_diff).reshape(batch * num_attributes, num_attributes)
    masks = soft_masks.repeat_interleave(num_attributes, dim=0)
    preserved = preserved_region_mask(masks, edits, ar_plus, ar_minus)
    preserved = preserved.reshape(batch, num_attributes, 1, *images.shape[-2:])
    error = (preserved * (edited.to(preserved.dtype) - images.to(preserved.dtype).unsqueeze(1))).abs()
    height, width = images.shape[-2:]
    return error.sum(dim=(2, 3, 4)) / (height * width)


def mask_aware_reconstruction_error(
    images: Tensor, edited: Tensor, soft_masks: Tensor, att_diff: Tensor, ar_plus: Tensor, ar_minus: Tensor
) -> Tensor:
    """Eq. (2) averaged over the batch: the scalar MRE (arguments as in :func:`mre_per_attribute`)."""
    return mre_per_attribute(images, edited, soft_masks, att_diff, ar_plus, ar_minus).mean()
