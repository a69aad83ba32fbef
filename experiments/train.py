"""Train any experiment: ``python -m experiments.train <experiment> [key=value ...]``.

The one place that wires things together: resolve the config, seed, build DataModule, LightningModule,
callbacks, logger and Trainer, then fit. ``--dry-run`` (or ``run.dry_run=true``) stops after building
everything; ``--print-config`` prints the resolved config and exits. ``--smoke`` applies the
experiment's ``smoke`` overrides and trains for two steps (what ``make smoke`` and the tests run).
"""

from __future__ import annotations

import argparse
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from experiments.callbacks import EpochSeed, SampleGrid
from experiments.config import ConfigError, available_experiments, compose, instantiate
from experiments.sweep import wandb_logged_in

REPO_ROOT = Path(__file__).resolve().parent.parent
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


def make_loggers(cfg: DictConfig, run_dir: Path, run_name: str) -> list[Logger]:
    kind = cfg.logger.kind
    if kind == "none":
        return []
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
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
        if mode != "disabled":
            id_file.write_text(logger.experiment.id)
        loggers.insert(0, logger)
    return loggers


def make_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    run = cfg.run
    callbacks: list[pl.Callback] = [
        # last.ckpt: rewritten at every validation / epoch end, what run.ckpt_path=last resumes from
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False),
        SampleGrid(run_dir / "samples", every_n_steps=run.sample_every_n_steps, num_images=run.num_sample_images),
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
    if run.ckpt_path == "last":
        ckpt_path = find_last_checkpoint(out_dir, experiment)
        run_dir = ckpt_path.parent.parent  # continue in the run's own directory
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
    loggers = make_loggers(cfg, run_dir, run_name) if not run.dry_run else []
    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_kwargs,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=make_callbacks(cfg, run_dir),
    )
    for logger in loggers:
        logger.log_hyperparams(
            {"config": OmegaConf.to_container(cfg, resolve=True), "git_sha": git_sha(), **parameter_counts(module)}
        )
    result = TrainResult(cfg, run_dir, trainer, module, datamodule)
    if run.dry_run:
        print(f"dry run: built {type(datamodule).__name__}, {type(module).__name__} and the Trainer; not fitting")
        return result
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    print(f"run directory: {run_dir}")
    return result


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
