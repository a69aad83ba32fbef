"""FID and KID from feature statistics, in float64, plus the one fixed image → uint8 conversion they use.

These are the formulas of torch-fidelity 0.4 (``metric_fid.py``, ``metric_kid.py``), the reference the
project's numbers are checked against (tests/test_metrics_fid.py), written for torch tensors.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor


def to_uint8(images: Tensor) -> Tensor:
    """Map generator images in ``[-1, 1]`` to ``uint8`` in ``[0, 255]`` with one fixed formula.

    ``((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)``: -1 → 0, 0 → 128 (127.5 rounds half to even,
    giving 128), 1 → 255. Values outside ``[-1, 1]`` are clamped. The mapping never depends on the batch
    (no per-batch min-max normalisation), so real and generated images are quantised identically, the way
    image files on disk are. Half-precision inputs are converted to float32 first (bf16 cannot hold the
    intermediate values to the nearest integer).
    """
    if not images.is_floating_point():
        raise ValueError(f"to_uint8 expects floating-point images in [-1, 1], got dtype {images.dtype}")
    if images.dtype in (torch.float16, torch.bfloat16):
        images = images.float()
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def gaussian_from_sums(feature_sum: Tensor, outer_sum: Tensor, count: Tensor | float) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (``np.cov`` convention, divisor ``n - 1``) from running sums.

    Args:
        feature_sum: ``(D,)`` sum of feature vectors.
        outer_sum: ``(D, D)`` sum of outer products ``f fᵀ``.
        count: number of vectors ``n`` (at least 2).
    """
    n = float(count)
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {n:g}")
    mean = feature_sum.double() / n
    cov = (outer_sum.double() - n * torch.outer(mean, mean)) / (n - 1)
    return mean, cov


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet distance between Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, computed in float64.

    ``d² = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^½)``.

    The trace term uses ``tr((sigma1 sigma2)^½) = Σ sqrt(λ_i(A sigma2 A))`` with ``A = sigma1^½``: the
    product ``sigma1 sigma2`` has the same eigenvalues as the symmetric PSD matrix ``A sigma2 A``, whose
    eigenvalues ``eigvalsh`` returns real (tiny negative round-off is clamped to 0). This needs no complex
    arithmetic and stays finite for singular covariances (fewer samples than feature dimensions).
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or mu1.dim() != 1:
        raise ValueError(f"means must be vectors of equal length, got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    expected = (mu1.numel(), mu1.numel())
    if sigma1.shape != expected or sigma2.shape != expected:
        raise ValueError(f"covariances must be {expected}, got {tuple(sigma1.shape)} and {tuple(sigma2.shape)}")
    sqrt_sigma1 = _psd_sqrt(sigma1)
    inner = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Principal square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> Tensor:
    """``k(x, y) = (gamma <x, y> + coef0) ** degree`` with ``gamma = 1 / D`` by default (KID's kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: Tensor, k_xy: Tensor, k_yy: Tensor) -> Tensor:
    """Unbiased squared MMD from kernel matrices of two equal-size samples (diagonals of ``k_xx``, ``k_yy``
    dropped; the cross term keeps its diagonal, torch-fidelity's ``mmd_est="unbiased"``)."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def kid_from_features(
    f1: Tensor,
    f2: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> tuple[Tensor, Tensor]:
    """Kernel Inception Distance: mean and standard deviation of the unbiased polynomial-kernel MMD² over
    ``subsets`` random subsets of ``subset_size`` vectors drawn without replacement from each set.

    Subsets are drawn exactly as torch-fidelity draws them (``np.random.RandomState(seed)``, first from
    ``f1`` then from ``f2`` for every subset; its default seed 2020), so the same features give the same
    KID; the kernel is evaluated in float64 here. The standard deviation is the population one (``ddof=0``).
    """
    if f1.dim() != 2 or f2.dim() != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"expected two (N, D) feature sets of equal D, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    if subset_size < 2 or subset_size > min(len(f1), len(f2)):
        raise ValueError(
            f"KID subset_size must be in [2, {min(len(f1), len(f2))}] for {len(f1)} and {len(f2)} samples, "
            f"got {subset_size}"
        )
    f1, f2 = f1.double(), f2.double()
    kernel = partial(polynomial_kernel, degree=degree, gamma=gamma, coef0=coef0)
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        x = f1[torch.from_numpy(rng.choice(len(f1), subset_size, replace=False)).to(f1.device)]
        y = f2[torch.from_numpy(rng.choice(len(f2), subset_size, replace=False)).to(f2.device)]
        mmds.append(mmd2_unbiased(kernel(x, x), kernel(x, y), kernel(y, y)))
    values = torch.stack(mmds)
    return values.mean(), values.std(correction=0)
