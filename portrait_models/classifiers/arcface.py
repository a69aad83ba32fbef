"""ArcFace identity embeddings: insightface's iresnet backbones, loadable from the official checkpoints.

The architecture follows insightface ``recognition/arcface_torch/backbones/iresnet.py`` (facts only; see
``reference_implementations.md`` §8.4) and keeps its state-dict key names exactly, so a model-zoo
``backbone.pth`` loads strictly:

* stem ``conv1`` (3×3, stride 1, 64) → ``bn1`` → ``prelu``;
* ``layer1..4`` with 64/128/256/512 channels, each starting with stride 2; an :class:`IBasicBlock` is
  ``bn1 → conv1 (3×3) → bn2 → prelu → conv2 (3×3, stride) → bn3`` plus the shortcut, which is
  ``downsample.0`` (1×1 conv, stride) + ``downsample.1`` (BN) in the first block of every stage;
* head ``bn2`` (BN2d) → flatten → ``dropout`` → ``fc`` (512·7·7 → 512) → ``features`` (BN1d, weight
  fixed at 1).

Input is a 112×112 RGB face scaled as ``(x/255 − 0.5)/0.5``, i.e. the project's [-1, 1] images as they are.
MaskGAN's identity evaluation (§5.3) resizes each face to 112×112 without re-alignment; that is what
:meth:`ArcFaceEmbedder.preprocess` does. Similarity of two faces is the cosine of their embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from portrait_models.pretrained import resolve_weights

# Blocks per stage of insightface's iresnet variants.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
# Weight-table entry (portrait_models.pretrained.WEIGHTS) -> architecture.
ARCFACE_ARCHITECTURES: dict[str, str] = {"arcface_r50": "iresnet50", "arcface_r100": "iresnet100"}

INPUT_SIZE = 112
_BN_EPS = 1e-5
_STAGE_WIDTHS = (64, 128, 256, 512)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """iresnet's residual block: BN → conv → BN → PReLU → conv(stride) → BN, plus the shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = _conv3x3(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=_BN_EPS),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """insightface's face-recognition ResNet: (B, 3, 112, 112) → (B, embedding_dim), not normalised."""

    def __init__(self, layers: tuple[int, int, int, int], embedding_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, _STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(_STAGE_WIDTHS[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(_STAGE_WIDTHS[0])
        in_channels = _STAGE_WIDTHS[0]
        for index, (width, blocks) in enumerate(zip(_STAGE_WIDTHS, layers), start=1):
            stage = [IBasicBlock(in_channels, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            in_channels = width
        spatial = INPUT_SIZE // 2 ** len(_STAGE_WIDTHS)
        self.bn2 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * spatial * spatial, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=_BN_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        # insightface's initialisation: N(0, 0.1) convolutions, unit/zero BN; the embedding BN's scale is
        # fixed at 1 and never trained.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet(arch: str = "iresnet50", embedding_dim: int = 512, dropout: float = 0.0) -> IResNet:
    """Build one of insightface's iresnet variants by name (see :data:`IRESNET_LAYERS`)."""
    if arch not in IRESNET_LAYERS:
        raise ValueError(f"unknown iresnet architecture {arch!r}; expected one of {sorted(IRESNET_LAYERS)}")
    return IResNet(IRESNET_LAYERS[arch], embedding_dim=embedding_dim, dropout=dropout)


def uint8_to_model_range(images: np.ndarray | Tensor) -> Tensor:
    """uint8 RGB (H, W, 3) or (B, H, W, 3) → float (B, 3, H, W) as ArcFace expects: ``(x/255 − 0.5)/0.5``."""
    tensor = images if isinstance(images, Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dtype != torch.uint8 or tensor.ndim not in (3, 4) or tensor.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 RGB images (H, W, 3) or (B, H, W, 3), got {tensor.dtype} {tuple(tensor.shape)}"
        )
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return (tensor.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


class ArcFaceEmbedder(nn.Module):
    """Unit-length ArcFace embeddings of faces given as the project's images, (B, 3, H, W) RGB in [-1, 1].

    Satisfies :class:`portrait_models.classifiers.FaceEmbedder`. Build an untrained one with
    ``ArcFaceEmbedder("iresnet50")`` or a pretrained, frozen one with :meth:`load`.
    """

    def __init__(self, arch: str = "iresnet50", embedding_dim: int = 512) -> None:
        super().__init__()
        self.arch = arch
        self.embedding_dim = embedding_dim
        self.backbone = iresnet(arch, embedding_dim=embedding_dim)
        self.frozen = False

    @classmethod
    def load(cls, name: str = "arcface_r50", path: str | Path | None = None) -> ArcFaceEmbedder:
        """Load an insightface model-zoo ``backbone.pth`` strictly (cache or ``path``), frozen in eval mode.

        ``name`` is an entry of ``portrait_models.pretrained.WEIGHTS`` (:data:`ARCFACE_ARCHITECTURES`).
        """
        if name not in ARCFACE_ARCHITECTURES:
            raise ValueError(f"unknown ArcFace weights {name!r}; expected one of {sorted(ARCFACE_ARCHITECTURES)}")
        file = resolve_weights(name, path)
        state = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{file} holds a {type(state).__name__}, expected an iresnet state dict")
        model = cls(ARCFACE_ARCHITECTURES[name])
        try:
            model.backbone.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(
                f"{file} is not an insightface {model.arch} backbone state dict (keys such as conv1.weight,"
                f" layer1.0.bn1.weight, fc.weight, features.running_mean): {error}"
            ) from error
        return model.freeze()

    def freeze(self) -> ArcFaceEmbedder:
        """No gradients, eval mode for good: ``train()`` from an enclosing module leaves it in eval."""
        self.frozen = True
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> ArcFaceEmbedder:
        return super().train(mode and not self.frozen)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, 3, 112, 112); bilinear (antialiased) resize when the size differs."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
        return images

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, embedding_dim), L2-normalised."""
        return F.normalize(self.backbone(self.preprocess(images)), dim=1)

    def embed(self, images: Tensor) -> Tensor:
        """:class:`FaceEmbedder` interface: the same as calling the module."""
        return self(images)
