"""Label vocabularies shared by every dataset, model and metric.

One source of truth for class orders. The 19 CelebAMask-HQ classes follow the official order of
``face_parsing/Data_preprocessing/g_mask.py`` (part masks are merged in this order, later parts
overwrite earlier ones). Helen keeps its own 11 labels with an explicit mapping to the 19. Outside
checkpoints with another order (the widely used BiSeNet ``79999_iter.pth``) get a remap table here.
"""

from __future__ import annotations

import numpy as np
import torch

# --------------------------------------------------------------------------------------------- 19 classes
CELEBAMASK_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
NUM_CELEBAMASK_CLASSES = len(CELEBAMASK_CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CELEBAMASK_CLASSES)}
# Part-file suffixes of CelebAMask-HQ-mask-anno, in merge order (background is implicit).
CELEBAMASK_PARTS: tuple[str, ...] = CELEBAMASK_CLASSES[1:]

# Left/right pairs that a horizontal flip exchanges.
CELEBAMASK_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((4, 5), (6, 7), (8, 9))

# Colour palette (RGB) for the 19 classes, used by colour label PNGs and sample grids.
CELEBAMASK_PALETTE = np.array(
    [
        [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204],
        [0, 255, 255], [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0],
        [0, 0, 153], [0, 0, 204], [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51],
        [0, 204, 0],
    ],
    dtype=np.uint8,
)  # fmt: skip

# ------------------------------------------------------------------------------------------ Helen, 11
HELEN_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "inner_mouth",
    "l_lip", "hair",
)  # fmt: skip
NUM_HELEN_CLASSES = len(HELEN_CLASSES)
HELEN_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((2, 3), (4, 5))
# Helen label -> CelebAMask-HQ label ("inner mouth" is the official "mouth").
HELEN_TO_CELEBAMASK = np.array([0, 1, 6, 7, 4, 5, 2, 11, 10, 12, 13], dtype=np.int64)
# CelebAMask-HQ label -> Helen label. Classes Helen does not annotate fold into the nearest Helen
# class: eyeglasses and ears into skin, hat into hair, earrings/necklace/neck/cloth into background.
CELEBAMASK_TO_HELEN = np.array(
    [0, 1, 6, 1, 4, 5, 2, 3, 1, 1, 8, 7, 9, 10, 10, 0, 0, 0, 0], dtype=np.int64
)  # fmt: skip

# ---------------------------------------------------------------------- BiSeNet (zllrunning) class order
BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
# BiSeNet index -> official index: ``official = BISENET_TO_CELEBAMASK[bisenet]``.
BISENET_TO_CELEBAMASK = np.array([CLASS_INDEX[n] for n in BISENET_CLASSES], dtype=np.int64)

# ---------------------------------------------------------------------------------- CelebA attributes
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip
NUM_CELEBA_ATTRIBUTES = len(CELEBA_ATTRIBUTES)
ATTRIBUTE_INDEX: dict[str, int] = {name: i for i, name in enumerate(CELEBA_ATTRIBUTES)}

# The 13 attributes STGAN edits (its default order); MagGAN edits the same 13.
EDIT_ATTRIBUTES: tuple[str, ...] = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses",
    "Male", "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Young",
)  # fmt: skip
EDIT_ATTRIBUTE_COLUMNS = np.array([ATTRIBUTE_INDEX[a] for a in EDIT_ATTRIBUTES], dtype=np.int64)

# --------------------------------------------------------------------------------------- RaFD emotions
RAFD_EMOTIONS: tuple[str, ...] = (
    "angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised",
)  # fmt: skip
EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(RAFD_EMOTIONS)}

# ------------------------------------------------------------------------------- 68 iBUG landmarks
# Index permutation that a horizontal flip applies to the 68-point iBUG/300-W scheme:
# ``flipped[i] = original[LANDMARK_FLIP_PERMUTATION[i]]`` (after mirroring x).
_FLIP_PAIRS_68 = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # lower nose
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    + [(60, 64), (61, 63), (65, 67)]  # inner lip
)


def _flip_permutation_68() -> np.ndarray:
    perm = np.arange(68)
    for a, b in _FLIP_PAIRS_68:
        perm[a], perm[b] = b, a
    return perm


LANDMARK_FLIP_PERMUTATION = _flip_permutation_68()

# CelebA's 5 aligned landmarks (columns of list_landmarks_align_celeba.txt) and the index permutation a
# horizontal flip applies to them (left eye <-> right eye, left mouth corner <-> right mouth corner).
CELEBA_LANDMARKS5: tuple[str, ...] = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
LANDMARK5_FLIP_PERMUTATION = np.array([1, 0, 2, 4, 3], dtype=np.int64)


def flip_label_permutation(num_classes: int) -> np.ndarray:
    """Lookup table that a horizontal flip applies to label values (19 or 11 classes)."""
    pairs = {NUM_CELEBAMASK_CLASSES: CELEBAMASK_FLIP_PAIRS, NUM_HELEN_CLASSES: HELEN_FLIP_PAIRS}
    if num_classes not in pairs:
        raise ValueError(f"no flip table for {num_classes} classes; expected 19 or 11")
    lut = np.arange(num_classes)
    for a, b in pairs[num_classes]:
        lut[a], lut[b] = b, a
    return lut


# --------------------------------------------------------------------------- label-map conversions
def label_to_onehot(label: torch.Tensor, num_classes: int = NUM_CELEBAMASK_CLASSES) -> torch.Tensor:
    """(B,H,W) or (H,W) int64 -> (B,C,H,W) or (C,H,W) float one-hot."""
    if label.dtype.is_floating_point:
        raise TypeError(f"label must be an integer tensor, got {label.dtype}")
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise ValueError(f"label values must lie in [0, {num_classes}); got [{int(label.min())}, {int(label.max())}]")
    onehot = torch.nn.functional.one_hot(label.long(), num_classes)
    return onehot.movedim(-1, -3).float()


def onehot_to_label(onehot: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) or (C,H,W) scores/one-hot/soft masks -> int64 label map by argmax over C."""
    return onehot.argmax(dim=-3)


def label_to_color(label: np.ndarray | torch.Tensor, palette: np.ndarray = CELEBAMASK_PALETTE) -> np.ndarray:
    """(H,W) int label -> (H,W,3) uint8 colour image in the project's palette."""
    label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if label.size and label.max() >= len(palette):
        raise ValueError(f"label value {int(label.max())} has no colour; palette has {len(palette)} entries")
    return palette[label.astype(np.int64)]


def color_to_label(color: np.ndarray, palette: np.ndarray = CELEBAMASK_PALETTE) -> np.ndarray:
    """(H,W,3) uint8 colour image in the project's palette -> (H,W) int64 label map.

    Every pixel must carry an exact palette colour (a JPEG-compressed or anti-aliased mask does not);
    otherwise a ValueError names how many pixels are off-palette and the first offending colour.
    """
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {color.shape}")
    codes = (color[..., 0].astype(np.int64) << 16) | (color[..., 1].astype(np.int64) << 8) | color[..., 2]
    pal_codes = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    order = np.argsort(pal_codes)
    pos = np.clip(np.searchsorted(pal_codes[order], codes), 0, len(palette) - 1)
    label = order[pos]
    bad = pal_codes[label] != codes
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} pixels are not palette colours (first at x={x}, y={y}: "
            f"{tuple(int(c) for c in color[y, x, :3])}); expected one of the {len(palette)} class colours"
        )
    return label.astype(np.int64)


def snap_to_palette(
    color: np.ndarray,
    palette: np.ndarray = CELEBAMASK_PALETTE,
    tolerance: float = 12.0,
    radius: int = 3,
    far: float = 48.0,
    max_far_fraction: float = 0.2,
) -> np.ndarray:
    """(H,W,3) colour mask -> (H,W) int64 labels, for masks drawn with anti-aliasing or saved lossily.

    A pixel within ``tolerance`` of a class colour is that class. Any other pixel is taken as a blend
    ``t·a + (1-t)·b`` of two classes found (exactly) within ``radius`` pixels of it, which is what an
    anti-aliased edge between a and b is; the pair and ``t`` that come closest win and the pixel goes to the
    class with the larger share. (Plain nearest-colour snapping sends a skin/hair edge, purple, to a third
    class; without the neighbourhood, (128, 0, 77) is as much skin/hair as r_ear/l_lip.) A picture that is not
    a palette mask (more than ``max_far_fraction`` of its pixels farther than ``far`` from every blend, e.g. a
    photo) raises a ValueError saying so.
    """
    from scipy.ndimage import maximum_filter

    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {color.shape}")
    height, width = color.shape[:2]
    rgb = color[..., :3].reshape(-1, 3).astype(np.float32)
    pal = palette.astype(np.float32)
    dist2 = ((rgb[:, None, :] - pal[None]) ** 2).sum(-1)  # (N, classes)
    label = dist2.argmin(-1)
    exact = dist2.min(-1) <= tolerance**2
    todo = np.flatnonzero(~exact)
    if len(todo):
        solid = np.zeros((len(pal), height * width), dtype=bool)
        solid[label[exact], np.flatnonzero(exact)] = True
        near = maximum_filter(solid.reshape(len(pal), height, width), size=(1, 2 * radius + 1, 2 * radius + 1))
        near = near.reshape(len(pal), -1)
        a_idx, b_idx = np.triu_indices(len(pal), k=0)  # a == b: a single colour
        a, b = pal[a_idx], pal[b_idx]
        ab = a - b
        norm = np.maximum((ab * ab).sum(-1), 1e-6)
        far_count = 0
        for chunk in np.array_split(todo, max(1, len(todo) // 4096)):
            c = rgb[chunk][:, None, :] - b[None]  # (n, pairs, 3)
            t = np.clip((c * ab).sum(-1) / norm, 0.0, 1.0)
            residual = ((c - t[..., None] * ab) ** 2).sum(-1)
            near_chunk = near[:, chunk]
            allowed = (near_chunk[a_idx] & near_chunk[b_idx]).T  # both classes found nearby
            allowed[~allowed.any(-1)] = True  # nothing solid nearby: any pair
            residual = np.where(allowed, residual, np.inf)
            best = residual.argmin(-1)
            rows = np.arange(len(chunk))
            label[chunk] = np.where(t[rows, best] >= 0.5, a_idx[best], b_idx[best])
            far_count += int((residual[rows, best] > far**2).sum())
        if far_count / rgb.shape[0] > max_far_fraction:
            raise ValueError(
                f"{far_count / rgb.shape[0]:.0%} of the pixels are far from every class colour and every blend of"
                f" two; expected a colour mask in the project palette (labels.CELEBAMASK_PALETTE, {len(pal)} classes)"
            )
    return label.reshape(height, width).astype(np.int64)


def read_mask_png(
    path,
    num_classes: int = NUM_CELEBAMASK_CLASSES,
    to_classes: np.ndarray | None = None,
    classes_help: str = "a label PNG holds values 0..18 in the official CelebAMask-HQ order (or save the mask as "
    "a colour PNG in the project palette)",
) -> np.ndarray:
    """A user's mask file -> (H, W) int64 labels, the one reader behind every editing command and the editor.

    A label PNG (one channel, or several equal channels) holds class values ``< num_classes``; any other
    picture is a colour mask in the project palette (``CELEBAMASK_PALETTE``, anti-aliased or lossy edges snapped
    by :func:`snap_to_palette`) whose CelebAMask-HQ labels ``to_classes`` maps to the caller's vocabulary (e.g.
    ``CELEBAMASK_TO_HELEN``). Every failure is one ``FileNotFoundError``/``ValueError`` naming the file;
    ``classes_help`` says what a label PNG should hold.
    """
    from pathlib import Path

    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        raw = np.asarray(Image.open(path))
    except OSError as err:
        raise ValueError(f"{path}: cannot decode the mask ({err})") from None
    grey = raw.ndim == 2 or raw.shape[2] < 3 or all(np.array_equal(raw[..., 0], raw[..., c]) for c in (1, 2))
    if grey:
        label = (raw if raw.ndim == 2 else raw[..., 0]).astype(np.int64)
        if label.max() >= num_classes:
            raise ValueError(f"{path}: label value {int(label.max())} is not a class; {classes_help}")
        return label
    try:
        label = snap_to_palette(raw[..., :3])
    except ValueError as err:
        raise ValueError(f"{path}: colour mask not in the project palette: {err}") from None
    return label if to_classes is None else np.asarray(to_classes)[label].astype(np.int64)
