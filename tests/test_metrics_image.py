"""PSNR / SSIM / MSE against scikit-image on the same images, the per-image averaging, and summable states."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from metrics.functional.image import psnr_per_image, ssim_per_image, to_unit_range
from metrics.image_quality import ImageQuality


def _pair(n: int = 4, size: int = 32, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference images in [-1, 1] and noisy reconstructions whose noise level differs per image."""
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(n, 3, size, size, generator=generator) * 2 - 1
    levels = torch.linspace(0.5, 1.5, n).view(n, 1, 1, 1) * noise
    fake = (real + levels * torch.randn(n, 3, size, size, generator=generator)).clamp(-1, 1)
    return fake, real


def _skimage_scores(fake: torch.Tensor, real: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image scores from scikit-image on HWC arrays in [0, 1]."""
    psnr, ssim, mse = [], [], []
    for f, r in zip(to_unit_range(fake).double(), to_unit_range(real).double(), strict=True):
        f, r = f.permute(1, 2, 0).numpy(), r.permute(1, 2, 0).numpy()
        psnr.append(peak_signal_noise_ratio(r, f, data_range=1))
        ssim.append(
            structural_similarity(
                r,
                f,
                data_range=1,
                channel_axis=2,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
        )
        mse.append(mean_squared_error(r, f))
    return {"psnr": np.array(psnr), "ssim": np.array(ssim), "mse": np.array(mse)}


def test_per_image_scores_match_scikit_image():
    fake, real = _pair()
    reference = _skimage_scores(fake, real)
    x, y = to_unit_range(fake).double(), to_unit_range(real).double()
    # torchmetrics converts ln → log10 with a float32 constant: agreement to ~5e-8 relative
    np.testing.assert_allclose(psnr_per_image(x, y).numpy(), reference["psnr"], rtol=1e-6)
    np.testing.assert_allclose(ssim_per_image(x, y).numpy(), reference["ssim"], rtol=1e-10)


def test_image_quality_is_the_mean_of_per_image_scores():
    fake, real = _pair()
    reference = _skimage_scores(fake, real)
    metric = ImageQuality()
    metric.update(fake, real)
    scores = metric.compute()
    for key in ("psnr", "ssim", "mse"):
        assert scores[key].item() == pytest.approx(reference[key].mean(), rel=1e-5), key
    # the per-image mean differs from the PSNR of the pooled MSE when images differ in quality
    pooled = 10 * math.log10(1 / reference["mse"].mean())
    assert abs(scores["psnr"].item() - pooled) > 0.1


def test_states_sum_over_batches_and_processes():
    fake, real = _pair(n=6)
    whole = ImageQuality()
    whole.update(fake, real)
    chunked = ImageQuality()
    for part in range(3):
        chunked.update(fake[2 * part : 2 * part + 2], real[2 * part : 2 * part + 2])
    rank0, rank1 = ImageQuality(), ImageQuality()
    rank0.update(fake[:1], real[:1])
    rank1.update(fake[1:], real[1:])
    rank0.merge_state(rank1)
    expected = whole.compute()
    for other in (chunked.compute(), rank0.compute()):
        for key, value in expected.items():
            torch.testing.assert_close(other[key], value, rtol=1e-6, atol=0)  # float32 per-image scores


def test_exact_reconstruction_and_mapping():
    _, real = _pair(n=2)
    metric = ImageQuality()
    metric.update(real.clone(), real)
    scores = metric.compute()
    assert math.isinf(scores["psnr"].item()) and scores["ssim"].item() == pytest.approx(1.0)
    assert scores["mse"].item() == 0.0
    assert to_unit_range(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_bad_inputs_get_clear_errors():
    fake, real = _pair(n=2)
    with pytest.raises(ValueError, match="equal shape"):
        psnr_per_image(fake, real[:, :, :16])
    with pytest.raises(ValueError, match="at least 11 pixels"):
        ssim_per_image(fake[..., :8, :8], real[..., :8, :8])
    with pytest.raises(ValueError, match="floating-point"):
        ImageQuality().update(fake, (real * 127).to(torch.uint8))
    with (
        pytest.warns(UserWarning, match="before the ``update``"),
        pytest.raises(RuntimeError, match="before any"),
    ):
        ImageQuality().compute()
