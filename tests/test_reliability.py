"""Runs that survive, checked for every experiment config (``experiments.train --list``, smoke overrides).

- a non-finite loss term stops the run with one message naming the term, the phase and the batch, and the
  last checkpoint keeps the state from before (per config, in process);
- every checkpoint loads with ``torch.load(weights_only=True)`` and ``Module.load_from_checkpoint`` alone;
- a training subprocess SIGKILLed after a mid-epoch checkpoint (``num_workers=2``) and resumed with
  ``run.ckpt_path=last`` ends bit-identical to an uninterrupted run, metric history included;
- SLURM's requeue signal makes the run checkpoint at the next batch, call ``scontrol requeue`` and stop;
  the requeued job resumes bit-identically.

The subprocess tests run one config per model class, so a new system is covered the moment its config lands;
they are marked ``reliability`` (``make test-reliability``, run by ``.ci/run``).
"""

from __future__ import annotations

import csv
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

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


def resume_params() -> list:
    """``distinct_systems()`` as parameters whose SIGKILL and SLURM tests share one xdist worker (``make
    test-reliability`` runs ``--dist loadgroup``), so each system's uninterrupted reference run is made once."""
    return [pytest.param(e, marks=pytest.mark.xdist_group(f"resume-{e}")) for e in distinct_systems()]


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
def test_nan_term_stops_the_run_and_keeps_the_last_good_checkpoint(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
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
def command(experiment: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "experiments.train", experiment, "--smoke",
        f"run.out_dir={out}", "run.cpu_threads=1", "data.num_workers=2",
        "trainer.max_steps=-1", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        "run.checkpoint_every_n_steps=1", "run.sample_every_n_steps=0", "trainer.log_every_n_steps=1",
        *extra,
    ]  # fmt: skip


def environment(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PORTRAIT_GANS_CACHE=str(cache), WANDB_MODE="disabled", PYTHONUNBUFFERED="1", **extra)
    return env


def run_to_end(cmd: list[str], env: dict[str, str], timeout: float = 1200) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def interrupt_after(cmd: list[str], env: dict[str, str], checkpoints: int, sig: int, timeout: float = 1200) -> int:
    """Start ``cmd``, send ``sig`` once its ``checkpoints``-th checkpoint line appears, return the exit code."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, deadline, log = 0, time.monotonic() + timeout, []
    try:
        for line in proc.stdout:
            log.append(line)
            if line.startswith("checkpoint: "):
                seen += 1
                if seen == checkpoints:
                    proc.send_signal(sig)
                    break
            assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        log.extend(proc.stdout)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == checkpoints, f"the run ended after {seen} checkpoints:\n{''.join(log)[-3000:]}"
    return code


def final_checkpoint(out: Path, experiment: str) -> Path:
    (ckpt,) = out.glob(f"{experiment}/*/checkpoints/last.ckpt")
    return ckpt


def train_rows(ckpt: Path) -> list[dict[str, str]]:
    with open(ckpt.parent.parent / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if any(k.startswith("train/") and v for k, v in r.items())]
    return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each experiment, computed once per module."""
    base = tmp_path_factory.mktemp("reference")
    cache = {}

    def get(experiment: str) -> Path:
        if experiment not in cache:
            out = base / experiment
            run_to_end(command(experiment, out), environment(base / "cache"))
            cache[experiment] = final_checkpoint(out, experiment)
        return cache[experiment]

    return get


def assert_exact_resume(reference_ckpt: Path, resumed_ckpt: Path, experiment: str = "") -> None:
    a, b = state_of(reference_ckpt), state_of(resumed_ckpt)
    assert a["global_step"] == b["global_step"] and a["global_step"] > 0
    assert_same_state(a["state_dict"], b["state_dict"], "weights")
    for i, (oa, ob) in enumerate(zip(a["optimizer_states"], b["optimizer_states"], strict=True)):
        for key in oa["state"]:
            assert_same_state(oa["state"][key], ob["state"][key], f"optimizer {i} state {key}")
    # the metric history survives the resume: the same train rows as the uninterrupted run, none lost or doubled
    ref_rows, resumed_rows = train_rows(reference_ckpt), train_rows(resumed_ckpt)
    assert ref_rows == resumed_rows, "\n".join(
        ["metrics.csv rows differ (reference | resumed):"]
        + [f"{a} | {b}" for a, b in zip(ref_rows, resumed_rows, strict=False) if a != b][:5]
        + [f"{len(ref_rows)} vs {len(resumed_rows)} rows"]
    )


@pytest.mark.reliability
@pytest.mark.parametrize("experiment", resume_params())
def test_sigkill_mid_epoch_then_resume_is_bit_identical(experiment, reference, tmp_path):
    ref = reference(experiment)
    out, env = tmp_path / "runs", environment(reference(experiment).parents[4] / "cache")
    code = interrupt_after(command(experiment, out), env, checkpoints=1, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL
    killed = final_checkpoint(out, experiment)
    position = next(v for k, v in state_of(killed).items() if k.endswith("DataModule"))["train_position"]
    assert position[0] < 2 and state_of(killed)["global_step"] < state_of(ref)["global_step"]
    run_to_end(command(experiment, out, "run.ckpt_path=last"), env)
    assert final_checkpoint(out, experiment) == killed  # resumed in the same run directory
    assert_exact_resume(ref, killed, experiment)


@pytest.mark.reliability
@pytest.mark.parametrize("experiment", resume_params())
def test_slurm_requeue_signal_checkpoints_requeues_and_resumes_exactly(experiment, reference, tmp_path):
    ref = reference(experiment)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "portrait-gans", "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    out, env = tmp_path / "runs", environment(ref.parents[4] / "cache", **slurm)
    code = interrupt_after(command(experiment, out), env, checkpoints=1, sig=signal.SIGUSR1)
    assert code == 0
    assert calls.read_text().split() == ["requeue", "4242"]
    (run_dir,) = (out / experiment).iterdir()
    assert run_dir.name == "slurm4242"
    preempted = state_of(run_dir / "checkpoints" / "last.ckpt")["global_step"]
    assert 0 < preempted < state_of(ref)["global_step"]
    # the requeued job: same job id, no ckpt_path given; it finds its own directory and resumes
    run_to_end(command(experiment, out), {**env, "SLURM_RESTART_COUNT": "1"})
    assert [p.name for p in (out / experiment).iterdir()] == ["slurm4242"]
    assert_exact_resume(ref, run_dir / "checkpoints" / "last.ckpt", experiment)
