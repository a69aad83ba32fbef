"""PortraitGAN's landmark map and the landmark edits of its applications (Duan et al. 2020, §III, Figs. 4-5).

The generator sees the 68 dlib/iBUG points as **one** channel: nine polylines drawn white on black, as the
author's ``gen_landmark.py`` does (``cv2.polylines``, colour 255, thickness 3 at 512², ``LINE_8``): jaw,
both brows and the nose bridge open; the lower nose, both eyes and both lips closed. The research code slices
the lower nose as points 30..34, so point 35 is never drawn; that is reproduced by default
(``include_point_35=True`` draws 30..35).

Here the map is drawn in the output frame straight from the batch's ``landmarks`` (B, 68, 2) pixel (x, y):
coordinates are rounded to 1/16 px (``shift=4``), the thickness scales with the image
(:func:`landmark_thickness`: 3 at 512, 2 at 256, 1 at 128 and below), and the map is binary {-1, +1}
(no resize blur). The same pure function serves training, editing and tests.

Edits (:func:`mouth_close`, :func:`mouth_open`, :func:`face_slim`, :func:`move_point`) and the landmark
interpolation of Fig. 5 (:func:`fig5_schedule`) work on (68, 2) arrays in pixels of the output frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

NUM_LANDMARKS = 68

#: (name, first index, last index inclusive, closed) of the nine polylines, as gen_landmark.py draws them.
LANDMARK_GROUPS: tuple[tuple[str, int, int, bool], ...] = (
    ("jaw", 0, 16, False),
    ("brow_image_left", 17, 21, False),
    ("brow_image_right", 22, 26, False),
    ("nose_bridge", 27, 30, False),
    ("nose_lower", 30, 34, True),
    ("eye_image_left", 36, 41, True),
    ("eye_image_right", 42, 47, True),
    ("lip_outer", 48, 59, True),
    ("lip_inner", 60, 67, True),
)
SHIFT = 4  # cv2 fractional bits: points are drawn at 1/16 px


def landmark_thickness(size: int) -> int:
    """Line thickness for a map whose shorter side is ``size``: ``max(1, floor(3·size/512 + 0.5))``."""
    return max(1, int(np.floor(3 * size / 512 + 0.5)))


def landmark_groups(include_point_35: bool = False) -> list[tuple[np.ndarray, bool]]:
    """The nine (point indices, closed) polylines; the lower nose ends at 34 unless ``include_point_35``."""
    groups = []
    for name, first, last, closed in LANDMARK_GROUPS:
        if name == "nose_lower" and include_point_35:
            last = 35
        groups.append((np.arange(first, last + 1), closed))
    return groups


def _as_numpy_points(landmarks: np.ndarray | Tensor) -> np.ndarray:
    points = landmarks.detach().float().cpu().numpy() if isinstance(landmarks, Tensor) else np.asarray(landmarks)
    points = points.astype(np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (68, 2) or (B, 68, 2) in pixel (x, y), got {points.shape}")
    return points


def draw_landmark_canvas(
    points: np.ndarray,
    size: tuple[int, int],
    thickness: int,
    include_point_35: bool = False,
    groups: Sequence[int] | None = None,
) -> np.ndarray:
    """One (H, W) uint8 canvas with the polylines of ``points`` (68, 2) in 255 on 0 (all nine, or the
    ``groups`` indices into :data:`LANDMARK_GROUPS`)."""
    canvas = np.zeros(size, np.uint8)
    fixed = np.round(np.clip(points, -4096, 4096) * (1 << SHIFT)).astype(np.int32)
    every = landmark_groups(include_point_35)
    for indices, closed in (every[k] for k in (groups if groups is not None else range(len(every)))):
        cv2.polylines(canvas, [fixed[indices]], closed, 255, thickness, lineType=cv2.LINE_8, shift=SHIFT)
    return canvas


def render_landmark_map(
    landmarks: np.ndarray | Tensor,
    size: int | tuple[int, int],
    *,
    thickness: int | None = None,
    include_point_35: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """The (B, 1, H, W) float32 landmark map in {-1, +1} of (68, 2) or (B, 68, 2) pixel (x, y) points.

    ``size`` is the side or (height, width) of the output frame the points live in; ``thickness`` defaults to
    :func:`landmark_thickness` of the shorter side. Points outside the canvas are clipped by the drawing.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    t = landmark_thickness(min(height, width)) if thickness is None else int(thickness)
    points = _as_numpy_points(landmarks)
    canvases = np.stack([draw_landmark_canvas(p, (height, width), t, include_point_35) for p in points])
    out = torch.from_numpy(canvases).float().div_(127.5).sub_(1.0).unsqueeze(1)
    if device is None and isinstance(landmarks, Tensor):
        device = landmarks.device
    return out.to(device) if device is not None else out


def modality_planes(modality: Tensor, num_modalities: int, size: tuple[int, int]) -> Tensor:
    """The one-hot target code as constant planes: (B,) indices -> (B, n, H, W) in {0, 1}."""
    if modality.dim() != 1:
        raise ValueError(f"modality must be a (B,) tensor of indices, got shape {tuple(modality.shape)}")
    if num_modalities < 1:
        raise ValueError(f"num_modalities must be >= 1 to build code planes, got {num_modalities}")
    if modality.numel() and (int(modality.min()) < 0 or int(modality.max()) >= num_modalities):
        raise ValueError(f"modality indices must lie in 0..{num_modalities - 1}, got {modality.tolist()}")
    onehot = torch.nn.functional.one_hot(modality.long(), num_modalities).float()
    return onehot[:, :, None, None].expand(-1, -1, *size).contiguous()


# ----------------------------------------------------------------------------------------------------- edits
def _check(points: np.ndarray) -> np.ndarray:
    points = np.array(points, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    return points


def move_point(points: np.ndarray, index: int, dx: float, dy: float) -> np.ndarray:
    """Landmark ``index`` moved by (dx, dy) px; a copy."""
    out = _check(points)
    out[index] += (dx, dy)
    return out


def mouth_close(points: np.ndarray) -> np.ndarray:
    """Merge the upper and lower lips (Fig. 4 "mouth fully-closed by merging landmarks for upper and down lips").

    Inner-lip pairs (61, 67), (62, 66), (63, 65) meet at their midpoints; the outer upper lip 50-52 and lower
    lip 58-56 follow the inner point above or below them; 49, 53, 59, 55 follow by half; corners 48, 54, 60,
    64 stay.
    """
    out = _check(points)
    moved = out.copy()
    for upper, lower in ((61, 67), (62, 66), (63, 65)):
        mid = (out[upper] + out[lower]) / 2
        moved[upper] = moved[lower] = mid
    delta = moved - out
    for outer, inner in ((50, 61), (51, 62), (52, 63), (58, 67), (57, 66), (56, 65)):
        moved[outer] = out[outer] + delta[inner]
    for outer, inner in ((49, 61), (53, 63), (59, 67), (55, 65)):
        moved[outer] = out[outer] + 0.5 * delta[inner]
    return moved


def mouth_open(points: np.ndarray, amount: float) -> np.ndarray:
    """Lower lip pulled down by ``amount`` px (56-58 and 65-67 fully, 55 and 59 by half); corners fixed."""
    out = _check(points)
    out[[56, 57, 58, 65, 66, 67], 1] += amount
    out[[55, 59], 1] += amount / 2
    return out


def face_slim(points: np.ndarray, strength: float = 0.1) -> np.ndarray:
    """Cheeks pulled inward (Fig. 4): jaw point j's x offset from the nose tip (30) scaled by
    ``1 - strength·sin(πj/16)``; y unchanged, so points 0 and 16 stay and the chin (8) moves the most."""
    out = _check(points)
    j = np.arange(17)
    scale = 1.0 - strength * np.sin(np.pi * j / 16)
    out[:17, 0] = out[30, 0] + scale * (out[:17, 0] - out[30, 0])
    return out


def interpolate_landmarks(start: np.ndarray, end: np.ndarray, t: float) -> np.ndarray:
    """``(1 - t)·start + t·end`` per point, in pixels."""
    return (1.0 - t) * _check(start) + t * _check(end)


#: The recursive in-betweening of Fig. 5 as (new face, source face, left and right landmark faces) in
#: generation order, faces numbered 1..7 with 1 and 7 real: 4 from 1, then 2 and 5, then 3 and 6.
FIG5_ORDER: tuple[tuple[int, int, int, int], ...] = (
    (4, 1, 1, 7),
    (2, 1, 1, 4),
    (5, 4, 4, 7),
    (3, 2, 2, 4),
    (6, 5, 5, 7),
)


def fig5_schedule() -> list[tuple[int, float]]:
    """(face, t) in generation order for faces 1, 7 (real) and 4, 2, 5, 3, 6: t of each face's landmarks."""
    t = {1: 0.0, 7: 1.0}
    order = [(1, 0.0), (7, 1.0)]
    for new, _, left, right in FIG5_ORDER:
        t[new] = (t[left] + t[right]) / 2
        order.append((new, t[new]))
    return order


NAMED_EDITS: dict[str, Callable[..., np.ndarray]] = {
    "mouth_open": mouth_open,
    "mouth_close": mouth_close,
    "face_slim": face_slim,
}


def apply_named_edit(points: np.ndarray, name: str, amount: float | None = None, image_size: int = 512) -> np.ndarray:
    """A named edit; ``amount`` defaults to S/16 px (mouth_open) or 0.1 (face_slim)."""
    if name not in NAMED_EDITS:
        raise ValueError(f"unknown landmark edit {name!r}; expected one of {', '.join(NAMED_EDITS)}")
    if name == "mouth_close":
        return mouth_close(points)
    if name == "mouth_open":
        return mouth_open(points, image_size / 16 if amount is None else amount)
    return face_slim(points, 0.1 if amount is None else amount)


def group_extents(landmark_map: np.ndarray | Tensor, thickness: int) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of the lit pixels of a one-group map, shrunk by the half thickness: the
    extent of the points that drew it (within a pixel)."""
    lit = np.asarray(landmark_map.detach().cpu() if isinstance(landmark_map, Tensor) else landmark_map) > 0
    lit = lit.reshape(lit.shape[-2:])
    ys, xs = np.nonzero(lit)
    if len(xs) == 0:
        raise ValueError("the map has no lit pixel")
    half = (thickness - 1) / 2
    return xs.min() + half, ys.min() + half, xs.max() - half, ys.max() - half
