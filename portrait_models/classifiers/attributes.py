"""The CelebA attribute classifier that judges attribute edits: a ResNet-18 with a multi-label head.

MaskGAN (§5.3) trains "binary facial attribute classifiers for specific attributes on the CelebA dataset by
using ResNet-18"; MagGAN and STGAN score their 13 edited attributes with one multi-label classifier
(STGAN's AttGAN-style network, 94.5% mean accuracy). Here one ResNet-18 serves both: ``attributes`` picks the
columns and each gets one logit, trained with binary cross-entropy. The default, :data:`JUDGED_ATTRIBUTES`, is
every attribute an evaluation protocol of this project judges: MagGAN's 13 edit attributes plus MaskGAN's
Smiling and Heavy_Makeup (its Male and No_Beard are among the 13).

The classifier records the resolution it was trained at (the ``trained_image_size`` buffer, saved in the
checkpoint, set from the first training batch) and resizes any other input to it before classifying:
a classifier trained on 128² CelebA crops judges a 512² MaskGAN output as the 128² image it was made for,
not as a face four times larger than any it has seen.

With ``width=64, num_layers=4`` the trunk is torchvision's ResNet-18 with the same parameter names, so the
ImageNet file (``resolve_weights("resnet18")``) initialises it; a smaller width / fewer stages give the same
design at test scale. Images arrive in the project's [-1, 1] range and are normalised with the ImageNet mean
and std inside the model, whether or not the backbone starts from ImageNet, so every checkpoint takes the
same input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from datamodules.labels import ATTRIBUTE_INDEX, EDIT_ATTRIBUTES
from metrics.attributes import AttributeEditAccuracy
from portrait_models.pretrained import resolve_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Every attribute a protocol judges: MagGAN's / STGAN's 13 edit attributes, then MaskGAN's Smiling (Table 2)
# and Heavy_Makeup (Table 3); MaskGAN's Male and No_Beard are among the 13.
JUDGED_ATTRIBUTES: tuple[str, ...] = (*EDIT_ATTRIBUTES, "Smiling", "Heavy_Makeup")


class ResNetClassifier(nn.Module):
    """ResNet-18 layout (7×7 stem, max-pool, stages of two BasicBlocks, global pool, linear head).

    Args:
        num_outputs: logits produced by ``fc``.
        width: channels of the first stage (doubling per stage); 64 is ResNet-18.
        num_layers: number of stages, 1–4; 4 is ResNet-18.
    """

    def __init__(self, num_outputs: int, width: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        if not 1 <= num_layers <= 4 or width < 1:
            raise ValueError(f"need 1 <= num_layers <= 4 and width >= 1, got num_layers={num_layers}, width={width}")
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = width
        self.stages: list[str] = []
        for index in range(num_layers):
            out_channels = width * 2**index
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or channels != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(channels, out_channels, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            stage = nn.Sequential(
                BasicBlock(channels, out_channels, stride, downsample), BasicBlock(out_channels, out_channels)
            )
            self.add_module(f"layer{index + 1}", stage)
            self.stages.append(f"layer{index + 1}")
            channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_outputs)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_imagenet_trunk(model: ResNetClassifier, state_dict: dict[str, Tensor], source: str = "state dict") -> None:
    """Copy a torchvision ResNet-18 ImageNet state dict into ``model``, all but the 1000-class ``fc``.

    Raises ValueError naming ``source`` when the model is not the full-size ResNet-18 or keys do not match.
    """
    trunk = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    expected = {key: value.shape for key, value in model.state_dict().items() if not key.startswith("fc.")}
    missing, unexpected = sorted(set(expected) - set(trunk))[:5], sorted(set(trunk) - set(expected))[:5]
    wrong_shape = sorted(k for k in set(trunk) & set(expected) if trunk[k].shape != expected[k])[:5]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{source} does not fit this ResNet trunk (ImageNet weights need width=64, num_layers=4):"
            f" missing {missing}, unexpected {unexpected}, other shape {wrong_shape}"
        )
    model.load_state_dict(trunk, strict=False)


def attribute_columns(attributes: Sequence[str]) -> list[int]:
    """CelebA column index of every attribute name; a KeyError names any unknown one."""
    unknown = [a for a in attributes if a not in ATTRIBUTE_INDEX]
    if unknown:
        raise KeyError(f"unknown CelebA attributes {unknown}; see datamodules.labels.CELEBA_ATTRIBUTES")
    return [ATTRIBUTE_INDEX[a] for a in attributes]


class AttributeClassifier(LightningModule):
    """Multi-label attribute classifier on the batch contract ``image`` (B, 3, H, W) in [-1, 1] and
    ``attributes`` (B, 40) in {0, 1} (CelebA order).

    Logs ``train/loss``, ``val/loss``, ``val/acc/<Attribute>`` and ``val/acc_mean`` (threshold 0.5).

    Args:
        attributes: CelebA attribute names to predict, in output order; default :data:`JUDGED_ATTRIBUTES`.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        pretrained_backbone: start the trunk from torchvision's ImageNet ResNet-18 (the cached
            ``resnet18`` weight file; needs ``width=64, num_layers=4``). A checkpoint restores every weight,
            so pass ``pretrained_backbone=False`` to ``load_from_checkpoint`` where the file is absent.
        width, num_layers: trunk size (64 / 4 = ResNet-18; smaller for tests).
    """

    def __init__(
        self,
        attributes: Sequence[str] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        pretrained_backbone: bool = False,
        width: int = 64,
        num_layers: int = 4,
    ) -> None:
        super().__init__()
        attributes = list(JUDGED_ATTRIBUTES if attributes is None else attributes)
        if not attributes:
            raise ValueError("attributes is empty; expected at least one CelebA attribute name")
        self.save_hyperparameters()
        self.attributes = tuple(attributes)
        self.lr = lr
        self.weight_decay = weight_decay
        self.register_buffer("columns", torch.tensor(attribute_columns(attributes)), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.network = ResNetClassifier(len(attributes), width=width, num_layers=num_layers)
        # The side of the square images it was trained on (0 until the first training batch); saved in the
        # checkpoint, so every user of the file classifies at that resolution.
        self.register_buffer("trained_image_size", torch.zeros((), dtype=torch.long))
        if pretrained_backbone:
            path = resolve_weights("resnet18")
            load_imagenet_trunk(self.network, torch.load(path, map_location="cpu", weights_only=True), str(path))
        # Per-attribute accuracy with sum states (exact under DDP); with every entry scored it is plain
        # classification accuracy at probability 0.5.
        self.val_accuracy = AttributeEditAccuracy(self.attributes, per_attribute=True)

    @property
    def image_size(self) -> int | None:
        """The resolution the classifier was trained at, or None before any training batch."""
        size = int(self.trained_image_size)
        return size or None

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, C) logits, one per attribute; images of another size than the
        training resolution are first resized to it (antialiased bilinear)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        size = self.image_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False)  # fmt: skip
        return self.network(((images + 1) / 2 - self.mean) / self.std)

    def _record_image_size(self, images: Tensor) -> None:
        height, width = images.shape[-2:]
        if height != width:
            raise ValueError(f"the attribute classifier trains on square images, got {height}x{width}")
        if self.image_size is None:
            self.trained_image_size.fill_(int(height))
        elif self.image_size != height:
            raise ValueError(
                f"training batch of {height}² images for a classifier trained at {self.image_size}²; "
                "one classifier is trained at one resolution"
            )

    def targets(self, batch: dict[str, Tensor]) -> Tensor:
        """The (B, C) float {0, 1} targets of this classifier's attributes, from ``batch["attributes"]``."""
        if "attributes" not in batch:
            raise KeyError("batch has no 'attributes' key; expected (B, 40) CelebA attributes in {0, 1}")
        return batch["attributes"].index_select(1, self.columns).float()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._record_image_size(batch["image"])
        loss = F.binary_cross_entropy_with_logits(self(batch["image"]), self.targets(batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits, targets = self(batch["image"]), self.targets(batch)
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log(
            "val/loss",
            F.binary_cross_entropy_with_logits(logits, targets),
            batch_size=float(len(targets)),
            sync_dist=True,
        )
        self.val_accuracy.update(logits, targets)

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_accuracy.compute()
        self.val_accuracy.reset()
        for name in self.attributes:
            self.log(f"val/acc/{name}", accuracy[name])
        self.log("val/acc_mean", accuracy["mean"], prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
