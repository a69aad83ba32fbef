"""PortraitGAN (Duan, Guo, Kuo 2020): landmark- and modality-conditioned cycle GAN with multi-level
adversarial supervision and a Gram texture loss."""

from portrait_models.portraitgan.module import PortraitGAN
from portrait_models.portraitgan.networks import PortraitDiscriminator, PortraitGenerator

__all__ = ["PortraitDiscriminator", "PortraitGAN", "PortraitGenerator"]
