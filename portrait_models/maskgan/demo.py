"""What the synthetic MaskGAN demo (``make train-maskgan`` without DATA) must show, measured at the end of the run.

:class:`SyntheticDemoReport` (configured in ``experiments/configs/maskgan_synthetic_64.yaml``) runs when
training ends and prints, on the validation split:

* the EMA DMN's reconstruction L1 (each validation mask rendered in its own face's style) against the
  **mean-face baseline** (the mean training face, which ignores the mask and the style); the demo's target is
  a ratio of at most 0.6;
* how often a **synthetic-trained parser** (a small U-Net fitted here on the training faces, for
  ``parser_steps`` batches) finds the target mask in the generated faces, against how often it finds it in
  the real validation faces (target: at least 0.9 of it), and against how often the **per-pixel majority
  mask** of the training masks agrees with the target (the generated faces must clearly beat it).

The numbers are also written to ``<run dir>/demo_report.json`` and logged as ``demo/<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.labels import NUM_CELEBAMASK_CLASSES

TARGET_L1_RATIO = 0.6
TARGET_PARSER_RATIO = 0.9


def _stack(dataset: Dataset, limit: int) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(min(limit, len(dataset)))]  # type: ignore[arg-type]
    return torch.stack([item["image"] for item in items]), torch.stack([item["label"] for item in items])


def train_judge_parser(images: Tensor, labels: Tensor, steps: int, seed: int = 0) -> torch.nn.Module:
    """A small U-Net :class:`FaceParser` fitted to (images, labels) for ``steps`` batches of 16 (Adam 1e-3)."""
    from portrait_models.parsing import FaceParser

    generator = torch.Generator().manual_seed(seed)
    parser = FaceParser(unet_feature_scale=8, lr=1e-3)
    optimizer = torch.optim.Adam(parser.parameters(), lr=1e-3)
    parser.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (16,), generator=generator)
        loss = sum(parser._loss_terms(images[index], labels[index]).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return parser.eval().requires_grad_(False)


@torch.no_grad()
def demo_numbers(
    module: Any, train: Dataset, val: Dataset, parser_steps: int = 300, max_images: int = 256
) -> dict[str, float]:
    """The demo's numbers (see the module docstring) for a MaskGAN ``module`` and its train / val splits."""
    train_images, train_labels = _stack(train, max_images)
    val_images, val_labels = _stack(val, max_images)
    device = next(module.parameters()).device
    module.eval()
    fakes = torch.cat([
        module.metric_samples({"image": x.to(device), "label": y.to(device)})["fake"].cpu()
        for x, y in zip(val_images.split(16), val_labels.split(16), strict=True)
    ])  # fmt: skip
    mean_face = train_images.mean(0, keepdim=True).expand_as(val_images)
    l1, mean_l1 = F.l1_loss(fakes, val_images).item(), F.l1_loss(mean_face, val_images).item()
    majority = F.one_hot(train_labels, NUM_CELEBAMASK_CLASSES).sum(0).argmax(-1)
    with torch.enable_grad():
        parser = train_judge_parser(train_images, train_labels, parser_steps)
    real = (parser(val_images).argmax(1) == val_labels).float().mean().item()
    generated = (parser(fakes).argmax(1) == val_labels).float().mean().item()
    return {
        "ema_l1": l1,
        "mean_face_l1": mean_l1,
        "l1_ratio": l1 / max(mean_l1, 1e-8),
        "parser_on_generated": generated,
        "parser_on_real": real,
        "parser_ratio": generated / max(real, 1e-8),
        "majority_mask_agreement": (majority == val_labels).float().mean().item(),
        "val_images": float(len(val_images)),
    }


def format_numbers(numbers: dict[str, float]) -> str:
    ok = "meets" if numbers["l1_ratio"] <= TARGET_L1_RATIO else "MISSES"
    ok2 = "meets" if numbers["parser_ratio"] >= TARGET_PARSER_RATIO else "MISSES"
    return "\n".join([
        f"MaskGAN synthetic demo, {int(numbers['val_images'])} validation faces:",
        f"  EMA reconstruction L1 {numbers['ema_l1']:.3f} vs mean face {numbers['mean_face_l1']:.3f}: "
        f"ratio {numbers['l1_ratio']:.2f} ({ok} <= {TARGET_L1_RATIO})",
        f"  parser finds the target mask on generated faces {numbers['parser_on_generated']:.3f}, on real faces "
        f"{numbers['parser_on_real']:.3f}: ratio {numbers['parser_ratio']:.2f} ({ok2} >= {TARGET_PARSER_RATIO}); "
        f"per-pixel majority mask {numbers['majority_mask_agreement']:.3f}",
    ])  # fmt: skip


class SyntheticDemoReport(pl.Callback):
    """Prints (and writes to ``<run dir>/demo_report.json``) the demo's numbers when training ends.

    Args:
        parser_steps: batches of 16 for the judge parser fitted on the training faces.
        max_images: at most this many training / validation faces are used.
    """

    def __init__(self, parser_steps: int = 300, max_images: int = 256) -> None:
        self.parser_steps, self.max_images = parser_steps, max_images
        self.numbers: dict[str, float] = {}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.datamodule is None:
            return
        datasets = trainer.datamodule.datasets
        self.numbers = demo_numbers(pl_module, datasets["train"], datasets["val"], self.parser_steps, self.max_images)
        print(format_numbers(self.numbers), flush=True)
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        (root / "demo_report.json").write_text(json.dumps(self.numbers, indent=2) + "\n")
