"""CelebA (Liu et al. 2015): 202,599 aligned 178x218 faces with 40 binary attributes (STGAN/MagGAN data)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch

from datamodules.base import (
    PARTITION_SPLITS,
    DatasetError,
    FaceDataModule,
    FaceDataset,
    MissingDataError,
    atomic_directory,
    file_names,
    parse_attribute_file,
    parse_partition_file,
    read_lines,
    read_rgb,
    require_dir,
    require_file,
    require_listed,
)
from datamodules.labels import ATTRIBUTE_INDEX, CELEBA_LANDMARKS5, NUM_CELEBAMASK_CLASSES
from datamodules.soft_masks import load_soft_mask, one_hot_soft_mask, require_soft_mask_cache, save_soft_mask
from datamodules.transforms import FaceSample, center_square_crop, crop, resize

IMAGE_DIR = "img_align_celeba"
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
LANDMARK_FILE = "list_landmarks_align_celeba.txt"
IDENTITY_FILE = "identity_CelebA.txt"
NUM_CELEBA_IMAGES = 202_599
ALIGNED_FRAME = (218, 178)  # (height, width) of img_align_celeba
# STGAN's split by line index of list_attr_celeba.txt: train [:182000], val [182000:182637], test [182637:].
STGAN_SPLIT_BOUNDS: dict[str, tuple[int, int]] = {
    "train": (0, 182_000),
    "val": (182_000, 182_637),
    "test": (182_637, NUM_CELEBA_IMAGES),
    "all": (0, NUM_CELEBA_IMAGES),
}
T = TypeVar("T")
CropMode = Literal["stgan", "center"]
SplitScheme = Literal["official", "stgan"]


def stgan_crop_box(image_size: int) -> tuple[int, int, int]:
    """STGAN's (offset_h, offset_w, side) in the 178x218 aligned frame: 148 @ (40, 15) for 64 px outputs,
    170 @ (26, 3) otherwise (its 128 px setting, also used for larger sizes)."""
    return (40, 15, 148) if image_size == 64 else (26, 3, 170)


def _parse_landmarks(path: Path) -> dict[str, np.ndarray]:
    """``list_landmarks_align_celeba.txt``: count, 10 coordinate names, rows ``<file> x1 y1 ... x5 y5``."""
    lines = read_lines(path)
    expected_header = [f"{p}_{c}" for p in CELEBA_LANDMARKS5 for c in "xy"]
    if len(lines) < 2 or lines[1].split() != expected_header:
        raise DatasetError(f"{path}: line 2 must be the header {' '.join(expected_header)}")
    rows = [line.split() for line in lines[2:]]
    if not lines[0].split()[0].isdigit() or int(lines[0].split()[0]) != len(rows):
        raise DatasetError(f"{path}: line 1 is {lines[0]!r} but the file has {len(rows)} rows")
    bad = next((i for i, r in enumerate(rows) if len(r) != 11), None)
    if bad is not None:
        raise DatasetError(f"{path}: line {bad + 3} has {len(rows[bad])} fields; expected a file name and 10 numbers")
    coords = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 5, 2)
    return {r[0]: coords[i] for i, r in enumerate(rows)}


def _parse_identities(path: Path) -> dict[str, int]:
    """``identity_CelebA.txt``: rows ``<file> <identity>``, no header."""
    identities = {}
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DatasetError(f"{path}: line {number} is {line[:60]!r}; expected '<file> <identity>'")
        identities[fields[0]] = int(fields[1])
    return identities


class CelebA(FaceDataset):
    """CelebA's aligned images and annotations as they unpack::

        root/
          img_align_celeba/000001.jpg ... 202599.jpg   178x218 aligned faces
          list_attr_celeba.txt                         count, 40 names, rows '<file> +-1 x 40'
          list_eval_partition.txt                      '<file> <0|1|2>' (needed for split_scheme="official")
          list_landmarks_align_celeba.txt              optional: 5 points in the aligned frame
          identity_CelebA.txt                          optional: '<file> <identity>'

    Items: ``image``, ``attributes`` (float {0,1}: all 40 in CelebA order, or ``attribute_names`` in the
    given order), ``name``; ``landmarks5`` (5,2) pixel (x, y) in the output frame (left eye, right eye,
    nose, left and right mouth corner) when the landmark file exists; ``identity`` when the identity file
    exists.

    Geometry: ``crop="stgan"`` cuts STGAN's box (:func:`stgan_crop_box`, scaled if the images are not
    178x218) and resizes bicubically, as STGAN and MagGAN do; ``"center"`` cuts the centred 178x178 square;
    None resizes the whole frame.

    Splits: ``split_scheme="official"`` reads the partition file (162,770 / 19,867 / 19,962 images);
    ``"stgan"`` takes STGAN's line-index split of the attribute file (train [:182000], val [182000:182637]
    = 637 images, test [182637:] = 19,962), defined only for the full 202,599-image file.

    Args:
        root: the CelebA folder.
        split: ``train``, ``val``, ``test`` or ``all``.
        image_size: output side (or (height, width)).
        augment: random horizontal flip (STGAN itself does not flip).
        photometric: colour jitter on top of the flip (when ``augment``).
        crop: ``"stgan"``, ``"center"`` or None.
        split_scheme: ``"official"`` or ``"stgan"``.
        attribute_names: return only these attributes, in this order (e.g. ``labels.EDIT_ATTRIBUTES``).
        soft_mask_dir: a cache of 19-class soft parser masks of the crop (``experiments.parse``; MagGAN); each
            item then carries ``soft_masks`` float (19, h, w) at the cache's resolution. A missing or
            incomplete cache is one error naming the first absent file and the command that builds it.
            Masks are not flipped, so ``augment`` must be off.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        image_size: int | tuple[int, int] = 64,
        augment: bool = False,
        *,
        photometric: bool = False,
        crop: CropMode | None = None,
        split_scheme: SplitScheme = "official",
        attribute_names: Sequence[str] | None = None,
        soft_mask_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if soft_mask_dir is not None and augment:
            raise ValueError("soft_mask_dir with augment=True: the cached soft masks would not follow the flip")
        if crop not in ("stgan", "center", None):
            raise ValueError(f"unknown crop {crop!r}; expected 'stgan', 'center' or None")
        if split_scheme not in ("official", "stgan"):
            raise ValueError(f"unknown split_scheme {split_scheme!r}; expected 'official' or 'stgan'")
        super().__init__(
            root,
            split,
            image_size,
            augment=augment,
            photometric=photometric,
            num_classes=None,
            interpolation="bicubic" if crop == "stgan" else "auto",
        )
        self.crop = crop
        self.columns = self._attribute_columns(attribute_names)
        self.image_dir = require_dir(self.root / IMAGE_DIR, "CelebA aligned image folder")
        attribute_path = require_file(self.root / ATTRIBUTE_FILE, "CelebA attribute file")
        table = parse_attribute_file(attribute_path)
        rows = self._split_rows(table.names, split_scheme)
        names = [table.names[r] for r in rows]
        require_listed(names, file_names(self.image_dir), self.image_dir, attribute_path)
        self._set_items(names, f"{split_scheme} split of {ATTRIBUTE_FILE}")
        self._attributes = table.values[rows][:, self.columns].astype(np.float32)
        self._landmarks = self._optional(LANDMARK_FILE, _parse_landmarks)
        self._identities = self._optional(IDENTITY_FILE, _parse_identities)
        self.soft_mask_dir = None
        if soft_mask_dir is not None:
            self.soft_mask_dir = require_soft_mask_cache(soft_mask_dir, [Path(n).stem for n in names], self.root)

    # ---------------------------------------------------------------------------------- construction
    @staticmethod
    def _attribute_columns(attribute_names: Sequence[str] | None) -> np.ndarray:
        if attribute_names is None:
            return np.arange(len(ATTRIBUTE_INDEX))
        unknown = [a for a in attribute_names if a not in ATTRIBUTE_INDEX]
        if unknown or not attribute_names:
            raise ValueError(f"attribute_names must be CelebA attribute names; unknown: {unknown}")
        return np.array([ATTRIBUTE_INDEX[a] for a in attribute_names], dtype=np.int64)

    def _split_rows(self, names: list[str], scheme: SplitScheme) -> list[int]:
        """Row indices (into the attribute file) of the chosen split."""
        if scheme == "stgan":
            if len(names) != NUM_CELEBA_IMAGES:
                raise DatasetError(
                    f"{self.root / ATTRIBUTE_FILE} has {len(names)} images; STGAN's line-index split is "
                    f"defined for the full {NUM_CELEBA_IMAGES}; use split_scheme='official' (partition file)"
                )
            start, stop = STGAN_SPLIT_BOUNDS[self.split]
            return list(range(start, stop))
        if self.split == "all":
            return list(range(len(names)))
        path = require_file(self.root / PARTITION_FILE, "CelebA partition file")
        partition = parse_partition_file(path)
        missing = next((n for n in names if n not in partition), None)
        if missing is not None:
            raise DatasetError(f"{path} has no entry for {missing!r}, which {ATTRIBUTE_FILE} lists")
        return [r for r, n in enumerate(names) if PARTITION_SPLITS[partition[n]] == self.split]

    def _optional(self, file_name: str, parse: Callable[[Path], dict[str, T]]) -> dict[str, T] | None:
        """Parse an optional annotation file and check it covers every selected image."""
        path = self.root / file_name
        if not path.is_file():
            return None
        table = parse(path)
        missing = next((n for n in self.items if n not in table), None)
        if missing is not None:
            raise DatasetError(f"{path} has no entry for {missing!r}, which {ATTRIBUTE_FILE} lists")
        return table

    # ---------------------------------------------------------------------------------------- access
    def _crop(self, sample: FaceSample) -> FaceSample:
        if self.crop == "center":
            return center_square_crop(sample)
        if self.crop == "stgan":
            top, left, side = stgan_crop_box(self.image_size[0])
            sy, sx = sample.size[0] / ALIGNED_FRAME[0], sample.size[1] / ALIGNED_FRAME[1]
            return crop(sample, round(top * sy), round(left * sx), round(side * sy), round(side * sx))
        return sample

    def load(self, index: int) -> FaceSample:
        name = self.items[index]
        extras: dict[str, object] = {
            "attributes": torch.from_numpy(self._attributes[index]),
            "name": Path(name).stem,
        }
        if self._identities is not None:
            extras["identity"] = self._identities[name]
        if self.soft_mask_dir is not None:
            extras["soft_masks"] = load_soft_mask(self.soft_mask_dir, Path(name).stem)
        points = {} if self._landmarks is None else {"landmarks5": self._landmarks[name]}
        sample = FaceSample(image=read_rgb(self.image_dir / name), points=points, extras=extras)
        return self._crop(sample)


class CelebADataModule(FaceDataModule):
    """Loaders over :class:`CelebA` (a real root or the synthetic default in the 178x218 aligned frame).

    Args (beyond :class:`~datamodules.base.FaceDataModule`'s): ``crop``, ``split_scheme`` and
    ``attribute_names`` as in :class:`CelebA`. STGAN/MagGAN configs set ``crop="stgan"``,
    ``split_scheme="stgan"`` (real data only), ``attribute_names=labels.EDIT_ATTRIBUTES`` and
    ``augment=False``.

    ``soft_masks`` (MagGAN): None (no masks), a cache directory written by ``experiments.parse``, or, on the
    synthetic world only (``root`` None), ``"labels"``: the exact label maps of the synthetic crop, one-hot,
    stand in for the parser's soft masks (written once beside the synthetic set at ``mask_size``²), or
    ``"parser"``: the soft masks of the FaceParser checkpoint ``parser_checkpoint`` (cached beside the set).

    ``visible_bald`` (synthetic world only): write the world with more bald older men and no hats on bald heads
    (:class:`~datamodules.synthetic.SyntheticFaceWorld`); its own cache folder ends in ``-visible-bald``.
    """

    synthetic_layout = "celeba"

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
        crop: CropMode | None = "stgan",
        split_scheme: SplitScheme = "official",
        attribute_names: Sequence[str] | None = None,
        soft_masks: str | None = None,
        mask_size: int | None = None,
        parser_checkpoint: str | None = None,
        visible_bald: bool = False,
    ) -> None:
        super().__init__(root, image_size, batch_size, num_workers, augment, photometric, synthetic_images, seed)
        if visible_bald and root is not None:
            raise ValueError(
                "visible_bald=true changes the synthetic world (root=None); it does nothing on real CelebA"
            )
        self.visible_bald = bool(visible_bald)
        self.crop = crop
        self.split_scheme = split_scheme
        self.attribute_names = None if attribute_names is None else tuple(attribute_names)
        if soft_masks in ("labels", "parser") and root is not None:
            raise ValueError(
                f"soft_masks={soft_masks!r} is for the synthetic world (root=None); for real CelebA give the cache "
                "directory that `python -m experiments.parse` writes"
            )
        if soft_masks == "parser" and not parser_checkpoint:
            raise ValueError("soft_masks='parser' needs parser_checkpoint (a FaceParser .ckpt)")
        self.soft_masks = soft_masks
        self.mask_size = mask_size or image_size
        self.parser_checkpoint = parser_checkpoint

    @property
    def synthetic_dir(self) -> Path:
        directory = super().synthetic_dir
        return directory.with_name(f"{directory.name}-visible-bald") if self.visible_bald else directory

    @property
    def soft_mask_dir(self) -> Path | None:
        if self.soft_masks is None:
            return None
        frame = f"crop{stgan_crop_box(self.image_size)[2]}-s{self.mask_size}"  # the crop box depends on the size
        if self.soft_masks == "labels":
            return Path(f"{self.synthetic_dir}-masks-labels-{frame}")
        if self.soft_masks == "parser":
            return Path(f"{self.synthetic_dir}-masks-parser-{Path(self.parser_checkpoint).stem}-{frame}")
        return Path(self.soft_masks).expanduser()

    def prepare_data(self) -> None:
        super().prepare_data()
        directory = self.soft_mask_dir
        if self.soft_masks in ("labels", "parser") and directory is not None and not directory.is_dir():
            with atomic_directory(directory) as tmp:
                if self.soft_masks == "labels":
                    write_synthetic_label_masks(
                        tmp, self.synthetic_images, self.seed, self.image_size, self.mask_size, self.visible_bald
                    )
                else:
                    write_parser_masks(tmp, self.parser_checkpoint, self.make_dataset("all", False, masks=False))

    def make_dataset(self, split: str, augment: bool, masks: bool = True) -> CelebA:
        return CelebA(
            self.data_root,
            split,
            self.image_size,
            augment,
            photometric=self.photometric,
            crop=self.crop,
            split_scheme=self.split_scheme,
            attribute_names=self.attribute_names,
            soft_mask_dir=self.soft_mask_dir if masks else None,
        )

    def synthetic_size_tag(self) -> str:
        return f"{ALIGNED_FRAME[0]}x{ALIGNED_FRAME[1]}"

    def write_synthetic(self, directory: Path) -> None:
        from datamodules.synthetic import write_celeba

        write_celeba(
            directory,
            num_images=self.synthetic_images,
            seed=self.seed,
            image_size=ALIGNED_FRAME,
            visible_bald=self.visible_bald,
        )


def synthetic_label_mask(label: np.ndarray, image_size: int, mask_size: int) -> torch.Tensor:
    """The exact label map of a synthetic 178x218 face cut with the crop CelebA(crop="stgan") applies to the
    image, resized (nearest) to ``mask_size``² and one-hot: what a perfect parser of the crop would output."""
    top, left, side = stgan_crop_box(image_size)
    sample = FaceSample(image=np.zeros((*label.shape, 3), np.uint8), label=label)
    sample = resize(crop(sample, top, left, side, side), (mask_size, mask_size))
    return one_hot_soft_mask(sample.label, NUM_CELEBAMASK_CLASSES)


def write_synthetic_label_masks(
    directory: Path, num_images: int, seed: int, image_size: int, mask_size: int, visible_bald: bool = False
) -> None:
    """One-hot soft masks of every face ``write_celeba`` writes (same seed, world option and order), in the
    parse-cache layout."""
    from datamodules.synthetic import SyntheticFaceWorld

    world = SyntheticFaceWorld(seed, visible_bald=visible_bald)
    for i in range(num_images):
        label = world.face(i, ALIGNED_FRAME).label
        save_soft_mask(directory, f"{i + 1:06d}", synthetic_label_mask(label, image_size, mask_size))


@torch.no_grad()
def write_parser_masks(directory: Path, checkpoint: str | None, dataset: CelebA, batch_size: int = 16) -> None:
    """Soft masks of a trained FaceParser over ``dataset`` (the same crop and size), in the parse-cache layout."""
    from portrait_models.parsing import FaceParser

    if not checkpoint or not Path(checkpoint).is_file():
        raise MissingDataError(f"parser checkpoint not found: {checkpoint} (train one with `make train-parser`)")
    parser = FaceParser.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for batch in loader:
        for name, probs in zip(batch["name"], parser.parse(batch["image"]), strict=True):
            save_soft_mask(directory, name, probs)
