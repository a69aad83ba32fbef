"""Train any experiment: ``python -m experiments.train <experiment> [key=value ...]``.

The one place that wires things together: resolve the config, seed, build DataModule, LightningModule,
callbacks, logger and Trainer, then fit. ``--dry-run`` (or ``run.dry_run=true``) stops after building
everything; ``--print-config`` prints the resolved config and exits. ``--smoke`` applies the
experiment's ``smoke`` overrides and trains for two steps (what ``make smoke`` and the tests run).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from experiments.callbacks import (
    AtomicCheckpointIO,
    EpochSeed,
    FinalCheckpoint,
    FreshStepMetrics,
    GlobalBatchNorm,
    NonFiniteGuard,
    NonFiniteLossError,
    PeriodicCheckpoint,
    Preempted,
    SampleGrid,
    SlurmRequeue,
)
from experiments.config import ConfigError, available_experiments, compose, instantiate
from experiments.hardware import FP32_MATH_MODES, cpu_has_bf16, onednn_fp32_math
from experiments.sweep import wandb_logged_in

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR_ENV = "PORTRAIT_GANS_RUN_DIR"  # rank 0's run directory, inherited by the DDP processes it launches
SMOKE_OVERRIDES = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.precision=32-true",
    "trainer.benchmark=false",
    "trainer.max_steps=2",
    "data.num_workers=0",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "run.print_config=false",
    "run.sample_every_n_steps=1",
]


@dataclass
class TrainResult:
    cfg: DictConfig
    run_dir: Path
    trainer: pl.Trainer
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    preempted: bool = False  # stopped on SLURM's requeue signal after saving last.ckpt


# ------------------------------------------------------------------------------------------ helpers
def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parameter_counts(module: pl.LightningModule) -> dict[str, int]:
    counts = {f"params/{name}": sum(p.numel() for p in child.parameters()) for name, child in module.named_children()}
    counts["params/total"] = sum(p.numel() for p in module.parameters())
    counts["params/trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def describe(overrides: list[str]) -> str:
    """A short run-name suffix from the overrides: ``lr=1e-4 data.image_size=128`` -> ``lr1e-4-image_size128``."""
    parts = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("run.") or key.startswith("trainer.enable") or key in ("logger",):
            continue
        leaf = key.split(".")[-1]
        parts.append(re.sub(r"[^A-Za-z0-9_.+-]", "", f"{leaf}{value}")[:24])
    return "-".join(parts)


def wandb_mode(requested: str | None) -> str:
    """``requested`` if set, else the user's WANDB_MODE, else online only when a login is configured."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if wandb_logged_in() else "offline"


def find_last_checkpoint(out_dir: Path, experiment: str) -> Path:
    candidates = sorted((out_dir / experiment).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(
            f"run.ckpt_path=last: no checkpoints/last.ckpt under {out_dir / experiment}; nothing to resume"
        )
    return candidates[-1]


def slurm_job_id() -> str | None:
    """The SLURM job (``<array job>_<task>`` for array tasks) when running under SLURM's batch system."""
    if not SLURMEnvironment.detect():
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID")


class ResumedCSVLogger(CSVLogger):
    """A CSV logger that keeps an earlier ``metrics.csv`` of the same run (Lightning's writer deletes it).

    The earlier rows are written back at once, so a run killed again before logging keeps them; when the
    resumed run logs its first row, at step ``s``, earlier rows from ``s`` on (logged after the checkpoint
    it resumed from, and about to be redone) are dropped.
    """

    def __init__(self, *args: Any, history: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history: list[dict[str, Any]] | None = history
        if history and rank_zero_only.rank == 0:
            self.experiment.metrics.extend(history)
            self.experiment.save()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._history and step is not None and any(row["step"] >= step for row in self._history):
            writer = self.experiment
            kept = [row for row in self._history if row["step"] < step]
            keys = sorted(set().union(*kept)) if kept else writer.metrics_keys
            tmp = Path(writer.metrics_file_path + ".tmp")
            with open(tmp, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=keys)
                out.writeheader()
                out.writerows(kept)
            os.replace(tmp, writer.metrics_file_path)
            writer.metrics_keys = list(keys)
        self._history = None
        super().log_metrics(metrics, step)


def csv_history(metrics_csv: Path) -> list[dict[str, Any]]:
    """Rows of an earlier ``metrics.csv``; a row cut short by a killed process is dropped."""
    if not metrics_csv.is_file():
        return []
    rows = []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if None in row or None in row.values() or not row.get("step", "").isdigit():
                continue
            rows.append({k: (float(v) if k != "step" else int(v)) for k, v in row.items() if v != ""})
    return rows


def make_loggers(cfg: DictConfig, run_dir: Path, run_name: str, resuming: bool = False) -> list[Logger]:
    kind = cfg.logger.kind
    if kind == "none":
        return []
    metrics_csv = run_dir / "csv" / "metrics.csv"
    history = csv_history(metrics_csv) if resuming and rank_zero_only.rank == 0 else []
    # flushed at every logged step: what is on disk always reaches the last checkpoint
    loggers: list[Logger] = [
        ResumedCSVLogger(save_dir=str(run_dir), name="csv", version="", flush_logs_every_n_steps=1, history=history)
    ]
    if kind == "wandb":
        mode = wandb_mode(cfg.logger.mode)
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        logger = WandbLogger(
            name=run_name,
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            save_dir=str(run_dir),
            offline=mode == "offline",
            mode=mode if mode == "disabled" else None,
            id=run_id,
            resume="allow" if run_id else None,
            tags=list(cfg.logger.tags),
            log_model=cfg.logger.log_model,
        )
        if mode != "disabled" and rank_zero_only.rank == 0:
            id_file.write_text(logger.experiment.id)  # a resumed run continues this wandb run
        loggers.insert(0, logger)
    return loggers


def make_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    run = cfg.run
    last = run_dir / "checkpoints" / "last.ckpt"
    callbacks: list[pl.Callback] = [
        NonFiniteGuard(last),  # first: a diverged batch stops the run before any checkpoint callback runs
        # last.ckpt: rewritten at every validation / epoch end, what run.ckpt_path=last resumes from
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False),
        SampleGrid(run_dir / "samples", every_n_steps=run.sample_every_n_steps, num_images=run.num_sample_images),
        FinalCheckpoint(last),  # ... and when training ends, if no save holds the final state (no validation yet)
        FreshStepMetrics(),  # a logged row holds its own batch's values, not earlier batches' (exact resume)
    ]  # fmt: skip
    if run.save_every_n_steps:
        callbacks.append(
            ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step{step:08d}", save_top_k=-1,
                            every_n_train_steps=run.save_every_n_steps, auto_insert_metric_name=False)
        )  # fmt: skip
    if run.monitor:
        callbacks.append(
            ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=run.monitor,
                            mode=run.monitor_mode, save_top_k=1, enable_version_counter=False)
        )  # fmt: skip
    if run.checkpoint_every_n_steps:
        callbacks.append(PeriodicCheckpoint(last, run.checkpoint_every_n_steps))
    if slurm_job_id() is not None:
        callbacks.append(SlurmRequeue(last))
    if run.deterministic_epochs:
        callbacks.append(EpochSeed(run.seed))
    for section in (cfg.get("callbacks") or {}).values():
        if section.enabled:
            callbacks.append(instantiate(section))
    return callbacks


# --------------------------------------------------------------------------------------------- main
def train(experiment: str, overrides: list[str] | None = None, *, smoke: bool = False) -> TrainResult:
    overrides = list(overrides or [])
    if smoke:
        base = compose(experiment, [])
        overrides = [*map(str, base.get("smoke") or []), *SMOKE_OVERRIDES, *overrides]
    cfg = compose(experiment, overrides)
    run = cfg.run
    if run.print_config or run.dry_run:
        print(OmegaConf.to_yaml(cfg, resolve=True))

    out_dir = Path(run.out_dir)
    described = "" if smoke else describe(overrides)
    run_name = "-".join(s for s in (experiment, described, run.tag) if s)
    job = slurm_job_id()
    if os.environ.get(RUN_DIR_ENV) and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        run_dir = Path(os.environ[RUN_DIR_ENV])  # a DDP process launched by rank 0: rank 0's run
        ckpt_path = find_last_checkpoint(out_dir, experiment) if run.ckpt_path == "last" else None
        if run.ckpt_path not in (None, "last"):
            ckpt_path = Path(run.ckpt_path)
    elif run.ckpt_path == "last":
        ckpt_path = find_last_checkpoint(out_dir, experiment)
        run_dir = ckpt_path.parent.parent  # continue in the run's own directory
    elif job is not None and run.ckpt_path is None:
        # one directory per SLURM job, the same on every rank and for every requeue of the job
        run_dir = out_dir / experiment / "-".join(s for s in (f"slurm{job}", described, run.tag) if s)
        last = run_dir / "checkpoints" / "last.ckpt"
        ckpt_path = last if last.is_file() else None  # a requeued job resumes where it was preempted
    else:
        ckpt_path = Path(run.ckpt_path) if run.ckpt_path else None
        if ckpt_path is not None and not ckpt_path.is_file():
            raise ConfigError(f"run.ckpt_path: no checkpoint file at {ckpt_path}")
        stem = "-".join(s for s in (time.strftime("%Y%m%d-%H%M%S"), described, run.tag) if s)
        run_dir = out_dir / experiment / stem
        suffix = 2
        while run_dir.exists():  # two runs started in the same second
            run_dir, suffix = out_dir / experiment / f"{stem}-{suffix}", suffix + 1
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    if run.cpu_threads:
        torch.set_num_threads(run.cpu_threads)
    pl.seed_everything(run.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    if ckpt_path is not None:
        check_checkpoint(ckpt_path)
    loggers = make_loggers(cfg, run_dir, run_name, resuming=ckpt_path is not None) if not run.dry_run else []
    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)
    plugins: list[Any] = [AtomicCheckpointIO()]
    on_cpu = trainer_kwargs.get("accelerator") == "cpu" or not torch.cuda.is_available()
    precision = str(trainer_kwargs.get("precision", ""))
    if on_cpu and precision.startswith("bf16") and run.cpu_precision_without_bf16 and not cpu_has_bf16():
        print(
            f"trainer.precision={precision}: this CPU has no native bf16 (oneDNN would emulate it); training at "
            f"run.cpu_precision_without_bf16={run.cpu_precision_without_bf16} instead",
            file=sys.stderr,
        )
        trainer_kwargs["precision"] = run.cpu_precision_without_bf16
    if run.cpu_fp32_math not in FP32_MATH_MODES:
        raise ConfigError(f"run.cpu_fp32_math={run.cpu_fp32_math!r}: expected one of {', '.join(FP32_MATH_MODES)}")
    fp32_math = run.cpu_fp32_math if on_cpu else "ieee"
    if fp32_math == "bf16" and not cpu_has_bf16():
        print("run.cpu_fp32_math=bf16: this CPU has no native bf16, so oneDNN keeps exact fp32 math", file=sys.stderr)
    if trainer_kwargs.get("sync_batchnorm") and on_cpu:  # torch's SyncBatchNorm needs a GPU; gloo gets ours
        trainer_kwargs["sync_batchnorm"] = False
        plugins.append(GlobalBatchNorm())
    if job is not None:  # ranks and nodes from SLURM; the requeue signal is handled by SlurmRequeue
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = pl.Trainer(
        **trainer_kwargs,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=make_callbacks(cfg, run_dir),
        plugins=plugins,
    )
    for logger in loggers:
        logger.log_hyperparams(
            {"config": OmegaConf.to_container(cfg, resolve=True), "git_sha": git_sha(), **parameter_counts(module)}
        )
    result = TrainResult(cfg, run_dir, trainer, module, datamodule)
    if run.dry_run:
        print(f"dry run: built {type(datamodule).__name__}, {type(module).__name__} and the Trainer; not fitting")
        return result
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with onednn_fp32_math(fp32_math):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except Preempted as stop:
        print(f"preempted: {stop}; the requeued job resumes from it", file=sys.stderr)
        result.preempted = True
    print(f"run directory: {run_dir}")
    return result


def check_checkpoint(ckpt_path: Path) -> None:
    """A ConfigError, not a traceback from inside Lightning, for a resume file that is not a checkpoint."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same message
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"run.ckpt_path: {ckpt_path} is not a readable Lightning checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or "loops" not in ckpt:
        raise ConfigError(f"run.ckpt_path: {ckpt_path} holds no training state (not a Lightning training checkpoint)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", help="experiment name (experiments/configs/<name>.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value dotlist overrides")
    parser.add_argument("--dry-run", action="store_true", help="build everything, do not fit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--smoke", action="store_true", help="tiny two-step run with the experiment's smoke overrides")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    args = parser.parse_intermixed_args(argv)
    if args.list or not args.experiment:
        print("experiments:\n  " + "\n  ".join(available_experiments()))
        return 0 if args.list else 2
    try:
        if args.print_config:
            print(OmegaConf.to_yaml(compose(args.experiment, args.overrides), resolve=True))
            return 0
        overrides = args.overrides + (["run.dry_run=true"] if args.dry_run else [])
        train(args.experiment, overrides, smoke=args.smoke)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"diverged: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
