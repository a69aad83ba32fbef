"""VGG19 feature extractor and the pix2pixHD/MaskGAN perceptual loss (MaskGAN Eq. 9).

The loss is ``sum_i w_i * L1(phi_i(fake), phi_i(real).detach())`` over VGG19 ``features[0:30]`` cut at
relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (torchvision indices 0:2, 2:7, 7:12, 12:21, 21:30) with weights
``[1/32, 1/16, 1/8, 1/4, 1]``. MaskGAN's (and pix2pixHD's) released code feeds the generator's [-1, 1] images
to VGG **without** ImageNet normalisation; that is the default here (``imagenet_normalize=False``). With
``imagenet_normalize=True`` inputs are mapped to [0, 1] and standardised with the ImageNet mean/std the
weights were trained with.

Weights come from torchvision's ``vgg19-dcbb9e9d.pth`` via :func:`portrait_models.pretrained.resolve_weights`
(never downloaded). The network is wrapped in :class:`~portrait_models.layers.frozen.FrozenModule`: frozen,
always in eval mode, and not written to checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from portrait_models.layers.frozen import FrozenModule
from portrait_models.pretrained import resolve_weights

#: torchvision's VGG19 ``features`` configuration: conv widths, "M" = 2x2 max pooling.
VGG19_CONFIG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
#: End indices (exclusive) of the relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 slices of ``features``.
VGG19_RELU_X_1 = (2, 7, 12, 21, 30)
PIX2PIXHD_VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_feature_layers(num_layers: int) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's VGG19 ``features``, with the same indices."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU()]
            in_channels = int(item)
    if not 0 < num_layers <= len(layers):
        raise ValueError(f"VGG19 features has {len(layers)} layers, asked for {num_layers}")
    return nn.Sequential(*layers[:num_layers])


class VGG19Features(nn.Module):
    """VGG19 ``features`` cut into slices; ``forward`` returns the output of each slice.

    ``slice_ends`` are exclusive end indices into torchvision's ``features`` (default: relu1_1 ... relu5_1).
    ``pretrained=True`` loads the ``vgg19`` weight file (``weights_path`` overrides the cache location);
    ``pretrained=False`` keeps a random initialisation (tests, or a custom ``load_state_dict``).
    """

    def __init__(
        self,
        slice_ends: Sequence[int] = VGG19_RELU_X_1,
        pretrained: bool = True,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        ends = tuple(slice_ends)
        if not ends or any(b <= a for a, b in zip((0, *ends[:-1]), ends, strict=True)):
            raise ValueError(f"slice_ends must be increasing positive indices, got {ends}")
        self.slice_ends = ends
        self.features = vgg19_feature_layers(ends[-1])
        if pretrained:
            self.load_torchvision_weights(resolve_weights("vgg19", weights_path))

    def load_torchvision_weights(self, path: str | Path) -> None:
        """Load the ``features.*`` tensors this extractor uses from a torchvision VGG19 state-dict file."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = self.features.state_dict()
        missing = [f"features.{k}" for k in wanted if f"features.{k}" not in state]
        if missing:
            raise ValueError(
                f"{path} is not a torchvision VGG19 state dict: missing {', '.join(missing[:4])}"
                f"{' …' if len(missing) > 4 else ''}"
            )
        self.features.load_state_dict({k: state[f"features.{k}"] for k in wanted})

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        start = 0
        for end in self.slice_ends:
            for index in range(start, end):
                x = self.features[index](x)
            outputs.append(x)
            start = end
        return outputs


class ImageNetNormalize(nn.Module):
    """Maps [-1, 1] images to ImageNet-standardised inputs: ``((x + 1) / 2 - mean) / std``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return ((x + 1) * 0.5 - self.mean) / self.std


class PerceptualLoss(nn.Module):
    """Weighted L1 between frozen VGG19 features of ``fake`` and ``real`` (see the module docstring).

    ``forward(fake, real)``: images (B, 3, H, W) in [-1, 1]. Only ``fake`` is back-propagated through; the
    real branch runs under ``no_grad``. ``layer_weights`` pairs with ``slice_ends``.
    """

    def __init__(
        self,
        layer_weights: Sequence[float] = PIX2PIXHD_VGG_WEIGHTS,
        imagenet_normalize: bool = False,
        pretrained: bool = True,
        weights_path: str | Path | None = None,
        slice_ends: Sequence[int] = VGG19_RELU_X_1,
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(slice_ends):
            raise ValueError(f"{len(layer_weights)} layer weights for {len(slice_ends)} VGG slices")
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.normalize: nn.Module = ImageNetNormalize() if imagenet_normalize else nn.Identity()
        self.vgg = FrozenModule(VGG19Features(slice_ends, pretrained, weights_path))

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        if fake.shape != real.shape or fake.dim() != 4 or fake.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) images of the same shape, got {tuple(fake.shape)} and {tuple(real.shape)}"
            )
        fake_features = self.vgg(self.normalize(fake))
        with torch.no_grad():
            real_features = self.vgg(self.normalize(real))
        terms = [
            w * F.l1_loss(f.float(), r.float())
            for w, f, r in zip(self.layer_weights, fake_features, real_features, strict=True)
        ]
        return torch.stack(terms).sum()
