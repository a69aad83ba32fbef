"""Dataset readers and LightningDataModules, one file per dataset family.

``from datamodules import CelebAMaskHQ, Helen, CelebA, EmotionLandmarks`` (and the DataModules) work as
usual; the names are imported on first use so that ``import datamodules.labels`` stays light (no
Lightning, OpenCV or albumentations import for code that only needs the label tables).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "DatasetError": "base",
    "MissingDataError": "base",
    "FaceDataset": "base",
    "FaceDataModule": "base",
    "CelebAMaskHQ": "celebamaskhq",
    "CelebAMaskHQDataModule": "celebamaskhq",
    "Helen": "helen",
    "HelenDataModule": "helen",
    "CelebA": "celeba",
    "CelebADataModule": "celeba",
    "EmotionLandmarks": "emotion",
    "EmotionPairs": "emotion",
    "EmotionLandmarksDataModule": "emotion",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # explicit re-exports for type checkers and IDEs
    from datamodules.base import DatasetError as DatasetError
    from datamodules.base import FaceDataModule as FaceDataModule
    from datamodules.base import FaceDataset as FaceDataset
    from datamodules.base import MissingDataError as MissingDataError
    from datamodules.celeba import CelebA as CelebA
    from datamodules.celeba import CelebADataModule as CelebADataModule
    from datamodules.celebamaskhq import CelebAMaskHQ as CelebAMaskHQ
    from datamodules.celebamaskhq import CelebAMaskHQDataModule as CelebAMaskHQDataModule
    from datamodules.emotion import EmotionLandmarks as EmotionLandmarks
    from datamodules.emotion import EmotionLandmarksDataModule as EmotionLandmarksDataModule
    from datamodules.emotion import EmotionPairs as EmotionPairs
    from datamodules.helen import Helen as Helen
    from datamodules.helen import HelenDataModule as HelenDataModule


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"datamodules.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
