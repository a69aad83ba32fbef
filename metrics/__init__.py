"""Evaluation metrics in three layers.

``metrics.functional`` holds pure tensor functions; the torchmetrics ``Metric`` classes re-exported here
keep states that sum across batches and processes; ``metrics.callbacks`` drives them from Lightning
through the LightningModule's ``metric_samples(batch)``.
"""

from metrics.attributes import AttributeEditAccuracy
from metrics.fid import FID, KID
from metrics.identity import IdentityVerification
from metrics.image_quality import ImageQuality
from metrics.inception import (
    FrozenExtractor,
    RandomConvFeatureExtractor,
    build_fid_inception,
    frozen_extractor,
)
from metrics.mre import MaskAwareReconstructionError
from metrics.parsing import ParsingAccuracy

__all__ = [
    "AttributeEditAccuracy",
    "FID",
    "IdentityVerification",
    "MaskAwareReconstructionError",
    "KID",
    "FrozenExtractor",
    "ImageQuality",
    "ParsingAccuracy",
    "RandomConvFeatureExtractor",
    "build_fid_inception",
    "frozen_extractor",
]
