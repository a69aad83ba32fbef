"""PatchGAN discriminators (Isola et al. 2017) in the pix2pixHD form, returning intermediate features.

``NLayerDiscriminator`` with ``n_layers = 3``, ``ndf = 64`` is pix2pixHD's ``C64-C128-C256-C512`` + 1-channel
output: 4x4 kernels with padding 2 (``ceil((k - 1) / 2)``), stride 2 for the first ``n_layers`` convs and
stride 1 for the last two, LeakyReLU 0.2 everywhere, no norm on the first conv. Every layer's output is
returned so the generator can use the intermediate ones for feature matching; the last entry is the patch
prediction (logits).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from portrait_models.layers.blocks import ConvNormAct, init_pix2pixhd_weights
from portrait_models.layers.norms import NormKind


class NLayerDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` strided stages; ``forward`` returns ``n_layers + 2`` feature maps.

    ``layers[0]``: conv (stride 2, no norm) + LReLU; ``layers[1..n_layers-1]``: conv (stride 2) + norm +
    LReLU; ``layers[n_layers]``: conv (stride 1) + norm + LReLU; ``layers[n_layers+1]``: conv (stride 1) to
    one channel (plus a sigmoid when ``use_sigmoid``). Widths double from ``ndf`` up to ``max_channels``.
    ``spectral_norm`` wraps the normalised convs (SPADE's ``spectralinstance``).
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormKind = "instance",
        max_channels: int = 512,
        kernel_size: int = 4,
        padding: int | None = None,
        use_sigmoid: bool = False,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        pad = math.ceil((kernel_size - 1) / 2) if padding is None else padding
        layers: list[nn.Module] = [ConvNormAct(in_channels, ndf, kernel_size, 2, pad, act="lrelu")]
        width = ndf
        for index in range(1, n_layers + 1):
            prev, width = width, min(width * 2, max_channels)
            stride = 2 if index < n_layers else 1
            layers.append(
                ConvNormAct(prev, width, kernel_size, stride, pad, norm=norm, act="lrelu", spectral_norm=spectral_norm)
            )
        layers.append(ConvNormAct(width, 1, kernel_size, 1, pad, act="sigmoid" if use_sigmoid else "none"))
        self.layers = nn.ModuleList(layers)
        self.n_layers = n_layers

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` identical PatchGANs on an image pyramid (pix2pixHD).

    ``discriminators[i]`` sees the input downsampled ``i`` times by ``AvgPool2d(3, stride 2, padding 1,
    count_include_pad=False)``; ``forward`` returns one feature list per scale, full resolution first. (The
    official pix2pixHD naming is reversed: its ``scale{num_d-1}`` sees full resolution. The MaskGAN converter
    handles that mapping.) Weights are initialised with pix2pixHD's N(0, 0.02) unless ``init_weights=False``.
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_d: int = 2,
        norm: NormKind = "instance",
        max_channels: int = 512,
        use_sigmoid: bool = False,
        spectral_norm: bool = False,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}")
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(
                in_channels,
                ndf,
                n_layers,
                norm,
                max_channels,
                use_sigmoid=use_sigmoid,
                spectral_norm=spectral_norm,
            )
            for _ in range(num_d)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        if init_weights:
            init_pix2pixhd_weights(self)

    @property
    def num_d(self) -> int:
        return len(self.discriminators)

    @property
    def n_layers(self) -> int:
        return self.discriminators[0].n_layers

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        outputs = []
        for index, discriminator in enumerate(self.discriminators):
            if index > 0:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs


class MultiLevelDiscriminator(nn.Module):
    """One PatchGAN per level of a generator's image pyramid (PortraitGAN's multi-level supervision).

    Unlike :class:`MultiscaleDiscriminator` it does **no** downsampling: ``forward`` takes a list of images,
    full resolution first (a generator's level outputs, or the real image's pyramid), feeds image ``k`` to
    ``discriminators[k]`` and returns one feature list per level, the structure the adversarial and
    feature-matching losses take. A single tensor is treated as a one-level list.
    """

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_levels: int = 2,
        norm: NormKind = "instance",
        max_channels: int = 512,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(in_channels, ndf, n_layers, norm, max_channels) for _ in range(num_levels)
        )
        if init_weights:
            init_pix2pixhd_weights(self)

    @property
    def num_levels(self) -> int:
        return len(self.discriminators)

    def forward(self, levels: Tensor | list[Tensor] | tuple[Tensor, ...]) -> list[list[Tensor]]:
        levels = [levels] if isinstance(levels, Tensor) else list(levels)
        if len(levels) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} images (one per level), got {len(levels)}")
        return [d(x) for d, x in zip(self.discriminators, levels, strict=True)]
