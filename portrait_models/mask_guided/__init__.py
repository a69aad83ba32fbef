"""Mask-guided portrait editing (Gu et al., CVPR 2019).

Pure tensor functions (centres, crops, label growth, placement) live in
:mod:`portrait_models.mask_guided.components`, networks in :mod:`portrait_models.mask_guided.networks`,
the Lightning system in :mod:`portrait_models.mask_guided.module`, editing helpers in
:mod:`portrait_models.mask_guided.editing`; the official-checkpoint converter
:mod:`portrait_models.mask_guided.convert` is not re-exported (``python -m`` runs it without a double import).
"""

from portrait_models.mask_guided.module import LOSS_PRESETS, MaskGuidedSystem
from portrait_models.mask_guided.networks import (
    ComponentAutoencoder,
    MaskGuidedDiscriminator,
    MaskGuidedGenerator,
    Pix2PixUNet,
)

__all__ = [
    "LOSS_PRESETS",
    "ComponentAutoencoder",
    "MaskGuidedDiscriminator",
    "MaskGuidedGenerator",
    "MaskGuidedSystem",
    "Pix2PixUNet",
]
