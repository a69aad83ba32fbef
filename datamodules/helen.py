"""Helen face parsing (Smith et al. CVPR 2013 labels), the ``SmithCVPR2013_dataset_resized`` release."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import ConcatDataset

from datamodules.base import (
    DatasetError,
    FaceDataModule,
    FaceDataset,
    MissingDataError,
    file_names,
    read_gray,
    read_lines,
    read_rgb,
    require_dir,
    require_file,
    require_listed,
)
from datamodules.labels import HELEN_TO_CELEBAMASK, NUM_CELEBAMASK_CLASSES, NUM_HELEN_CLASSES
from datamodules.transforms import FaceSample

# Split -> list file of the release (2000 / 230 / 100 names).
SPLIT_FILES: dict[str, str] = {"train": "exemplars.txt", "val": "tuning.txt", "test": "testing.txt"}
HelenClasses = Literal["helen", "celebamask"]


def parse_name_list(path: Path) -> list[str]:
    """Names of a Helen list file, whose lines read ``<k> , <name>`` (e.g. ``1 , 100032540_1``)."""
    names = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1]:
            raise DatasetError(f"{path}: line {number} is {line[:60]!r}; expected '<index> , <name>'")
        names.append(fields[1])
    return names


def merge_probability_maps(maps: np.ndarray) -> np.ndarray:
    """(11, H, W) label probability maps -> (H, W) uint8 label by argmax (ties go to the lower label, so an
    all-zero pixel is background)."""
    return maps.argmax(axis=0).astype(np.uint8)


#: Gu et al.'s canonical positions (x, y) at 256 px of the left-eye, right-eye and mouth centres (their code's
#: fallback centres; specs/mask_guided.md A18).
CANONICAL_POINTS_256 = np.array([[96.0, 116.0], [160.0, 116.0], [128.0, 184.0]])
_ALIGN_LABELS = ((4,), (5,), (7, 8, 9))
MaskSource = Literal["gt", "parser"]


def alignment_points(label: np.ndarray) -> np.ndarray | None:
    """(x, y) bounding-box centres of the left eye, right eye and mouth of a Helen label; None if one is absent."""
    points = []
    for values in _ALIGN_LABELS:
        ys, xs = np.nonzero(np.isin(label, values))
        if ys.size == 0:
            return None
        points.append([(xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0])
    return np.asarray(points)


def similarity_to(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity (rotation, uniform scale, shift) mapping ``source`` points onto ``target``."""
    src_mean, dst_mean = source.mean(0), target.mean(0)
    src, dst = source - src_mean, target - dst_mean
    a = (src * dst).sum()
    b = (src[:, 0] * dst[:, 1] - src[:, 1] * dst[:, 0]).sum()
    norm = (src**2).sum()
    scale_cos, scale_sin = a / norm, b / norm
    rotation = np.array([[scale_cos, -scale_sin], [scale_sin, scale_cos]])
    return np.concatenate([rotation, (dst_mean - rotation @ src_mean)[:, None]], 1)


def align_face(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp a face so its eye and mouth centres land on Gu et al.'s canonical positions at ``size`` px
    (bicubic image, nearest label, outside pixels background). A label without both eyes and a mouth is only
    resized: the alignment needs all three points."""
    import cv2

    points = alignment_points(label)
    if points is None:
        return (
            cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC),
            cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST),
        )
    if label.shape != image.shape[:2]:
        points = points * np.array([image.shape[1] / label.shape[1], image.shape[0] / label.shape[0]])
    matrix = similarity_to(points, CANONICAL_POINTS_256 * size / 256.0)
    warped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    label_matrix = matrix @ np.diag([image.shape[1] / label.shape[1], image.shape[0] / label.shape[0], 1.0])
    warped_label = cv2.warpAffine(label, label_matrix, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    return warped, warped_label


class Helen(FaceDataset):
    """Helen parsing data as it unpacks (``SmithCVPR2013_dataset_resized``)::

        root/
          images/<name>.jpg
          labels/<name>/<name>_lbl00.png ... <name>_lbl10.png   8-bit probability maps (255 = probability 1)
          exemplars.txt (train, 2000), tuning.txt (val, 230), testing.txt (test, 100): lines '<k> , <name>'

    The 11 maps are merged by argmax into Helen's labels (0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye,
    5 r_eye, 6 nose, 7 u_lip, 8 inner mouth, 9 l_lip, 10 hair); ``classes="celebamask"`` maps them to the
    19 CelebAMask-HQ classes through ``labels.HELEN_TO_CELEBAMASK``. ``all`` is the three lists in order.
    Images vary in size; each is resized to ``image_size`` (labels with NEAREST).

    Items: ``image``, ``label`` and ``name``.

    Args:
        root: the ``SmithCVPR2013_dataset_resized`` folder.
        split: ``train``, ``val``, ``test`` or ``all``.
        image_size: output side (or (height, width)).
        augment: random horizontal flip swapping left/right brows and eyes.
        photometric: colour jitter on top of the flip (when ``augment``).
        classes: ``"helen"`` (11 labels) or ``"celebamask"`` (19 labels).
        align: warp each face so its eye and mouth centres sit at Gu et al.'s canonical positions
            (:func:`align_face`; needs a square ``image_size``).
        mask_source: ``"gt"`` (the release's labels) or ``"parser"``: the argmax of an 11-class parser's soft
            masks cached by ``python -m experiments.parse --dataset helen`` in ``parser_masks`` (Gu et al.
            train on parser masks).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        image_size: int | tuple[int, int] = 64,
        augment: bool = False,
        *,
        photometric: bool = False,
        classes: HelenClasses = "helen",
        align: bool = False,
        mask_source: MaskSource = "gt",
        parser_masks: str | None = None,
    ) -> None:
        if classes not in ("helen", "celebamask"):
            raise ValueError(f"unknown classes {classes!r}; expected 'helen' or 'celebamask'")
        if mask_source not in ("gt", "parser"):
            raise ValueError(f"unknown mask_source {mask_source!r}; expected 'gt' or 'parser'")
        if align and classes != "helen":
            raise ValueError("align=True finds the eyes and mouth by Helen's labels; use classes='helen'")
        if mask_source == "parser" and not parser_masks:
            raise ValueError("mask_source='parser' needs parser_masks: the cache folder of experiments.parse")
        num_classes = NUM_HELEN_CLASSES if classes == "helen" else NUM_CELEBAMASK_CLASSES
        super().__init__(root, split, image_size, augment=augment, photometric=photometric, num_classes=num_classes)
        self.classes = classes
        self.image_dir = require_dir(self.root / "images", "Helen image folder")
        self.label_root = require_dir(self.root / "labels", "Helen label folder")
        images, label_dirs = file_names(self.image_dir), file_names(self.label_root)
        names: list[str] = []
        for split_name in SPLIT_FILES if split == "all" else (split,):
            list_path = require_file(self.root / SPLIT_FILES[split_name], f"Helen {split_name} list")
            split_names = parse_name_list(list_path)
            require_listed([f"{n}.jpg" for n in split_names], images, self.image_dir, list_path)
            require_listed(split_names, label_dirs, self.label_root, list_path)
            names += split_names
        self._set_items(names, ", ".join(SPLIT_FILES.values()) if split == "all" else SPLIT_FILES[split])
        self.align = align
        self.mask_source = mask_source
        self.parser_masks = None
        if mask_source == "parser":
            from datamodules.soft_masks import require_soft_mask_cache

            self.parser_masks = require_soft_mask_cache(str(parser_masks), names, self.root)

    def label_map(self, name: str) -> np.ndarray:
        """The merged label map of image ``name`` in the chosen classes (or the parser's, ``mask_source``)."""
        if self.mask_source == "parser":
            from datamodules.soft_masks import load_soft_mask

            label = load_soft_mask(self.parser_masks, name, NUM_HELEN_CLASSES).argmax(0).numpy().astype(np.uint8)
            return label if self.classes == "helen" else HELEN_TO_CELEBAMASK[label].astype(np.uint8)
        maps = []
        for k in range(NUM_HELEN_CLASSES):
            path = self.label_root / name / f"{name}_lbl{k:02d}.png"
            if not path.is_file():
                raise MissingDataError(f"Helen label map not found: expected {path} (11 maps lbl00..lbl10)")
            maps.append(read_gray(path))
            if maps[-1].shape != maps[0].shape:
                raise DatasetError(f"label map {path} is {maps[-1].shape}; expected {maps[0].shape} like lbl00")
        label = merge_probability_maps(np.stack(maps))
        return label if self.classes == "helen" else HELEN_TO_CELEBAMASK[label].astype(np.uint8)

    def load(self, index: int) -> FaceSample:
        name = self.items[index]
        path = self.image_dir / f"{name}.jpg"
        image, label = read_rgb(path), self.label_map(name)
        if image.shape[:2] != label.shape:
            if self.mask_source == "gt":
                raise DatasetError(f"{path} is {image.shape[:2]} but its label maps are {label.shape}; expected equal")
        if self.align:
            if label.shape != image.shape[:2]:  # parser masks at the cache's resolution: same field of view
                import cv2

                label = cv2.resize(label, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            image, label = align_face(image, label, self.image_size[0])
        return FaceSample(image=image, label=label, extras={"name": name})


class HelenDataModule(FaceDataModule):
    """Loaders over :class:`Helen` (a real root or the synthetic default: 80/10/10 % of ``synthetic_images``).

    Args (beyond :class:`~datamodules.base.FaceDataModule`'s):
        classes: ``"helen"`` (11 labels) or ``"celebamask"`` (19 labels).
        align, mask_source, parser_masks: see :class:`Helen` (Gu et al.'s aligned faces and parser masks).
        extra_faces: a folder of photos (VGGFace2, CelebA's ``img_align_celeba``, any) whose train split
            (:func:`datamodules.parsed_faces.folder_split`) joins Helen's train split, labelled by a parser:
            Gu et al. train on Helen plus 20,000 parsed VGGFace2 faces. Validation and test stay Helen's.
        extra_parser_masks: the parser cache of ``extra_faces`` (``experiments.parse --dataset folder``).
    """

    synthetic_layout = "helen"

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: bool = True,
        photometric: bool = False,
        synthetic_images: int = 200,
        seed: int = 0,
        classes: HelenClasses = "helen",
        align: bool = False,
        mask_source: MaskSource = "gt",
        parser_masks: str | None = None,
        extra_faces: str | None = None,
        extra_parser_masks: str | None = None,
    ) -> None:
        super().__init__(root, image_size, batch_size, num_workers, augment, photometric, synthetic_images, seed)
        if (extra_faces is None) != (extra_parser_masks is None):
            raise ValueError(
                "extra_faces and extra_parser_masks go together: the photos and their parser cache "
                f"(experiments.parse --dataset folder); got extra_faces={extra_faces!r}, "
                f"extra_parser_masks={extra_parser_masks!r}"
            )
        if extra_faces is not None and classes != "helen":
            raise ValueError("extra_faces are labelled with Helen's 11 classes; use classes='helen'")
        self.classes = classes
        self.align = align
        self.mask_source = mask_source
        self.parser_masks = parser_masks
        self.extra_faces = extra_faces
        self.extra_parser_masks = extra_parser_masks

    def make_dataset(self, split: str, augment: bool) -> Helen | ConcatDataset:
        helen = self.make_helen(split, augment)
        if split != "train" or self.extra_faces is None:
            return helen
        from datamodules.parsed_faces import ParsedImageFolder

        extra = ParsedImageFolder(
            self.extra_faces,
            "train",
            self.image_size,
            augment,
            photometric=self.photometric,
            parser_masks=self.extra_parser_masks,
            align=self.align,
        )
        return ConcatDataset([helen, extra])

    def make_helen(self, split: str, augment: bool) -> Helen:
        return Helen(
            self.data_root,
            split,
            self.image_size,
            augment,
            photometric=self.photometric,
            classes=self.classes,
            align=self.align,
            mask_source=self.mask_source,
            parser_masks=self.parser_masks,
        )

    def write_synthetic(self, directory: Path) -> None:
        from datamodules.synthetic import write_helen

        held_out = max(1, self.synthetic_images // 10)
        write_helen(
            directory,
            num_train=max(1, self.synthetic_images - 2 * held_out),
            num_val=held_out,
            num_test=held_out,
            seed=self.seed,
            image_size=self.image_size,
        )
