"""Pure tensor functions of Gu et al.'s pipeline: component centres, crops, label growth, feature placement.

No parameters live here, so every rule carries an exact test (specs/mask_guided.md §8). Conventions:

* Labels are Helen's 11 classes (``datamodules.labels.HELEN_CLASSES``), int64 ``(B, H, W)``, square images of
  side ``S`` (a power of two, at least 64). Left is the viewer's side.
* Five components in the order of the fused generator input (official channel order):
  ``left_eye {4}, right_eye {5}, skin {1, 2, 3, 6}, hair {10}, mouth {7, 8, 9}``. The paper lists them as
  left eye, right eye, mouth, skin, hair; only the order of the channel blocks differs.
* Centres are ``(y, x)`` integer pixels, ``(int((top + bottom) / 2), int((left + right) / 2))`` of the
  component's bounding box in the **original** label, for left eye, right eye and mouth (``(B, 3, 2)``).
* Crops at ``S`` (height × width): eyes ``S/8 × 3S/16`` (32×48 at 256, unmasked), mouth ``5S/16 × 9S/16``
  (80×144, masked to lips + inner mouth), skin and hair the full image masked to their labels.
* A component missing from a label takes the official fallback centre scaled by ``S/256``
  ((116, 96), (116, 160), (184, 128)) and the first occurrence is logged once; a centre whose crop would
  leave the image is clamped so the crop fits (the official code asserts instead, and its placement
  silently drops features that do not fit).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

COMPONENTS: tuple[str, ...] = ("left_eye", "right_eye", "skin", "hair", "mouth")
#: Helen labels forming each component's pixel mask.
COMPONENT_LABELS: dict[str, tuple[int, ...]] = {
    "left_eye": (4,),
    "right_eye": (5,),
    "skin": (1, 2, 3, 6),
    "hair": (10,),
    "mouth": (7, 8, 9),
}
#: Components cropped around a centre (index into the centres tensor) and grown by ``grow_components``.
PLACED: tuple[str, ...] = ("left_eye", "right_eye", "mouth")
#: Official fallback centres (y, x) at 256 px for a missing left eye, right eye and mouth.
FALLBACK_CENTRES_256: tuple[tuple[int, int], ...] = ((116, 96), (116, 160), (184, 128))
#: Crop sizes (height, width) at 256 px; the paper writes them as width × height (48×32, 144×80).
CROP_SIZES_256: dict[str, tuple[int, int]] = {"left_eye": (32, 48), "right_eye": (32, 48), "mouth": (80, 144)}
BACKGROUND = 0

_reported_missing: set[str] = set()


def check_image_size(size: int) -> int:
    """``size`` if it is a power of two >= 64 (the crops and the 1/4 feature grid need it), else ValueError."""
    if size < 64 or size & (size - 1):
        raise ValueError(f"image size must be a power of two >= 64 (64, 128, 256, ...), got {size}")
    return size


def crop_size(component: str, image_size: int) -> tuple[int, int]:
    """(height, width) of a placed component's crop at ``image_size`` (the 256-px size scaled by S/256)."""
    h, w = CROP_SIZES_256[component]
    return h * image_size // 256, w * image_size // 256


def component_mask(label: Tensor, component: str) -> Tensor:
    """Float ``(B, 1, H, W)`` mask of the component's labels (``"background"`` for label 0)."""
    values = (BACKGROUND,) if component == "background" else COMPONENT_LABELS[component]
    return torch.isin(label, torch.tensor(values, device=label.device)).unsqueeze(1).float()


def component_masks(label: Tensor) -> dict[str, Tensor]:
    """The five component masks and the background mask of ``label``, each ``(B, 1, H, W)``."""
    return {name: component_mask(label, name) for name in (*COMPONENTS, "background")}


class Centres(NamedTuple):
    centres: Tensor  # (B, 3, 2) int64, (y, x) of left eye, right eye, mouth
    missing: Tensor  # (B, 3) bool: the fallback centre was used


def _clamp_centre(cy: Tensor, cx: Tensor, component: str, image_size: int) -> tuple[Tensor, Tensor]:
    h, w = crop_size(component, image_size)
    return cy.clamp(h // 2, image_size - h + h // 2), cx.clamp(w // 2, image_size - w + w // 2)


def _first_last(hit: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """First and last index where ``hit`` (B, S) is true (S and -1 for rows without a hit)."""
    return torch.where(hit, index, index.numel()).amin(1), torch.where(hit, index, -1).amax(1)


def component_centres(label: Tensor, *, warn: bool = True) -> Centres:
    """Bounding-box centres of the left eye, right eye and mouth of each label (module docstring).

    ``label`` is ``(B, S, S)`` int64. Missing components take the scaled fallback (logged once per component
    when ``warn``); centres are clamped so the component's crop fits inside the image.
    """
    if label.dim() != 3 or label.shape[1] != label.shape[2]:
        raise ValueError(f"expected square labels (B, S, S), got {tuple(label.shape)}")
    size = check_image_size(label.shape[-1])
    index = torch.arange(size, device=label.device)
    centres, missing = [], []
    for k, name in enumerate(PLACED):
        mask = component_mask(label, name)[:, 0].bool()
        rows, cols = mask.any(2), mask.any(1)  # (B, S)
        present = rows.any(1)
        top, bottom = _first_last(rows, index)
        left, right = _first_last(cols, index)
        fy, fx = (c * size // 256 for c in FALLBACK_CENTRES_256[k])
        cy = torch.where(present, torch.div(top + bottom, 2, rounding_mode="floor"), fy)
        cx = torch.where(present, torch.div(left + right, 2, rounding_mode="floor"), fx)
        cy, cx = _clamp_centre(cy, cx, name, size)
        centres.append(torch.stack([cy, cx], 1))
        missing.append(~present)
        if warn and not bool(present.all()) and name not in _reported_missing:
            _reported_missing.add(name)
            log.warning(
                "a label has no %s (labels %s); using the fallback centre (y, x) = (%d, %d) at %d px. "
                "Further missing components are not reported.",
                name,
                COMPONENT_LABELS[name],
                fy,
                fx,
                size,
            )
    return Centres(torch.stack(centres, 1), torch.stack(missing, 1))


def window_indices(top_left: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Row ``(B, h, 1)`` and column ``(B, 1, w)`` index grids of per-sample windows starting at ``top_left``."""
    rows = top_left[:, 0, None] + torch.arange(height, device=top_left.device)
    cols = top_left[:, 1, None] + torch.arange(width, device=top_left.device)
    return rows[:, :, None], cols[:, None, :]


def crop_windows(image: Tensor, centres: Tensor, height: int, width: int) -> Tensor:
    """``image[b, :, cy-h/2 : cy+h/2, cx-w/2 : cx+w/2]`` for each sample: ``(B, C, h, w)``.

    ``centres`` is ``(B, 2)`` (y, x); windows must lie inside the image (``component_centres`` clamps).
    """
    top_left = centres - torch.tensor([height // 2, width // 2], device=centres.device)
    size = image.shape[-2:]
    if (
        bool((top_left < 0).any())
        or bool((top_left[:, 0] + height > size[0]).any())
        or bool((top_left[:, 1] + width > size[1]).any())
    ):
        raise ValueError(f"a {height}x{width} crop around {centres.tolist()} leaves the {tuple(size)} image")
    rows, cols = window_indices(top_left, height, width)
    batch = torch.arange(image.shape[0], device=image.device)[:, None, None]
    return image[batch, :, rows, cols].permute(0, 3, 1, 2)


def crop_components(image: Tensor, label: Tensor, centres: Tensor) -> dict[str, Tensor]:
    """The five encoder inputs of Gu et al. (official ``aligned_dataset``), from the (grown) ``label``.

    Eyes: unmasked windows around their centres. Mouth: the window times the mouth mask (lips + inner
    mouth). Skin and hair: the full image times their masks.
    """
    size = check_image_size(image.shape[-1])
    crops: dict[str, Tensor] = {}
    for k, name in enumerate(PLACED):
        h, w = crop_size(name, size)
        window = crop_windows(image, centres[:, k], h, w)
        if name == "mouth":
            window = window * crop_windows(component_mask(label, name), centres[:, k], h, w)
        crops[name] = window
    for name in ("skin", "hair"):
        crops[name] = image * component_mask(label, name)
    return {name: crops[name] for name in COMPONENTS}


def crop_masks(label: Tensor, centres: Tensor) -> dict[str, Tensor]:
    """The masks the local reconstruction loss multiplies decoded images by (official ``L2_mask_image``):
    mouth, skin and hair are masked, the eyes are not (``None``)."""
    size = label.shape[-1]
    h, w = crop_size("mouth", size)
    return {
        "left_eye": None,
        "right_eye": None,
        "skin": component_mask(label, "skin"),
        "hair": component_mask(label, "hair"),
        "mouth": crop_windows(component_mask(label, "mouth"), centres[:, 2], h, w),
    }


def feature_centre(centres: Tensor, stride: int) -> Tensor:
    """Image-pixel centres -> feature-grid centres, ``int(c / stride + 0.5)`` (round half up, official)."""
    return torch.div(2 * centres + stride, 2 * stride, rounding_mode="floor")


def place_features(features: Tensor, centres: Tensor, map_size: int, stride: int) -> Tensor:
    """Copy each sample's ``(C, h, w)`` feature into an all-zero ``(C, map_size, map_size)`` map, centred at
    its feature-grid centre ``(r, q) = int(c / stride + 0.5)``: rows ``[r - h//2, r - h//2 + h)``, cols
    ``[q - w//2, q - w//2 + w)``. The window is clamped to fit (never dropped). Differentiable in
    ``features``; ``centres`` is ``(B, 2)`` image pixels (y, x) of the **target** mask.
    """
    batch, channels, h, w = features.shape
    if h > map_size or w > map_size:
        raise ValueError(f"a {h}x{w} feature does not fit a {map_size}x{map_size} map")
    r, q = feature_centre(centres, stride).unbind(1)
    top = (r - h // 2).clamp(0, map_size - h)
    left = (q - w // 2).clamp(0, map_size - w)
    rows, cols = window_indices(torch.stack([top, left], 1), h, w)
    out = features.new_zeros(batch, map_size, map_size, channels)
    index = torch.arange(batch, device=features.device)[:, None, None]
    out = out.index_put((index, rows, cols), features.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


def grow_components(label: Tensor, centres: Tensor, factor: float = 1.1) -> Tensor:
    """Official ``append_region``: enlarge the eyes and the mouth by ``factor`` about their centres.

    For each of left eye, right eye and mouth: scale the whole label map by ``factor`` (nearest neighbour),
    take the ``S × S`` window offset by ``int(factor·c) − c`` (so the scaled component stays centred at
    ``c``), and where that window holds the component's labels, write them into the label. Other labels change
    only where an eye or mouth label overwrites them. ``factor = 1`` returns the label unchanged.
    """
    if factor < 1.0:
        raise ValueError(f"grow factor must be >= 1, got {factor}")
    if factor == 1.0:
        return label
    size = label.shape[-1]
    grown = label.clone()
    index = torch.arange(size, device=label.device)
    batch = torch.arange(label.shape[0], device=label.device)[:, None, None]
    for k, name in enumerate(PLACED):
        offset = (factor * centres[:, k].double()).long() - centres[:, k]  # (B, 2)
        # pixel (y, x) of the window = pixel (y + oy, x + ox) of the scaled map = label[(y + oy + 0.5) / f]
        src_y = ((index[None] + offset[:, :1] + 0.5) / factor).long().clamp(0, size - 1)  # (B, S)
        src_x = ((index[None] + offset[:, 1:] + 0.5) / factor).long().clamp(0, size - 1)
        candidate = label[batch, src_y[:, :, None], src_x[:, None, :]]
        inside = torch.isin(candidate, torch.tensor(COMPONENT_LABELS[name], device=label.device))
        grown = torch.where(inside, candidate, grown)
    return grown


def onehot_labels(label: Tensor, num_classes: int = 11, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, H, W)`` int labels -> ``(B, num_classes, H, W)`` one-hot (values outside raise)."""
    if int(label.max()) >= num_classes or int(label.min()) < 0:
        raise ValueError(f"labels must be in [0, {num_classes}); got values {int(label.min())}..{int(label.max())}")
    return F.one_hot(label, num_classes).permute(0, 3, 1, 2).to(dtype)
