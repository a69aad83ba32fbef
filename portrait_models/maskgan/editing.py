"""Mask edits and rendering with a trained MaskGAN: the operations behind ``experiments.edit`` and the evaluation.

- *Attribute transfer* (paper Sec. 5, "Smiling"): take the mouth region of a donor mask into the target mask.
  The target's own mouth/lip pixels become skin first, then the donor's mouth/lip pixels are painted on top.
- *Style copy*: render a mask with the style (AdaIN parameters) of another image and its mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from datamodules.labels import CLASS_INDEX, label_to_onehot, read_mask_png

MOUTH_PARTS = ("mouth", "u_lip", "l_lip")


def transfer_parts(mask: Tensor, donor: Tensor, parts: tuple[str, ...] = MOUTH_PARTS, fill: str = "skin") -> Tensor:
    """``mask`` with the regions of ``parts`` replaced by the donor's (label maps of equal shape, any batch)."""
    if mask.shape != donor.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and donor {tuple(donor.shape)} must have the same shape")
    unknown = [p for p in parts if p not in CLASS_INDEX]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; parts are the class names of labels.CELEBAMASK_CLASSES")
    ids = torch.tensor([CLASS_INDEX[p] for p in parts], device=mask.device)
    edited = mask.clone()
    edited[torch.isin(mask, ids)] = CLASS_INDEX[fill]
    donor_region = torch.isin(donor, ids)
    edited[donor_region] = donor[donor_region]
    return edited


def read_image(path: str | Path, size: int) -> Tensor:
    """An RGB image file -> (1, 3, size, size) in [-1, 1] (bilinear resize)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = Image.open(path).convert("RGB")
    except OSError as err:
        raise ValueError(f"{path}: cannot decode the image ({err})") from None
    image = image.resize((size, size), Image.BILINEAR)
    array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()
    return (array / 127.5 - 1.0).unsqueeze(0)


def read_mask(path: str | Path, size: int) -> Tensor:
    """A mask PNG -> (1, size, size) int64 labels in the official 19-class order (nearest resize).

    Accepts a label PNG (one channel, or several equal channels, with values 0..18 — the official order) or
    a colour PNG in the project's palette (``labels.CELEBAMASK_PALETTE``); anti-aliased or lossily saved colour
    edges snap to the nearest class colour.
    """
    label = read_mask_png(path)
    resized = Image.fromarray(label.astype(np.uint8)).resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(resized).astype(np.int64)).unsqueeze(0)


def save_image(image: Tensor, path: str | Path) -> None:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> PNG/JPEG file (uint8 by ``round((x + 1) * 127.5)``)."""
    image = image.detach().float().cpu().squeeze(0).clamp(-1, 1)
    array = ((image + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@torch.no_grad()
def render(model, target_mask: Tensor, style_image: Tensor, style_mask: Tensor) -> Tensor:
    """Render ``target_mask`` (B, H, W) labels in the style of ``style_image`` with its mask, by the EMA DMN."""
    num_classes = model.hparams.num_classes
    device = next(model.parameters()).device
    target = label_to_onehot(target_mask.to(device), num_classes)
    source = label_to_onehot(style_mask.to(device), num_classes)
    return model.render(target, source, style_image.to(device))
