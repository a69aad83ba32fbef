"""The applications of Gu et al. (§4.3–4.4) on a trained system: mask editing, component transfer, face swap+.

Each takes images ``(B, 3, S, S)`` in [-1, 1] and Helen labels ``(B, S, S)`` (the faces' own, ungrown
masks) and returns images; everything runs in eval mode with z = μ (official inference).

* :func:`mask_edit`: the face's components placed at the centres of an edited mask m′, E_m(m′), and the
  face's own background under m′ (official ``test_edit.py``).
* :func:`component_transfer`: the face with some of its five feature tensors replaced by a donor's
  (official ``test_edit_free.py``: encode, swap, generate); ``components=()`` reproduces the reconstruction.
* :func:`face_swap`: all five components of a source, hair included, in a target's mask and background
  (face swap+, the training transfer path).

:func:`load_system` reads a Lightning checkpoint or the official ``checkpoints/pretrained`` folder (converted
on the fly, official settings). :func:`read_image`, :func:`read_label`, :func:`save_image` are the file I/O
the edit CLI and the browser editor share.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from datamodules.base import read_rgb
from datamodules.labels import CELEBAMASK_TO_HELEN, NUM_HELEN_CLASSES, read_mask_png
from portrait_models.mask_guided.components import COMPONENTS
from portrait_models.mask_guided.module import MaskGuidedSystem


def load_system(checkpoint: str | Path, device: str = "cpu") -> MaskGuidedSystem:
    """A system from a ``MaskGuidedSystem`` ``.ckpt``, the official pretrained folder, or the ``.pth`` written by
    ``python -m portrait_models.mask_guided.convert``; the frozen parser and VGG are not needed for editing."""
    from portrait_models.mask_guided.convert import load_official_system

    path = Path(checkpoint)
    if path.is_dir() or (path.is_file() and path.suffix == ".pth"):
        system = load_official_system(path)
    elif path.is_file():
        if path.suffix != ".ckpt":
            raise ValueError(f"{path}: expected a Lightning .ckpt, the official folder or a converted .pth")
        system = MaskGuidedSystem.load_from_checkpoint(
            path, map_location=device, parser_checkpoint=None, vgg_pretrained=False, weights_only=True
        )
    else:
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return system.to(device).eval()


def read_image(path: str | Path, size: int) -> Tensor:
    """An RGB image file -> (1, 3, size, size) in [-1, 1] (bicubic resize, as the official loader)."""
    rgb = read_rgb(Path(path))
    resized = Image.fromarray(rgb).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def read_label(path: str | Path, size: int) -> Tensor:
    """A Helen mask PNG -> (1, size, size) int64 (nearest resize): a label PNG with values 0..10, or a colour
    PNG in the project palette (CelebAMask-HQ colours, mapped to Helen's classes)."""
    label = read_mask_png(
        path,
        NUM_HELEN_CLASSES,
        CELEBAMASK_TO_HELEN,
        "a Helen label PNG holds values 0..10 (0 bg, 1 skin, 2/3 brows, 4/5 eyes, 6 nose, 7 upper lip, 8 inner mouth,"
        " 9 lower lip, 10 hair)",
    )
    resized = Image.fromarray(label.astype(np.uint8)).resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(resized).astype(np.int64)).unsqueeze(0)


def save_image(image: Tensor, path: str | Path) -> Path:
    """(1, 3, H, W) in [-1, 1] -> an image file."""
    array = ((image.detach().float().cpu()[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _device(system: MaskGuidedSystem, *tensors: Tensor) -> list[Tensor]:
    device = next(system.parameters()).device
    return [t.to(device) for t in tensors]


@torch.no_grad()
def mask_edit(system: MaskGuidedSystem, image: Tensor, label: Tensor, edited_label: Tensor) -> Tensor:
    """The face ``image`` (whose mask is ``label``) re-rendered under the edited mask ``edited_label``."""
    image, label, edited_label = _device(system, image, label, edited_label)
    return system.generate(system.component_features(image, label), image, edited_label)


def check_components(components: Iterable[str], available: tuple[str, ...] = COMPONENTS) -> tuple[str, ...]:
    names = tuple(c.strip() for c in components if c.strip())
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; expected some of {', '.join(available)}")
    return names


@torch.no_grad()
def component_transfer(
    system: MaskGuidedSystem,
    image: Tensor,
    label: Tensor,
    donor_image: Tensor,
    donor_label: Tensor,
    components: Iterable[str],
) -> Tensor:
    """``image`` with the feature tensors of ``components`` taken from the donor (its mask and background kept)."""
    names = check_components(components, system.generator.component_names)
    image, label, donor_image, donor_label = _device(system, image, label, donor_image, donor_label)
    own = system.component_features(image, label)
    if names:
        donor = system.component_features(donor_image, donor_label)
        own.update({name: donor[name] for name in names})
    return system.generate(own, image, label)


@torch.no_grad()
def face_swap(
    system: MaskGuidedSystem, source: Tensor, source_label: Tensor, target: Tensor, target_label: Tensor
) -> Tensor:
    """Face swap+: every component of ``source`` (hair included) in the target's mask and background."""
    source, source_label, target, target_label = _device(system, source, source_label, target, target_label)
    return system.swap(source, source_label, target, target_label)
