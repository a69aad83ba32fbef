"""Pure tensor functions behind the metrics: no state, no modules, no I/O."""

from metrics.functional.fid import frechet_distance, gaussian_from_sums, kid_from_features, to_uint8
from metrics.functional.image import (
    mse_per_image,
    psnr_per_image,
    ssim_per_image,
    ssim_skimage014_per_image,
    to_unit_range,
)
from metrics.functional.parsing import (
    confusion_histogram,
    helen_component_f1,
    helen_overall_f1,
    parsing_scores,
)

__all__ = [
    "confusion_histogram",
    "frechet_distance",
    "gaussian_from_sums",
    "helen_component_f1",
    "helen_overall_f1",
    "kid_from_features",
    "mse_per_image",
    "parsing_scores",
    "psnr_per_image",
    "ssim_per_image",
    "ssim_skimage014_per_image",
    "to_uint8",
    "to_unit_range",
]
