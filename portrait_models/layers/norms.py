"""Normalisation layers shared by the four papers: instance/batch norm, AdaIN, SFT and SPADE.

Instance statistics are computed with one functional op (``torch.var_mean`` in fp32, biased variance, eps
inside the square root), not with ``nn.InstanceNorm2d``: the latter reshapes to ``(1, B*C, H, W)`` and returns
NCHW, which breaks ``channels_last`` and costs a layout conversion per layer on GPU. The same op serves plain
instance norm and AdaIN, whose affine parameters are passed explicitly to ``forward`` instead of being
assigned to module attributes before the call (as the MaskGAN demo does), which keeps the modules stateless
and ``torch.compile`` friendly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormKind = Literal["instance", "instance_affine", "batch", "none"]


# ------------------------------------------------------------------------------------------ functional ops
def _per_channel(t: Tensor, like: Tensor) -> Tensor:
    """(B, C) or (B, C, 1, 1) parameters -> (B, C, 1, 1) broadcastable over ``like`` (B, C, H, W)."""
    if t.dim() == 2:
        t = t[:, :, None, None]
    if t.shape[:2] != like.shape[:2] or t.shape[2:] != (1, 1):
        raise ValueError(
            f"expected per-sample per-channel parameters of shape {tuple(like.shape[:2])}, got {tuple(t.shape)}"
        )
    return t


def instance_norm_affine(
    x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Per-sample, per-channel instance normalisation followed by an optional affine map.

    ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` with mean/var over H, W of each sample and channel
    (biased variance, as ``F.instance_norm``). ``gamma``/``beta`` are (C,), (B, C) or (B, C, 1, 1). Statistics
    and the affine map run in fp32 and the result is cast back to ``x.dtype`` (bf16 autocast safe); the output
    keeps the memory format of ``x`` (channels_last stays channels_last).
    """
    if x.dim() != 4:
        raise ValueError(f"instance norm expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    x32 = x.float()
    var, mean = torch.var_mean(x32, dim=(2, 3), keepdim=True, correction=0)
    scale = torch.rsqrt(var + eps)
    if gamma is not None:
        g = gamma.float()
        scale = scale * (g.view(1, -1, 1, 1) if g.dim() == 1 else _per_channel(g, x))
    shift = -mean * scale
    if beta is not None:
        b = beta.float()
        shift = shift + (b.view(1, -1, 1, 1) if b.dim() == 1 else _per_channel(b, x))
    return torch.addcmul(shift, x32, scale).to(x.dtype)


def adaptive_instance_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """AdaIN (Huang & Belongie 2017; MaskGAN Eq. 2): ``gamma * (x - mu(x)) / sigma(x) + beta``.

    ``gamma`` and ``beta`` are per-sample style parameters of shape (B, C) or (B, C, 1, 1).
    """
    return instance_norm_affine(x, _per_channel(gamma, x), _per_channel(beta, x), eps)


# ------------------------------------------------------------------------------------------ modules
class InstanceNorm2d(nn.Module):
    """Instance norm through :func:`instance_norm_affine` (channels_last preserving).

    With ``affine=False`` (pix2pixHD's ``norm='instance'``) it has no parameters and no buffers, exactly like
    ``nn.InstanceNorm2d(C)``; with ``affine=True`` it owns ``weight`` (ones) and ``bias`` (zeros) of shape
    (C,).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        return instance_norm_affine(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class AdaptiveInstanceNorm2d(nn.Module):
    """AdaIN layer whose style parameters are an explicit ``forward`` argument.

    ``forward(x, params)`` takes ``params`` of shape (B, 2C) (or (B, 2C, 1, 1)) laid out as ``[beta |
    gamma]``: the first C values are the bias, the next C the weight. This is the order the MaskGAN demo
    slices its style vector in, so a style encoder trained there drives this layer unchanged. The layer owns
    no parameters; use :func:`num_adain_params` / :func:`split_adain_params` to size and slice one flat style
    vector for every AdaIN layer of a network in module order.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    @property
    def num_params(self) -> int:
        """Style values this layer consumes per sample (bias and weight)."""
        return 2 * self.num_features

    def split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 2C[, 1, 1]) -> (gamma, beta), each (B, C)."""
        params = params.flatten(1)
        if params.shape[1] != self.num_params:
            raise ValueError(
                f"AdaIN layer with {self.num_features} channels needs {self.num_params} style values "
                f"per sample, got {params.shape[1]}"
            )
        beta, gamma = params.split(self.num_features, dim=1)
        return gamma, beta

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        gamma, beta = self.split(params)
        return adaptive_instance_norm(x, gamma, beta, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def iter_adain_layers(module: nn.Module) -> Iterator[AdaptiveInstanceNorm2d]:
    """Every :class:`AdaptiveInstanceNorm2d` inside ``module``, in module (registration) order."""
    return (m for m in module.modules() if isinstance(m, AdaptiveInstanceNorm2d))


def num_adain_params(module: nn.Module) -> int:
    """Length of the flat style vector that drives all AdaIN layers of ``module``."""
    return sum(layer.num_params for layer in iter_adain_layers(module))


def split_adain_params(params: Tensor, sizes: list[int]) -> list[Tensor]:
    """Cut a flat (B, P[, 1, 1]) style vector into consecutive per-consumer chunks of the given widths."""
    params = params.flatten(1)
    if params.shape[1] != sum(sizes):
        raise ValueError(f"style vector has {params.shape[1]} values per sample, the AdaIN layers need {sum(sizes)}")
    return list(params.split(sizes, dim=1))


class SFTLayer(nn.Module):
    """Spatial Feature Transform (Wang et al. 2018), as used by MaskGAN's spatial-aware style encoder.

    ``scale = conv2(leaky_relu(conv1(cond)))`` and ``shift`` likewise with its own two 1x1 convolutions; the
    output is ``x * scale + shift``. MaskGAN's released code uses the plain ``scale``
    (``residual_scale=False``, the default); SFT-GAN's original code uses ``x * (1 + scale) + shift``
    (``residual_scale=True``). No normalisation (MaskGAN supplement, Fig. 3).
    """

    def __init__(
        self,
        channels: int,
        cond_channels: int | None = None,
        hidden_channels: int | None = None,
        negative_slope: float = 0.1,
        residual_scale: bool = False,
    ) -> None:
        super().__init__()
        cond_channels = channels if cond_channels is None else cond_channels
        hidden_channels = cond_channels if hidden_channels is None else hidden_channels
        self.negative_slope = negative_slope
        self.residual_scale = residual_scale
        self.scale_conv1 = nn.Conv2d(cond_channels, hidden_channels, 1)
        self.scale_conv2 = nn.Conv2d(hidden_channels, channels, 1)
        self.shift_conv1 = nn.Conv2d(cond_channels, hidden_channels, 1)
        self.shift_conv2 = nn.Conv2d(hidden_channels, channels, 1)

    def modulation(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, shift) predicted from the condition features."""
        scale = self.scale_conv2(F.leaky_relu(self.scale_conv1(cond), self.negative_slope))
        shift = self.shift_conv2(F.leaky_relu(self.shift_conv1(cond), self.negative_slope))
        return scale, shift

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if x.shape[2:] != cond.shape[2:]:
            raise ValueError(f"SFT features {tuple(x.shape)} and condition {tuple(cond.shape)} differ in size")
        scale, shift = self.modulation(cond)
        if self.residual_scale:
            scale = scale + 1
        return torch.addcmul(shift, x, scale)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (Park et al. 2019): ``norm(x) * (1 + gamma(m)) + beta(m)``.

    ``norm`` is parameter-free instance or batch norm; the segmentation map ``m`` is resized to ``x`` by
    nearest interpolation and goes through a shared ``kernel_size`` conv + ReLU with ``hidden_channels`` (128
    in SPADE), then one conv each for gamma and beta.
    """

    def __init__(
        self,
        num_features: int,
        label_channels: int,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: Literal["instance", "batch"] = "instance",
    ) -> None:
        super().__init__()
        if param_free_norm == "instance":
            self.norm: nn.Module = InstanceNorm2d(num_features, affine=False)
        elif param_free_norm == "batch":
            self.norm = nn.BatchNorm2d(num_features, affine=False)
        else:
            raise ValueError(f"SPADE param_free_norm must be 'instance' or 'batch', got {param_free_norm!r}")
        pad = kernel_size // 2
        self.shared = nn.Sequential(
            nn.Conv2d(label_channels, hidden_channels, kernel_size, padding=pad), nn.ReLU(inplace=True)
        )
        self.gamma = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=pad)
        self.beta = nn.Conv2d(hidden_channels, num_features, kernel_size, padding=pad)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        normalized = self.norm(x)
        if segmap.shape[2:] != x.shape[2:]:
            segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        hidden = self.shared(segmap)
        return torch.addcmul(self.beta(hidden), normalized, 1 + self.gamma(hidden))


# ------------------------------------------------------------------------------------------ factory
def norm_factory(kind: NormKind) -> Callable[[int], nn.Module]:
    """Constructor ``num_features -> module`` for a 2D normalisation by name.

    ``instance``: :class:`InstanceNorm2d` without affine parameters (pix2pixHD's default);
    ``instance_affine``: with them; ``batch``: ``nn.BatchNorm2d`` (affine, running stats); ``none``:
    ``nn.Identity``.
    """
    if kind == "instance":
        return lambda c: InstanceNorm2d(c, affine=False)
    if kind == "instance_affine":
        return lambda c: InstanceNorm2d(c, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected one of 'instance', 'instance_affine', 'batch', 'none'")
