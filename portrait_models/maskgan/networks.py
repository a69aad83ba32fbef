"""MaskGAN's networks (Lee et al., CVPR 2020): Dense Mapping Network, MaskVAE, Alpha Blender, discriminator.

Defaults are the paper's settings, which match the released demo (switchablenorms/CelebAMask-HQ,
MaskGAN_demo): at those settings the parameter counts equal the official networks' exactly (DMN 89,702,595 =
backbone 88,111,363 + style branch 1,338,464 + mask branch 252,768; discriminator 5,568,386; blender
4,329,443; MaskVAE 170,619,571 at 512 px), and :mod:`portrait_models.maskgan.convert` loads the released
generator. Widths and depths are arguments so tests and CI can run tiny networks.

Where the paper is silent the released code decides (and is cited in the docstrings): SFT without "1 +", AdaIN
parameter order [beta | gamma] per layer, no normalisation in the style encoder, ReLU in its convolutions,
pix2pixHD's N(0, 0.02) conv initialisation for DMN, blender and discriminator (none for the MaskVAE), a
3-channel alpha, and the MaskVAE layout. The MaskVAE loss weighting is not in any code (see
:func:`maskvae_loss`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from portrait_models.distributed import randn_rows
from portrait_models.layers.blocks import (
    AdaINResnetBlock,
    ConvNormAct,
    GlobalGenerator,
    c7s1,
    downsample_stack,
    init_pix2pixhd_weights,
    pix2pixhd_widths,
    upsample_stack,
)
from portrait_models.layers.discriminators import MultiscaleDiscriminator
from portrait_models.layers.norms import SFTLayer, split_adain_params
from portrait_models.losses.kl import kl_normal_standard

FusionKind = Literal["sft", "concat"]
StyleInit = Literal["pix2pixhd", "pytorch"]


# ============================================================================ Spatial-Aware Style Encoder
def _encoder_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, relu: bool) -> ConvNormAct:
    """Style/mask encoder conv: reflection padding ``(k - 1) // 2`` (3 for 7x7, 1 for 4x4), no norm."""
    return ConvNormAct(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        (kernel_size - 1) // 2,
        pad_mode="reflect",
        act="relu" if relu else "none",
    )


class MaskFeatureEncoder(nn.Module):
    """Spatial branch (the demo's ``LabelEncoder``): features of the source mask at 1/4 and 1/2**n_downsample.

    ``stem``: c7s1-c (ReLU), 4x4 s2 -> 2c (ReLU), 4x4 s2 -> 4c (no activation) gives ``cond1``; then ReLU and
    ``n_downsample - 2`` convs 4x4 s2 at 4c (ReLU between, none after the last) give ``cond2``.
    """

    def __init__(self, num_classes: int = 19, base_channels: int = 16, n_downsample: int = 5) -> None:
        super().__init__()
        if n_downsample < 3:
            raise ValueError(f"the mask encoder needs n_downsample >= 3, got {n_downsample}")
        c = base_channels
        self.stem = nn.Sequential(
            _encoder_conv(num_classes, c, 7, 1, relu=True),
            _encoder_conv(c, 2 * c, 4, 2, relu=True),
            _encoder_conv(2 * c, 4 * c, 4, 2, relu=False),
        )
        n_deep = n_downsample - 2
        self.deep = nn.Sequential(*(_encoder_conv(4 * c, 4 * c, 4, 2, relu=i < n_deep - 1) for i in range(n_deep)))

    def forward(self, mask_onehot: Tensor) -> tuple[Tensor, Tensor]:
        cond1 = self.stem(mask_onehot)
        return cond1, self.deep(F.relu(cond1))  # not in place: cond1 is also returned


class ConcatFusion(nn.Module):
    """Ablation alternative to SFT (MaskGAN supplement, Table 1 "MaskGAN-concat"): ``conv1x1(cat(x, cond))``.

    The supplement names the variant but not its layer; a single 1x1 convolution back to ``channels`` without
    activation (like SFT's output) is the minimal form.
    """

    def __init__(self, channels: int, cond_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels + cond_channels, channels, 1)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.proj(torch.cat([x, cond], dim=1))


def _make_fusion(fusion: FusionKind, channels: int) -> nn.Module:
    if fusion == "sft":
        return SFTLayer(channels, negative_slope=0.1, residual_scale=False)
    if fusion == "concat":
        return ConcatFusion(channels, channels)
    raise ValueError(f"unknown fusion {fusion!r}; expected 'sft' or 'concat'")


class SpatialAwareStyleEncoder(nn.Module):
    """Source image (+ source mask) -> flat AdaIN parameters (B, num_params) (Sec. 3.1, supplement Fig. 2).

    Style branch: ``image_stem`` (c7s1-c, 4x4 s2 -> 2c, 4x4 s2 -> 4c, all ReLU) -> ``fuse1`` with the mask
    branch's 1/4-scale features -> ``image_middle`` (``n_downsample - 2`` x 4x4 s2 at 4c, ReLU) -> ``fuse2``
    with its deepest features -> global average pooling -> ``to_params`` (1x1 conv). No normalisation anywhere
    (it would remove style). ``use_mask_branch=False`` drops the mask branch and both fusions: the paper's
    Pix2PixHD-m baseline. ``fusion="concat"`` replaces SFT by :class:`ConcatFusion` (supplement ablation).
    """

    def __init__(
        self,
        num_params: int,
        num_classes: int = 19,
        image_channels: int = 3,
        base_channels: int = 16,
        n_downsample: int = 5,
        fusion: FusionKind = "sft",
        use_mask_branch: bool = True,
    ) -> None:
        super().__init__()
        if n_downsample < 3:
            raise ValueError(f"the style encoder needs n_downsample >= 3, got {n_downsample}")
        if fusion not in ("sft", "concat"):
            raise ValueError(f"unknown fusion {fusion!r}; expected 'sft' or 'concat'")
        c = base_channels
        self.use_mask_branch = use_mask_branch
        self.n_downsample = n_downsample
        self.image_stem = nn.Sequential(
            _encoder_conv(image_channels, c, 7, 1, relu=True),
            _encoder_conv(c, 2 * c, 4, 2, relu=True),
            _encoder_conv(2 * c, 4 * c, 4, 2, relu=True),
        )
        self.image_middle = nn.Sequential(
            *(_encoder_conv(4 * c, 4 * c, 4, 2, relu=True) for _ in range(n_downsample - 2))
        )
        self.to_params = nn.Conv2d(4 * c, num_params, 1)
        self.mask_branch: MaskFeatureEncoder | None = None
        self.fuse1: nn.Module | None = None
        self.fuse2: nn.Module | None = None
        if use_mask_branch:
            self.mask_branch = MaskFeatureEncoder(num_classes, base_channels, n_downsample)
            self.fuse1 = _make_fusion(fusion, 4 * c)
            self.fuse2 = _make_fusion(fusion, 4 * c)

    def forward(self, image: Tensor, mask_onehot: Tensor | None = None) -> Tensor:
        smallest = 2**self.n_downsample
        if image.dim() != 4 or min(image.shape[2:]) < smallest:
            raise ValueError(f"source image must be (B, C, H, W) with H, W >= {smallest}, got {tuple(image.shape)}")
        features = self.image_stem(image)
        if self.mask_branch is not None:
            if mask_onehot is None:
                raise ValueError("this style encoder has a mask branch: pass the source mask one-hot")
            if mask_onehot.shape[2:] != image.shape[2:]:
                raise ValueError(
                    f"source mask {tuple(mask_onehot.shape)} and source image {tuple(image.shape)} "
                    "must have the same spatial size"
                )
            cond1, cond2 = self.mask_branch(mask_onehot)
            features = self.fuse1(features, cond1)
            features = self.fuse2(self.image_middle(features), cond2)
        else:
            features = self.image_middle(features)
        pooled = features.mean(dim=(2, 3), keepdim=True)
        return self.to_params(pooled).flatten(1)


# ============================================================================ Dense Mapping Network
class DenseMappingNetwork(nn.Module):
    """MaskGAN's generator: pix2pixHD global generator with AdaIN residual blocks driven by a style encoder.

    Backbone (supplement): ``c7s1-ngf, d(2ngf) ... d(ngf*2**n_downsample), n_blocks x R with AdaIN, u ...
    u(ngf), c7s1-3 + tanh``, instance norm without affine parameters everywhere else. ``forward(target_onehot,
    source_onehot, source_image)`` renders the target mask in the style of the source image, whose own mask is
    ``source_onehot`` (in training both masks are the ground-truth mask of the image). ``encode_style`` and
    ``generate`` split the two halves, so one style vector can render several target masks (EBST renders three
    masks with the same style). ``style_init="pytorch"`` redraws the style encoder's convs with PyTorch's default
    init after pix2pixHD's N(0, 0.02) (which, in a normalisation-free encoder, gives every face almost the same
    style at the start); the default keeps the released code's init.
    """

    def __init__(
        self,
        num_classes: int = 19,
        image_channels: int = 3,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 4,
        style_channels: int = 16,
        style_downsample: int = 5,
        fusion: FusionKind = "sft",
        use_mask_branch: bool = True,
        adain_eps: float = 1e-5,
        init_weights: bool = True,
        style_init: StyleInit = "pix2pixhd",
    ) -> None:
        super().__init__()
        if style_init not in ("pix2pixhd", "pytorch"):
            raise ValueError(f"style_init must be 'pix2pixhd' or 'pytorch', got {style_init!r}")
        widths = pix2pixhd_widths(ngf, n_downsample)
        self.num_classes = num_classes
        self.n_downsample = n_downsample
        self.head = c7s1(num_classes, ngf, norm="instance")
        self.down = downsample_stack(widths, norm="instance")
        self.blocks = nn.ModuleList(AdaINResnetBlock(widths[-1], eps=adain_eps) for _ in range(n_blocks))
        self.up = upsample_stack(widths[::-1], norm="instance")
        self.tail = c7s1(ngf, image_channels, norm="none", act="tanh")
        self.adain_sizes = [block.num_adain_params for block in self.blocks]
        self.style_encoder = SpatialAwareStyleEncoder(
            sum(self.adain_sizes),
            num_classes,
            image_channels,
            style_channels,
            style_downsample,
            fusion,
            use_mask_branch,
        )
        if init_weights:
            init_pix2pixhd_weights(self)
            if style_init == "pytorch":  # redraw the style encoder's convs with PyTorch's own default
                for m in self.style_encoder.modules():
                    if isinstance(m, nn.Conv2d):
                        m.reset_parameters()

    @property
    def num_adain_params(self) -> int:
        """Length of the style vector (16,384 at the paper's settings)."""
        return sum(self.adain_sizes)

    def encode_style(self, source_image: Tensor, source_onehot: Tensor | None = None) -> Tensor:
        """(B, num_adain_params) AdaIN parameters, per block ``[beta1 | gamma1 | beta2 | gamma2]``."""
        return self.style_encoder(source_image, source_onehot)

    def generate(self, target_onehot: Tensor, style: Tensor) -> Tensor:
        """Render ``target_onehot`` (B, num_classes, H, W) with a style vector from :meth:`encode_style`."""
        if target_onehot.dim() != 4 or target_onehot.shape[1] != self.num_classes:
            raise ValueError(f"target mask must be (B, {self.num_classes}, H, W), got {tuple(target_onehot.shape)}")
        factor = 2**self.n_downsample
        if target_onehot.shape[2] % factor or target_onehot.shape[3] % factor:
            raise ValueError(f"mask size {tuple(target_onehot.shape[2:])} must be divisible by {factor}")
        x = self.down(self.head(target_onehot))
        for block, params in zip(self.blocks, split_adain_params(style, self.adain_sizes), strict=True):
            x = block(x, params)
        return self.tail(self.up(x))

    def forward(self, target_onehot: Tensor, source_onehot: Tensor | None, source_image: Tensor) -> Tensor:
        return self.generate(target_onehot, self.encode_style(source_image, source_onehot))


# ============================================================================ Alpha Blender
class AlphaBlender(nn.Module):
    """EBST's alpha blender (paper Sec. 3.2): ``alpha = B(a, b)``, output ``alpha * a + (1 - alpha) * b``.

    pix2pixHD-style ``c7s1-32, d64, d128, d256, 3 x R256, u128, u64, u32, c7s1-alpha`` with instance norm and
    a sigmoid; the released code predicts a 3-channel (per-colour) alpha, the default here.
    """

    def __init__(
        self,
        image_channels: int = 3,
        ngf: int = 32,
        n_downsample: int = 3,
        n_blocks: int = 3,
        alpha_channels: int = 3,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if alpha_channels not in (1, image_channels):
            raise ValueError(f"alpha_channels must be 1 or {image_channels}, got {alpha_channels}")
        self.net = GlobalGenerator(
            2 * image_channels,
            alpha_channels,
            ngf,
            n_downsample,
            n_blocks,
            norm="instance",
            out_activation="sigmoid",
        )
        if init_weights:
            init_pix2pixhd_weights(self)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.net(torch.cat([a, b], dim=1))
        return b + alpha * (a - b), alpha


# ============================================================================ Discriminator
class MaskGANDiscriminator(nn.Module):
    """Conditional multi-scale PatchGAN: D sees ``cat(mask one-hot, image)`` (19 + 3 = 22 channels).

    pix2pixHD's ``C64-C128-C256-C512`` (k4, padding 2, instance norm, LReLU 0.2, last two convs stride 1) on
    ``num_d`` scales; ``forward`` returns per-scale feature lists (full resolution first, prediction last).
    """

    def __init__(
        self, num_classes: int = 19, image_channels: int = 3, ndf: int = 64, n_layers: int = 3, num_d: int = 2
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.multiscale = MultiscaleDiscriminator(num_classes + image_channels, ndf, n_layers, num_d, norm="instance")

    def forward(self, mask_onehot: Tensor, image: Tensor) -> list[list[Tensor]]:
        if mask_onehot.shape[1] != self.num_classes or mask_onehot.shape[2:] != image.shape[2:]:
            raise ValueError(
                f"mask {tuple(mask_onehot.shape)} must be (B, {self.num_classes}, H, W) with the "
                f"image's size {tuple(image.shape[2:])}"
            )
        return self.multiscale(torch.cat([mask_onehot, image], dim=1))


# ============================================================================ MaskVAE
def _vae_down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 4, 2, 1),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _vae_up(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest x2 -> replication pad 1 -> 3x3 conv -> BN (eps 1e-3, as released) -> LReLU 0.2."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="replicate"),
        nn.BatchNorm2d(out_channels, eps=1e-3),
        nn.LeakyReLU(0.2, inplace=True),
    )


class MaskVAE(nn.Module):
    """VAE over semantic masks (paper Sec. 3.2, supplement Fig. 1): one-hot mask -> latent -> class logits.

    Encoder: ``num_levels`` x [conv 4x4 s2 + BN + LReLU 0.2] with widths ``base * 2**i`` (19 -> 32 ... 2048),
    then ``fc_mu``/``fc_logvar`` from the flattened (width * (S / 2**num_levels)**2) bottleneck. Decoder:
    ``fc_decode`` + ReLU, reshape, ``num_levels - 1`` x [nearest x2, replication pad 1, conv 3x3, BN(eps
    1e-3), LReLU 0.2] halving the width, then nearest x2 + pad + conv 3x3 to ``num_classes`` logits (no
    activation). Fully connected layers fix the input size to ``image_size``.
    """

    def __init__(
        self,
        num_classes: int = 19,
        image_size: int = 512,
        base_channels: int = 32,
        latent_dim: int = 1024,
        num_levels: int = 7,
    ) -> None:
        super().__init__()
        factor = 2**num_levels
        if num_levels < 1 or image_size % factor:
            raise ValueError(f"image_size {image_size} must be divisible by 2**num_levels = {factor}")
        widths = [base_channels * 2**i for i in range(num_levels)]
        self.num_classes = num_classes
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.bottleneck_shape = (widths[-1], image_size // factor, image_size // factor)
        flat = widths[-1] * (image_size // factor) ** 2
        self.encoder = nn.Sequential(
            *(_vae_down(c_in, c_out) for c_in, c_out in zip([num_classes, *widths[:-1]], widths, strict=True))
        )
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, flat)
        self.decoder = nn.Sequential(
            *(_vae_up(c_in, c_out) for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True))
        )
        self.to_logits = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(widths[0], num_classes, 3, padding=1, padding_mode="replicate"),
        )

    def encode(self, mask_onehot: Tensor) -> tuple[Tensor, Tensor]:
        """(B, num_classes, S, S) one-hot (or soft) mask -> (mu, logvar), each (B, latent_dim)."""
        expected = (self.num_classes, self.image_size, self.image_size)
        if mask_onehot.dim() != 4 or tuple(mask_onehot.shape[1:]) != expected:
            raise ValueError(
                f"MaskVAE input must be (B, {expected[0]}, {expected[1]}, {expected[2]}), got "
                f"{tuple(mask_onehot.shape)}"
            )
        h = self.encoder(mask_onehot).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """``z = mu + eps * exp(logvar / 2)``, ``eps ~ N(0, I)``."""
        return mu + randn_rows(mu) * torch.exp(0.5 * logvar)  # DDP: the global batch's draw

    def decode(self, z: Tensor) -> Tensor:
        """(B, latent_dim) -> (B, num_classes, S, S) logits."""
        h = F.relu(self.fc_decode(z)).view(z.shape[0], *self.bottleneck_shape)
        return self.to_logits(self.decoder(h))

    def forward(self, mask_onehot: Tensor, sample: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, mu, logvar). ``sample`` (default: ``self.training``) draws z, otherwise decodes ``mu``."""
        mu, logvar = self.encode(mask_onehot)
        draw = self.training if sample is None else sample
        return self.decode(self.reparameterize(mu, logvar) if draw else mu), mu, logvar


class MaskVAELoss(NamedTuple):
    total: Tensor
    reconstruction: Tensor
    kl: Tensor


def maskvae_loss(
    logits: Tensor, target_label: Tensor, mu: Tensor, logvar: Tensor, kl_weight: float = 1e-5
) -> MaskVAELoss:
    """``L = CE(logits, label) + kl_weight * KL`` (paper Eq. 3-5, ``lambda_KL = 1e-5``).

    No released code fixes the reductions; here the cross-entropy is the mean over pixels and the KL the
    per-sample sum over latent dimensions averaged over the batch, which makes the 1e-5 weight a light
    regulariser.
    """
    reconstruction = F.cross_entropy(logits.float(), target_label.long())
    kl = kl_normal_standard(mu, logvar, reduction="batchmean")
    return MaskVAELoss(reconstruction + kl_weight * kl, reconstruction, kl)


def simulate_edit_latents(z_target: Tensor, z_reference: Tensor, lambda_inter: float = 2.5) -> tuple[Tensor, Tensor]:
    """EBST's perturbed latents (Alg. 1 line 5): ``z_t +- (z_ref - z_t) / lambda_inter`` = (inter, outer)."""
    step = (z_reference - z_target) / lambda_inter
    return z_target + step, z_target - step
