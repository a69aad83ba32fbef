"""What every dataset family shares: errors, file reading, caches, a Dataset base and a DataModule base.

- :class:`DatasetError` (a ``ValueError``) is the one error for bad input; :class:`MissingDataError` is
  also a ``FileNotFoundError``. Messages name the file and what was expected.
- Readers validate cheaply at construction (folders, file lists, headers, counts); decode errors at
  ``__getitem__`` time still name the file.
- Caches live in ``$PORTRAIT_GANS_CACHE`` (default ``~/.cache/portrait-gans``) unless a dataset root is
  writable and the family prefers a cache beside the data.
- :class:`FaceDataModule` reads a real root, or (``root=None``) writes a synthetic set in the family's
  real layout once into the cache and reads it with the same real reader.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules.labels import CELEBA_ATTRIBUTES, NUM_CELEBA_ATTRIBUTES
from datamodules.resumable import EpochSampler, SeededItems, ShardSampler
from datamodules.transforms import FaceSample, Interpolation, SampleTransform, as_size, to_batch

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test", "all")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or not in the expected format (the message says which)."""


class MissingDataError(DatasetError, FileNotFoundError):
    """A file or folder the layout requires does not exist."""


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise a ValueError listing them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


# ------------------------------------------------------------------------------------------ file access
def require_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path if it is an existing folder, else a MissingDataError naming ``what``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"{what} not found: {path} is not an existing folder")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is an existing file, else a MissingDataError naming ``what``."""
    if not path.is_file():
        raise MissingDataError(f"{what} not found: expected the file {path}")
    return path


def file_names(folder: Path) -> set[str]:
    """Names of the entries of ``folder`` (one ``listdir``, cheap even for 200k files)."""
    return set(os.listdir(folder))


def require_listed(names: Sequence[str], present: set[str], folder: Path, source: Path) -> None:
    """Raise a MissingDataError if a name listed in ``source`` is not a file in ``folder``."""
    missing = [n for n in names if n not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingDataError(f"{source} lists {missing[0]!r}, but {folder / missing[0]} does not exist{more}")


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise MissingDataError(f"image not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL: unidentified, truncated or corrupt data
        raise DatasetError(f"cannot decode image {path}: {err}; expected a readable JPEG/PNG file") from err
    return image


#: Photo file suffixes the folder readers accept (lower-case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; a DatasetError names the file if it cannot be decoded."""
    with _open_image(path) as image:
        return np.asarray(image.convert("RGB"))


def read_gray(path: Path) -> np.ndarray:
    """Decode a mask or probability map to (H, W) uint8.

    A grey file is read as is; of a colour (or palette) file, the channel that ``cv2.imread`` puts first
    (blue), which is what the official CelebAMask-HQ merge script tests with ``mask[..., 0] != 0``.
    A 16-bit grey file (``I;16``, e.g. a probability map saved with 65535 = probability 1) is rescaled to
    0..255 by its full range, not clipped at 255.
    """
    with _open_image(path) as image:
        if image.mode == "L":
            return np.asarray(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            wide = np.asarray(image).astype(np.float64)
            if image.mode == "I" and wide.max(initial=0) > 65535:
                raise DatasetError(f"{path}: 32-bit grey values up to {int(wide.max())}; expected 8- or 16-bit")
            return np.round(wide * (255 / 65535)).astype(np.uint8)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., 2])


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the file header only (no decoding)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise MissingDataError(f"image not found: {path}") from None
    except OSError as err:
        raise DatasetError(f"cannot read image header of {path}: {err}") from err
    return height, width


def read_lines(path: Path) -> list[str]:
    """Non-blank lines of a text file, stripped."""
    data = require_file(path, "annotation file").read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {err.start}, line {line}: {data[err.start : err.start + 4]!r}); "
            "expected a plain-text annotation file"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ attribute tables
@dataclass(frozen=True)
class AttributeTable:
    """A parsed CelebA-style attribute file: image names and their 40 attributes in {0, 1}."""

    names: list[str]
    values: np.ndarray  # (N, 40) uint8 in {0, 1}, columns in labels.CELEBA_ATTRIBUTES order


def parse_attribute_file(path: Path) -> AttributeTable:
    """Read ``list_attr_celeba.txt`` / ``CelebAMask-HQ-attribute-anno.txt``.

    Layout: line 1 the number of images; line 2 the 40 attribute names in CelebA order; then one row
    per image ``<file> v1 ... v40`` with ``v`` in {-1, 1} separated by irregular runs of spaces.
    Values map ``-1 -> 0, 1 -> 1`` (STGAN's ``(v + 1) // 2``). Count, header and rows are all checked.
    """
    lines = read_lines(path)
    if len(lines) < 2:
        raise DatasetError(f"{path}: expected a count line and a header of {NUM_CELEBA_ATTRIBUTES} attribute names")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise DatasetError(f"{path}: line 1 must be the number of images, got {lines[0][:60]!r}") from None
    header = lines[1].split()
    if tuple(header) != CELEBA_ATTRIBUTES:
        wrong = next((i for i, (a, b) in enumerate(zip(header, CELEBA_ATTRIBUTES, strict=False)) if a != b), None)
        detail = (
            f"got {len(header)} names"
            if wrong is None
            else f"name {wrong + 1} is {header[wrong]!r}, expected {CELEBA_ATTRIBUTES[wrong]!r}"
        )
        raise DatasetError(
            f"{path}: line 2 must hold the {NUM_CELEBA_ATTRIBUTES} CelebA attribute names in order; {detail}"
        )
    rows = [line.split() for line in lines[2:]]
    if len(rows) != count:
        raise DatasetError(f"{path}: line 1 announces {count} images but the file has {len(rows)} rows")
    bad = next((i for i, r in enumerate(rows) if len(r) != NUM_CELEBA_ATTRIBUTES + 1), None)
    if bad is not None:
        raise DatasetError(
            f"{path}: line {bad + 3} has {len(rows[bad])} fields; expected a file name and "
            f"{NUM_CELEBA_ATTRIBUTES} values"
        )
    raw = np.array([r[1:] for r in rows], dtype=np.str_).reshape(len(rows), NUM_CELEBA_ATTRIBUTES)
    invalid = ~np.isin(raw, ("1", "-1"))
    if invalid.any():
        i, j = np.argwhere(invalid)[0]
        raise DatasetError(f"{path}: line {i + 3}, {CELEBA_ATTRIBUTES[j]} is {str(raw[i, j])!r}; expected 1 or -1")
    return AttributeTable(names=[r[0] for r in rows], values=(raw == "1").astype(np.uint8))


def parse_partition_file(path: Path) -> dict[str, int]:
    """CelebA's ``list_eval_partition.txt``: lines ``000001.jpg 0`` (0 train, 1 val, 2 test), no header."""
    partition: dict[str, int] = {}
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DatasetError(f"{path}: line {number} is {line[:60]!r}; expected '<file> <0|1|2>'")
        partition[fields[0]] = int(fields[1])
    return partition


PARTITION_SPLITS: tuple[str, ...] = ("train", "val", "test")  # meaning of the values 0, 1, 2

_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


# ------------------------------------------------------------------------------------------------ caches
def cache_home() -> Path:
    """Root of every cache: ``$PORTRAIT_GANS_CACHE`` or ``~/.cache/portrait-gans``."""
    return Path(os.environ.get("PORTRAIT_GANS_CACHE") or Path.home() / ".cache" / "portrait-gans").expanduser()


def _is_writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def writable_cache_dir(preferred: Path, fallback_name: str, source: Path) -> Path:
    """``preferred`` if it can be created and written, else a folder under :func:`cache_home` keyed by
    ``source`` (e.g. for a read-only dataset root)."""
    if _is_writable_dir(preferred):
        return preferred
    key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    fallback = cache_home() / fallback_name / key / preferred.name
    if not _is_writable_dir(fallback):
        raise DatasetError(f"neither {preferred} nor {fallback} is a writable cache folder")
    log.info("cache folder %s is not writable; caching in %s", preferred, fallback)
    return fallback


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a PNG through a temporary file renamed into place (safe with parallel workers)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png")
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder and rename it to ``final`` when the block succeeds.

    If another process created ``final`` in the meantime, its copy wins and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-tmp-"))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- datasets
class FaceDataset(Dataset[dict[str, Any]], ABC):
    """Base of the readers: split check, the shared transform, and ``__getitem__`` -> batch contract.

    A subclass lists its items (calling :meth:`_set_items`, which rejects an empty split) and
    implements :meth:`load` (item index -> decoded :class:`FaceSample` at native resolution).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        image_size: int | tuple[int, int],
        *,
        augment: bool,
        photometric: bool,
        num_classes: int | None,
        interpolation: Interpolation = "auto",
    ) -> None:
        self.split = check_split(split)
        self.root = require_dir(root, f"{type(self).__name__} root")
        self.image_size = as_size(image_size)
        self.transform = SampleTransform(
            self.image_size,
            augment=augment,
            photometric=photometric,
            num_classes=num_classes,
            interpolation=interpolation,
        )
        self.items: list[Any] = []

    def _set_items(self, items: list[Any], source: str) -> None:
        if not items:
            raise DatasetError(f"split {self.split!r} of {self.root} is empty (according to {source})")
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    @abstractmethod
    def load(self, index: int) -> FaceSample:
        """Decode item ``index`` at its native resolution (before resizing and augmentation)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return to_batch(self.transform(self.load(index)))


# ------------------------------------------------------------------------------------------- datamodules
class FaceDataModule(L.LightningDataModule, ABC):
    """Train/val/test loaders over one dataset family, reading a real root or a synthetic default.

    Args:
        root: the unpacked public release; None writes (once) and reads a synthetic set in the same layout
            under ``<cache_home>/synthetic/<layout>-seed<seed>-n<N>-s<size>``.
        image_size: output side (square).
        batch_size: per-process batch size; the train loader drops the last incomplete batch.
        num_workers: DataLoader workers (persistent when > 0; the data order and augmentation do not depend on
            them, see :mod:`datamodules.resumable`).
        augment: random horizontal flip (with left/right label and landmark swap) on the train split.
        photometric: add colour jitter to the train augmentation.
        synthetic_images: number of synthetic faces written when ``root`` is None.
        seed: seed of the synthetic world (and of deterministic choices inside the datasets).
    """

    synthetic_layout: str = ""

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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # every constructor argument, subclasses' included, goes into checkpoints
        if batch_size < 1 or num_workers < 0 or synthetic_images < 1:
            raise ValueError(
                f"batch_size must be >= 1, num_workers >= 0 and synthetic_images >= 1; got {batch_size}, "
                f"{num_workers}, {synthetic_images}"
            )
        self.root = root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.photometric = photometric
        self.synthetic_images = synthetic_images
        self.seed = seed
        self.datasets: dict[str, FaceDataset] = {}
        self._resume_position: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint
        self._train_sampler: EpochSampler | None = None

    # ----------------------------------------------------------------------------- family-specific hooks
    @abstractmethod
    def make_dataset(self, split: str, augment: bool) -> FaceDataset:
        """The family's reader for ``split`` over :attr:`data_root`."""

    @abstractmethod
    def write_synthetic(self, directory: Path) -> None:
        """Write the synthetic set in the family's real layout into ``directory``."""

    def synthetic_size_tag(self) -> str:
        """The ``s<size>`` part of the synthetic folder name."""
        return str(self.image_size)

    # ------------------------------------------------------------------------------------ data location
    @property
    def synthetic_dir(self) -> Path:
        name = f"{self.synthetic_layout}-seed{self.seed}-n{self.synthetic_images}-s{self.synthetic_size_tag()}"
        return cache_home() / "synthetic" / name

    @property
    def data_root(self) -> Path:
        return Path(self.root).expanduser() if self.root is not None else self.synthetic_dir

    def prepare_data(self) -> None:
        """Write the synthetic set once (atomically) when no real root is given."""
        if self.root is None and not self.synthetic_dir.is_dir():
            log.info("writing synthetic %s data to %s", self.synthetic_layout, self.synthetic_dir)
            with atomic_directory(self.synthetic_dir) as tmp:
                self.write_synthetic(tmp)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # no-op when present; covers a setup() called without prepare_data()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split, augment=self.augment and split == "train")

    # ---------------------------------------------------------------------------------------- loaders
    def _loader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, "test"))
        dataset = self.datasets[split]
        if train and len(dataset) < self.batch_size:
            raise DatasetError(
                f"the train split of {self.data_root} has {len(dataset)} items, fewer than batch_size="
                f"{self.batch_size}; with drop_last no batch would remain"
            )
        if train:  # data order and augmentation a function of (seed, epoch, position): see resumable.py
            sampler = EpochSampler(dataset, shuffle=True, seed=self.seed)
            if self._resume_position is not None:
                epoch, batches = self._resume_position
                sampler.resume_at(epoch, batches * self.batch_size)
                self._resume_position = None
            dataset = SeededItems(dataset)
            self._train_sampler = sampler
        else:
            sampler = ShardSampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # worker base seeds: never drawn from the global RNG
        )

    # ------------------------------------------------------------------------------- exact resume
    def state_dict(self) -> dict[str, Any]:
        """Where the train loader stands when a checkpoint is taken: the epoch and batch it yields next."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit" or self._train_sampler is None:
            return {}
        epoch = self._train_sampler.current_epoch  # its own pass count: Lightning's can run ahead
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            epoch, done = epoch + 1, 0
        return {"train_position": [int(epoch), int(done)]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("train_position")
        self._resume_position = (int(position[0]), int(position[1])) if position else None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
