"""Gu et al.'s networks (CVPR 2019), pure modules with every size a constructor argument.

At the official settings (``image_size=256, ngf=64, ae_width=64, latent_dim=512, fc_hidden=1024,
feat_channels=256, n_res_blocks=9, ndf=64``) the trainable parameter counts equal the released networks'
(``mask_guided_official_checkpoint.md``), checked by ``tests/test_mask_guided_networks.py`` on the meta
device: generator trunk (E_m + G_m + E_b + G_b) 12,111,811; encoders skin/hair 20,591,936, eyes 10,101,568,
mouth 50,996,032; feature decoders 7,345,920 / 4,720,128 / 14,966,784; image decoders 20,592,643 /
4,397,251 / 14,643,907; each discriminator 5,555,586. :mod:`portrait_models.mask_guided.convert` loads the
released weights into them.

* :class:`ComponentAutoencoder` (one per component, the "local embedding sub-network"): an encoder of 4×4
  stride-2 conv + BN + ReLU blocks and two fully connected heads (μ, log σ²), a **feature decoder** (the
  component feature tensor placed into the generator's input) and an **image decoder** (``G^i_local`` of
  Eq. 1). Eyes and mouth end at 512×2×3 / 512×5×9 grids, skin and hair at 512×2×2; the number of strided
  blocks scales with the image size so the bottleneck shape is fixed (specs/mask_guided.md §2.10). The
  autoencoders' BatchNorm momentum is the official 0.9.
* :class:`MaskGuidedGenerator`: mask encoder E_m (c7s1 + two 3×3 stride-2 convs, 4·ngf × S/4), the
  mask-guided generator G_m (1×1 fuse conv, residual blocks, two 4×4 transposed convs, ngf × S features,
  no RGB layer as in the code), background fusing E_b (c7s1 on the whole target image, masked to the
  background afterwards) and G_b (1×1 conv, c7s1 to RGB, tanh). Ablations of Table 1: ``local_paste``
  (no E_b/G_b; an RGB head on G_m and the target background pasted) and ``global_paste`` (one global
  autoencoder of the whole foreground instead of five local ones, then as ``local_paste``).
* :class:`MaskGuidedDiscriminator`: pix2pixHD's two-scale PatchGAN with BN on ``[one-hot label (11), image]``.
* :class:`Pix2PixUNet`: the official parser netP's shape (pix2pix U-Net, 6 downsamplings), only for loading
  the released parser; the project default parser is ``portrait_models.parsing.UNet``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from portrait_models.distributed import randn_rows
from portrait_models.layers.blocks import ConvNormAct, ResnetBlock, c7s1, downsample_stack, init_pix2pixhd_weights
from portrait_models.layers.discriminators import MultiscaleDiscriminator
from portrait_models.mask_guided.components import (
    COMPONENTS,
    PLACED,
    check_image_size,
    component_mask,
    crop_size,
    onehot_labels,
    place_features,
)

ComponentKind = Literal["eye", "mouth", "full"]
Ablation = Literal["full", "local_paste", "global_paste"]
ABLATIONS: tuple[str, ...] = ("full", "local_paste", "global_paste")
#: Component -> autoencoder kind.
COMPONENT_KINDS: dict[str, ComponentKind] = {
    "left_eye": "eye",
    "right_eye": "eye",
    "skin": "full",
    "hair": "full",
    "mouth": "mouth",
    "face": "full",  # the global autoencoder of ablation setting 1
}
#: Bottleneck grid (h, w) of each kind: fixed at every image size.
BOTTLENECK: dict[str, tuple[int, int]] = {"eye": (2, 3), "mouth": (5, 9), "full": (2, 2)}
AE_BN_MOMENTUM = 0.9


def _log2(value: int, what: str) -> int:
    n = int(math.log2(value))
    if 2**n != value:
        raise ValueError(f"{what} must be a power of two, got {value}")
    return n


def encoder_widths(kind: ComponentKind, image_size: int, width: int) -> list[int]:
    """Output widths of the strided encoder blocks (official at 256, ``width=64``: eyes/mouth 64..512, skin
    and hair 64, 128, 256, 512, 512, 512, 512)."""
    n = _log2(image_size // 16, "image_size / 16") if kind != "full" else _log2(image_size // 2, "image_size / 2")
    top = 8 * width
    if kind == "full":
        return [top >> max(0, j - 3) for j in range(n - 1, -1, -1)]
    return [top >> j for j in range(n - 1, -1, -1)]


def image_decoder_widths(kind: ComponentKind, image_size: int, width: int) -> list[int]:
    """Output widths of the image decoder's transposed-conv blocks (official: eyes/mouth 256, 128, 64, 64;
    skin/hair 512, 512, 512, 512, 256, 128, 64)."""
    n = len(encoder_widths(kind, image_size, width))
    if kind == "full":
        return [min(8 * width, width << j) for j in range(n - 1, -1, -1)]
    return [width if j == 0 else min(8 * width, width << (j - 1)) for j in range(n - 1, -1, -1)]


def feature_decoder_blocks(kind: ComponentKind, image_size: int) -> int:
    """Number of stride-2 blocks from the bottleneck to the placed feature (0: one stride-1 block)."""
    if kind == "full":
        return _log2(image_size // 8, "image_size / 8")
    return _log2(image_size // 64, "image_size / 64")


def _down_block(c_in: int, c_out: int) -> ConvNormAct:
    return ConvNormAct(c_in, c_out, 4, 2, 1, norm="batch", act="relu")


def _up_block(c_in: int, c_out: int, stride: int = 2) -> ConvNormAct:
    if stride == 2:
        return ConvNormAct(c_in, c_out, 4, 2, 1, norm="batch", act="relu", transposed=True)
    return ConvNormAct(c_in, c_out, 3, 1, 1, norm="batch", act="relu", transposed=True)


def _fc_head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c_out))


class Codes(NamedTuple):
    mu: Tensor
    logvar: Tensor
    z: Tensor


class ComponentEncoder(nn.Module):
    """Crop -> (μ, log σ²): strided conv blocks, flatten, two separate ``Linear-ReLU-Linear`` heads."""

    def __init__(self, kind: ComponentKind, image_size: int, width: int, latent_dim: int, fc_hidden: int) -> None:
        super().__init__()
        widths = encoder_widths(kind, image_size, width)
        self.blocks = nn.Sequential(*(_down_block(a, b) for a, b in zip([3, *widths[:-1]], widths, strict=True)))
        gh, gw = BOTTLENECK[kind]
        flat = widths[-1] * gh * gw
        self.fc_mu = _fc_head(flat, fc_hidden, latent_dim)
        self.fc_var = _fc_head(flat, fc_hidden, latent_dim)

    def forward(self, crop: Tensor) -> tuple[Tensor, Tensor]:
        h = self.blocks(crop).flatten(1)
        return self.fc_mu(h), self.fc_var(h)


class _GridDecoder(nn.Module):
    """Latent -> ``Linear`` (no bias for the eyes, as released) -> bottleneck grid -> transposed-conv blocks."""

    def __init__(self, kind: ComponentKind, latent_dim: int, grid_channels: int, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.grid = (grid_channels, *BOTTLENECK[kind])
        self.fc = nn.Linear(latent_dim, math.prod(self.grid), bias=kind != "eye")
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: Tensor) -> Tensor:
        return self.blocks(self.fc(z).view(z.shape[0], *self.grid))


class FeatureDecoder(_GridDecoder):
    """Latent -> the component feature tensor: ``feat_channels`` × (placed size, or S/4 × S/4 for skin/hair)."""

    def __init__(self, kind: ComponentKind, image_size: int, width: int, latent_dim: int, feat_channels: int) -> None:
        top = 8 * width
        n = feature_decoder_blocks(kind, image_size)
        if n == 0:
            blocks = [_up_block(top, feat_channels, stride=1)]
        else:
            blocks = [_up_block(a, feat_channels) for a in [top] + [feat_channels] * (n - 1)]
        super().__init__(kind, latent_dim, top, blocks)


class ImageDecoder(_GridDecoder):
    """Latent -> the component crop in [-1, 1] (``G^i_local``): blocks, then reflect-padded 5×5 conv + tanh."""

    def __init__(self, kind: ComponentKind, image_size: int, width: int, latent_dim: int) -> None:
        outs = image_decoder_widths(kind, image_size, width)
        ins = [8 * width, *outs[:-1]]
        blocks: list[nn.Module] = [_up_block(a, b) for a, b in zip(ins, outs, strict=True)]
        blocks.append(ConvNormAct(outs[-1], 3, 5, 1, 2, pad_mode="reflect", act="tanh"))
        super().__init__(kind, latent_dim, 8 * width, blocks)


class ComponentAutoencoder(nn.Module):
    """One component's encoder with its feature and image decoders (VAE-shaped, as released)."""

    def __init__(
        self,
        kind: ComponentKind,
        image_size: int = 256,
        width: int = 64,
        latent_dim: int = 512,
        fc_hidden: int = 1024,
        feat_channels: int = 256,
    ) -> None:
        super().__init__()
        check_image_size(image_size)
        self.kind = kind
        self.encoder = ComponentEncoder(kind, image_size, width, latent_dim, fc_hidden)
        self.feature_decoder = FeatureDecoder(kind, image_size, width, latent_dim, feat_channels)
        self.image_decoder = ImageDecoder(kind, image_size, width, latent_dim)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = AE_BN_MOMENTUM

    def encode(self, crop: Tensor, sample: bool) -> Codes:
        """(μ, log σ², z) with ``z = μ + ε·exp(½ log σ²)`` when ``sample`` (training), else ``z = μ``."""
        mu, logvar = self.encoder(crop)
        z = mu + randn_rows(mu) * (0.5 * logvar).exp() if sample else mu  # DDP: the global batch's draw
        return Codes(mu, logvar, z)


class MaskGuidedGenerator(nn.Module):
    """Everything trained by the generator optimizer: the component autoencoders, E_m, G_m, E_b, G_b.

    The forward path is split so training, editing and the converter share it:
    ``encode`` (crops -> codes), ``decode_features`` / ``decode_images`` (codes -> feature tensors / crops),
    ``fuse`` (features placed at the **target** centres, concatenated after E_m(target mask) in the official
    channel order ``[F_m | left eye | right eye | skin | hair | mouth]``) and ``render`` (G_m, then
    background fusion or paste).
    """

    def __init__(
        self,
        image_size: int = 256,
        num_classes: int = 11,
        ngf: int = 64,
        ae_width: int = 64,
        latent_dim: int = 512,
        fc_hidden: int = 1024,
        feat_channels: int = 256,
        n_res_blocks: int = 9,
        ablation: Ablation = "full",
        bg_mask_input: bool = False,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
        self.image_size = check_image_size(image_size)
        self.num_classes = num_classes
        self.ablation = ablation
        self.bg_mask_input = bg_mask_input
        self.feat_channels = feat_channels
        names = ("face",) if ablation == "global_paste" else COMPONENTS
        self.autoencoders = nn.ModuleDict(
            {
                name: ComponentAutoencoder(
                    COMPONENT_KINDS[name], image_size, ae_width, latent_dim, fc_hidden, feat_channels
                )
                for name in names
            }
        )
        self.mask_encoder = nn.Sequential(
            c7s1(num_classes, ngf, "batch"), *downsample_stack([ngf, 2 * ngf, 4 * ngf], "batch")
        )
        self.fuse_conv = nn.Conv2d(4 * ngf + len(names) * feat_channels, 4 * ngf, 1)
        self.blocks = nn.Sequential(*(ResnetBlock(4 * ngf, "batch", "reflect") for _ in range(n_res_blocks)))
        self.up = nn.Sequential(
            ConvNormAct(4 * ngf, 2 * ngf, 4, 2, 1, norm="batch", act="relu", transposed=True),
            ConvNormAct(2 * ngf, ngf, 4, 2, 1, norm="batch", act="relu", transposed=True),
        )
        if ablation == "full":
            self.bg_encoder = c7s1(3, ngf, "batch")
            self.bg_decoder = nn.Sequential(nn.Conv2d(2 * ngf, ngf, 1), c7s1(ngf, 3, norm="none", act="tanh"))
        else:
            self.rgb_head = c7s1(ngf, 3, norm="none", act="tanh")
        if init_weights:
            init_pix2pixhd_weights(self)

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(self.autoencoders.keys())

    @property
    def feature_stride(self) -> int:
        return 4

    def encode(self, crops: dict[str, Tensor], sample: bool) -> dict[str, Codes]:
        return {name: ae.encode(crops[name], sample) for name, ae in self.autoencoders.items()}

    def decode_features(self, z: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: self.autoencoders[name].feature_decoder(z[name]) for name in self.component_names}

    def decode_images(self, z: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: self.autoencoders[name].image_decoder(z[name]) for name in self.component_names}

    def fuse(self, features: dict[str, Tensor], centres: Tensor, mask_feature: Tensor) -> Tensor:
        """G_m's input: the mask feature ``E_m(target mask)`` then each component feature, eyes and mouth
        placed at ``centres`` (the target's, ``(B, 3, 2)``), skin and hair (or the global face map) as they
        are."""
        map_size = mask_feature.shape[-1]
        blocks = [mask_feature]
        for name in self.component_names:
            f = features[name]
            if name in PLACED:
                f = place_features(f, centres[:, PLACED.index(name)], map_size, self.feature_stride)
            elif f.shape[-1] != map_size:
                raise ValueError(f"{name} feature is {tuple(f.shape[-2:])}, expected {map_size}x{map_size}")
            blocks.append(f)
        return torch.cat(blocks, 1)

    def face_features(self, fused: Tensor) -> Tensor:
        """G_m: the ngf × S × S foreground feature map."""
        return self.up(self.blocks(self.fuse_conv(fused)))

    def render(
        self, fused: Tensor, target_image: Tensor, target_background: Tensor, background_feature: Tensor | None = None
    ) -> Tensor:
        """The output image: G_b(face ⊕ E_b(x^t)·M_bg) (full) or RGB(face)·(1−M_bg) + x^t·M_bg (paste).
        ``background_feature`` may be passed when already computed for this target."""
        face = self.face_features(fused)
        if self.ablation == "full":
            if background_feature is None:
                background_feature = self.background_features(target_image, target_background)
            return self.bg_decoder(torch.cat([face, background_feature], 1))
        return self.rgb_head(face) * (1 - target_background) + target_image * target_background

    def background_features(self, target_image: Tensor, target_background: Tensor) -> Tensor:
        """E_b(x^t) ⊙ M_bg (official), or E_b(x^t ⊙ M_bg) ⊙ M_bg with ``bg_mask_input`` (the paper's order)."""
        source = target_image * target_background if self.bg_mask_input else target_image
        return self.bg_encoder(source) * target_background

    def generate(
        self, features: dict[str, Tensor], target_image: Tensor, target_label: Tensor, target_centres: Tensor
    ) -> Tensor:
        """One full forward from component features to the image, for the (grown) target label."""
        onehot = onehot_labels(target_label, self.num_classes, target_image.dtype)
        background = component_mask(target_label, "background").to(target_image.dtype)
        fused = self.fuse(features, target_centres, self.mask_encoder(onehot))
        return self.render(fused, target_image, background)


class MaskGuidedDiscriminator(MultiscaleDiscriminator):
    """D or D2: two-scale PatchGAN with BatchNorm on ``cat[one-hot label, image]``; per scale the feature list
    ends with ``[penultimate 8·ndf stride-1 feature, logits]``."""

    def __init__(self, num_classes: int = 11, ndf: int = 64, n_layers: int = 3, num_d: int = 2) -> None:
        super().__init__(num_classes + 3, ndf, n_layers, num_d, norm="batch")

    def forward(self, onehot: Tensor, image: Tensor) -> list[list[Tensor]]:  # type: ignore[override]
        return super().forward(torch.cat([onehot, image], 1))


class _UNetSkip(nn.Module):
    """One level of the pix2pix U-Net: ``[x, up(sub(down(x)))]`` (innermost has no sub-block)."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, outermost: bool, dropout: bool) -> None:
        super().__init__()
        self.outermost = outermost
        self.down = nn.Conv2d(outer if not outermost else 3, inner, 4, 2, 1, bias=False)
        self.down_norm = nn.Identity() if outermost or sub is None else nn.BatchNorm2d(inner)
        self.sub = sub
        up_in = inner if sub is None else 2 * inner
        self.up = nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=outermost)
        self.up_norm = nn.Identity() if outermost else nn.BatchNorm2d(outer)
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.down_norm(self.down(x if self.outermost else nn.functional.leaky_relu(x, 0.2)))
        if self.sub is not None:
            h = self.sub(h)
        h = self.up(torch.relu(h))
        if self.outermost:
            return h
        return torch.cat([x, self.dropout(self.up_norm(h))], 1)


class Pix2PixUNet(nn.Module):
    """The official parser netP's shape: pix2pix ``UnetGenerator(3 -> num_classes, num_downs 6, ngf 64, BN)``.

    Returns logits (the official forward applies tanh then softmax; argmax is unchanged by both, and the
    parsing loss here is cross-entropy on logits, specs/mask_guided.md Q2). Inputs must be multiples of 64.
    """

    def __init__(self, num_classes: int = 11, ngf: int = 64, num_downs: int = 6, dropout: bool = True) -> None:
        super().__init__()
        block = _UNetSkip(8 * ngf, 8 * ngf, None, False, False)
        for _ in range(num_downs - 5):
            block = _UNetSkip(8 * ngf, 8 * ngf, block, False, dropout)
        for outer in (4 * ngf, 2 * ngf, ngf):
            block = _UNetSkip(outer, 2 * outer, block, False, False)
        self.root = _UNetSkip(num_classes, ngf, block, True, False)
        self.num_downs = num_downs

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2**self.num_downs or x.shape[-2] % 2**self.num_downs:
            raise ValueError(f"Pix2PixUNet needs H and W divisible by {2**self.num_downs}, got {tuple(x.shape)}")
        return self.root(x)


def official_crop_sizes(image_size: int) -> dict[str, tuple[int, int]]:
    """Crop (height, width) of every component at ``image_size`` (skin and hair: the full image)."""
    sizes = {name: crop_size(name, image_size) for name in PLACED}
    return {name: sizes.get(name, (image_size, image_size)) for name in COMPONENTS}
