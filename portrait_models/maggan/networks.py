"""MagGAN's networks (Wei et al. 2020) on STGAN's encoder / STU / decoder, as pure ``nn.Module``s.

Generator (§3.3, STGAN code defaults for everything the paper leaves open, spec §2.1):

* encoder: ``L`` × [conv 4×4 s2 → BatchNorm → LeakyReLU(0.2)], widths ``min(enc_dim·2^i, max_dim)``;
* selective transfer units (ConvGRU, deepest first) on the ``shortcut_layers`` finest-but-one encoder maps;
  the state starts as ``cat(z_{L-1}, Att)`` and the attribute condition is re-injected after every unit;
* decoder: ``L−1`` × [deconv 4×4 s2 → BN → ReLU] then deconv → 3 → tanh, with the STU outputs (shortcuts) and
  the condition concatenated after each up-layer (``decoder="bn_concat"``, STGAN) or the condition entering
  through a SPADE de-normalisation of ``cat(feature, Att)`` (``decoder="spade"``, the "SP" of Table 3);
* attribute condition (eq. 12): ``conditioning="replicated"`` tiles ``att_diff`` (STGAN); ``"mask"`` gives
  channel ``i`` the value ``att_diff_i · M_i^{sgn(att_diff_i)}``, with the influence regions ``M_i^±`` of the
  source image's soft parse (``datamodules.attribute_regions``), area-resized to every feature size;
* optional blending output (eq. 13) and the MagGAN+Seg FCN-8s mask branch (Table 3 vii).

Discriminators (§3.4): :class:`STGANDiscriminator` (conv trunk + adversarial and attribute fc heads) and
:class:`MultiLevelDiscriminator` (identical shallow Ds without shared weights; level ``k`` sees the image
area-resized to ``level_size·2^(k−1)``, cut into non-overlapping ``level_size`` tiles; its adversarial
score is the mean over tiles and its classifier reads the mean tile feature). One level at the image size
is STGAN's single D; :func:`discriminator_settings` gives the paper's levels per resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.attribute_regions import attribute_part_matrices, influence_regions, preserved_region_mask
from datamodules.labels import EDIT_ATTRIBUTES, NUM_CELEBAMASK_CLASSES
from portrait_models.layers.norms import SPADE, InstanceNorm2d

Conditioning = Literal["replicated", "mask"]
DecoderKind = Literal["bn_concat", "spade"]


# ------------------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class GeneratorSettings:
    """Depth and widths of the generator at one resolution (spec §2.2: 8×8 bottleneck, base 64·256/H)."""

    num_layers: int
    enc_dim: int
    dec_dim: int
    shortcut_layers: int


def generator_settings(image_size: int, bottleneck: int = 8, base_at_256: int = 64) -> GeneratorSettings:
    """The scaling rule for 256/512/1024: keep a ``bottleneck``² bottleneck, halve the base width per
    doubling, and put a shortcut + STU on every non-bottleneck level."""
    layers = int(round(math.log2(image_size / bottleneck)))
    if bottleneck * 2**layers != image_size:
        raise ValueError(f"image_size {image_size} is not {bottleneck}·2^k; MagGAN's rule needs a power of two")
    base = max(1, base_at_256 * 256 // image_size)
    return GeneratorSettings(num_layers=layers, enc_dim=base, dec_dim=base, shortcut_layers=layers - 1)


def discriminator_settings(image_size: int, level_size: int = 256) -> tuple[int, int]:
    """``(levels, level_size)``: P = log2(H/256) + 1 levels of 256² Ds (spec A12); one level below 256."""
    if image_size <= level_size:
        return 1, image_size
    levels = int(round(math.log2(image_size / level_size))) + 1
    if level_size * 2 ** (levels - 1) != image_size:
        raise ValueError(f"image_size {image_size} is not level_size {level_size} times a power of two")
    return levels, level_size


def _widths(base: int, layers: int, max_dim: int) -> list[int]:
    return [min(base * 2**i, max_dim) for i in range(layers)]


def resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-downsample (or bilinearly upsample) (B, C, h, w) maps to ``size``; identity when equal.

    Area pooling is linear, so pooling eq. (12)'s condition equals building it from pooled masks, and it
    keeps soft masks summing to 1; so does bilinear upsampling (spec A28).
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if maps.shape[-2] >= size[0] and maps.shape[-1] >= size[1]:
        return F.interpolate(maps, size=size, mode="area")
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------ condition
class AttributeCondition(nn.Module):
    """The attribute condition tensor at any feature size: replicated (STGAN) or mask-guided (eq. 12).

    The attribute–part matrices are buffers built from ``datamodules.attribute_regions`` (not saved in
    checkpoints: the table is code). ``maps(att_diff, soft_masks, size)`` returns (B, C, *size).
    """

    def __init__(self, conditioning: Conditioning = "mask", attributes: tuple[str, ...] = EDIT_ATTRIBUTES) -> None:
        super().__init__()
        if conditioning not in ("replicated", "mask"):
            raise ValueError(f"conditioning must be 'replicated' or 'mask', got {conditioning!r}")
        self.conditioning = conditioning
        ar_plus, ar_minus = attribute_part_matrices(attributes)
        self.register_buffer("ar_plus", ar_plus, persistent=False)
        self.register_buffer("ar_minus", ar_minus, persistent=False)

    @property
    def num_attributes(self) -> int:
        return self.ar_plus.shape[0]

    def check(self, att_diff: Tensor, soft_masks: Tensor | None) -> None:
        if att_diff.ndim != 2 or att_diff.shape[1] != self.num_attributes:
            raise ValueError(f"att_diff must be (B, {self.num_attributes}), got {tuple(att_diff.shape)}")
        if self.conditioning == "mask":
            if soft_masks is None:
                raise ValueError("mask conditioning needs the soft parser masks of the source image (B, 19, h, w)")
            if soft_masks.ndim != 4 or soft_masks.shape[:2] != (att_diff.shape[0], self.ar_plus.shape[1]):
                raise ValueError(
                    f"soft_masks must be (B={att_diff.shape[0]}, {self.ar_plus.shape[1]}, h, w), got "
                    f"{tuple(soft_masks.shape)}"
                )

    def maps(self, att_diff: Tensor, soft_masks: Tensor | None, size: tuple[int, int]) -> Tensor:
        batch, channels = att_diff.shape
        att = att_diff[:, :, None, None]
        if self.conditioning == "replicated":
            return att.expand(batch, channels, *size)
        plus, minus = influence_regions(resize_maps(soft_masks, size), self.ar_plus, self.ar_minus)
        region = torch.where(att > 0, plus, minus)
        return (att * region).to(att_diff.dtype)


# ------------------------------------------------------------------------------------------ generator parts
def _down(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))


class SelectiveTransferUnit(nn.Module):
    """STGAN's STU (a ConvGRU over the encoder-decoder skip), as in its TF code (spec §2.1).

    ``s' = deconv4×4s2(state)``; ``r, z = σ(conv3×3([f, s']))``; ``s_new = r ⊙ s'``;
    ``info = tanh(conv3×3([f, s_new]))``; ``out = (1 − z) ⊙ s' + z ⊙ info``. Returns ``(out, s_new)``.

    ``norm="none"`` is the TF code (every conv with a bias, no norm). ``norm="batch"`` is the STU of the most
    used PyTorch port (bluestyle97/STGAN-pytorch): the three gate convs without bias, each followed by
    BatchNorm, and the state deconv without bias.
    """

    def __init__(
        self, state_channels: int, feature_channels: int, kernel_size: int = 3, norm: Literal["none", "batch"] = "none"
    ) -> None:
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"STU norm must be 'none' or 'batch', got {norm!r}")
        pad = kernel_size // 2
        d = feature_channels
        bias = norm == "none"

        def gate() -> nn.Module:
            conv = nn.Conv2d(2 * d, d, kernel_size, padding=pad, bias=bias)
            return conv if bias else nn.Sequential(conv, nn.BatchNorm2d(d))

        self.upsample = nn.ConvTranspose2d(state_channels, d, 4, 2, 1, bias=bias)
        self.reset_gate = gate()
        self.update_gate = gate()
        self.hidden = gate()

    def forward(self, feature: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        state_up = self.upsample(state)
        gate_input = torch.cat([feature, state_up], dim=1)
        reset = torch.sigmoid(self.reset_gate(gate_input))
        update = torch.sigmoid(self.update_gate(gate_input))
        new_state = reset * state_up
        info = torch.tanh(self.hidden(torch.cat([feature, new_state], dim=1)))
        return (1 - update) * state_up + update * info, new_state


class SegmentationBranch(nn.Module):
    """FCN-8s head for MagGAN+Seg (Table 3 vii): 1×1 scores on the encoder maps at 1/8, 1/16, 1/32 of H,
    summed deepest-first after ×2 upsampling, then bilinearly upsampled to the image (spec A22)."""

    def __init__(self, feature_channels: tuple[int, int, int], num_classes: int = NUM_CELEBAMASK_CLASSES) -> None:
        super().__init__()
        self.scores = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in feature_channels)

    def forward(self, features: tuple[Tensor, Tensor, Tensor], size: tuple[int, int]) -> Tensor:
        logits = self.scores[-1](features[-1])
        for score, feature in zip(reversed(self.scores[:-1]), reversed(features[:-1]), strict=True):
            logits = F.interpolate(logits, size=feature.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits + score(feature)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class GeneratorOutput(NamedTuple):
    image: Tensor  # (B, 3, H, W) in [-1, 1]
    masks: Tensor | None  # the soft masks that conditioned the edit (the branch's softmax for MagGAN+Seg)
    seg_logits: Tensor | None  # MagGAN+Seg only: (B, 19, H, W)


class MagGANGenerator(nn.Module):
    """``x̂ = G(x, att_diff, soft_masks)`` (eq. 1 with eq. 12's condition); defaults are STGAN's 256² network.

    Args:
        num_attributes: must match ``attributes`` (13 STGAN attributes).
        enc_dim, dec_dim, num_layers, max_dim: widths ``min(dim·2^i, max_dim)``, ``num_layers`` down/up layers.
        shortcut_layers: STU + skip levels (STGAN: 4 = all but the bottleneck at 256²).
        inject_layers: decoder levels that also get the condition concatenated (``bn_concat`` only).
        conditioning: ``"replicated"`` or ``"mask"`` (eq. 12).
        decoder: ``"bn_concat"`` (STGAN) or ``"spade"`` (MagGAN's SP).
        spade_hidden, spade_norm: SPADE's hidden width and parameter-free norm (``batch`` or ``instance``).
        blend: apply eq. (13)'s fixed blend ``M ⊙ x + (1 − M) ⊙ G`` to every output (off in the final model).
        seg_branch: MagGAN+Seg: masks from an FCN-8s branch on the encoder instead of the parser's.
        stu_norm: ``"none"`` (STGAN TF) or ``"batch"`` (the PyTorch port's STU, :class:`SelectiveTransferUnit`).
        one_more_conv: 0 (STGAN default): the last deconv goes straight to RGB. ``k > 0`` (STGAN's
            ``one_more_conv``): the last deconv goes to ``dec_dim // 4`` channels → BN → ReLU, then a ``k×k``
            stride-1 deconv to RGB, both without bias, as in the PyTorch port (``one_more_conv: true`` = 3).
    """

    def __init__(
        self,
        num_attributes: int = 13,
        enc_dim: int = 64,
        dec_dim: int = 64,
        num_layers: int = 5,
        max_dim: int = 1024,
        shortcut_layers: int = 4,
        inject_layers: int = 4,
        conditioning: Conditioning = "mask",
        decoder: DecoderKind = "spade",
        spade_hidden: int = 128,
        spade_norm: Literal["batch", "instance"] = "batch",
        blend: bool = False,
        seg_branch: bool = False,
        attributes: tuple[str, ...] = EDIT_ATTRIBUTES,
        stu_norm: Literal["none", "batch"] = "none",
        one_more_conv: int = 0,
    ) -> None:
        super().__init__()
        if one_more_conv < 0 or (one_more_conv and one_more_conv % 2 == 0):
            raise ValueError(f"one_more_conv must be 0 or an odd kernel size, got {one_more_conv}")
        if decoder not in ("bn_concat", "spade"):
            raise ValueError(f"decoder must be 'bn_concat' or 'spade', got {decoder!r}")
        if not 0 <= shortcut_layers < num_layers or not 0 <= inject_layers < num_layers:
            raise ValueError(
                f"shortcut_layers ({shortcut_layers}) and inject_layers ({inject_layers}) must be in "
                f"0..{num_layers - 1}"
            )
        if len(attributes) != num_attributes:
            raise ValueError(f"num_attributes={num_attributes} but {len(attributes)} attribute names are given")
        if seg_branch and num_layers < 3:
            raise ValueError("seg_branch needs at least 3 encoder layers (FCN-8s reads 1/8, 1/16, 1/32)")
        self.num_layers, self.shortcut_layers, self.inject_layers = num_layers, shortcut_layers, inject_layers
        self.decoder_kind, self.blend = decoder, blend
        self.condition = AttributeCondition(conditioning, tuple(attributes))
        c = num_attributes
        enc = _widths(enc_dim, num_layers, max_dim)
        self.encoder = nn.ModuleList(_down(i, o) for i, o in zip([3, *enc[:-1]], enc, strict=True))
        # STUs, deepest first: unit j works on encoder level num_layers-2-j.
        self.stus = nn.ModuleList()
        state = enc[-1] + c
        for j in range(shortcut_layers):
            width = enc[num_layers - 2 - j]
            self.stus.append(SelectiveTransferUnit(state, width, norm=stu_norm))
            state = width + c
        dec = [min(dec_dim * 2 ** (num_layers - 1 - i), max_dim) for i in range(num_layers - 1)]
        self.up = nn.ModuleList()
        self.spade = nn.ModuleList()
        z = enc[-1] + (c if decoder == "bn_concat" else 0)
        self.decoder_input_widths = [z]
        for i, width in enumerate(dec):
            self.up.append(nn.ConvTranspose2d(z, width, 4, 2, 1, bias=False))
            if decoder == "spade":
                self.spade.append(SPADE(width, width + c, spade_hidden, 3, spade_norm))
            else:
                self.spade.append(nn.BatchNorm2d(width))
            z = width
            if i < shortcut_layers:
                z += enc[num_layers - 2 - i]
            if decoder == "bn_concat" and i < inject_layers:
                z += c
            self.decoder_input_widths.append(z)
        if one_more_conv:
            extra = max(1, dec_dim // 4)
            self.to_rgb: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(z, extra, 4, 2, 1, bias=False), nn.BatchNorm2d(extra), nn.ReLU(),
                nn.ConvTranspose2d(extra, 3, one_more_conv, 1, one_more_conv // 2, bias=False),
            )  # fmt: skip
        else:
            self.to_rgb = nn.ConvTranspose2d(z, 3, 4, 2, 1)
        self.seg = SegmentationBranch((enc[-3], enc[-2], enc[-1])) if seg_branch else None

    @property
    def num_attributes(self) -> int:
        return self.condition.num_attributes

    def encode(self, image: Tensor) -> list[Tensor]:
        features, h = [], image
        for layer in self.encoder:
            h = layer(h)
            features.append(h)
        return features

    def forward_full(self, image: Tensor, att_diff: Tensor, soft_masks: Tensor | None = None) -> GeneratorOutput:
        """The edit with the masks that conditioned it (and the seg logits of MagGAN+Seg)."""
        zs = self.encode(image)
        seg_logits = None
        if self.seg is not None:
            seg_logits = self.seg((zs[-3], zs[-2], zs[-1]), image.shape[-2:])
            soft_masks = seg_logits.float().softmax(1).to(image.dtype)
        self.condition.check(att_diff, soft_masks)
        att_diff = att_diff.to(image.dtype)
        cache: dict[tuple[int, int], Tensor] = {}

        def cond(size: torch.Size) -> Tensor:
            key = (int(size[0]), int(size[1]))
            if key not in cache:
                cache[key] = self.condition.maps(att_diff, soft_masks, key)
            return cache[key]

        bottleneck = zs[-1]
        state = torch.cat([bottleneck, cond(bottleneck.shape[-2:])], dim=1)
        skips = []
        for j, stu in enumerate(self.stus):
            out, new_state = stu(zs[self.num_layers - 2 - j], state)
            skips.append(out)
            state = torch.cat([new_state, cond(new_state.shape[-2:])], dim=1)
        z = bottleneck if self.decoder_kind == "spade" else torch.cat([bottleneck, cond(bottleneck.shape[-2:])], 1)
        for i, (up, norm) in enumerate(zip(self.up, self.spade, strict=True)):
            h = up(z)
            if self.decoder_kind == "spade":
                h = norm(h, torch.cat([h, cond(h.shape[-2:])], dim=1))
            else:
                h = norm(h)
            parts = [torch.relu(h)]
            if i < self.shortcut_layers:
                parts.append(skips[i])
            if self.decoder_kind == "bn_concat" and i < self.inject_layers:
                parts.append(cond(h.shape[-2:]))
            z = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        out = torch.tanh(self.to_rgb(z))
        if self.blend:
            out = blend_output(image, out, soft_masks, att_diff, self.condition)
        return GeneratorOutput(out, soft_masks, seg_logits)

    def forward(self, image: Tensor, att_diff: Tensor, soft_masks: Tensor | None = None) -> Tensor:
        return self.forward_full(image, att_diff, soft_masks).image


def preserved_mask_at(
    soft_masks: Tensor, att_diff: Tensor, condition: AttributeCondition, size: tuple[int, int]
) -> Tensor:
    """Eq. (5) at the image size: (B, 1, H, W) in [0, 1] (masks resized bilinearly/area as needed)."""
    masks = resize_maps(soft_masks.float(), size)
    return preserved_region_mask(masks, att_diff.float(), condition.ar_plus, condition.ar_minus).unsqueeze(1)


def blend_output(
    image: Tensor, generated: Tensor, soft_masks: Tensor | None, att_diff: Tensor, condition: AttributeCondition
) -> Tensor:
    """Eq. (13): ``M ⊙ x + (1 − M) ⊙ G(x, att_diff)`` with the preserved mask M of eq. (5)."""
    if soft_masks is None:
        raise ValueError("the blending output (eq. 13) needs the soft parser masks of the source image")
    keep = preserved_mask_at(soft_masks, att_diff, condition, tuple(image.shape[-2:])).to(generated.dtype)
    return keep * image + (1 - keep) * generated


# ------------------------------------------------------------------------------------------ discriminators
class DiscriminatorOutput(NamedTuple):
    adversarial: Tensor  # (B,) critic score (mean over tiles)
    attributes: Tensor  # (B, C) attribute logits


class STGANDiscriminator(nn.Module):
    """STGAN's D: ``n_layers`` × [conv 4×4 s2 → InstanceNorm(affine) → LeakyReLU(0.2)], then two fc heads
    (``fc_dim`` → LReLU → 1 and → C) on the flattened final map. At 256² with 5 layers: 8×8×1024 features."""

    def __init__(
        self,
        image_size: int = 256,
        num_attributes: int = 13,
        dim: int = 64,
        n_layers: int = 5,
        max_dim: int = 1024,
        fc_dim: int = 1024,
    ) -> None:
        super().__init__()
        widths = _widths(dim, n_layers, max_dim)
        layers: list[nn.Module] = []
        for i, o in zip([3, *widths[:-1]], widths, strict=True):
            layers += [nn.Conv2d(i, o, 4, 2, 1), InstanceNorm2d(o, affine=True), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        side = image_size // 2**n_layers
        if side < 1 or side * 2**n_layers != image_size:
            raise ValueError(f"image_size {image_size} must be a multiple of 2^n_layers = {2**n_layers}")
        self.image_size = image_size
        flat = widths[-1] * side * side
        self.adv_head = nn.Sequential(nn.Linear(flat, fc_dim), nn.LeakyReLU(0.2), nn.Linear(fc_dim, 1))
        self.cls_head = nn.Sequential(nn.Linear(flat, fc_dim), nn.LeakyReLU(0.2), nn.Linear(fc_dim, num_attributes))

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x).flatten(1)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        feat = self.features(x)
        return DiscriminatorOutput(self.adv_head(feat).squeeze(1), self.cls_head(feat))


def to_tiles(x: Tensor, tile: int) -> Tensor:
    """(B, C, H, W) → (B, T, C, tile, tile), non-overlapping tiles in row-major order."""
    b, c, h, w = x.shape
    if h % tile or w % tile:
        raise ValueError(f"image {h}×{w} is not a whole number of {tile}² tiles")
    t = x.reshape(b, c, h // tile, tile, w // tile, tile).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(b, (h // tile) * (w // tile), c, tile, tile)


def from_tiles(tiles: Tensor, rows: int, cols: int) -> Tensor:
    """Inverse of :func:`to_tiles`."""
    b, _, c, th, tw = tiles.shape
    t = tiles.reshape(b, rows, cols, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(b, c, rows * th, cols * tw)


class MultiLevelDiscriminator(nn.Module):
    """MagGAN's multi-level patch-wise discriminators (§3.4, eq. 14, spec §2.3 "tile" mode).

    Level ``k`` (0-based) is an independent :class:`STGANDiscriminator` at ``level_size``² that sees
    ``x_k = area_resize(x, level_size·2^k)`` split into ``4^k`` tiles; its adversarial output is the mean of
    the tile scores and its classifier reads the mean tile feature ("average pooled feature"). With one level
    at the image size this is exactly STGAN's single D. ``forward(x)`` returns one output per level;
    :meth:`level` runs one level on an already resized input (what each level's gradient penalty needs).
    """

    def __init__(
        self,
        levels: int = 1,
        level_size: int = 256,
        num_attributes: int = 13,
        dim: int = 64,
        n_layers: int = 5,
        max_dim: int = 1024,
        fc_dim: int = 1024,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.level_size = level_size
        self.discriminators = nn.ModuleList(
            STGANDiscriminator(level_size, num_attributes, dim, n_layers, max_dim, fc_dim) for _ in range(levels)
        )

    @property
    def levels(self) -> int:
        return len(self.discriminators)

    @property
    def image_size(self) -> int:
        return self.level_size * 2 ** (self.levels - 1)

    def level_input(self, x: Tensor, k: int) -> Tensor:
        side = self.level_size * 2**k
        return resize_maps(x, (side, side))

    def level(self, k: int, x_k: Tensor) -> DiscriminatorOutput:
        d = self.discriminators[k]
        tiles = to_tiles(x_k, self.level_size)
        b, t = tiles.shape[:2]
        feat = d.features(tiles.flatten(0, 1)).reshape(b, t, -1)
        adversarial = d.adv_head(feat).squeeze(-1).mean(1)
        return DiscriminatorOutput(adversarial, d.cls_head(feat.mean(1)))

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"expected {self.image_size}² images for {self.levels} levels, got {tuple(x.shape)}")
        return [self.level(k, self.level_input(x, k)) for k in range(self.levels)]


# ------------------------------------------------------------------------------------------ STGAN-pytorch preset
# The most used PyTorch STGAN port (bluestyle97/STGAN-pytorch, configs/train_stgan.yaml; reference_implementations.md
# §3.5): 10 attributes, 5 levels of base width 64, 3 shortcut STUs, the attribute only at the decoder's first layer,
# BatchNorm in the STU gates and one more conv before RGB. Our networks in that configuration have its exact
# parameter counts at 128² (G 74,379,600, D 44,717,899; tests/test_maggan_networks.py).
STGAN_PORT_ATTRIBUTES = (
    "Bangs", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Male", "Mouth_Slightly_Open", "Mustache",
    "Pale_Skin", "Young",
)  # fmt: skip


def stgan_port_networks(image_size: int = 128) -> tuple[MagGANGenerator, MultiLevelDiscriminator]:
    """``(G, D)`` in the PyTorch STGAN port's own configuration (replicated conditioning, concat decoder)."""
    c = len(STGAN_PORT_ATTRIBUTES)
    generator = MagGANGenerator(
        c, enc_dim=64, dec_dim=64, num_layers=5, max_dim=1024, shortcut_layers=3, inject_layers=0,
        conditioning="replicated", decoder="bn_concat", attributes=STGAN_PORT_ATTRIBUTES, stu_norm="batch",
        one_more_conv=3,
    )  # fmt: skip
    discriminator = MultiLevelDiscriminator(1, image_size, c, dim=64, n_layers=5, max_dim=1024, fc_dim=1024)
    return generator, discriminator
