"""Runner callbacks that every experiment gets: fixed-seed sample grids and per-epoch reseeding."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from torchvision.utils import save_image


class SampleGrid(pl.Callback):
    """Save (and log) a grid from a fixed set of validation items every ``every_n_steps`` training batches.

    The LightningModule provides ``sample_grid(batch) -> Tensor (3, H, W) in [0, 1]`` (for a parser:
    input | target | prediction). The items are the first ``num_images`` of the validation set, taken
    once, so successive grids show the same faces. PNGs land in ``<dirpath>/step_<batches>.png``; with
    a wandb logger they are also logged as images under ``samples`` (without forcing wandb's step, since
    ``trainer.global_step`` counts every optimizer step of a GAN).
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int = 200, num_images: int = 8):
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._batch: dict | None = None

    def _fixed_batch(self, trainer: pl.Trainer) -> dict | None:
        if self._batch is None:
            datamodule = trainer.datamodule
            dataset = getattr(datamodule, "val_dataset", None) if datamodule is not None else None
            if dataset is None:
                loader = datamodule.val_dataloader() if datamodule is not None else None
                dataset = getattr(loader, "dataset", None)
            if dataset is None or len(dataset) == 0:
                return None
            items = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
            self._batch = torch.utils.data.default_collate(items)
        return self._batch

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batches: int) -> Path | None:
        if not hasattr(pl_module, "sample_grid"):
            return None
        batch = self._fixed_batch(trainer)
        if batch is None:
            return None
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            grid = pl_module.sample_grid(batch).detach().float().cpu().clamp(0, 1)
        pl_module.train(was_training)
        if not trainer.is_global_zero:
            return None
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{batches:07d}.png"
        save_image(grid, path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(path)], caption=[f"batch {batches}"])
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        batches = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        if self.every_n_steps > 0 and batches % self.every_n_steps == 0:
            self.save(trainer, pl_module, batches)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module, trainer.fit_loop.epoch_loop.total_batch_idx + 1)


class EpochSeed(pl.Callback):
    """Reseed every RNG at each epoch start from (seed, epoch).

    Shuffling and augmentation then depend only on the epoch, so a run resumed from a checkpoint takes
    exactly the batches an uninterrupted run takes.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl.seed_everything(self.seed + 1000 * trainer.current_epoch, workers=True, verbose=False)
