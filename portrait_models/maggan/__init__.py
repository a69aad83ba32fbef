"""MagGAN (Wei et al. 2020): mask-guided attribute editing on an STGAN backbone.

Networks live in :mod:`portrait_models.maggan.networks`, the loss terms in :mod:`portrait_models.maggan.losses`,
the Lightning system in :mod:`portrait_models.maggan.module` and the editing helpers in
:mod:`portrait_models.maggan.editing`.
"""

from portrait_models.maggan.module import MagGAN
from portrait_models.maggan.networks import (
    AttributeCondition,
    MagGANGenerator,
    MultiLevelDiscriminator,
    SelectiveTransferUnit,
    STGANDiscriminator,
    discriminator_settings,
    generator_settings,
)

__all__ = [
    "MagGAN",
    "AttributeCondition",
    "MagGANGenerator",
    "MultiLevelDiscriminator",
    "STGANDiscriminator",
    "SelectiveTransferUnit",
    "discriminator_settings",
    "generator_settings",
]
