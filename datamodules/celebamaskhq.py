"""CelebAMask-HQ (Lee et al. 2020): 30,000 CelebA-HQ photos with 19-class face parsing and 40 attributes.

Read straight from the unpacked release. Part masks are merged into label maps once, by the official
rule, and cached as PNGs. Build the whole cache ahead of training (optional; otherwise it fills during the
first epoch) with::

    python -m datamodules.celebamaskhq build-labels /data/CelebAMask-HQ --workers 8
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.base import (
    PARTITION_SPLITS,
    DatasetError,
    FaceDataModule,
    FaceDataset,
    MissingDataError,
    atomic_write_png,
    file_names,
    image_size_of,
    parse_attribute_file,
    parse_partition_file,
    read_gray,
    read_lines,
    read_rgb,
    require_dir,
    require_file,
    require_listed,
    warn_once,
    writable_cache_dir,
)
from datamodules.labels import CELEBAMASK_PARTS, NUM_CELEBAMASK_CLASSES
from datamodules.transforms import FaceSample

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGES_PER_MASK_FOLDER = 2000
# First val and first test image of CelebA in its 1-based file numbering (000001.jpg is image 1).
CELEBA_FIRST_VAL, CELEBA_FIRST_TEST = 162771, 182638


def official_split(orig_idx: int) -> str:
    """The split ``g_partition.py`` gives a CelebA-HQ image from its ``orig_idx`` (0-based CelebA index).

    The official script compares the 0-based ``orig_idx`` with CelebA's 1-based boundaries, so
    orig_idx 162770 (file 162771.jpg, CelebA val) lands in train and orig_idx 182637 (182638.jpg, CelebA
    test) in val. Kept as is: it is what produced the quoted 24,183 / 2,993 / 2,824 counts.
    """
    if orig_idx >= CELEBA_FIRST_TEST:
        return "test"
    if orig_idx >= CELEBA_FIRST_VAL:
        return "val"
    return "train"


def part_path(mask_root: Path, index: int, part: str) -> Path:
    """``CelebAMask-HQ-mask-anno/{index // 2000}/{index:05d}_{part}.png``."""
    return mask_root / str(index // IMAGES_PER_MASK_FOLDER) / f"{index:05d}_{part}.png"


def merge_celebamask_parts(mask_root: Path, index: int, mask_size: tuple[int, int]) -> np.ndarray:
    """Merge the part masks of image ``index`` into a (H, W) uint8 label map, by the official rule.

    Parts are visited in the 19-class order (skin first, cloth last) and each writes its class where
    its channel 0 is non-zero, so later parts overwrite earlier ones (eyes over eyeglasses, hat over
    hair, neck and cloth over hair). A missing part file means the part is not visible.
    """
    label = np.zeros(mask_size, dtype=np.uint8)
    found = 0
    for class_id, part in enumerate(CELEBAMASK_PARTS, start=1):
        path = part_path(mask_root, index, part)
        if not path.is_file():
            continue
        found += 1
        mask = read_gray(path)
        if mask.shape != mask_size:
            raise DatasetError(
                f"part mask {path} is {mask.shape[0]}x{mask.shape[1]}; "
                f"expected {mask_size[0]}x{mask_size[1]} "
                "like the other masks of this dataset"
            )
        label[mask != 0] = class_id
    if not found:  # every face has at least skin: none at all is a missing download, not a blank face
        raise MissingDataError(
            f"no part mask of image {index} exists: expected files like {part_path(mask_root, index, 'skin')}"
        )
    return label


@dataclass(frozen=True)
class _Item:
    index: int  # CelebA-HQ id: the image is CelebA-HQ-img/{index}.jpg
    orig_file: str  # the CelebA file it comes from
    split: str


def _parse_mapping(path: Path) -> list[tuple[int, int, str]]:
    """Rows ``idx orig_idx orig_file`` of the mapping file. The header line is optional (the official
    README tells users to delete it before running ``g_partition.py``)."""
    lines = read_lines(path)
    if lines and lines[0].split() == ["idx", "orig_idx", "orig_file"]:
        lines = lines[1:]
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise DatasetError(f"{path}: row {number} is {line[:60]!r}; expected 'idx orig_idx orig_file'")
        rows.append((int(fields[0]), int(fields[1]), fields[2]))
    return rows


class CelebAMaskHQ(FaceDataset):
    """CelebAMask-HQ as it unpacks::

        root/
          CelebA-HQ-img/{i}.jpg                                   1024x1024 photos, i = 0..29999
          CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png   512x512 binary masks of the visible parts
          CelebA-HQ-to-CelebA-mapping.txt                          'idx orig_idx orig_file' (orig_idx 0-based)
          CelebAMask-HQ-attribute-anno.txt                         count, 40 names, rows '{i}.jpg +-1 x 40'
          list_eval_partition.txt                                  optional: CelebA's partition file

    Items: ``image`` (3,S,S) in [-1,1], ``label`` (S,S) int64 in the 19 official classes, ``attributes``
    (40,) float in {0,1}, ``name`` (the id as a string). Photos and masks cover the same field of view,
    so both are resized to ``image_size`` (labels with NEAREST) and stay aligned.

    Splits follow the official ``g_partition.py``: each image maps to CelebA through the mapping file and
    takes CelebA's partition. With a partition file (``partition_file``, or ``root/list_eval_partition.txt``
    when present) its value for ``orig_file`` is used; without one, the official script's boundary rule on
    ``orig_idx`` (:func:`official_split`, which is off by one at orig_idx 162770 and 182637) is used and a
    warning says so. The real release gives train 24,183 / val 2,993 / test 2,824 (the quoted official
    counts, which the two sources reproduce unless a boundary image is among the 30,000).

    Merged label maps are cached as ``{cache}/labels_{mask_side}/{i}.png`` where ``cache`` is ``cache_dir``,
    else ``root/.portrait_gans_cache``, else (read-only root) a folder under ``~/.cache/portrait-gans``.

    Args:
        root: the ``CelebAMask-HQ`` folder.
        split: ``train``, ``val``, ``test`` or ``all``.
        image_size: output side (or (height, width)).
        augment: random horizontal flip swapping l_/r_ eyes, brows and ears.
        photometric: colour jitter on top of the flip (when ``augment``).
        partition_file: CelebA's ``list_eval_partition.txt``.
        cache_dir: where merged label maps go.
        mask_size: expected (square) side of every part mask; None reads it from the first part file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        image_size: int | tuple[int, int] = 64,
        augment: bool = False,
        *,
        photometric: bool = False,
        partition_file: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        mask_size: int | None = None,
    ) -> None:
        super().__init__(
            root,
            split,
            image_size,
            augment=augment,
            photometric=photometric,
            num_classes=NUM_CELEBAMASK_CLASSES,
        )
        self.image_dir = require_dir(self.root / IMAGE_DIR, "CelebA-HQ image folder")
        self.mask_root = require_dir(self.root / MASK_DIR, "CelebAMask-HQ part-mask folder")
        mapping_path = require_file(self.root / MAPPING_FILE, "CelebA-HQ to CelebA mapping")
        mapping = _parse_mapping(mapping_path)
        splits = self._assign_splits(mapping, partition_file)
        items = [_Item(i, f, s) for (i, _, f), s in zip(mapping, splits, strict=True)]
        require_listed([f"{it.index}.jpg" for it in items], file_names(self.image_dir), self.image_dir, mapping_path)
        self._attributes = self._read_attributes(items)
        selected = [(n, it) for n, it in enumerate(items) if split in ("all", it.split)]
        self._set_items([it for _, it in selected], MAPPING_FILE)
        self._attributes = self._attributes[[n for n, _ in selected]]
        self.mask_size = self._mask_size(mask_size)
        preferred = Path(cache_dir) if cache_dir is not None else self.root / ".portrait_gans_cache"
        self.label_dir = writable_cache_dir(preferred / f"labels_{self.mask_size[0]}", "celebamaskhq-labels", self.root)

    # ---------------------------------------------------------------------------------- construction
    def _assign_splits(
        self, mapping: list[tuple[int, int, str]], partition_file: str | os.PathLike[str] | None
    ) -> list[str]:
        path = Path(partition_file) if partition_file is not None else self.root / PARTITION_FILE
        if partition_file is not None:
            require_file(path, "CelebA partition file")
        if not path.is_file():
            warn_once(
                f"no {PARTITION_FILE} in {self.root}; CelebAMask-HQ splits use the official g_partition.py "
                f"boundaries on the 0-based orig_idx "
                f"(val {CELEBA_FIRST_VAL} <= orig_idx < {CELEBA_FIRST_TEST})"
            )
            return [official_split(orig_idx) for _, orig_idx, _ in mapping]
        partition = parse_partition_file(path)
        missing = next((f for _, _, f in mapping if f not in partition), None)
        if missing is not None:
            raise DatasetError(f"{path} has no entry for {missing!r}, which {self.root / MAPPING_FILE} maps to")
        return [PARTITION_SPLITS[partition[f]] for _, _, f in mapping]

    def _read_attributes(self, items: list[_Item]) -> np.ndarray:
        path = require_file(self.root / ATTRIBUTE_FILE, "CelebAMask-HQ attribute file")
        table = parse_attribute_file(path)
        rows = {name: n for n, name in enumerate(table.names)}
        missing = next((it.index for it in items if f"{it.index}.jpg" not in rows), None)
        if missing is not None:
            raise DatasetError(f"{path} has no row for {missing}.jpg, which {MAPPING_FILE} lists")
        return table.values[[rows[f"{it.index}.jpg"] for it in items]]

    def _mask_size(self, mask_size: int | None) -> tuple[int, int]:
        if mask_size is not None:
            return mask_size, mask_size
        for it in self.items:
            for part in CELEBAMASK_PARTS:
                path = part_path(self.mask_root, it.index, part)
                if path.is_file():
                    return image_size_of(path)
        raise DatasetError(f"no part mask of the selected images exists under {self.mask_root}")

    # ---------------------------------------------------------------------------------------- access
    @property
    def attributes(self) -> np.ndarray:
        """(N, 40) float32 attributes in {0, 1} of the selected items, in item order and CelebA column
        order: what pair selection needs without decoding every image (a copy; editing it changes nothing)."""
        return self._attributes.astype(np.float32)

    def label_map(self, position: int) -> np.ndarray:
        """The merged (mask_size) label map of item ``position``, from the cache or merged and cached now."""
        index = self.items[position].index
        cached = self.label_dir / f"{index}.png"
        if cached.is_file():
            try:
                label = read_gray(cached)
                problem = (
                    f"is {label.shape[0]}x{label.shape[1]}, expected {self.mask_size[0]}x{self.mask_size[1]}"
                    if label.shape != self.mask_size
                    else f"holds label {int(label.max())} >= {NUM_CELEBAMASK_CLASSES}"
                    if label.max(initial=0) >= NUM_CELEBAMASK_CLASSES
                    else None
                )
            except DatasetError as err:  # truncated or garbage: a run killed mid-write by an older version
                problem = f"cannot be decoded ({err})"
            if problem is None:
                return label
            warn_once(f"stale label cache {cached} {problem}; merging the part masks again")
        label = merge_celebamask_parts(self.mask_root, index, self.mask_size)
        atomic_write_png(cached, label)
        return label

    def load(self, index: int) -> FaceSample:
        item = self.items[index]
        photo, label = self.image_dir / f"{item.index}.jpg", self.label_map(index)
        image = read_rgb(photo)
        (h, w), (mh, mw) = image.shape[:2], label.shape
        if h * mw != w * mh:  # 1024² photos and 512² masks share a field of view; another shape does not
            raise DatasetError(
                f"photo {photo} is {h}x{w} but its part masks ({part_path(self.mask_root, item.index, '*')}) are "
                f"{mh}x{mw}; expected the same aspect ratio (one field of view, as 1024x1024 and 512x512)"
            )
        return FaceSample(
            image=image,
            label=label,
            extras={
                "attributes": torch.from_numpy(self._attributes[index].astype(np.float32)),
                "name": str(item.index),
            },
        )

    def build_label_cache(self, num_workers: int = 0) -> None:
        """Merge and cache every label map of this split now (with a progress bar)."""
        positions = range(len(self))
        if num_workers > 0:
            with multiprocessing.Pool(num_workers) as pool:
                for _ in tqdm(pool.imap_unordered(self._cache_one, positions, chunksize=32), total=len(self)):
                    pass
        else:
            for position in tqdm(positions, total=len(self)):
                self._cache_one(position)

    def _cache_one(self, position: int) -> None:
        self.label_map(position)


class CelebAMaskHQDataModule(FaceDataModule):
    """Loaders over :class:`CelebAMaskHQ` (a real root or the synthetic default).

    Args (beyond :class:`~datamodules.base.FaceDataModule`'s):
        partition_file: CelebA's ``list_eval_partition.txt`` (default: ``root/list_eval_partition.txt``).
        cache_dir: where merged label maps are cached.
    """

    synthetic_layout = "celebamaskhq"

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
        partition_file: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(root, image_size, batch_size, num_workers, augment, photometric, synthetic_images, seed)
        self.partition_file = partition_file
        self.cache_dir = cache_dir

    def make_dataset(self, split: str, augment: bool) -> CelebAMaskHQ:
        return CelebAMaskHQ(
            self.data_root,
            split,
            self.image_size,
            augment,
            photometric=self.photometric,
            partition_file=self.partition_file,
            cache_dir=self.cache_dir,
        )

    def write_synthetic(self, directory: Path) -> None:
        from datamodules.synthetic import write_celebamaskhq

        # Masks at the image size (the release pairs 1024 px photos with 512 px masks; the reader handles
        # both, and full-size masks keep the synthetic labels pixel-aligned at small sizes).
        write_celebamaskhq(
            directory,
            num_images=self.synthetic_images,
            seed=self.seed,
            image_size=self.image_size,
            mask_size=self.image_size,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.celebamaskhq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-labels", help="merge and cache every label map")
    build.add_argument("root", help="the unpacked CelebAMask-HQ folder")
    build.add_argument("--cache-dir", default=None, help="where label maps go (default: beside the data)")
    build.add_argument("--workers", type=int, default=0, help="parallel processes")
    args = parser.parse_args(argv)
    CelebAMaskHQ(args.root, "all", cache_dir=args.cache_dir).build_label_cache(args.workers)


if __name__ == "__main__":
    main()
