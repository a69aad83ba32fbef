"""MaskGAN (Lee et al., CVPR 2020).

Networks live in :mod:`portrait_models.maskgan.networks`; the official-checkpoint converter in
:mod:`portrait_models.maskgan.convert` (not re-exported here, so ``python -m portrait_models.maskgan.convert``
runs without a double-import warning).
"""

from portrait_models.maskgan.module import MaskGAN
from portrait_models.maskgan.networks import (
    AlphaBlender,
    DenseMappingNetwork,
    MaskGANDiscriminator,
    MaskVAE,
    SpatialAwareStyleEncoder,
    maskvae_loss,
    simulate_edit_latents,
)

__all__ = [
    "AlphaBlender",
    "DenseMappingNetwork",
    "MaskGAN",
    "MaskGANDiscriminator",
    "MaskVAE",
    "SpatialAwareStyleEncoder",
    "maskvae_loss",
    "simulate_edit_latents",
]
