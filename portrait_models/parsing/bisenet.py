"""BiSeNet face parser as in zllrunning/face-parsing.PyTorch (reference_implementations.md §8.3).

Architecture (facts from the reference ``model.py``):

* **Context path** on a ResNet-18 trunk returning the 1/8, 1/16 and 1/32 features (128, 256, 512 ch).
  A global-average context (``conv_avg``: 1×1 ConvBNReLU 512 → 128) is added to the attention-refined
  1/32 feature (``arm32``: 512 → 128), the sum is upsampled (nearest) to 1/16 and passed through
  ``conv_head32``; that is added to ``arm16`` (256 → 128) of the 1/16 feature, upsampled (nearest) to 1/8
  and passed through ``conv_head16``. An attention refinement module is a 3×3 ConvBNReLU followed by a
  channel gate ``sigmoid(BN(conv1×1(global_avg_pool(feat))))``.
* The **spatial path is replaced** by the ResNet's 1/8 feature (``res3b1``).
* **Feature fusion** (``ffm``): concat(1/8 ResNet feature, 1/8 context) → 1×1 ConvBNReLU 256 → 256, a
  squeeze-excitation gate (256 → 64 → 256, ReLU, sigmoid) applied as ``feat + feat * gate``.
* **Three heads**: ``conv_out`` (256 → 256 → n) on the fused feature, ``conv_out16`` (128 → 64 → n) on the
  1/8 context feature and ``conv_out32`` (128 → 64 → n) on the 1/16 context feature. Each head is a 3×3
  ConvBNReLU and a bias-free 1×1 classifier; all three are bilinearly upsampled (``align_corners=True``)
  to the input size.

Module names match the reference (``cp``, ``cp.resnet``, ``cp.arm16`` …, ``ffm``, ``conv_out``,
``conv_out16``, ``conv_out32``), so its widely used ``79999_iter.pth`` loads strictly through
:func:`load_bisenet_checkpoint`, which also reorders the classifier rows into the official
CelebAMask-HQ class order (``datamodules.labels.BISENET_TO_CELEBAMASK``).

Input convention: the network takes project images in ``[-1, 1]`` and converts them internally to the
ImageNet mean/std normalisation that both the ImageNet ResNet-18 and the reference checkpoint expect.

``forward`` always returns the tuple ``(main, aux16, aux32)`` as the reference does (the auxiliary heads
only feed the training loss); :meth:`BiSeNet.main_logits` computes the main output alone for inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from datamodules.labels import BISENET_TO_CELEBAMASK, NUM_CELEBAMASK_CLASSES
from portrait_models.pretrained import resolve_weights

__all__ = [
    "BiSeNet",
    "ResNet18Trunk",
    "load_bisenet_checkpoint",
    "load_resnet18_imagenet",
    "permute_classifier_rows",
    "CLASSIFIER_KEYS",
]

# The bias-free 1×1 classifiers whose output rows follow the class order.
CLASSIFIER_KEYS: tuple[str, ...] = (
    "conv_out.conv_out.weight",
    "conv_out16.conv_out.weight",
    "conv_out32.conv_out.weight",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    """Bias-free convolution → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _resnet_stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Two torchvision BasicBlocks; the first one downsamples with a 1×1 projection when needed."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample),
        BasicBlock(out_channels, out_channels),
    )


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its pooling/classifier, returning the 1/8, 1/16 and 1/32 feature maps.

    Parameter names equal torchvision's ``resnet18`` (minus ``fc``), so ImageNet weights load strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _resnet_stage(64, 64, stride=1)
        self.layer2 = _resnet_stage(64, 128, stride=2)
        self.layer3 = _resnet_stage(128, 256, stride=2)
        self.layer4 = _resnet_stage(256, 512, stride=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class AttentionRefinementModule(nn.Module):
    """3×3 ConvBNReLU, then a channel gate from the globally averaged feature."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, kernel_size=3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * gate


class ContextPath(nn.Module):
    """ResNet-18 + ARM16/ARM32 + global context; returns (res 1/8, context 1/8, context 1/16)."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18Trunk()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, kernel_size=3)
        self.conv_head16 = ConvBNReLU(128, 128, kernel_size=3)
        self.conv_avg = ConvBNReLU(512, 128, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))  # (B,128,1,1) broadcasts over 1/32
        up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[-2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[-2:], mode="nearest")
        up16 = self.conv_head16(up16)
        return feat8, up16, up32


class FeatureFusionModule(nn.Module):
    """Fuse the spatial (here: ResNet 1/8) and context features with a squeeze-excitation gate."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, kernel_size=1)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, kernel_size=1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat + feat * gate


class BiSeNetHead(nn.Module):
    """3×3 ConvBNReLU → bias-free 1×1 classifier (named ``conv_out`` as in the reference)."""

    def __init__(self, in_channels: int, mid_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, kernel_size=3)
        self.conv_out = nn.Conv2d(mid_channels, n_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet face parser: images in ``[-1, 1]`` → ``(main, aux16, aux32)`` logits at the input size."""

    def __init__(self, n_classes: int = NUM_CELEBAMASK_CLASSES) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetHead(256, 256, n_classes)
        self.conv_out16 = BiSeNetHead(128, 64, n_classes)
        self.conv_out32 = BiSeNetHead(128, 64, n_classes)
        # [-1, 1] → ImageNet normalisation: x01 = (x + 1) / 2, then (x01 - mean) / std.
        mean, std = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)
        self._init_non_backbone()

    def _init_non_backbone(self) -> None:
        """Kaiming-normal (a=1) convolutions outside the ResNet trunk, zero biases, as the reference."""
        trunk = set(self.cp.resnet.modules())
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module not in trunk:
                nn.init.kaiming_normal_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"BiSeNet expects (B, 3, H, W) images in [-1, 1], got {tuple(x.shape)}")
        res8, context8, context16 = self.cp(x * self.in_scale + self.in_shift)
        return self.ffm(res8, context8), context8, context16

    @staticmethod
    def _upsample(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused, context8, context16 = self._features(x)
        size = x.shape[-2:]
        return (
            self._upsample(self.conv_out(fused), size),
            self._upsample(self.conv_out16(context8), size),
            self._upsample(self.conv_out32(context16), size),
        )

    def main_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Only the main head's logits (what inference uses), without computing the auxiliary heads."""
        fused, _, _ = self._features(x)
        return self._upsample(self.conv_out(fused), x.shape[-2:])

    def param_groups(self, lr: float, weight_decay: float, head_lr_mult: float = 10.0) -> list[dict]:
        """SGD parameter groups as the reference optimiser builds them.

        Convolution weights get weight decay; BN parameters and biases do not; the fusion module and
        the three heads train with ``head_lr_mult`` × the base learning rate.
        """
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, d): [] for h in (False, True) for d in (False, True)}
        for child_name, child in self.named_children():
            is_head = child_name != "cp"
            for module in child.modules():
                for param_name, param in module.named_parameters(recurse=False):
                    decays = isinstance(module, (nn.Conv2d, nn.Linear)) and param_name == "weight"
                    groups[(is_head, decays)].append(param)
        return [
            {
                "params": params,
                "lr": lr * (head_lr_mult if is_head else 1.0),
                "weight_decay": weight_decay if decays else 0.0,
            }
            for (is_head, decays), params in groups.items()
            if params
        ]


def load_resnet18_imagenet(trunk: ResNet18Trunk, path: str | Path | None = None) -> None:
    """Load torchvision's ImageNet ResNet-18 file (``pretrained.WEIGHTS["resnet18"]``) into ``trunk``.

    The file is found through :func:`portrait_models.pretrained.resolve_weights` (sha256-checked; a
    missing file raises one error naming it and where to get it). The ``fc`` classifier is dropped.
    """
    file = resolve_weights("resnet18", path)
    state = torch.load(file, map_location="cpu", weights_only=True)
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    _load_strict(trunk, backbone, file)


def permute_classifier_rows(
    state_dict: Mapping[str, torch.Tensor], to_official: np.ndarray | torch.Tensor
) -> dict[str, torch.Tensor]:
    """Reorder the output rows of the three classifiers so class ``to_official[j]`` receives old row ``j``.

    ``to_official`` maps the checkpoint's class index to the official one
    (``official = to_official[old]``, as ``labels.BISENET_TO_CELEBAMASK``). The new row ``k`` is old row
    ``to_official⁻¹[k]``. Other entries are returned unchanged.
    """
    table = torch.as_tensor(np.asarray(to_official), dtype=torch.long)
    if sorted(table.tolist()) != list(range(len(table))):
        raise ValueError(f"class remap table must be a permutation of 0..{len(table) - 1}, got {table.tolist()}")
    inverse = torch.argsort(table)
    remapped = dict(state_dict)
    for key in CLASSIFIER_KEYS:
        if key not in remapped:
            raise KeyError(f"state dict has no classifier {key!r}; expected BiSeNet keys {CLASSIFIER_KEYS}")
        weight = remapped[key]
        if weight.shape[0] != len(table):
            raise ValueError(f"{key} has {weight.shape[0]} output rows but the remap table has {len(table)} classes")
        remapped[key] = weight.index_select(0, inverse.to(weight.device))
    return remapped


def load_bisenet_checkpoint(
    path: str | Path | None = None,
    *,
    class_order: np.ndarray | None = BISENET_TO_CELEBAMASK,
    map_location: str | torch.device = "cpu",
) -> BiSeNet:
    """Build a :class:`BiSeNet` from zllrunning's ``79999_iter.pth`` with outputs in the official order.

    ``path`` is the file (or a directory holding ``79999_iter.pth``); by default it is looked up in the
    weights cache via ``resolve_weights("bisenet_celebamaskhq")``. ``class_order`` maps the checkpoint's
    class index to the official one; ``None`` keeps the file's order. A ``module.`` prefix left by
    DataParallel/DDP is stripped. The returned network is in eval mode.
    """
    file = resolve_weights("bisenet_celebamaskhq", path)
    state = torch.load(file, map_location=map_location, weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file} is not a BiSeNet state dict (expected a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    head_key = CLASSIFIER_KEYS[0]
    if head_key not in state:
        raise ValueError(f"{file} has no {head_key!r}: not a zllrunning BiSeNet checkpoint")
    n_classes = int(state[head_key].shape[0])
    if class_order is not None:
        state = permute_classifier_rows(state, class_order)
    net = BiSeNet(n_classes)
    _load_strict(net, state, file)
    return net.eval()


def _load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], file: Path) -> None:
    """``load_state_dict(strict=True)`` with one readable error naming the file and the mismatched keys."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {file} do not match {type(module).__name__}: {err}") from err
