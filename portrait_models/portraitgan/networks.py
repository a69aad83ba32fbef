"""PortraitGAN networks (Duan et al. 2020, §III-B/C): the conditioned generator with auxiliary lower-scale
outputs, the per-level PatchGANs and the frozen VGG19 texture network.

``PortraitGenerator`` is pix2pixHD's global generator on ``[RGB(3) | landmark map(1) | code planes(n)]``
("4 stride-2 convolution layers, followed by nine residual blocks and 4 stride-2 transpose convolutions").
For the multi-level adversarial supervision, level k = 2..K is a 1×1 conv + tanh ("one-channel convolution for
fusion of channels") on the output of up-block ``n_down - k + 1``, i.e. an RGB image at ``S / 2^(k-1)``.
Level 1 is the usual full-resolution output. At the paper size (512², ngf 64, 4 downsamplings, 9 blocks,
4 modalities) the trunk has 182,458,947 parameters and the level-2 head 387.

The texture network is VGG19 ``features`` up to relu5_1, frozen and out of checkpoints. Without the ImageNet
weights (CI, the synthetic world) a random VGG19 is drawn from a dedicated seeded generator, so it is the same
network after a checkpoint reload.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from portrait_models.layers import GlobalGenerator, MultiLevelDiscriminator, init_pix2pixhd_weights
from portrait_models.losses import GramTextureLoss, VGG19Features
from portrait_models.losses.perceptual import VGG19_RELU_X_1, ImageNetNormalize

#: The real image's pyramid for the level-k discriminators: pix2pixHD's downsampler.
#: |I| bound before atanh in the residual output (atanh(±0.999) = ±3.8).
RESIDUAL_CLAMP = 1 - 1e-3

real_pyramid_pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


def image_pyramid(image: Tensor, num_levels: int) -> list[Tensor]:
    """``[I, P(I), P(P(I)), ...]`` with ``num_levels`` entries (full resolution first)."""
    levels = [image]
    for _ in range(num_levels - 1):
        levels.append(real_pyramid_pool(levels[-1]))
    return levels


class PortraitGenerator(nn.Module):
    """G(I, L, c) → [level-1 image (S), level-2 image (S/2), ...].

    Args:
        num_modalities: n, the number of one-hot code planes (0: the single-modality base model of Eq. 4).
        ngf, n_downsample, n_blocks: pix2pixHD global-generator sizes (paper: 64, 4, 9).
        num_levels: K, how many outputs are supervised (1 = no multi-level supervision; at most n_downsample).
        head_norm: keep pix2pixHD's instance norm after the first 7×7 conv. The code planes are constant, so
            that conv turns them into a constant per channel, which instance norm subtracts exactly: with
            ``head_norm=True`` G provably ignores the modality code (tested). The default drops that one norm
            (it has no parameters, so counts are unchanged) and the code reaches G through the head's ReLU.
        skips: add the head's and each down-block's output to the up-block output of the same resolution and
            width (U-Net-style shortcuts without parameters, so the counts hold; not in the paper's layer
            list, the research code's unrun "mixture" G is a U-Net). Off by default.
        residual: the level-1 output is ``tanh(atanh(I) + t)`` with ``t`` the tail conv's pre-activation
            (``I`` clamped to ±(1 - 1e-3)), so G predicts a change of its input; zero ``t`` copies the input.
            Not in the paper (it maps with a plain tanh output); no parameters. Off by default.
    """

    def __init__(
        self,
        num_modalities: int = 4,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 9,
        num_levels: int = 2,
        head_norm: bool = False,
        skips: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= num_levels <= n_downsample:
            raise ValueError(f"num_levels must lie in 1..n_downsample={n_downsample}, got {num_levels}")
        if num_modalities < 0:
            raise ValueError(f"num_modalities must be >= 0, got {num_modalities}")
        self.num_modalities = num_modalities
        self.num_levels = num_levels
        self.n_downsample = n_downsample
        self.skips = skips
        self.residual = residual
        out = "none" if residual else "tanh"
        self.trunk = GlobalGenerator(3 + 1 + num_modalities, 3, ngf, n_downsample, n_blocks, out_activation=out)
        if not head_norm:
            self.trunk.head.norm = nn.Identity()
        # Level k taps up-block n_down - k + 1 (1-based), whose output has ngf * 2^(k-1) channels.
        self.aux_heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ngf * 2 ** (k - 1), 3, 1), nn.Tanh()) for k in range(2, num_levels + 1)
        )
        init_pix2pixhd_weights(self, include_transposed=True)

    @property
    def in_channels(self) -> int:
        return 3 + 1 + self.num_modalities

    def forward(self, image: Tensor, landmark_map: Tensor, code: Tensor | None = None, all_levels: bool = True):
        """Images in [-1, 1]: a list of ``num_levels`` tensors (full resolution first), or with
        ``all_levels=False`` the level-1 tensor only (the aux heads are skipped)."""
        side = 2**self.n_downsample
        if image.shape[-2] % side or image.shape[-1] % side:
            raise ValueError(f"image size {tuple(image.shape[-2:])} must be divisible by 2^n_downsample = {side}")
        parts = [image, landmark_map.to(image.dtype)]
        if self.num_modalities:
            if code is None or code.shape[1] != self.num_modalities:
                got = None if code is None else code.shape[1]
                raise ValueError(f"expected {self.num_modalities} modality code planes, got {got}")
            parts.append(code.to(image.dtype))
        x = torch.cat(parts, dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"G takes 3 image + 1 landmark + {self.num_modalities} code channels, got {x.shape[1]}")
        t = self.trunk
        h = t.head(x)
        encoder = [h]  # the head's and every down-block's output, full resolution first
        for block in t.down:
            h = block(h)
            encoder.append(h)
        h = t.blocks(h)
        taps: dict[int, Tensor] = {}
        n_up = len(t.up)
        for index, block in enumerate(t.up):
            h = block(h)
            if self.skips:  # up-block index+1 matches the encoder output at its resolution and width
                h = h + encoder[n_up - 1 - index]
            level = n_up - index  # output of up-block index+1 feeds level n_up - index (level 1 = tail)
            if all_levels and 2 <= level <= self.num_levels:
                taps[level] = h
        full = t.tail(h)
        if self.residual:
            full = torch.tanh(full + torch.atanh(image.clamp(-RESIDUAL_CLAMP, RESIDUAL_CLAMP)))
        if not all_levels:
            return full
        return [full] + [self.aux_heads[k - 2](taps[k]) for k in range(2, self.num_levels + 1)]


class PortraitDiscriminator(MultiLevelDiscriminator):
    """The K PatchGANs, one per level (three-layer, 70×70 receptive field); image only by default,
    ``in_channels=4`` when the landmark map is concatenated (``d_condition_landmarks``)."""


#: Calibration batch of :func:`calibrate_random_vgg`: seeded uniform noise in [-1, 1], (N, 3, S, S).
CALIBRATION_SHAPE = (8, 3, 64, 64)


@torch.no_grad()
def calibrate_random_vgg(features: VGG19Features, seed: int = 0) -> list[float]:
    """LSUV-style rescaling of a random VGG: walking the layers in order on a seeded noise batch (ImageNet-
    normalised like the texture loss's inputs), each conv's weight and bias are divided by the standard
    deviation of its output, so every conv output has unit variance on that batch. Returns the divisors."""
    generator = torch.Generator().manual_seed(seed)
    x = ImageNetNormalize()(torch.rand(CALIBRATION_SHAPE, generator=generator) * 2 - 1)
    divisors = []
    for layer in features.features:
        if isinstance(layer, nn.Conv2d):
            std = float(layer(x).std())
            layer.weight.div_(std)
            layer.bias.div_(std)
            divisors.append(std)
        x = layer(x)
    return divisors


def texture_network(
    pretrained: bool,
    num_layers: int = 5,
    seed: int = 0,
    calibrate: bool = False,
    layer_weights: Sequence[float] | None = None,
) -> GramTextureLoss:
    """The Gram texture loss (Eq. 7-8) on frozen VGG19 relu1_1 ... relu{num_layers}_1 (ImageNet-normalised
    inputs, Gram / (C·H·W), squared Frobenius norm). ``pretrained=False`` draws the VGG from ``seed``; with
    ``calibrate=True`` that random VGG is then rescaled layer by layer to unit-variance conv outputs
    (:func:`calibrate_random_vgg`; with PyTorch's default init the conv outputs' std on that noise falls from
    0.76 at conv1_1 to 0.05 at conv3_1 and 0.009 at conv5_1, so the deeper Gram matrices of an uncalibrated
    random VGG are nearly zero). Ignored when pretrained. ``layer_weights`` (one per layer; None: the plain sum)
    weight each layer's Gram term."""
    if not 1 <= num_layers <= len(VGG19_RELU_X_1):
        raise ValueError(f"texture_layers must lie in 1..5 (relu1_1 .. relu5_1), got {num_layers}")
    if layer_weights is not None and len(layer_weights) != num_layers:
        raise ValueError(f"{len(layer_weights)} texture_layer_weights for texture_layers={num_layers}")
    ends = VGG19_RELU_X_1[:num_layers]
    if pretrained:
        features = VGG19Features(ends, pretrained=True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features = VGG19Features(ends, pretrained=False)
        if calibrate:
            calibrate_random_vgg(features, seed)
    return GramTextureLoss(
        layer_weights, features=features, imagenet_normalize=True, normalize_gram=True, reduction="frobenius"
    )
