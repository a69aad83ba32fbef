"""The CelebAMask-HQ face-parsing U-Net (switchablenorms/CelebAMask-HQ ``face_parsing/unet.py``).

Shape, as the official code builds it (reference_implementations.md §1.4):

* widths ``[64, 128, 256, 512, 1024] / feature_scale`` (official ``feature_scale=4``: 16 … 256);
* every level is two ``Conv3×3 (bias) → BN → ReLU``; ``MaxPool 2×2`` between the four encoder levels;
* decoder levels upsample with ``ConvTranspose 2×2, stride 2`` (``in → out`` channels), concatenate the
  skip feature *before* the upsampled one, and run the same two-conv block (with BN, as the official
  ``unetUp`` passes ``is_batchnorm`` through);
* a final ``1×1`` convolution gives ``n_classes`` logits at the input resolution.

Sub-module names follow the official ones (``conv1`` … ``conv4``, ``center``, ``up_concat4`` …
``up_concat1``, ``final``; inside a block ``conv1``/``conv2`` as ``Conv, BN, ReLU`` sequences), so a state
dict saved by the official trainer loads with ``load_state_dict(strict=True)``.

Deviation: with ``is_deconv=False`` the official block upsamples bilinearly *without* changing the
channel count and then feeds ``in + out`` channels to a conv that expects ``in``, which fails at run
time. Here the bilinear branch is followed by a ``1×1`` conv ``in → out``, so both branches hand the same
number of channels to the block. The official code also pads the skip feature by the size difference;
we instead require H and W to be multiples of 16 (four poolings) and say so in a clear error.

Gu et al.'s fixed parsing network ``netP`` is a different, pix2pix-style U-Net (§4.3); this U-Net with
``n_classes=11`` serves as the project's Helen parser for their parsing loss.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet", "UNetConvBlock", "UNetUpBlock"]

_BASE_WIDTHS = (64, 128, 256, 512, 1024)


def _conv_bn_relu(in_channels: int, out_channels: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNetConvBlock(nn.Module):
    """Two ``Conv3×3 → [BN] → ReLU`` layers at one resolution."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels, out_channels, batchnorm)
        self.conv2 = _conv_bn_relu(out_channels, out_channels, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class UNetUpBlock(nn.Module):
    """Upsample ×2 (``in → out`` channels), concatenate ``[skip, up]`` and run a :class:`UNetConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, deconv: bool = True, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv = UNetConvBlock(in_channels, out_channels, batchnorm)
        if deconv:
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:  # see the module docstring: the 1×1 conv makes the official bilinear option usable
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )

    def forward(self, skip: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(below)], dim=1))


class UNet(nn.Module):
    """Official CelebAMask-HQ parsing U-Net: images ``(B, in, H, W)`` → logits ``(B, n_classes, H, W)``.

    The official recipe feeds images normalised with mean = std = 0.5, i.e. the project's ``[-1, 1]``
    range, so no extra normalisation happens here. ``H`` and ``W`` must be multiples of 16.
    """

    def __init__(
        self,
        n_classes: int = 19,
        in_channels: int = 3,
        feature_scale: int = 4,
        is_deconv: bool = True,
        is_batchnorm: bool = True,
    ) -> None:
        super().__init__()
        if feature_scale < 1 or 64 % feature_scale:
            raise ValueError(f"feature_scale must divide 64 (1, 2, 4, 8, 16, 32 or 64), got {feature_scale}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        self.n_classes = n_classes
        self.in_channels = in_channels
        w = [c // feature_scale for c in _BASE_WIDTHS]

        self.conv1 = UNetConvBlock(in_channels, w[0], is_batchnorm)
        self.conv2 = UNetConvBlock(w[0], w[1], is_batchnorm)
        self.conv3 = UNetConvBlock(w[1], w[2], is_batchnorm)
        self.conv4 = UNetConvBlock(w[2], w[3], is_batchnorm)
        self.center = UNetConvBlock(w[3], w[4], is_batchnorm)
        self.pool = nn.MaxPool2d(kernel_size=2)

        self.up_concat4 = UNetUpBlock(w[4], w[3], is_deconv, is_batchnorm)
        self.up_concat3 = UNetUpBlock(w[3], w[2], is_deconv, is_batchnorm)
        self.up_concat2 = UNetUpBlock(w[2], w[1], is_deconv, is_batchnorm)
        self.up_concat1 = UNetUpBlock(w[1], w[0], is_deconv, is_batchnorm)
        self.final = nn.Conv2d(w[0], n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % 16 or width % 16:
            raise ValueError(f"UNet needs H and W divisible by 16 (four 2×2 poolings), got {height}×{width}")
        s1 = self.conv1(x)
        s2 = self.conv2(self.pool(s1))
        s3 = self.conv3(self.pool(s2))
        s4 = self.conv4(self.pool(s3))
        bottom = self.center(self.pool(s4))
        y = self.up_concat4(s4, bottom)
        y = self.up_concat3(s3, y)
        y = self.up_concat2(s2, y)
        y = self.up_concat1(s1, y)
        return self.final(y)
