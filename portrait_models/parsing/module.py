"""``FaceParser``: the Lightning system that trains and evaluates the face parsers.

Two recipes, selected by ``arch`` and ``optimizer``:

* ``arch="unet"`` (official CelebAMask-HQ ``face_parsing``, reference_implementations.md §1.4): pixel
  cross-entropy, Adam ``lr 2e-4, betas (0.5, 0.999)``, no schedule (the official ``lr_decay`` is unused).
  These are the constructor defaults. (The official void label is 250; here ``ignore_index`` is an
  argument, 255 by default, the value BiSeNet's reference uses.)
* ``arch="bisenet"`` (zllrunning/face-parsing.PyTorch, §8.3): OHEM cross-entropy (``thresh 0.7``) on the
  main and both auxiliary outputs, summed; the reference optimiser is ``optimizer="sgd_poly"`` with
  ``lr=1e-2, weight_decay=5e-4``: SGD momentum 0.9, exponential warm-up from ``warmup_start_lr`` over
  ``warmup_steps`` (1000), then poly decay with power 0.9 to ``max_steps_for_schedule`` (80000), 10×
  learning rate on the fusion module and heads, no weight decay on BN parameters and biases.

Batches follow the project contract: ``image`` float ``(B, 3, H, W)`` in ``[-1, 1]``, ``label`` int64
``(B, H, W)`` with values in ``[0, num_classes)`` (or ``ignore_index``). Labels out of range stop with an
error naming the class count, which catches e.g. 19-class CelebAMask-HQ labels fed to a Helen parser.

For downstream models :meth:`FaceParser.parse` returns differentiable soft masks ``(B, C, H, W)`` that
sum to one over ``C`` (MagGAN's soft masks, Gu et al.'s parsing loss through a frozen parser).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from datamodules.labels import (
    CELEBAMASK_CLASSES,
    CELEBAMASK_PALETTE,
    HELEN_CLASSES,
    HELEN_TO_CELEBAMASK,
    NUM_CELEBAMASK_CLASSES,
    NUM_HELEN_CLASSES,
    label_to_color,
)
from metrics.parsing import ParsingAccuracy
from portrait_models.parsing.bisenet import BiSeNet, load_bisenet_checkpoint, load_resnet18_imagenet
from portrait_models.parsing.losses import OhemCELoss, pixel_cross_entropy
from portrait_models.parsing.unet import UNet

__all__ = ["FaceParser", "class_names_for", "palette_for", "warmup_poly_factor"]

ARCHS = ("unet", "bisenet")
OPTIMIZERS = ("adam", "sgd_poly")


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """Class names for metric keys: CelebAMask-HQ (19), Helen (11), else ``class_<i>``."""
    if num_classes == NUM_CELEBAMASK_CLASSES:
        return CELEBAMASK_CLASSES
    if num_classes == NUM_HELEN_CLASSES:
        return HELEN_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


def palette_for(num_classes: int) -> np.ndarray:
    """Colour palette for ``num_classes`` labels; a Helen class takes its CelebAMask-HQ class's colour."""
    if num_classes == NUM_HELEN_CLASSES:
        return CELEBAMASK_PALETTE[HELEN_TO_CELEBAMASK]
    return np.resize(CELEBAMASK_PALETTE, (num_classes, 3))


def warmup_poly_factor(step: int, warmup_steps: int, warmup_start_ratio: float, max_steps: int, power: float) -> float:
    """LR multiplier of the BiSeNet reference schedule at optimiser step ``step``.

    Warm-up grows the rate geometrically from ``warmup_start_ratio × lr`` to ``lr`` over ``warmup_steps``;
    then ``(1 - (step - warmup) / (max_steps - warmup)) ** power``, floored at zero.
    """
    if step < warmup_steps:
        return warmup_start_ratio ** (1.0 - step / warmup_steps)
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return max(0.0, 1.0 - progress) ** power


class FaceParser(L.LightningModule):
    """Face parsing system (U-Net or BiSeNet) with pixel-accuracy / mIoU / F1 validation.

    Args:
        arch: ``"unet"`` (official CelebAMask-HQ parser) or ``"bisenet"`` (zllrunning's BiSeNet).
        num_classes: 19 (CelebAMask-HQ order) or 11 (Helen order); other counts work with generic names.
        lr, betas, weight_decay: optimiser settings (``betas`` only for Adam).
        optimizer: ``"adam"`` (official U-Net recipe) or ``"sgd_poly"`` (BiSeNet recipe, see module doc).
        momentum, warmup_steps, warmup_start_lr, poly_power, max_steps_for_schedule, head_lr_mult:
            the ``sgd_poly`` schedule; ``head_lr_mult`` applies to BiSeNet's fusion module and heads.
        unet_feature_scale, unet_is_deconv, unet_is_batchnorm: U-Net shape (official: 4, True, True).
        bisenet_pretrained: load ImageNet ResNet-18 weights into BiSeNet's context path at the start of
            fitting (in :meth:`setup`, so ``load_from_checkpoint`` never needs the ImageNet file).
        bisenet_backbone_path: explicit location of ``resnet18-f37072fd.pth`` (default: weights cache).
        ohem_thresh, ohem_n_min: BiSeNet's OHEM loss (``n_min=None``: 1/16 of the batch's pixels).
        ignore_index: label value excluded from losses and metrics.
        num_sample_images: images per :meth:`sample_grid`.
    """

    def __init__(
        self,
        arch: str = "unet",
        num_classes: int = NUM_CELEBAMASK_CLASSES,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        momentum: float = 0.9,
        warmup_steps: int = 1000,
        warmup_start_lr: float = 1e-5,
        poly_power: float = 0.9,
        max_steps_for_schedule: int = 80000,
        head_lr_mult: float = 10.0,
        unet_feature_scale: int = 4,
        unet_is_deconv: bool = True,
        unet_is_batchnorm: bool = True,
        bisenet_pretrained: bool = False,
        bisenet_backbone_path: str | None = None,
        ohem_thresh: float = 0.7,
        ohem_n_min: int | None = None,
        ignore_index: int = 255,
        num_sample_images: int = 8,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if bisenet_pretrained and arch != "bisenet":
            raise ValueError("bisenet_pretrained=True needs arch='bisenet'")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} collides with a class id of a {num_classes}-class parser")
        self.save_hyperparameters()

        self.net: nn.Module
        if arch == "unet":
            self.net = UNet(num_classes, 3, unet_feature_scale, unet_is_deconv, unet_is_batchnorm)
        else:
            self.net = BiSeNet(num_classes)
            self.ohem = OhemCELoss(ohem_thresh, ohem_n_min, ignore_index)
        self.class_names = class_names_for(num_classes)
        helen = num_classes == NUM_HELEN_CLASSES
        self.val_metrics = ParsingAccuracy(num_classes, ignore_index=ignore_index, helen=helen)
        self.test_metrics = ParsingAccuracy(num_classes, ignore_index=ignore_index, helen=helen)
        self._backbone_loaded = False

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_bisenet_checkpoint(cls, path: str | Path | None = None, **kwargs: Any) -> FaceParser:
        """A BiSeNet ``FaceParser`` holding zllrunning's ``79999_iter.pth``, outputs in the official order."""
        net = load_bisenet_checkpoint(path)
        parser = cls(arch="bisenet", num_classes=net.n_classes, **kwargs)
        parser.net.load_state_dict(net.state_dict())
        return parser.eval()

    def setup(self, stage: str) -> None:
        """Load the ImageNet backbone before fitting; a resumed checkpoint is restored after this hook."""
        if stage == "fit" and self.hparams.bisenet_pretrained and not self._backbone_loaded:
            load_resnet18_imagenet(self.net.cp.resnet, self.hparams.bisenet_backbone_path)
            self._backbone_loaded = True

    # ------------------------------------------------------------------------------------------ inference
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Main-head logits ``(B, C, H, W)`` for images in ``[-1, 1]``."""
        if isinstance(self.net, BiSeNet):
            return self.net.main_logits(images)
        return self.net(images)

    def parse(self, images: torch.Tensor) -> torch.Tensor:
        """Soft masks ``(B, C, H, W)`` (softmax over classes, float32); differentiable w.r.t. ``images``."""
        return F.softmax(self(images).float(), dim=1)

    def predict_step(self, batch: Mapping[str, torch.Tensor] | torch.Tensor, batch_idx: int = 0) -> torch.Tensor:
        images = batch["image"] if isinstance(batch, Mapping) else batch
        return self.parse(images)

    # ------------------------------------------------------------------------------------------- training
    def _unpack(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the batch contract and return ``(image, int64 label)``."""
        missing = [k for k in ("image", "label") if k not in batch]
        if missing:
            raise KeyError(f"FaceParser batches need keys 'image' and 'label'; missing {missing} in {sorted(batch)}")
        image, label = batch["image"], batch["label"]
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"batch['image'] must be (B, 3, H, W), got {tuple(image.shape)}")
        if label.shape != (image.shape[0], *image.shape[2:]):
            raise ValueError(
                f"batch['label'] must be (B, H, W) = {(image.shape[0], *image.shape[2:])}, got {tuple(label.shape)}"
            )
        if label.is_floating_point():
            raise TypeError(f"batch['label'] must hold integer class ids, got {label.dtype}")
        label = label.long()
        num_classes, ignore = self.hparams.num_classes, self.hparams.ignore_index
        out_of_range = ((label < 0) | (label >= num_classes)) & (label != ignore)
        if out_of_range.any():
            worst = int(label[out_of_range].abs().max())
            raise ValueError(
                f"label value {worst} is out of range for a {num_classes}-class parser: labels must lie in "
                f"[0, {num_classes}) or equal ignore_index={ignore} (e.g. 19-class CelebAMask-HQ labels fed "
                f"to an 11-class Helen parser need labels.CELEBAMASK_TO_HELEN first)"
            )
        return image, label

    def _loss_terms(self, images: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """U-Net: pixel CE. BiSeNet: OHEM CE on the main and both auxiliary outputs."""
        if isinstance(self.net, BiSeNet):
            main, aux16, aux32 = self.net(images)
            return {
                "main": self.ohem(main, label),
                "aux16": self.ohem(aux16, label),
                "aux32": self.ohem(aux32, label),
            }
        return {"ce": pixel_cross_entropy(self.net(images), label, self.hparams.ignore_index)}

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, label = self._unpack(batch)
        terms = self._loss_terms(images, label)
        loss = torch.stack(list(terms.values())).sum()
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if len(terms) > 1:
            self.log_dict({f"train/loss/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size)
        return loss

    # ------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Mapping[str, torch.Tensor], metric: ParsingAccuracy, prefix: str) -> None:
        images, label = self._unpack(batch)
        logits = self(images)
        loss = pixel_cross_entropy(logits, label, self.hparams.ignore_index)
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log(f"{prefix}/loss", loss, batch_size=float(images.shape[0]), sync_dist=True)
        metric.update(logits.argmax(dim=1), label)

    def _log_metrics(self, metric: ParsingAccuracy, prefix: str) -> None:
        scores = metric.compute()
        summary = {f"{prefix}/{k}": scores[k] for k in ("pixel_acc", "mean_class_acc", "miou", "mean_f1")}
        # Helen protocol scores (present when num_classes is 11): helen_overall_f1, helen_f1_<component>.
        summary.update({f"{prefix}/{k}": v for k, v in scores.items() if k.startswith("helen_")})
        summary.update({f"{prefix}/f1/{name}": f1 for name, f1 in zip(self.class_names, scores["f1"])})
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in summary.items()})
        metric.reset()

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    # -------------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "adam":
            return torch.optim.Adam(
                self.net.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
            )
        if isinstance(self.net, BiSeNet):
            groups = self.net.param_groups(hp.lr, hp.weight_decay, hp.head_lr_mult)
        else:
            groups = [{"params": list(self.net.parameters()), "lr": hp.lr, "weight_decay": hp.weight_decay}]
        sgd = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        factor = functools.partial(
            warmup_poly_factor,
            warmup_steps=hp.warmup_steps,
            warmup_start_ratio=hp.warmup_start_lr / hp.lr,
            max_steps=hp.max_steps_for_schedule,
            power=hp.poly_power,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(sgd, factor)
        return {"optimizer": sgd, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -------------------------------------------------------------------------------------------- images
    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A ``(3, rows·H, n·W)`` float image in ``[0, 1]``: inputs / target colours / predicted colours.

        Predictions come from eval mode (BatchNorm running statistics); the training mode is restored.
        """
        images, label = self._unpack(batch)
        n = min(self.hparams.num_sample_images, images.shape[0])
        images, label = images[:n], label[:n]
        was_training = self.training
        self.eval()
        try:
            pred = self(images).argmax(dim=1)
        finally:
            self.train(was_training)
        palette = palette_for(self.hparams.num_classes)
        shown = torch.where(label == self.hparams.ignore_index, torch.zeros_like(label), label)
        rows = [
            ((images.float() + 1) / 2).clamp(0, 1).cpu(),
            self._colorize(shown, palette),
            self._colorize(pred, palette),
        ]
        return make_grid(torch.cat(rows), nrow=n, padding=2)

    @staticmethod
    def _colorize(label: torch.Tensor, palette: np.ndarray) -> torch.Tensor:
        colours = np.stack([label_to_color(item, palette) for item in label.cpu()])
        return torch.from_numpy(colours).permute(0, 3, 1, 2).float() / 255.0
