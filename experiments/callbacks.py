"""Runner callbacks that every experiment gets.

Sample grids, and what makes runs survive: per-epoch reseeding with the RNG state carried through
checkpoints (exact resume mid-epoch), a guard that stops on a non-finite loss term before anything is
saved, a ``last.ckpt`` every N batches written atomically, and SLURM's requeue signal turned into a
checkpoint at the next batch boundary plus ``scontrol requeue``."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce
from torchvision.utils import save_image

from portrait_models.distributed import world


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
        batches = batches_done(trainer) + 1
        if self.every_n_steps > 0 and batches % self.every_n_steps == 0:
            self.save(trainer, pl_module, batches)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer, pl_module, batches_done(trainer))


class FreshStepMetrics(pl.Callback):
    """Each logged training row holds the values logged in that batch only.

    Lightning keeps the last value of every step metric logged earlier in the epoch and writes it again in the
    rows of later batches: a MaskGAN row of the DMN phase repeated the MaskVAE terms of the batch before, a
    Gu et al. unpaired row the D terms of the last paired one. Those rows reported values not computed at that
    batch, and after a mid-epoch resume (which starts with no earlier values) the first rows differed from the
    uninterrupted run's. Clearing the cached step values of ``training_step`` before each batch drops them.
    """

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        results = trainer._results  # Lightning's result collection of the running loop
        for metric in results.values() if results is not None else ():
            if metric.meta.fx == "training_step" and metric.meta.on_step and not metric.meta.on_epoch:
                metric._forward_cache = None


class EpochSeed(pl.Callback):
    """Reseed every RNG at each epoch start from (seed, epoch); carry the RNG state through checkpoints.

    Shuffling and augmentation depend only on (seed, epoch, position) (``datamodules.resumable``), and the
    model's own randomness (dropout, noise, VAE sampling) on the epoch seed and the batches done since. A
    checkpoint taken mid-epoch stores the RNG states; a run resumed from it restores them before its first
    batch (Lightning calls no ``on_train_epoch_start`` when it resumes inside an epoch), so it takes exactly
    the random numbers an uninterrupted run takes.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._pending: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._pending = None  # a fresh epoch: its seed decides, not a restored state
        pl.seed_everything(self.seed + 1000 * trainer.current_epoch, workers=True, verbose=False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get("rng_state")


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states as tensors and plain numbers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), torch.tensor(words, dtype=torch.int64), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, words, gauss_next = state["python"]
    random.setstate((version, tuple(int(w) for w in words.tolist()), gauss_next))


# ------------------------------------------------------------------------------------ checkpoints
class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary sibling and rename it into place: a killed process leaves the
    previous file intact, never half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def flush_loggers(trainer: pl.Trainer) -> None:
    """Write buffered metrics (the CSV logger keeps up to 100 rows in memory) before a checkpoint."""
    for logger in trainer.loggers:
        logger.save()


class BatchStartCheckpoint(Checkpoint):
    """Base of the callbacks that save from ``on_train_batch_start`` (see :func:`save_last`).

    Lightning adds one to its logging step (``_batches_that_stepped``) on every restart, because its own
    saves happen before that counter moves for the batch; at a batch start it has already moved, so the saved
    value is taken back by one and the resumed run logs at the steps an uninterrupted run logs at.
    """

    _saving: bool = False  # set by save_last around its save; one adjustment per save

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if BatchStartCheckpoint._saving:
            BatchStartCheckpoint._saving = False
            loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
            loop["_batches_that_stepped"] -= 1


def batches_done(trainer: pl.Trainer) -> int:
    """Training batches completed so far, counting on from the checkpoint in a resumed run. (Lightning's
    ``total_batch_idx`` runs one ahead after a resume from a batch-start save, where the batch about to start
    is already counted as ready; in ``on_train_batch_start`` this is that batch's 0-based index.)"""
    return trainer.fit_loop.epoch_loop.batch_progress.total.completed


def save_last(trainer: pl.Trainer, path: Path, why: str) -> None:
    """Save ``path`` from ``on_train_batch_start``: the state after the batches done so far."""
    flush_loggers(trainer)
    BatchStartCheckpoint._saving = True
    try:
        trainer.save_checkpoint(path)
    finally:
        BatchStartCheckpoint._saving = False
    if trainer.is_global_zero:  # a line the kill/resume tests (and people tailing logs) wait for
        batches = batches_done(trainer)
        print(f"checkpoint: {path} at batch {batches} ({why})", flush=True)


class PeriodicCheckpoint(BatchStartCheckpoint):
    """Rewrite ``path`` (the run's ``last.ckpt``) after every ``every_n_batches`` training batches.

    It saves when the next batch starts, the same state as right after the batch, but with that batch's
    metrics already logged (Lightning logs them after ``on_train_batch_end``), so the CSV history on disk
    always reaches the checkpoint. The non-finite guard has checked the batch by then: a diverged state
    is never saved.
    """

    def __init__(self, path: str | Path, every_n_batches: int):
        self.path = Path(path)
        self.every_n_batches = every_n_batches
        self.saved_at = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        done = batches_done(trainer)  # batches completed before this one
        if self.every_n_batches > 0 and done > self.saved_at and done % self.every_n_batches == 0:
            self.saved_at = done
            save_last(trainer, self.path, f"every {self.every_n_batches} batches")

    def state_dict(self) -> dict[str, Any]:
        return {"saved_at": self.saved_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved_at = int(state_dict.get("saved_at", 0))


class FinalCheckpoint(BatchStartCheckpoint):
    """Write ``path`` (``last.ckpt``) when training ends normally and no checkpoint holds the final state yet (a
    run that stops on ``max_steps`` or on its own schedule before its first validation would leave none).

    ``on_train_end`` runs only after a normal end: a run stopped by the non-finite guard (or preempted) raises
    first, so a diverged state still never reaches ``last.ckpt``. The state saved is the one after the last
    batch, as a batch-start save sees it (see :func:`save_last`), so ``run.ckpt_path=last`` continues from it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def saved_step(self) -> int | None:
        """The global step ``path`` holds (None: no readable file)."""
        try:
            return int(torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
        except Exception:  # noqa: BLE001 - absent or unreadable: write it
            return None

    def on_train_end(self, trainer, pl_module) -> None:
        stale = trainer.is_global_zero and self.saved_step() != trainer.global_step
        if trainer.strategy.broadcast(stale, 0):  # every rank takes part in the save
            save_last(trainer, self.path, "training ended")


# -------------------------------------------------------------------------------- non-finite guard
class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stopped before saving that state."""


class NonFiniteGuard(pl.Callback):
    """Stop the run at the first batch whose loss terms are not all finite, with one message naming the term,
    the phase and the batch.

    Reads every ``train/...`` value the system logged this batch (``trainer.callback_metrics``) and, when the
    system sets it, ``pl_module.last_loss_terms`` (name -> detached scalar); the phase is ``pl_module.phase``
    as it stood when the batch started. Finite terms can still come with an update that made a weight
    NaN/Inf (a NaN learning rate, an overflowing step), so the trainable weights are checked too (one fused
    max-abs). It runs before the checkpoint callbacks and raises, so a diverged state never reaches
    ``last.ckpt``; under DDP all ranks agree before stopping.
    """

    def __init__(self, last_checkpoint: str | Path | None = None):
        self.last_checkpoint = Path(last_checkpoint) if last_checkpoint else None
        self._phase: str | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        phase = getattr(pl_module, "phase", None)
        self._phase = None if phase is None else str(phase)

    @staticmethod
    def terms(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        found = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for name, value in (getattr(pl_module, "last_loss_terms", None) or {}).items():
            found[f"last_loss_terms[{name!r}]"] = value
        return {k: torch.as_tensor(v).detach() for k, v in found.items()}

    @staticmethod
    def bad_weight(pl_module: pl.LightningModule) -> str | None:
        """The first trainable parameter holding a NaN/Inf (max |w| over all of them in one fused call)."""
        named = [(n, p.detach()) for n, p in pl_module.named_parameters() if p.requires_grad]
        if not named:
            return None
        peaks = torch.stack(torch._foreach_norm([p for _, p in named], float("inf")))
        if bool(torch.isfinite(peaks).all()):
            return None
        return next(n for (n, _), peak in zip(named, peaks) if not torch.isfinite(peak))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        terms = self.terms(trainer, pl_module)
        finite = {k: bool(torch.isfinite(v).all()) for k, v in terms.items()}
        bad = [k for k, ok in finite.items() if not ok]
        weight = None if bad else self.bad_weight(pl_module)  # this batch's update may have diverged
        if not trainer.strategy.reduce_boolean_decision(bool(bad) or weight is not None, all=False):
            return
        batches = batches_done(trainer) + 1
        where = f"batch {batches} (epoch {trainer.current_epoch}, batch_idx {batch_idx}, "
        where += f"global_step {trainer.global_step})"
        phase = f"phase {self._phase!r}" if self._phase is not None else "no phases"
        kept = ""
        if self.last_checkpoint is not None:
            kept = (
                f" The last good checkpoint, {self.last_checkpoint}, was not overwritten."
                if self.last_checkpoint.is_file()
                else " No checkpoint had been written yet."
            )
        if not bad and weight is None:
            raise NonFiniteLossError(f"a loss term or weight became non-finite on another process at {where}.{kept}")
        if not bad:
            raise NonFiniteLossError(
                f"non-finite weight {weight} after the update of {where}, {phase} (the loss terms were finite).{kept}"
            )
        bad.sort(key=lambda k: (k.endswith("/total") or k.endswith("loss"), k))  # name a term, not the sum
        first = bad[0]
        flat = terms[first].float().reshape(-1)
        value = float(flat[~torch.isfinite(flat)][0])
        others = f"; also non-finite: {', '.join(bad[1:])}" if len(bad) > 1 else ""
        raise NonFiniteLossError(
            f"non-finite loss term {first} = {'nan' if math.isnan(value) else value} in {phase} at {where}"
            f"{others}.{kept}"
        )


# -------------------------------------------------------------------------------------------- SLURM
class Preempted(Exception):
    """The run saved a checkpoint on SLURM's requeue signal and stopped; the requeued job resumes it."""


class SlurmRequeue(BatchStartCheckpoint):
    """On ``signum`` (SLURM's ``--signal=USR1@<seconds>``), save ``path`` before the next batch, ask
    ``scontrol requeue <job>`` for a new allocation and stop.

    Lightning's own handler saves from inside the signal handler, in the middle of a step; waiting for the
    batch boundary makes the saved state one an uninterrupted run passes through, so the requeued job
    resumes exactly. All ranks agree on the batch at which they stop.
    """

    def __init__(self, path: str | Path, signum: int = signal.SIGUSR1):
        self.path = Path(path)
        self.signum = signum
        self.received = False

    def on_fit_start(self, trainer, pl_module) -> None:
        signal.signal(self.signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = True

    @staticmethod
    def job_id() -> str:
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        save_last(trainer, self.path, f"signal {signal.Signals(self.signum).name}")
        requeued = ""
        if trainer.is_global_zero:
            job = self.job_id()
            try:
                done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                requeued = f"; scontrol requeue {job}: " + ("ok" if done.returncode == 0 else done.stderr.strip())
            except FileNotFoundError:
                requeued = "; scontrol not found, not requeued (resume with run.ckpt_path=last)"
            print(f"preempted{requeued}", file=sys.stderr, flush=True)
        raise Preempted(f"saved {self.path} on signal {self.signum}{requeued}")


# --------------------------------------------------------------------------------- DDP BatchNorm
class _GlobalBatchStats:
    """Mixed into a BatchNorm class: in training under a process group, normalise with the statistics of the
    global batch (sum and squared deviations all-reduced, gradients flowing back through the reductions), so W
    ranks with batch B normalise as one process with batch W·B does. Outside DDP, or in eval mode, the base
    class's forward."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world()[0] == 1:
            return super().forward(x)  # type: ignore[misc]
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() // x.shape[1])
        total = all_reduce(torch.cat([x.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / n  # biased, as BatchNorm normalises
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)  # unbiased, as BatchNorm tracks
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


class GlobalBatchNorm(LayerSync):
    """``trainer.sync_batchnorm=true`` on CPU (gloo), where ``torch.nn.SyncBatchNorm`` refuses to run: every
    BatchNorm layer's class is switched in place to a subclass with :class:`_GlobalBatchStats`, so parameters,
    buffers, optimizer references and state-dict keys stay as they are; :meth:`revert` switches back."""

    _classes: dict[type, type] = {}

    def apply(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            cls = type(module)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not issubclass(cls, _GlobalBatchStats):
                if cls not in self._classes:
                    self._classes[cls] = type(f"Global{cls.__name__}", (_GlobalBatchStats, cls), {})
                module.__class__ = self._classes[cls]
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            if isinstance(module, _GlobalBatchStats):
                module.__class__ = next(c for c in type(module).__mro__[1:] if not issubclass(c, _GlobalBatchStats))
        return model
