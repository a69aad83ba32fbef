"""Attribute editing with a trained MagGAN: what ``python -m experiments.edit maggan`` and the browser editor call.

- :func:`load_maggan`: a ``MagGAN`` Lightning checkpoint in eval mode (BatchNorm running statistics, spec §2.1).
- :func:`read_face` / :func:`read_soft_masks`: an image file and its 19-class masks (a soft-mask ``.npz`` of the
  parse cache, or a label / palette-colour PNG, which becomes one-hot), or masks from a FaceParser checkpoint.
- :func:`source_attributes`: the 13 source attributes, from the critic's own attribute classifier unless given.
- :func:`attribute_change` and :func:`conflict_free_flip` (from :mod:`portrait_models.maggan.attributes`): the
  ``att_diff`` for target values (MagGAN's ``intensity`` or STGAN's ``test_int``), with STGAN's test-time conflict
  rules by default (a hair colour turned on turns the other two off; Bald and Bangs exclude each other).
- :func:`edit_face`: ``G(x, att_diff, masks)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from datamodules.base import read_rgb
from datamodules.labels import EDIT_ATTRIBUTES, NUM_CELEBAMASK_CLASSES, read_mask_png
from datamodules.soft_masks import load_soft_mask
from portrait_models.maggan.attributes import CONFLICTS, FLIP_RULES, attribute_change, conflict_free_flip

__all__ = [
    "CONFLICTS", "FLIP_RULES", "attribute_change", "conflict_free_flip", "edit_face", "load_maggan",
    "parse_assignments", "parser_soft_masks", "read_face", "read_soft_masks", "save_face", "source_attributes",
]  # fmt: skip


def load_maggan(checkpoint: str | Path, device: str = "cpu"):
    from portrait_models.maggan.module import MagGAN

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    try:
        model = MagGAN.load_from_checkpoint(checkpoint, map_location=device)
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{checkpoint}: not a MagGAN checkpoint ({type(err).__name__}: {err})") from None
    return model.to(device).eval()


def read_face(path: str | Path, size: int) -> Tensor:
    """An RGB image file -> (1, 3, size, size) in [-1, 1] (bicubic resize, as the training data)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = Image.fromarray(read_rgb(path)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def read_soft_masks(path: str | Path) -> Tensor:
    """(1, 19, h, w) masks: a cache ``.npz`` (soft), or a label PNG (values 0..18) / palette PNG (one-hot)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    if path.suffix == ".npz":
        return load_soft_mask(path.parent, path.stem).unsqueeze(0)
    label = read_mask_png(path, classes_help="a label PNG holds values 0..18 (or a palette colour PNG)")
    onehot = F.one_hot(torch.from_numpy(label.astype(np.int64)), NUM_CELEBAMASK_CLASSES)
    return onehot.permute(2, 0, 1).float().unsqueeze(0)


@torch.no_grad()
def parser_soft_masks(parser_checkpoint: str | Path, image: Tensor) -> Tensor:
    """Soft masks of ``image`` (B, 3, H, W) from a FaceParser checkpoint (19 official classes)."""
    from portrait_models.parsing import FaceParser

    if not Path(parser_checkpoint).is_file():
        raise FileNotFoundError(f"parser checkpoint not found: {parser_checkpoint}")
    parser = FaceParser.load_from_checkpoint(parser_checkpoint, map_location=image.device).eval()
    if parser.hparams.num_classes != NUM_CELEBAMASK_CLASSES:
        raise ValueError(
            f"{parser_checkpoint}: the parser predicts {parser.hparams.num_classes} classes, MagGAN needs 19"
        )
    return parser.parse(image)


def parse_assignments(items: Sequence[str]) -> dict[str, float]:
    """``["Blond_Hair=1", "Eyeglasses=0"]`` -> ``{"Blond_Hair": 1.0, "Eyeglasses": 0.0}`` (names checked)."""
    values: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in EDIT_ATTRIBUTES:
            raise ValueError(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(EDIT_ATTRIBUTES)}")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: the value must be a number (0 or 1)") from None
    return values


@torch.no_grad()
def source_attributes(model, image: Tensor, given: Mapping[str, float] | None = None) -> Tensor:
    """(B, 13) source attributes in {0, 1}: the critic's classifier (level 1) thresholded at 0.5, with the
    ``given`` values taking precedence."""
    d = model.discriminator
    logits = d.level(0, d.level_input(image, 0)).attributes
    att = (logits > 0).float()
    for name, value in (given or {}).items():
        att[:, EDIT_ATTRIBUTES.index(name)] = value
    return att


@torch.no_grad()
def edit_face(model, image: Tensor, att_diff: Tensor, soft_masks: Tensor | None) -> Tensor:
    device = next(model.parameters()).device
    masks = None if soft_masks is None else soft_masks.to(device)
    return model.edit(image.to(device), att_diff.to(device), masks)


def save_face(image: Tensor, path: str | Path) -> Path:
    """(1, 3, H, W) in [-1, 1] -> an image file."""
    array = ((image.detach().float().cpu()[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
