"""Per-image PSNR, SSIM and MSE of generated images against references, on images in ``[0, 1]``.

Generator outputs live in ``[-1, 1]``; :func:`to_unit_range` maps them to ``[0, 1]`` (clamping
first), and every score below is then computed with ``data_range = 1`` given explicitly, never inferred
from the data. Scores are per image ``(B,)``; how they are averaged over a set is the metric's choice
(:class:`metrics.image_quality.ImageQuality` takes the mean of per-image values).
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

# SSIM window of Wang et al. (2004): an 11-tap Gaussian with sigma 1.5, constants K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_KERNEL_SIZE = 11


def to_unit_range(images: Tensor) -> Tensor:
    """``[-1, 1]`` → ``[0, 1]``: ``(x.clamp(-1, 1) + 1) / 2``."""
    if not images.is_floating_point():
        raise ValueError(f"expected floating-point images in [-1, 1], got dtype {images.dtype}")
    return (images.clamp(-1, 1) + 1) / 2


def _check_pair(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape or preds.dim() != 4:
        raise ValueError(
            f"expected two image batches (B, C, H, W) of equal shape, got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )


def mse_per_image(preds: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each image ``(B,)``."""
    _check_pair(preds, target)
    return (preds - target).square().flatten(1).mean(dim=1)


def psnr_per_image(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB of each image ``(B,)``: ``10 log10(data_range² / MSE)`` with the MSE over that image's
    pixels and channels; ``inf`` for an exact reconstruction."""
    _check_pair(preds, target)
    return peak_signal_noise_ratio(preds, target, data_range=data_range, reduction="none", dim=(1, 2, 3))


def ssim_per_image(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of each image ``(B,)`` with an 11×11 Gaussian window (sigma 1.5), averaged over channels and
    over the pixels whose window lies inside the image.

    torchmetrics averages the SSIM map over the whole image, border included (computed on a
    reflect-padded image); here the 5-pixel border is cropped first, which reproduces
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
    and Wang et al.'s reference implementation. Images must be larger than 10 pixels on each side.
    """
    _check_pair(preds, target)
    if min(preds.shape[-2:]) < SSIM_KERNEL_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_KERNEL_SIZE} pixels per side, got {tuple(preds.shape)}")
    _, ssim_map = structural_similarity_index_measure(
        preds,
        target,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        data_range=data_range,
        reduction="none",
        return_full_image=True,
    )
    border = SSIM_KERNEL_SIZE // 2
    return ssim_map[..., border:-border, border:-border].mean(dim=(1, 2, 3))


def ssim_skimage014_per_image(preds: Tensor, target: Tensor) -> Tensor:
    """SSIM of each image ``(B,)`` as PortraitGAN's (and much 2018-2020 code's) numbers were computed:
    ``skimage.measure.compare_ssim(a, b, multichannel=True)`` of scikit-image <= 0.15 on float images in
    [0, 1], whose defaults were a 7×7 **uniform** window, the sample covariance (N / (N - 1)), K1 = 0.01,
    K2 = 0.03 and ``data_range = 2`` (the float dtype's nominal range (-1, 1), not the data's); the 3-pixel
    border is cropped and the map averaged per channel, then over channels. Equal to today's
    ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, win_size=7, data_range=2.0)``.
    """
    import torch.nn.functional as F

    _check_pair(preds, target)
    win = 7
    if min(preds.shape[-2:]) < win:
        raise ValueError(f"SSIM needs images of at least {win} pixels per side, got {tuple(preds.shape)}")
    x, y = preds.double(), target.double()
    mean = lambda t: F.avg_pool2d(t, win, stride=1)  # noqa: E731 - valid windows = skimage's cropped map
    ux, uy = mean(x), mean(y)
    cov_norm = win * win / (win * win - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2
    ssim = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return ssim.mean(dim=(2, 3)).mean(dim=1).to(preds.dtype)
