"""Frozen evaluation networks: face identity (ArcFace, dlib) and the CelebA attribute classifier.

``FaceEmbedder`` is the one interface the identity metric needs; ArcFace and dlib both satisfy it.
The attribute classifier lives in :mod:`portrait_models.classifiers.attributes` (it imports Lightning, so
it is not imported here).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from portrait_models.classifiers.arcface import ArcFaceEmbedder, IResNet, iresnet
from portrait_models.classifiers.dlib_face import DlibFaceEmbedder


@runtime_checkable
class FaceEmbedder(Protocol):
    """Maps faces to unit-length identity vectors whose cosine measures same-person similarity."""

    embedding_dim: int

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [-1, 1] → (B, embedding_dim), each row of L2 norm 1."""


__all__ = ["ArcFaceEmbedder", "DlibFaceEmbedder", "FaceEmbedder", "IResNet", "iresnet"]
