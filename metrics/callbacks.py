"""Lightning callbacks that drive the metrics during validation.

The callbacks own their metrics and frozen evaluator networks (so those stay out of model checkpoints)
and talk to the LightningModule only through :class:`SupportsMetricSamples`:
``pl_module.metric_samples(batch)`` returns generated images from the EMA generator and their references.

* :class:`FIDCallback`: FID (and optionally KID) from a fixed number of samples of a fixed validation
  subset, real statistics computed once, logged as ``val/fid_<protocol>`` (``val/fid_2k``).
* :class:`ParsingCallback`: a frozen face parser on generated images against the target masks.
* :class:`ImageQualityCallback`: PSNR / SSIM / MSE of reconstructions.

Every metric state sums across processes and ``compute()`` runs on all ranks (it is a collective under
DDP), so the logged value is the same on every rank; it is logged without ``sync_dist``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from metrics.fid import FID, KID
from metrics.image_quality import ImageQuality
from metrics.inception import build_fid_inception, frozen_extractor
from metrics.parsing import ParsingAccuracy
from portrait_models.layers.frozen import FrozenModule


@runtime_checkable
class SupportsMetricSamples(Protocol):
    """What a LightningModule provides so that the metric callbacks can evaluate it."""

    def metric_samples(self, batch: dict) -> dict[str, Tensor]:
        """From the EMA generator, in eval mode, no grad. Returns at least 'fake' (B,3,H,W in [-1,1]) and
        'real' (B,3,H,W in [-1,1]); optionally 'label' (B,H,W int64: the target mask the fake should follow)
        and 'source' (the input image whose identity should be kept)."""


def protocol_name(num_samples: int) -> str:
    """Sample count as it appears in metric keys: 2000 → ``"2k"``, 50000 → ``"50k"``, 200 → ``"200"``,
    1500 → ``"1500"`` (StyleGAN's ``fid50k`` naming; no dots in keys)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    return f"{num_samples // 1000}k" if num_samples % 1000 == 0 else str(num_samples)


def get_metric_samples(
    pl_module: LightningModule, batch: Any, required: tuple[str, ...] = ("fake", "real")
) -> dict[str, Tensor]:
    """Call ``pl_module.metric_samples(batch)`` without gradients and check the keys the caller needs."""
    if not isinstance(pl_module, SupportsMetricSamples):
        raise TypeError(
            f"{type(pl_module).__name__} has no metric_samples(batch) method; the metric callbacks need it "
            "(see metrics.callbacks.SupportsMetricSamples)"
        )
    with torch.no_grad():
        samples = pl_module.metric_samples(batch)
    missing = [key for key in required if key not in samples]
    if missing:
        raise KeyError(
            f"{type(pl_module).__name__}.metric_samples() returned keys {sorted(samples)}, missing {missing}"
        )
    return samples


def _samples_of_step(
    outputs: Any, pl_module: LightningModule, batch: Any, required: tuple[str, ...]
) -> dict[str, Tensor]:
    """The samples of a validation batch: what ``validation_step`` returned when it returned the
    ``metric_samples`` dict (so several callbacks share one generator pass), else a fresh call."""
    if isinstance(outputs, Mapping) and all(key in outputs for key in required):
        return dict(outputs)
    return get_metric_samples(pl_module, batch, required)


def _should_run(trainer: Trainer, every_n_epochs: int) -> bool:
    """Epochs 1-based, as Lightning's ``check_val_every_n_epoch``: with 5, after epochs 5, 10, ..."""
    return (trainer.current_epoch + 1) % every_n_epochs == 0


def _check_every_n_epochs(every_n_epochs: int) -> int:
    if every_n_epochs < 1:
        raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
    return every_n_epochs


class FIDCallback(Callback):
    """FID (and optionally KID) of the EMA generator on a fixed validation subset.

    Protocol: the first ``num_samples`` items of the validation dataset (in dataset order, no shuffling,
    no sampler padding; under DDP rank ``r`` of ``w`` takes items ``r, r + w, ...``) are batched with
    ``batch_size`` and passed through ``pl_module.metric_samples``; fakes and reals are converted to
    ``uint8`` with the fixed :func:`metrics.functional.fid.to_uint8`. Real statistics are computed at the
    first evaluation and kept for the rest of the run; with ``real_stats_path`` they are also saved to /
    loaded from that ``.npz`` under the key ``<dataloader>_<n>_<H>x<W>_<extractor>``.

    Skipped during the sanity check and under ``fast_dev_run``; otherwise runs after every
    ``every_n_epochs``-th validation epoch, on all ranks. Logs ``val/fid_<protocol_name(n)>`` and its
    running minimum ``…_best`` (plus ``val/kid_<n>`` and ``val/kid_<n>_std`` when ``kid=True``); with
    ``dataloader="train"`` the keys end in ``_train``.

    Args:
        num_samples: generated (and real) images per evaluation; the dataset must have at least this many.
        every_n_epochs: evaluate after every n-th validation epoch.
        feature_extractor: ``uint8 (B,3,H,W) → (B, D)``; default the standard FID Inception, loaded from the
            weight cache in ``setup`` (a missing file stops the run there, naming file and sha256; under
            ``fast_dev_run`` nothing is loaded).
        batch_size: generator batch size of the evaluation pass.
        dataloader: which loader's dataset supplies the subset: ``"val"`` (the protocol) or ``"train"``.
        kid: also compute KID (shares the feature pass with FID).
        kid_subsets, kid_subset_size: KID protocol (the subset size is lowered with a warning when
            ``num_samples`` is smaller).
        real_stats_path: optional ``.npz`` cache of real statistics shared across runs.
        num_workers: workers of the evaluation loader.
    """

    def __init__(
        self,
        num_samples: int = 2000,
        every_n_epochs: int = 1,
        feature_extractor: nn.Module | None = None,
        batch_size: int = 32,
        dataloader: Literal["val", "train"] = "val",
        kid: bool = False,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        real_stats_path: str | Path | None = None,
        num_workers: int = 0,
    ):
        if dataloader not in ("val", "train"):
            raise ValueError(f"dataloader must be 'val' or 'train', got {dataloader!r}")
        self.num_samples = num_samples
        self.protocol = protocol_name(num_samples) + ("" if dataloader == "val" else "_train")
        self.every_n_epochs = _check_every_n_epochs(every_n_epochs)
        self.feature_extractor = feature_extractor
        self.batch_size = batch_size
        self.dataloader = dataloader
        self.use_kid = kid
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.real_stats_path = Path(real_stats_path) if real_stats_path is not None else None
        self.num_workers = num_workers
        self.fid: FID | None = None
        self.kid: KID | None = None
        self.real_passes = 0  # how many times real statistics were extracted (once per run)
        self.best = float("inf")
        self._real_ready = False

    @property
    def fid_key(self) -> str:
        return f"val/fid_{self.protocol}"

    @property
    def kid_key(self) -> str:
        return f"val/kid_{self.protocol}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Build the metrics (and load the Inception weights) before anything runs, so a missing weight
        file stops the run at once; not under ``fast_dev_run``, where FID never runs."""
        if self.fid is not None or trainer.fast_dev_run:
            return
        extractor = (
            frozen_extractor(self.feature_extractor) if self.feature_extractor is not None else build_fid_inception()
        )
        self.fid = FID(feature_extractor=extractor, reset_real_features=False)
        if self.use_kid:
            self.kid = KID(
                feature_extractor=extractor,
                reset_real_features=False,
                subsets=self.kid_subsets,
                subset_size=self.kid_subset_size,
            )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or not _should_run(trainer, self.every_n_epochs):
            return
        metrics = [m for m in (self.fid, self.kid) if m is not None]
        for metric in metrics:
            metric.to(pl_module.device).reset()  # keeps the cached real states
        extract_real, stats_key = not self._real_ready, ""
        for index, batch in enumerate(self._fixed_subset(trainer)):
            samples = get_metric_samples(pl_module, move_data_to_device(batch, pl_module.device))
            if index == 0 and extract_real:
                stats_key = self._stats_key(samples["real"])
                extract_real = not self._load_real_statistics(stats_key)
            self._update(samples["fake"], real=False)
            if extract_real:
                self._update(samples["real"], real=True)
        if extract_real:
            self.real_passes += 1
            self._save_real_statistics(stats_key)
        self._real_ready = True
        self._log(pl_module)

    def _fixed_subset(self, trainer: Trainer) -> DataLoader:
        source = trainer.val_dataloaders if self.dataloader == "val" else trainer.train_dataloader
        if isinstance(source, Mapping):
            source = next(iter(source.values()))
        elif isinstance(source, (list, tuple)):
            source = source[0]
        if not isinstance(source, DataLoader):
            raise TypeError(f"FIDCallback needs a DataLoader as {self.dataloader} loader, got {type(source).__name__}")
        size = len(source.dataset)  # type: ignore[arg-type]
        if size < self.num_samples:
            raise ValueError(
                f"FIDCallback(num_samples={self.num_samples}) needs at least that many {self.dataloader} "
                f"items, the {self.dataloader} dataset has {size}; lower num_samples"
            )
        indices = range(trainer.global_rank, self.num_samples, trainer.world_size)
        return DataLoader(
            Subset(source.dataset, indices),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=source.collate_fn,
            num_workers=self.num_workers,
        )

    def _update(self, images: Tensor, real: bool) -> None:
        assert self.fid is not None
        features = self.fid.extract(images)
        self.fid.update(features=features, real=real)
        if self.kid is not None:
            self.kid.update(features=features, real=real)

    def _stats_key(self, real: Tensor) -> str:
        assert self.fid is not None
        height, width = real.shape[-2:]
        return f"{self.dataloader}_{self.num_samples}_{height}x{width}_{self.fid.extractor_name}"

    def _load_real_statistics(self, key: str) -> bool:
        """Load the cached real states saved under ``key``, if the stats file has them for every metric."""
        metrics = [m for m in (self.fid, self.kid) if m is not None]
        path = self.real_stats_path
        if path is None or not all(metric.has_real_statistics(path, key) for metric in metrics):
            return False
        for metric in metrics:
            metric.load_real_statistics(path, key)
        return True

    def _save_real_statistics(self, key: str) -> None:
        if self.real_stats_path is None:
            return
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.save_real_statistics(self.real_stats_path, key)

    def _log(self, pl_module: LightningModule) -> None:
        assert self.fid is not None
        fid = float(self.fid.compute())
        self.best = min(self.best, fid)
        pl_module.log(self.fid_key, fid)
        pl_module.log(f"{self.fid_key}_best", self.best)
        if self.kid is not None:
            kid_mean, kid_std = self.kid.compute()
            pl_module.log(self.kid_key, float(kid_mean))
            pl_module.log(f"{self.kid_key}_std", float(kid_std))

    @property
    def state_key(self) -> str:
        """Distinct per protocol, so several FID callbacks (e.g. 2k and 10k) can share a checkpoint."""
        return self._generate_state_key(protocol=self.protocol)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]


class _PerBatchMetricCallback(Callback, ABC):
    """Shared loop of the cheap validation metrics: reset at epoch start, update on the first
    ``max_batches`` batches of the first validation loader, compute on all ranks and log at epoch end.

    These also run in the sanity check and under ``fast_dev_run`` (their cost is a few batches), so a
    broken ``metric_samples`` fails before the first training epoch.
    """

    required: tuple[str, ...] = ("fake", "real")

    def __init__(self, metric: Any, every_n_epochs: int, max_batches: int | None):
        self.metric = metric
        self.every_n_epochs = _check_every_n_epochs(every_n_epochs)
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        self.max_batches = max_batches
        self._active = False

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = _should_run(trainer, self.every_n_epochs)
        if self._active:
            self.metric.to(pl_module.device).reset()

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active or dataloader_idx != 0:
            return
        if self.max_batches is not None and batch_idx >= self.max_batches:
            return
        with torch.no_grad():
            self.update(_samples_of_step(outputs, pl_module, batch, self.required))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active:
            return
        self._active = False
        for key, value in self.results().items():
            pl_module.log(key, float(value))

    @abstractmethod
    def update(self, samples: dict[str, Tensor]) -> None:
        """Feed one batch of ``metric_samples`` to the metric."""

    @abstractmethod
    def results(self) -> dict[str, Tensor]:
        """The scalars to log, keyed by their logged names; called on all ranks."""


class ParsingCallback(_PerBatchMetricCallback):
    """Parse generated images with a frozen face parser and score the result against the target masks.

    Measures how well a mask-conditioned generator follows its mask: ``parser(fake)`` against
    ``metric_samples(batch)["label"]``. Logs ``val/parse_pixel_acc``, ``val/parse_miou`` and
    ``val/parse_mean_f1``.

    Args:
        parser: maps images ``(B,3,H,W)`` in ``[-1,1]`` to class scores ``(B,C,h,w)`` (resized bilinearly to
            the mask size when they differ) or labels ``(B,H,W)``; a tuple output uses its first element
            (BiSeNet's main head). It is frozen: no gradients, locked in eval mode, not in checkpoints.
        num_classes: ``C``, in the order of the labels ``metric_samples`` returns.
        every_n_epochs: evaluate after every n-th validation epoch.
        max_batches: evaluate the first ``max_batches`` validation batches (``None``: all).
        ignore_index: target value whose pixels are not counted.
    """

    required = ("fake", "real", "label")

    def __init__(
        self,
        parser: nn.Module,
        num_classes: int,
        every_n_epochs: int = 1,
        max_batches: int | None = None,
        ignore_index: int | None = None,
    ):
        super().__init__(ParsingAccuracy(num_classes, ignore_index=ignore_index), every_n_epochs, max_batches)
        self.parser = parser if isinstance(parser, FrozenModule) else FrozenModule(parser)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self.parser.to(pl_module.device)

    def update(self, samples: dict[str, Tensor]) -> None:
        label = samples["label"]
        output = self.parser(samples["fake"])
        scores = output[0] if isinstance(output, (tuple, list)) else output
        if scores.dim() == 4 and scores.shape[-2:] != label.shape[-2:]:
            scores = F.interpolate(scores.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
        self.metric.update(scores, label)

    def results(self) -> dict[str, Tensor]:
        scores = self.metric.compute()
        return {f"val/parse_{name}": scores[name] for name in ("pixel_acc", "miou", "mean_f1")}


class ImageQualityCallback(_PerBatchMetricCallback):
    """PSNR / SSIM / MSE of ``fake`` against ``real`` (reconstruction quality), logged as ``val/psnr``,
    ``val/ssim`` and ``val/mse``; means of per-image scores on images mapped to ``[0, 1]``
    (:class:`metrics.image_quality.ImageQuality`)."""

    def __init__(self, every_n_epochs: int = 1, max_batches: int | None = None):
        super().__init__(ImageQuality(), every_n_epochs, max_batches)

    def update(self, samples: dict[str, Tensor]) -> None:
        self.metric.update(samples["fake"], samples["real"])

    def results(self) -> dict[str, Tensor]:
        return {f"val/{name}": value for name, value in self.metric.compute().items()}
