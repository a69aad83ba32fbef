"""Losses shared by the four papers: adversarial, feature matching, perceptual (VGG19), Gram texture, KL."""

from portrait_models.losses.adversarial import (
    discriminator_loss,
    final_predictions,
    generator_loss,
    gradient_penalty,
    hinge_fake,
    hinge_generator,
    hinge_real,
    lsgan_fake,
    lsgan_real,
    vanilla_fake,
    vanilla_real,
    wgan_fake,
    wgan_generator,
    wgan_real,
)
from portrait_models.losses.feature_matching import feature_matching_loss
from portrait_models.losses.gram import GramTextureLoss, gram_loss, gram_matrix
from portrait_models.losses.kl import kl_normal_standard
from portrait_models.losses.perceptual import PerceptualLoss, VGG19Features

__all__ = [
    "GramTextureLoss",
    "PerceptualLoss",
    "VGG19Features",
    "discriminator_loss",
    "feature_matching_loss",
    "final_predictions",
    "generator_loss",
    "gradient_penalty",
    "gram_loss",
    "gram_matrix",
    "hinge_fake",
    "hinge_generator",
    "hinge_real",
    "kl_normal_standard",
    "lsgan_fake",
    "lsgan_real",
    "vanilla_fake",
    "vanilla_real",
    "wgan_fake",
    "wgan_generator",
    "wgan_real",
]
