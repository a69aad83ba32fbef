"""FID and KID as torchmetrics ``Metric``s with cached real statistics.

Both extract features with one frozen network (the standard FID Inception unless another is given),
keep the real-image states across ``reset()`` when ``reset_real_features=False`` (real statistics are
computed once per run), and can save/load those real states to an ``.npz`` file under a *protocol* key
(e.g. ``"val_2k_inception-v3-compat"``): the reference set is processed once per protocol, not per run.

Images go in either as ``uint8`` ``(B, 3, H, W)`` or as floats in ``[-1, 1]``, converted by the fixed
:func:`metrics.functional.fid.to_uint8`. Precomputed features ``(B, D)`` can be passed instead, so FID
and KID can share one forward pass of the extractor.
"""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat, rank_zero_warn

from metrics.functional.fid import frechet_distance, gaussian_from_sums, kid_from_features, to_uint8
from metrics.inception import FrozenExtractor, build_fid_inception, frozen_extractor

# Side length of the dummy image used to find the feature dimension of an extractor that does not declare it.
_PROBE_SIZE = 299


def _check_protocol(protocol: str) -> None:
    if not protocol or "/" in protocol:
        raise ValueError(f"a statistics protocol must be a non-empty name without '/', got {protocol!r}")


def _process_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _FeatureStatisticsMetric(Metric):
    """Shared machinery: the frozen extractor, image → feature conversion, and real-state keep/save/load.

    Subclasses name their real-image states in ``_real_states``; those survive ``reset()`` unless
    ``reset_real_features`` and are what :meth:`save_real_statistics` writes.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    _real_states: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.extractor: FrozenExtractor = (
            build_fid_inception() if feature_extractor is None else frozen_extractor(feature_extractor)
        )
        self.num_features = num_features or self.extractor.num_features or self._probe_num_features()
        self.reset_real_features = reset_real_features

    def _probe_num_features(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE, dtype=torch.uint8)
            return int(self._extract_uint8(probe).shape[1])

    @property
    def extractor_name(self) -> str:
        return self.extractor.name

    def extract(self, images: Tensor) -> Tensor:
        """Features ``(B, D)`` in float64 of ``uint8`` images or of float images in ``[-1, 1]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        if images.is_floating_point():
            images = to_uint8(images)
        elif images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images or floats in [-1, 1], got dtype {images.dtype}")
        with torch.no_grad():
            return self._extract_uint8(images)

    def _extract_uint8(self, images: Tensor) -> Tensor:
        features = self.extractor(images)
        return features.reshape(images.shape[0], -1).double()

    def _features_of(self, images: Tensor | None, features: Tensor | None) -> Tensor:
        if (images is None) == (features is None):
            raise ValueError("pass exactly one of `images` or `features`")
        features = self.extract(images) if features is None else features.double()
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features (B, {self.num_features}), got shape {tuple(features.shape)}")
        return features

    # ------------------------------------------------------------------------------- real statistics
    def reset(self) -> None:
        """Reset all states, except the real-image states when ``reset_real_features=False``."""
        if self.reset_real_features:
            super().reset()
            return
        kept = {name: deepcopy(getattr(self, name)) for name in self._real_states}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)

    def save_real_statistics(self, path: str | Path, protocol: str) -> None:
        """Write the real-image states to ``path`` (``.npz``) under ``protocol``, keeping other protocols.

        Under DDP the states are gathered from all processes first and only rank 0 writes; call it on
        every rank.
        """
        _check_protocol(protocol)
        with self.sync_context():
            arrays = {f"{protocol}/{name}": self._state_array(name) for name in self._real_states}
        if _process_rank() != 0:
            return
        path = Path(path)
        stored = dict(np.load(path)) if path.is_file() else {}
        stored.update(arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, **stored)
        os.replace(temporary, path)

    def load_real_statistics(self, path: str | Path, protocol: str) -> None:
        """Replace the real-image states with those saved under ``protocol`` in ``path``.

        Under DDP only rank 0 holds the loaded states (the others hold empty ones), so the sum across
        processes at ``compute()`` counts them exactly once.

        Raises:
            FileNotFoundError: no such file.
            KeyError: the file has no statistics for this protocol (the message lists those it has).
            ValueError: the stored feature dimension differs from this extractor's.
        """
        _check_protocol(protocol)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"real statistics file {path} does not exist")
        with np.load(path) as stored:
            missing = [name for name in self._real_states if f"{protocol}/{name}" not in stored]
            if missing:
                available = sorted({key.split("/")[0] for key in stored.files})
                kind = type(self).__name__
                raise KeyError(f"{path} has no {kind} statistics for protocol {protocol!r}; it has {available}")
            arrays = {name: stored[f"{protocol}/{name}"] for name in self._real_states}
        for name, array in arrays.items():
            self._set_state_array(name, array, path, keep=_process_rank() == 0)

    @classmethod
    def has_real_statistics(cls, path: str | Path | None, protocol: str) -> bool:
        """Whether ``path`` exists and holds this metric's real states saved under ``protocol``."""
        if path is None or not Path(path).is_file():
            return False
        with np.load(path) as stored:
            return all(f"{protocol}/{name}" in stored.files for name in cls._real_states)

    def _state_array(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        value = dim_zero_cat(value) if isinstance(value, list) else value
        return value.detach().cpu().numpy()

    def _set_state_array(self, name: str, array: np.ndarray, path: Path, keep: bool) -> None:
        """Check a loaded state against this metric's shape; install it (``keep``) or an empty state."""
        current = getattr(self, name)
        value = torch.from_numpy(array).to(device=self.device, dtype=torch.float64)
        is_list = isinstance(current, list)
        if is_list:
            expected, valid = (
                f"(N, {self.num_features})",
                value.dim() == 2 and value.shape[1] == self.num_features,
            )
        else:
            expected, valid = str(tuple(current.shape)), value.shape == current.shape
        if not valid:
            raise ValueError(
                f"{path}: {name} has shape {tuple(value.shape)}, expected {expected} for extractor "
                f"{self.extractor_name!r}"
            )
        if is_list:
            setattr(self, name, [value] if keep else [])
        else:
            setattr(self, name, value if keep else torch.zeros_like(current))


class FID(_FeatureStatisticsMetric):
    """Fréchet Inception Distance with states that sum across batches and processes.

    States (float64, ``dist_reduce_fx="sum"``): per set (real / fake) the feature sum ``(D,)``, the sum of
    outer products ``(D, D)`` and the count; ``compute`` forms mean and unbiased covariance from them
    (:func:`metrics.functional.fid.gaussian_from_sums`) and the distance
    (:func:`metrics.functional.fid.frechet_distance`). The result equals torch-fidelity's and
    torchmetrics' FID on the same features.

    Args:
        feature_extractor: module ``uint8 (B,3,H,W) → (B, D)``; default the standard FID Inception.
        num_features: ``D``; default the extractor's ``num_features`` or a probe with a dummy image.
        reset_real_features: also clear the real statistics on ``reset()``; default ``False`` keeps them,
            so a training run extracts the reference set once.
    """

    _real_states = ("real_sum", "real_outer_sum", "real_count")

    real_sum: Tensor
    real_outer_sum: Tensor
    real_count: Tensor
    fake_sum: Tensor
    fake_outer_sum: Tensor
    fake_count: Tensor

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = False,
        **kwargs: Any,
    ):
        super().__init__(feature_extractor, num_features, reset_real_features, **kwargs)
        d = self.num_features
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_outer_sum", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def real_samples(self) -> int:
        """Real samples accumulated in this process."""
        return int(self.real_count.item())

    def update(self, images: Tensor | None = None, real: bool = False, features: Tensor | None = None) -> None:
        """Add real or generated ``images`` (or their precomputed ``features`` ``(B, D)``)."""
        features = self._features_of(images, features)
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + features.sum(dim=0))
        setattr(self, f"{prefix}_outer_sum", getattr(self, f"{prefix}_outer_sum") + features.T @ features)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + features.shape[0])

    def compute(self) -> Tensor:
        """FID (float64 scalar). Needs at least 2 real and 2 generated samples."""
        if self.real_count < 2 or self.fake_count < 2:
            raise RuntimeError(
                f"FID needs at least 2 real and 2 generated samples, got {int(self.real_count)} real and "
                f"{int(self.fake_count)} generated"
            )
        mu_real, sigma_real = gaussian_from_sums(self.real_sum, self.real_outer_sum, self.real_count)
        mu_fake, sigma_fake = gaussian_from_sums(self.fake_sum, self.fake_outer_sum, self.fake_count)
        return frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real)


class KID(_FeatureStatisticsMetric):
    """Kernel Inception Distance (Bińkowski et al. 2018) with torch-fidelity's defaults.

    Unbiased MMD² with the cubic polynomial kernel ``(<x, y> / D + 1)³``, averaged over ``subsets`` random
    subsets of ``subset_size`` samples (:func:`metrics.functional.fid.kid_from_features`). KID needs the
    raw features, so the states are feature lists concatenated across processes (``dist_reduce_fx="cat"``).

    When either set has fewer than ``subset_size`` samples, ``compute`` lowers the subset size to the
    smaller set size and warns (torch-fidelity raises instead): the estimate stays unbiased, only its
    variance grows; the sample count is part of every logged KID key, so runs stay comparable.

    Args:
        feature_extractor, num_features, reset_real_features: as in :class:`FID`.
        subsets, subset_size, degree, gamma, coef0, seed: the KID protocol (torch-fidelity defaults).
    """

    _real_states = ("real_features",)

    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = False,
        subsets: int = 100,
        subset_size: int = 1000,
        degree: int = 3,
        gamma: float | None = None,
        coef0: float = 1.0,
        seed: int = 2020,
        **kwargs: Any,
    ):
        super().__init__(feature_extractor, num_features, reset_real_features, **kwargs)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.degree, self.gamma, self.coef0 = degree, gamma, coef0
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor | None = None, real: bool = False, features: Tensor | None = None) -> None:
        """Add real or generated ``images`` (or their precomputed ``features`` ``(B, D)``)."""
        features = self._features_of(images, features)
        (self.real_features if real else self.fake_features).append(features)

    def compute(self) -> tuple[Tensor, Tensor]:
        """KID mean and standard deviation over the subsets (float64 scalars)."""
        if not self.real_features or not self.fake_features:
            raise RuntimeError("KID needs both real and generated samples; one of the sets is empty")
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        subset_size = min(self.subset_size, len(real), len(fake))
        if subset_size < self.subset_size:
            rank_zero_warn(
                f"KID subset_size lowered from {self.subset_size} to {subset_size}: only {len(real)} real "
                f"and {len(fake)} generated samples"
            )
        return kid_from_features(fake, real, self.subsets, subset_size, self.degree, self.gamma, self.coef0, self.seed)
