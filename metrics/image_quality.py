"""Reconstruction quality (PSNR, SSIM, MSE) of generated images against their references."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.functional.image import mse_per_image, psnr_per_image, ssim_per_image, to_unit_range


class ImageQuality(Metric):
    """Mean per-image PSNR (dB), SSIM and MSE of ``fake`` against ``real``, both given in ``[-1, 1]``.

    Images are mapped to ``[0, 1]`` (:func:`metrics.functional.image.to_unit_range`) and scored with
    ``data_range = 1``. The set score is the **mean of per-image scores** (the paper-table convention), not
    the PSNR of the pooled MSE; one exact reconstruction makes the mean PSNR ``inf``. The MSE is on the
    ``[0, 1]`` scale. States are float64 sums plus a count (``dist_reduce_fx="sum"``), so any split of the
    data over batches and processes gives the same result.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    psnr_sum: Tensor
    ssim_sum: Tensor
    mse_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for name in ("psnr_sum", "ssim_sum", "mse_sum", "count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, fake: Tensor, real: Tensor) -> None:
        """Add a batch of generated images and their references, ``(B, 3, H, W)`` in ``[-1, 1]``."""
        fake, real = to_unit_range(fake).float(), to_unit_range(real).float()  # per-image scores in float32
        self.psnr_sum += psnr_per_image(fake, real).sum()
        self.ssim_sum += ssim_per_image(fake, real).sum()
        self.mse_sum += mse_per_image(fake, real).sum()
        self.count += fake.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """``psnr``, ``ssim`` and ``mse``: float64 means over all images seen."""
        if self.count == 0:
            raise RuntimeError("ImageQuality.compute() called before any image was added")
        return {
            "psnr": self.psnr_sum / self.count,
            "ssim": self.ssim_sum / self.count,
            "mse": self.mse_sum / self.count,
        }
