"""Paired transforms for an image with its label map and landmarks, and conversion to the batch contract.

Every geometric step moves the image, the label map and every landmark set together:

- ``resize``: the image with area interpolation when shrinking (bilinear when enlarging, or bicubic on
  request), the label with NEAREST so no new classes appear at borders, the landmarks scaled into the
  output frame;
- ``crop`` / ``center_square_crop``: a box in the image frame, applied to a label of any resolution that
  covers the same field of view (CelebAMask-HQ pairs 1024 px photos with 512 px masks);
- ``hflip``: mirrors all three AND swaps left/right meaning: label values through
  :func:`datamodules.labels.flip_label_permutation`, landmark indices through
  :data:`datamodules.labels.LANDMARK_FLIP_PERMUTATION` (68 points) or
  :data:`datamodules.labels.LANDMARK5_FLIP_PERMUTATION` (CelebA's 5 points).

Landmarks are pixel-centre coordinates ``(x, y)``: the centre of the top-left pixel is ``(0, 0)``, the
centre of the bottom-right pixel of a ``W x H`` image is ``(W-1, H-1)``. That is the convention of dlib
and of array indexing, and under it resizing maps ``x -> (x + 0.5) * W'/W - 0.5`` and a flip maps
``x -> W - 1 - x``.

Photometric augmentation (albumentations colour jitter) touches the image only. Its randomness, like the
flip's, is drawn from torch's generator, which PyTorch seeds per DataLoader worker; albumentations 2.0
keeps one generator per ``Compose`` that forked workers would otherwise share, repeating the same
jitter in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import torch

from datamodules.labels import LANDMARK5_FLIP_PERMUTATION, LANDMARK_FLIP_PERMUTATION, flip_label_permutation

if TYPE_CHECKING:
    import albumentations as A

Interpolation = Literal["auto", "bilinear", "bicubic", "area"]
_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}
# Landmark index permutation a horizontal flip applies, keyed by the number of points in the set.
_LANDMARK_FLIP_PERMUTATIONS: dict[int, np.ndarray] = {
    len(LANDMARK_FLIP_PERMUTATION): LANDMARK_FLIP_PERMUTATION,
    len(LANDMARK5_FLIP_PERMUTATION): LANDMARK5_FLIP_PERMUTATION,
}


@dataclass
class FaceSample:
    """One decoded face before conversion to tensors.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        label: (h, w) integer label map over the same field of view as ``image`` (its resolution may
            differ until the first resize), or None.
        points: named landmark sets, each (N, 2) float32 pixel-centre (x, y) in the image frame
            (``"landmarks"`` for 68 iBUG points, ``"landmarks5"`` for CelebA's 5).
        extras: values passed to the batch untouched (``name``, ``attributes``, ``identity``, ...).
    """

    image: np.ndarray
    label: np.ndarray | None = None
    points: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])


def as_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An ``int`` (square) or ``(height, width)`` -> ``(height, width)`` of positive ints."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return int(size[0]), int(size[1])


# ------------------------------------------------------------------------------------------------ geometry
def _scale_points(points: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel-centre points under a resize by factors (sx, sy)."""
    scale = np.array([sx, sy], dtype=np.float64)
    return ((points.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def _resize_image(image: np.ndarray, size: tuple[int, int], interpolation: Interpolation) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    if interpolation == "auto":
        shrinking = height <= image.shape[0] and width <= image.shape[1]
        interpolation = "area" if shrinking else "bilinear"
    return cv2.resize(image, (width, height), interpolation=_CV2_INTERPOLATION[interpolation])


def _resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if label.shape[:2] == (height, width):
        return label
    return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)


def resize(sample: FaceSample, size: tuple[int, int], interpolation: Interpolation = "auto") -> FaceSample:
    """Resize image, label (nearest) and landmarks to ``size`` = (height, width)."""
    sy, sx = size[0] / sample.size[0], size[1] / sample.size[1]
    return replace(
        sample,
        image=_resize_image(sample.image, size, interpolation),
        label=None if sample.label is None else _resize_label(sample.label, size),
        points={key: _scale_points(p, sx, sy) for key, p in sample.points.items()},
    )


def crop(sample: FaceSample, top: int, left: int, height: int, width: int) -> FaceSample:
    """Cut the box (top, left, height, width) given in image pixels; the label's box is scaled to its grid."""
    img_h, img_w = sample.size
    if top < 0 or left < 0 or top + height > img_h or left + width > img_w:
        raise ValueError(
            f"crop box top={top} left={left} height={height} width={width} exceeds the {img_h}x{img_w} image"
        )
    label = sample.label
    if label is not None:
        ry, rx = label.shape[0] / img_h, label.shape[1] / img_w
        t, b = round(top * ry), round((top + height) * ry)
        l, r = round(left * rx), round((left + width) * rx)
        label = label[t:b, l:r]
    offset = np.array([left, top], dtype=np.float32)
    return replace(
        sample,
        image=sample.image[top : top + height, left : left + width],
        label=label,
        points={key: p - offset for key, p in sample.points.items()},
    )


def center_square_crop(sample: FaceSample) -> FaceSample:
    """The largest centred square."""
    height, width = sample.size
    side = min(height, width)
    return crop(sample, (height - side) // 2, (width - side) // 2, side, side)


def hflip(sample: FaceSample, label_permutation: np.ndarray | None) -> FaceSample:
    """Mirror left-right, exchanging left/right label values and landmark indices.

    Args:
        sample: the face to flip.
        label_permutation: lookup table for label values (``flip_label_permutation(num_classes)``);
            required when the sample has a label.
    """
    width = sample.size[1]
    label = sample.label
    if label is not None:
        if label_permutation is None:
            raise ValueError("flipping a labelled sample needs a label_permutation")
        label = label_permutation[label[:, ::-1]].astype(label.dtype)
    points = {}
    for key, p in sample.points.items():
        if len(p) not in _LANDMARK_FLIP_PERMUTATIONS:
            raise ValueError(
                f"no flip permutation for {len(p)} landmarks in {key!r}; "
                f"expected one of {sorted(_LANDMARK_FLIP_PERMUTATIONS)}"
            )
        mirrored = np.stack([width - 1 - p[:, 0], p[:, 1]], axis=1).astype(np.float32)
        points[key] = mirrored[_LANDMARK_FLIP_PERMUTATIONS[len(p)]]
    return replace(sample, image=np.ascontiguousarray(sample.image[:, ::-1]), label=label, points=points)


# --------------------------------------------------------------------------------------------- pipeline
def photometric_augmentation() -> A.Compose:
    """Mild colour jitter for face photos (image only; labels and landmarks are unaffected)."""
    import albumentations as A  # imported on use: it is slow to import and only training needs it

    return A.Compose(
        [A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8)],
        seed=0,
    )


class SampleTransform:
    """Resize to the output size, then (when augmenting) random flip and optional colour jitter.

    Args:
        image_size: output (height, width) or a square side.
        augment: apply a horizontal flip with probability 0.5 (pix2pixHD/MaskGAN's ``no_flip=False``).
        photometric: also apply :func:`photometric_augmentation` (only when ``augment``).
        num_classes: label classes of the samples (19 or 11), selecting the label flip table.
        interpolation: image interpolation of the resize; labels are always resized with NEAREST.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        *,
        augment: bool = False,
        photometric: bool = False,
        num_classes: int | None = None,
        interpolation: Interpolation = "auto",
    ) -> None:
        self.size = as_size(image_size)
        self.augment = augment
        self.interpolation = interpolation
        self.label_permutation = None if num_classes is None else flip_label_permutation(num_classes)
        self.photometric = photometric_augmentation() if (augment and photometric) else None

    def __call__(self, sample: FaceSample) -> FaceSample:
        sample = resize(sample, self.size, self.interpolation)
        if not self.augment:
            return sample
        if torch.rand(()) < 0.5:
            sample = hflip(sample, self.label_permutation)
        if self.photometric is not None:
            self.photometric.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
            sample = replace(sample, image=self.photometric(image=sample.image)["image"])
        return sample


def to_batch(sample: FaceSample) -> dict[str, Any]:
    """A :class:`FaceSample` -> one item of the batch contract (see DESIGN.md).

    ``image`` float32 (3, H, W) in [-1, 1]; ``label`` int64 (H, W); each landmark set float32 (N, 2);
    extras as given (datasets store ``attributes`` as float32 tensors, ints and names as Python values).
    """
    image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1), dtype=np.float32))
    image = image / 127.5 - 1.0
    item: dict[str, Any] = {"image": image}
    if sample.label is not None:
        item["label"] = torch.from_numpy(sample.label.astype(np.int64))
    for key, p in sample.points.items():
        item[key] = torch.from_numpy(p.astype(np.float32))
    item.update(sample.extras)
    return item
