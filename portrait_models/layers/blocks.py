"""Convolutional building blocks and pix2pixHD-style generator stacks shared by the papers.

pix2pixHD's global generator (Wang et al. 2018) is ``c7s1-ngf, d(2ngf) ... , R x n, u ... , c7s1-out``:
``c7s1-k`` is a reflection-padded 7x7 conv + norm + ReLU, ``dk`` a 3x3 stride-2 conv (zero padding 1) + norm +
ReLU, ``Rk`` a residual block of two reflection-padded 3x3 convs, ``uk`` a 3x3 stride-2 transposed conv
(padding 1, output padding 1) + norm + ReLU. MaskGAN's backbone and alpha blender, Gu et al.'s generator and
PortraitGAN's generator are all this network with different widths, depths, inputs and output activations.

Reflection padding is expressed with ``nn.Conv2d(padding_mode="reflect")``, which is the same computation as
an ``nn.ReflectionPad2d`` followed by an unpadded conv, without the extra module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils import parametrize

from portrait_models.layers.norms import AdaptiveInstanceNorm2d, NormKind, norm_factory

PadMode = Literal["zeros", "reflect", "replicate"]
ActKind = Literal["relu", "lrelu", "tanh", "sigmoid", "none"]


def make_activation(kind: ActKind, negative_slope: float = 0.2) -> nn.Module:
    """Activation module by name. ReLU/LeakyReLU are in-place: every block applies them to a fresh tensor."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "lrelu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}; expected 'relu', 'lrelu', 'tanh', 'sigmoid' or 'none'")


class ConvNormAct(nn.Module):
    """``conv -> norm -> activation`` with the conv's padding mode (reflect/replicate/zeros) built in.

    ``transposed=True`` makes the conv an ``nn.ConvTranspose2d`` (zero padding only, ``output_padding``
    allowed). Submodules are ``conv``, ``norm`` and ``act`` (the latter two ``nn.Identity`` when unused).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        pad_mode: PadMode = "zeros",
        norm: NormKind = "none",
        act: ActKind = "none",
        negative_slope: float = 0.2,
        transposed: bool = False,
        output_padding: int = 0,
        bias: bool = True,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if transposed:
            if pad_mode != "zeros":
                raise ValueError(f"transposed convolutions support only zero padding, got pad_mode={pad_mode!r}")
            self.conv: nn.Module = nn.ConvTranspose2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                output_padding=output_padding,
                bias=bias,
            )
        else:
            self.conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, bias=bias, padding_mode=pad_mode
            )
        if spectral_norm:
            self.conv = nn.utils.parametrizations.spectral_norm(self.conv)
        self.norm = norm_factory(norm)(out_channels)
        self.act = make_activation(act, negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: ``x + [conv3 -> norm -> ReLU -> (dropout) -> conv3 -> norm](x)``."""

    def __init__(
        self, channels: int, norm: NormKind = "instance", pad_mode: PadMode = "reflect", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, 1, 1, pad_mode=pad_mode, norm=norm, act="relu")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = ConvNormAct(channels, channels, 3, 1, 1, pad_mode=pad_mode, norm=norm, act="none")

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.dropout(self.conv1(x)))


class AdaINResnetBlock(nn.Module):
    """Residual block whose two norms are AdaIN driven by explicit style parameters.

    ``forward(x, params)`` with ``params`` (B, 4C) laid out ``[beta1 | gamma1 | beta2 | gamma2]``: the AdaIN
    layers in module order, each ``[beta | gamma]`` (see :class:`AdaptiveInstanceNorm2d`). MaskGAN's image
    generation backbone uses four of these at its bottleneck.
    """

    def __init__(self, channels: int, pad_mode: PadMode = "reflect", eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=pad_mode)
        self.norm1 = AdaptiveInstanceNorm2d(channels, eps)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=pad_mode)
        self.norm2 = AdaptiveInstanceNorm2d(channels, eps)

    @property
    def num_adain_params(self) -> int:
        return self.norm1.num_params + self.norm2.num_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        params = params.flatten(1)
        if params.shape[1] != self.num_adain_params:
            raise ValueError(
                f"AdaIN block with {self.channels} channels needs {self.num_adain_params} style values per "
                f"sample, got {params.shape[1]}"
            )
        params1, params2 = params.split(self.norm1.num_params, dim=1)
        h = self.norm1(self.conv1(x), params1).relu_()
        return x + self.norm2(self.conv2(h), params2)


# ------------------------------------------------------------------------------------------ pix2pixHD stacks
def pix2pixhd_widths(base_channels: int, n_downsample: int, max_channels: int | None = None) -> list[int]:
    """Channel widths from the first feature map to the bottleneck: ``base * 2**i`` (optionally capped)."""
    widths = [base_channels * 2**i for i in range(n_downsample + 1)]
    return [min(w, max_channels) for w in widths] if max_channels is not None else widths


def downsample_stack(widths: Sequence[int], norm: NormKind = "instance") -> nn.Sequential:
    """pix2pixHD ``d`` layers between consecutive ``widths``: 3x3 stride-2 conv (zero pad 1) + norm + ReLU."""
    return nn.Sequential(
        *(
            ConvNormAct(c_in, c_out, 3, 2, 1, norm=norm, act="relu")
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
    )


def upsample_stack(widths: Sequence[int], norm: NormKind = "instance") -> nn.Sequential:
    """pix2pixHD ``u`` layers between consecutive ``widths``: 3x3 s2 transposed conv (p1 op1), norm, ReLU."""
    return nn.Sequential(
        *(
            ConvNormAct(c_in, c_out, 3, 2, 1, norm=norm, act="relu", transposed=True, output_padding=1)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
    )


def c7s1(in_channels: int, out_channels: int, norm: NormKind = "instance", act: ActKind = "relu") -> ConvNormAct:
    """pix2pixHD ``c7s1-k``: reflection-padded 7x7 stride-1 conv + norm + activation."""
    return ConvNormAct(in_channels, out_channels, 7, 1, 3, pad_mode="reflect", norm=norm, act=act)


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator with configurable widths, depth, norm and output activation.

    ``head`` (c7s1-ngf) -> ``down`` (n_downsample x d) -> ``blocks`` (n_blocks x R) -> ``up`` (n_downsample x
    u) -> ``tail`` (c7s1-out, no norm, ``out_activation``). Input sizes must be divisible by
    ``2**n_downsample``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_downsample: int = 3,
        n_blocks: int = 9,
        norm: NormKind = "instance",
        out_activation: ActKind = "tanh",
        max_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_blocks < 0 or n_downsample < 0:
            raise ValueError(f"n_blocks and n_downsample must be >= 0, got {n_blocks}, {n_downsample}")
        widths = pix2pixhd_widths(ngf, n_downsample, max_channels)
        self.n_downsample = n_downsample
        self.head = c7s1(in_channels, ngf, norm)
        self.down = downsample_stack(widths, norm)
        self.blocks = nn.Sequential(*(ResnetBlock(widths[-1], norm, dropout=dropout) for _ in range(n_blocks)))
        self.up = upsample_stack(widths[::-1], norm)
        self.tail = c7s1(ngf, out_channels, norm="none", act=out_activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.up(self.blocks(self.down(self.head(x)))))


def init_pix2pixhd_weights(module: nn.Module, std: float = 0.02, include_transposed: bool = False) -> None:
    """pix2pixHD's ``weights_init``: Conv2d weights ~ N(0, std), BatchNorm weights ~ N(1, std) and biases 0.

    Linear layers and conv biases keep PyTorch's default initialisation. A spectral-normalised conv has its
    raw weight drawn. The original matches every class name containing ``Conv``, so it also draws
    ``ConvTranspose2d`` weights: ``include_transposed=True`` does that (PortraitGAN); the default leaves
    them at PyTorch's init, as this function always did for the systems already trained with it.
    """
    kinds = (nn.Conv2d, nn.ConvTranspose2d) if include_transposed else (nn.Conv2d,)
    for m in module.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue  # shape-only tensors (parameter counting on the meta device): nothing to draw
        if isinstance(m, kinds):
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            nn.init.normal_(weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
