"""Gram-matrix texture loss (Gatys et al. 2016; PortraitGAN Eqs. 7-8).

The Gram matrix of a feature map ``F`` (C channels, N = H·W positions) is ``G[k, l] = sum_i F_k(i) F_l(i)``
(PortraitGAN Eq. 7). It is divided by ``C·H·W`` by default (Johnson et al.'s convention) so that its scale
does not grow with the image size; ``normalize=False`` gives the raw sum of Eq. 7. The texture loss at a layer
is the squared distance between the Gram matrices of generated and target images (Eq. 8), taken as the mean
squared difference over Gram entries and batch (``reduction="mean"``) or, as PortraitGAN writes it, the
squared Frobenius norm summed over entries and averaged over the batch (``reduction="frobenius"``); layers are
combined with weights.

PortraitGAN names the layers "conv1_1-conv5_1 of VGG19" but not the input normalisation, and no public code
contains the loss; :class:`GramTextureLoss` defaults to relu1_1 ... relu5_1 (Caffe's in-place ReLU makes the
conv_x_1 blobs post-ReLU) with equal weights and ImageNet-normalised inputs (the statistics VGG19 was trained
with, as in neural style transfer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from portrait_models.layers.frozen import FrozenModule
from portrait_models.losses.perceptual import VGG19_RELU_X_1, ImageNetNormalize, VGG19Features

GramReduction = Literal["mean", "frobenius"]


def gram_matrix(features: Tensor, normalize: bool = True) -> Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrices in fp32, divided by C·H·W when ``normalize``."""
    if features.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) features, got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.float().reshape(b, c, h * w)
    gram = torch.bmm(flat, flat.transpose(1, 2))
    return gram / (c * h * w) if normalize else gram


def gram_loss(
    fake_features: Sequence[Tensor],
    real_features: Sequence[Tensor],
    layer_weights: Sequence[float] | None = None,
    normalize: bool = True,
    reduction: GramReduction = "mean",
) -> Tensor:
    """``sum_l w_l * d(gram(fake_l), gram(real_l))``; real features are detached. ``d`` is the mean squared
    difference (``"mean"``) or the squared Frobenius norm per sample, averaged over the batch (``"frobenius"``)."""
    if reduction not in ("mean", "frobenius"):
        raise ValueError(f"reduction must be 'mean' or 'frobenius', got {reduction!r}")
    if len(fake_features) != len(real_features) or len(fake_features) == 0:
        raise ValueError(
            f"expected the same non-zero number of layers, got {len(fake_features)} and {len(real_features)}"
        )
    weights = [1.0] * len(fake_features) if layer_weights is None else list(layer_weights)
    if len(weights) != len(fake_features):
        raise ValueError(f"{len(weights)} layer weights for {len(fake_features)} feature layers")
    terms = []
    for w, f, r in zip(weights, fake_features, real_features, strict=True):
        diff = gram_matrix(f, normalize) - gram_matrix(r.detach(), normalize)
        distance = diff.square().mean() if reduction == "mean" else diff.square().sum(dim=(1, 2)).mean()
        terms.append(w * distance)
    return torch.stack(terms).sum()


class GramTextureLoss(nn.Module):
    """Gram texture loss on frozen VGG19 features of images in [-1, 1]: ``forward(fake, target)``.

    ``features`` may pass an already built :class:`VGG19Features` (e.g. shared with a perceptual loss);
    otherwise one is built from ``slice_ends``/``pretrained``/``weights_path``.
    """

    def __init__(
        self,
        layer_weights: Sequence[float] | None = None,
        imagenet_normalize: bool = True,
        normalize_gram: bool = True,
        pretrained: bool = True,
        weights_path: str | Path | None = None,
        slice_ends: Sequence[int] = VGG19_RELU_X_1,
        features: VGG19Features | None = None,
        reduction: GramReduction = "mean",
    ) -> None:
        super().__init__()
        self.reduction: GramReduction = reduction
        extractor = features if features is not None else VGG19Features(slice_ends, pretrained, weights_path)
        self.layer_weights = None if layer_weights is None else tuple(float(w) for w in layer_weights)
        self.normalize_gram = normalize_gram
        self.normalize: nn.Module = ImageNetNormalize() if imagenet_normalize else nn.Identity()
        self.vgg = FrozenModule(extractor)

    def forward(self, fake: Tensor, target: Tensor) -> Tensor:
        fake_features = self.vgg(self.normalize(fake))
        with torch.no_grad():
            target_features = self.vgg(self.normalize(target))
        return gram_loss(fake_features, target_features, self.layer_weights, self.normalize_gram, self.reduction)
