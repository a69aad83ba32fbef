"""Discriminator feature-matching loss (pix2pixHD; MaskGAN Eq. 8).

``sum_{scale i} sum_{layer j} w * L1(D_i^j(fake), D_i^j(real).detach())`` over every intermediate feature map
(the final prediction map of each scale is excluded). The per-term weight ``w`` follows one of two
conventions:

- ``"pix2pixhd"`` (MaskGAN's released code, pix2pixHD, Gu et al.): ``(1 / num_D) * (4 /
  (n_layers+1))`` where ``n_layers + 1`` is the number of intermediate feature maps per scale;
- ``"spade"`` (SPADE): ``1 / num_D``;
- ``"sum"`` (PortraitGAN Eq. 5 as written; its research code computes no feature matching): weight 1.

The result is not multiplied by ``lambda_feat`` (10 in all four papers): the training system owns loss
weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

FMWeighting = Literal["pix2pixhd", "spade", "sum"]


def feature_matching_loss(
    fake_features: Sequence[Sequence[Tensor]],
    real_features: Sequence[Sequence[Tensor]],
    weighting: FMWeighting = "pix2pixhd",
) -> Tensor:
    """Weighted L1 between the discriminator features of generated and real inputs, per scale and layer.

    Both arguments are what a multi-scale discriminator returns: one list of feature maps per scale, the last
    of which is the prediction and is skipped. Real features are detached.
    """
    if len(fake_features) != len(real_features) or len(fake_features) == 0:
        raise ValueError(
            f"expected the same non-zero number of scales, got {len(fake_features)} fake and {len(real_features)} real"
        )
    num_d = len(fake_features)
    terms = []
    for fake_scale, real_scale in zip(fake_features, real_features, strict=True):
        if len(fake_scale) != len(real_scale) or len(fake_scale) < 2:
            raise ValueError(
                "each scale needs the same number (>= 2) of fake and real feature maps, got "
                f"{len(fake_scale)} and {len(real_scale)}"
            )
        num_intermediate = len(fake_scale) - 1
        if weighting == "pix2pixhd":
            weight = (1.0 / num_d) * (4.0 / num_intermediate)
        elif weighting == "spade":
            weight = 1.0 / num_d
        elif weighting == "sum":
            weight = 1.0
        else:
            raise ValueError(
                f"unknown feature-matching weighting {weighting!r}; expected 'pix2pixhd', 'spade' or 'sum'"
            )
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            terms.append(weight * F.l1_loss(fake.float(), real.detach().float()))
    return torch.stack(terms).sum()
