"""Faces of any image folder labelled by a face parser (Gu et al.'s extra training faces).

Gu et al. train on Helen's 2,000 faces plus 20,000 VGGFace2 faces whose masks come from a parser trained on
Helen (paper §4). Here the masks are the argmax of the soft masks that ``experiments.parse --dataset folder``
caches for a folder of photos (VGGFace2, CelebA's ``img_align_celeba``, your own)::

    python -m experiments.parse --checkpoint <11-class parser.ckpt> --dataset folder \\
        --data /data/vggface2/train --out /data/vggface2/parser_masks_11 --image-size 256

The folder is read recursively (``.jpg``, ``.jpeg``, ``.png``); an image's name is its path below the root
without the suffix (``n000002/0001_01``), which is also its cache file (``<cache>/n000002/0001_01.npz``). A
folder has no split lists: a name's CRC-32 picks its split (1 in 20 test, 1 in 20 val, the rest train), so
adding images never moves the others.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from datamodules.base import IMAGE_SUFFIXES, DatasetError, FaceDataset, read_rgb
from datamodules.labels import NUM_HELEN_CLASSES
from datamodules.transforms import FaceSample

FOLDER_PARSE_COMMAND = (
    "python -m experiments.parse --checkpoint <11-class parser.ckpt> --dataset folder --data {root} --out {cache}"
    " --image-size 256"
)


def folder_split(name: str) -> str:
    """The split of image ``name``: CRC-32 mod 20 is 0 -> test, 1 -> val, otherwise train."""
    bucket = zlib.crc32(name.encode()) % 20
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def list_images(root: Path) -> dict[str, Path]:
    """Name (relative path without suffix, '/'-separated) -> image path, for every image below ``root``."""
    images = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            name = path.relative_to(root).with_suffix("").as_posix()
            if name in images:
                raise DatasetError(f"{images[name]} and {path} have the same name {name!r}; keep one of them")
            images[name] = path
    return images


class ParsedImageFolder(FaceDataset):
    """Photos of a folder with Helen-class masks from a parser cache (see the module docstring).

    Items: ``image``, ``name`` and, when ``parser_masks`` is given, ``label`` (Helen's 11 classes, the argmax
    of the cached soft mask). Without ``parser_masks`` the items carry no label: that is what
    ``experiments.parse`` reads to build the cache.

    Args:
        root: the image folder (read recursively).
        split: ``train``, ``val``, ``test`` (:func:`folder_split`) or ``all``.
        image_size: output side.
        augment, photometric: flip (with left/right label swap) and colour jitter.
        parser_masks: the cache folder of ``experiments.parse --dataset folder`` (11 classes); one error names
            the first missing file and the command that builds the cache.
        align: warp each face so the parsed eye and mouth centres sit at Gu et al.'s canonical positions
            (``datamodules.helen.align_face``; a face whose parse lacks an eye or the mouth is only resized).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        image_size: int = 64,
        augment: bool = False,
        *,
        photometric: bool = False,
        parser_masks: str | os.PathLike[str] | None = None,
        align: bool = False,
    ) -> None:
        if align and parser_masks is None:
            raise ValueError("align=True places the faces by their parsed eyes and mouth: give parser_masks")
        super().__init__(
            root, split, image_size, augment=augment, photometric=photometric, num_classes=NUM_HELEN_CLASSES
        )
        images = list_images(self.root)
        if not images:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found below {self.root}")
        names = [n for n in images if split == "all" or folder_split(n) == split]
        self._set_items(names, "the CRC-32 split of the image names")
        self.paths = images
        self.align = align
        self.parser_masks: Path | None = None
        if parser_masks is not None:
            from datamodules.soft_masks import require_soft_mask_cache

            self.parser_masks = require_soft_mask_cache(parser_masks, names, self.root, FOLDER_PARSE_COMMAND)

    def load(self, index: int) -> FaceSample:
        name = self.items[index]
        image = read_rgb(self.paths[name])
        if self.parser_masks is None:
            return FaceSample(image=image, extras={"name": name})
        from datamodules.soft_masks import load_soft_mask

        label = load_soft_mask(self.parser_masks, name, NUM_HELEN_CLASSES).argmax(0).numpy().astype(np.uint8)
        if self.align:
            from datamodules.helen import align_face

            image, label = align_face(image, label, self.image_size[0])
        return FaceSample(image=image, label=label, extras={"name": name})
