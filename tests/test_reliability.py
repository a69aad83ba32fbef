"""Runs that survive, checked for every experiment config (``experiments.train --list``, smoke overrides).

- a non-finite loss term stops the run with one message naming the term, the phase and the batch, and the
  last checkpoint keeps the state from before (per config, in process);
- every checkpoint loads with ``torch.load(weights_only=True)`` and ``Module.load_from_checkpoint`` alone;
- a chain of training subprocesses (``python -m experiments.train``, ``num_workers=2``): a SLURM job that gets
  the requeue signal checkpoints at the next batch, calls ``scontrol requeue`` and stops; the requeued job
  resumes by itself and is SIGKILLed mid-epoch after a checkpoint; ``run.ckpt_path=last`` resumes it to the end,
  bit-identical to an uninterrupted run, metric history included.

Every test runs for every config of ``--list`` (the real-data ones on the synthetic fixture rendered in the
release layout, so each data reader and loader is exercised); they are marked ``reliability`` (``make
test-reliability``, run by ``.ci/run``).
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf

from experiments.callbacks import NonFiniteGuard, NonFiniteLossError
from experiments.config import available_experiments, compose
from experiments.train import train

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = available_experiments()


def smoke_config(experiment: str):
    return compose(experiment, [str(o) for o in compose(experiment, []).get("smoke") or []])


def distinct_systems() -> list[str]:
    """One experiment per model class, preferring the synthetic-world configs (the data readers have their own
    tests; a second config of the same system would repeat the same subprocess runs)."""
    chosen: dict[str, str] = {}
    for name in sorted(EXPERIMENTS, key=lambda n: ("synthetic" not in n, n)):
        chosen.setdefault(compose(name, []).model._target_, name)
    return sorted(chosen.values())


def model_class(experiment: str) -> type[pl.LightningModule]:
    module, _, name = compose(experiment, []).model._target_.rpartition(".")
    return getattr(importlib.import_module(module), name)


def state_of(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: different keys"
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


# ------------------------------------------------------------------------------ NaN guard + loading
class InjectNaN:
    """Replace the first ``train/...`` value logged during batch ``at`` (1-based) by NaN; remember its name."""

    def __init__(self, at: int):
        self.at, self.name = at, None

    def install(self, monkeypatch):
        original = pl.LightningModule.log
        inject = self

        def log(module, name, value, *args, **kwargs):
            trainer = module._trainer
            if (
                trainer is not None
                and trainer.training
                and inject.name is None
                and name.startswith("train/")
                and trainer.fit_loop.epoch_loop.total_batch_idx + 1 == inject.at
                and torch.is_tensor(value)
                and value.is_floating_point()
            ):
                inject.name = name
                value = torch.full_like(value, float("nan"))
            return original(module, name, value, *args, **kwargs)

        monkeypatch.setattr(pl.LightningModule, "log", log)


RUN = [
    "trainer.max_steps=-1",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "run.checkpoint_every_n_steps=1",
    "run.sample_every_n_steps=0",
    "trainer.log_every_n_steps=1",
]


@pytest.mark.reliability
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_nan_term_stops_the_run_and_keeps_the_last_good_checkpoint(experiment, tmp_path, monkeypatch, shared_dirs):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(shared_dirs[0]))
    inject = InjectNaN(at=2)
    inject.install(monkeypatch)
    phases: list[str | None] = []  # the system's phase as each batch starts
    guard_start = NonFiniteGuard.on_train_batch_start

    def record(self, trainer, module, batch, batch_idx):
        phases.append(getattr(module, "phase", None))
        guard_start(self, trainer, module, batch, batch_idx)

    monkeypatch.setattr(NonFiniteGuard, "on_train_batch_start", record)
    with pytest.raises(NonFiniteLossError) as err:
        train(experiment, [f"run.out_dir={tmp_path / 'runs'}", *RUN], smoke=True)
    message = str(err.value)
    assert inject.name is not None, "the system logged no train/ term to inject into"
    assert f"non-finite loss term {inject.name} = nan" in message
    phase = phases[1] if len(phases) > 1 else None
    assert (f"phase {str(phase)!r}" if phase is not None else "no phases") in message
    assert "at batch 2 (epoch 0, batch_idx 1" in message and "was not overwritten" in message

    (ckpt,) = (tmp_path / "runs").glob(f"{experiment}/*/checkpoints/last.ckpt")
    saved = state_of(ckpt)  # loads with weights_only=True ...
    position = next(v for k, v in saved.items() if k.endswith("DataModule"))["train_position"]
    assert position == [0, 1], f"last.ckpt should hold the state after batch 1, holds {position}"
    # ... and as the module class alone, without the config machinery
    module = model_class(experiment).load_from_checkpoint(ckpt, map_location="cpu")
    assert_same_state(saved["state_dict"], module.state_dict(), "load_from_checkpoint")
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


@pytest.mark.reliability
def test_a_run_that_ends_before_its_first_validation_leaves_last_ckpt_to_resume(tmp_path, monkeypatch):
    """The parser's smoke run stops on max_steps=2 inside its first epoch: no validation, no epoch end."""
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    out = [f"run.out_dir={tmp_path / 'runs'}", "run.sample_every_n_steps=0"]
    first = train("parser_unet_synthetic_64", out, smoke=True)
    assert first.trainer.global_step == 2 and not any(k.startswith("val/") for k in first.trainer.callback_metrics)
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    saved = state_of(ckpt)
    assert saved["global_step"] == 2
    assert_same_state(saved["state_dict"], first.module.state_dict(), "last.ckpt vs the trained module")
    resumed = train("parser_unet_synthetic_64", [*out, "run.ckpt_path=last", "trainer.max_steps=3"], smoke=True)
    assert resumed.run_dir == first.run_dir and state_of(ckpt)["global_step"] == 3


# ------------------------------------------------------------------------------- kill and resume
# What every run of the chain trains: 2 epochs of 3 batches with 2 persistent DataLoader workers, last.ckpt
# rewritten at every batch start (the config's smoke overrides first, as ``--smoke`` applies them).
CHAIN = [
    "run.cpu_threads=1", "data.num_workers=2",
    "trainer.max_steps=-1", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
    "run.checkpoint_every_n_steps=1", "run.sample_every_n_steps=0", "trainer.log_every_n_steps=1",
]  # fmt: skip
# Systems that stop on their own schedule get one that lasts the chain's 6 batches (their smoke schedules end
# after 2 or 3): MagGAN's generator steps (one per batch at the smoke's n_critic=1), MaskGAN's three phases, 2
# batches each, so the interruptions fall in different phases.
SCHEDULE = {
    "portrait_models.maggan.MagGAN": ["model.max_g_steps=6"],
    "portrait_models.maskgan.MaskGAN": ["model.maskvae_steps=2", "model.dmn_steps=2", "model.ebst_steps=2"],
}
SLURM = {
    "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "portrait-gans", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
}  # fmt: skip


def chain(experiment: str) -> list[str]:
    return [*CHAIN, *SCHEDULE.get(compose(experiment, []).model._target_, [])]


def command(experiment: str, out: Path, *extra: str) -> list[str]:
    run = [sys.executable, "-m", "experiments.train", experiment, "--smoke", f"run.out_dir={out}"]
    return [*run, *chain(experiment), *extra]


def effective_config(experiment: str) -> str:
    """The resolved config a chain run of ``experiment`` trains with, less its name: two experiments with the same
    string train the same run, so the second is compared against the first one's reference."""
    from experiments.train import SMOKE_OVERRIDES

    cfg = OmegaConf.to_container(
        compose(
            experiment, [*map(str, compose(experiment, []).get("smoke") or []), *SMOKE_OVERRIDES, *chain(experiment)]
        ),
        resolve=True,
    )
    cfg.pop("smoke", None)
    cfg["run"].pop("name", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def resume_params() -> list:
    """Every experiment of ``--list``; one that composes to the same run as an earlier one reuses that one's
    uninterrupted reference (its test id says ``same-run-as-<other>``) and shares its xdist worker."""
    first: dict[str, str] = {}
    params = []
    for experiment in EXPERIMENTS:
        ref = first.setdefault(effective_config(experiment), experiment)
        test_id = experiment if ref == experiment else f"{experiment}-same-run-as-{ref}"
        params.append(pytest.param(experiment, ref, id=test_id, marks=pytest.mark.xdist_group(f"resume-{ref}")))
    return params


@pytest.fixture(scope="session")
def shared_dirs(tmp_path_factory, pytestconfig) -> tuple[Path, Path]:
    """The synthetic-data cache and a Python bytecode cache, shared by the test processes.

    The data cache lives for the session: each layout is rendered once (written atomically, so two xdist workers
    may race). The bytecode cache (``.pytest_cache/d/pycache``) outlives it: with PYTHONDONTWRITEBYTECODE set,
    as on the CI machine, every training subprocess compiled torch, Lightning and torchmetrics from source
    (measured: 27 of a MagGAN chain run's 31 CPU-seconds went to imports, 11 with the cache); the subprocesses
    get PYTHONPYCACHEPREFIX instead, which keeps the compiled files out of the venv.
    """
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-cache"
    pycache = pytestconfig.cache.mkdir("pycache") if pytestconfig.cache is not None else base / "pycache"
    return cache, pycache


def environment(shared: tuple[Path, Path], **extra: str) -> dict[str, str]:
    cache, pycache = shared
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PORTRAIT_GANS_CACHE=str(cache), PYTHONPYCACHEPREFIX=str(pycache), WANDB_MODE="disabled", PYTHONUNBUFFERED="1"
    )
    env.update(extra)
    return env


def run_to_end(cmd: list[str], env: dict[str, str], timeout: float = 1200) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def interrupt_after(cmd: list[str], env: dict[str, str], batches: int, sig: int, timeout: float = 1200) -> int:
    """Start ``cmd``, send ``sig`` once it prints a checkpoint taken after ``batches`` or more batches, and return
    its exit code."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sent, deadline, log = False, time.monotonic() + timeout, []
    try:
        for line in proc.stdout:
            log.append(line)
            at = re.match(r"checkpoint: .* at batch (\d+) ", line)
            if at and int(at.group(1)) >= batches:
                proc.send_signal(sig)
                sent = True
                break
            assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        log.extend(proc.stdout)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sent, f"the run ended before a checkpoint after {batches} batches:\n{''.join(log)[-3000:]}"
    return code


def train_rows(ckpt: Path) -> list[dict[str, str]]:
    with open(ckpt.parent.parent / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if any(k.startswith("train/") and v for k, v in r.items())]
    return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_dirs):
    """The uninterrupted run of an experiment (a subprocess like the chain's), once per module."""
    base = tmp_path_factory.mktemp("reference")
    done: dict[str, Path] = {}

    def get(experiment: str) -> Path:
        if experiment not in done:
            out = base / experiment
            run_to_end(command(experiment, out), environment(shared_dirs))
            (done[experiment],) = out.glob(f"{experiment}/*/checkpoints/last.ckpt")
            position = train_position(done[experiment])
            assert position == [2, 0], f"{experiment} stopped at {position}, not after 2 x 3 batches: see SCHEDULE"
        return done[experiment]

    return get


def assert_exact_resume(reference_ckpt: Path, resumed_ckpt: Path) -> None:
    a, b = state_of(reference_ckpt), state_of(resumed_ckpt)
    assert a["global_step"] == b["global_step"] and a["global_step"] > 0
    assert_same_state(a["state_dict"], b["state_dict"], "weights")
    for i, (oa, ob) in enumerate(zip(a["optimizer_states"], b["optimizer_states"], strict=True)):
        for key in oa["state"]:
            assert_same_state(oa["state"][key], ob["state"][key], f"optimizer {i} state {key}")
    # the metric history survives the resumes: the same train rows as the uninterrupted run, none lost or doubled
    ref_rows, resumed_rows = train_rows(reference_ckpt), train_rows(resumed_ckpt)
    assert ref_rows == resumed_rows, "\n".join(
        ["metrics.csv rows differ (reference | resumed):"]
        + [f"{a} | {b}" for a, b in zip(ref_rows, resumed_rows, strict=False) if a != b][:5]
        + [f"{len(ref_rows)} vs {len(resumed_rows)} rows"]
    )


def train_position(ckpt: Path) -> list[int]:
    return next(v for k, v in state_of(ckpt).items() if k.endswith("DataModule"))["train_position"]


@pytest.mark.reliability
@pytest.mark.parametrize(("experiment", "same_run_as"), resume_params())
def test_slurm_requeue_then_sigkill_then_resume_is_bit_identical(
    experiment, same_run_as, reference, shared_dirs, tmp_path
):
    """One chain of training subprocesses per config, each with 2 DataLoader workers:

    1. a SLURM job gets the requeue signal (SIGUSR1) after its first checkpoint: it saves at the next batch,
       calls ``scontrol requeue <job>`` (a stub here) and exits 0;
    2. the requeued job (same job id, no ckpt_path) finds its directory and resumes; it is SIGKILLed once it has
       saved batch 4, mid-epoch 2;
    3. ``run.ckpt_path=last``, outside SLURM, resumes it to the end.

    The final weights, optimizer states and metrics.csv rows equal the uninterrupted run's bit for bit.
    """
    ref = reference(same_run_as)
    total = state_of(ref)["global_step"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    out, env = tmp_path / "runs", environment(shared_dirs)
    slurm = {**env, **SLURM, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}

    # 1. the requeue signal: checkpoint at the next batch, requeue, a clean exit
    assert interrupt_after(command(experiment, out), slurm, batches=1, sig=signal.SIGUSR1) == 0
    assert calls.read_text().split() == ["requeue", "4242"]
    (run_dir,) = (out / experiment).iterdir()
    assert run_dir.name == "slurm4242"
    last = run_dir / "checkpoints" / "last.ckpt"
    preempted = state_of(last)["global_step"]
    assert 0 < preempted < total
    # 2. the requeued job resumes from it by itself; the node dies (SIGKILL) once batch 4 (of 2 x 3) is saved
    requeued = {**slurm, "SLURM_RESTART_COUNT": "1"}
    assert interrupt_after(command(experiment, out), requeued, batches=4, sig=signal.SIGKILL) == -signal.SIGKILL
    assert [p.name for p in (out / experiment).iterdir()] == ["slurm4242"]
    killed, position = state_of(last)["global_step"], train_position(last)
    # the line said batch 4 was saved: the batch count of a resumed run is the uninterrupted run's
    assert preempted < killed < total and 3 * position[0] + position[1] >= 4 and position[1] > 0, (
        f"killed at step {killed}, position {position}"
    )
    # 3. resumed by hand, outside SLURM, in the same run directory
    run_to_end(command(experiment, out, "run.ckpt_path=last"), env)
    assert [p.name for p in (out / experiment).iterdir()] == ["slurm4242"]
    assert_exact_resume(ref, last)
