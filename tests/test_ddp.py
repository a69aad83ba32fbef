"""DDP parity, for every system (one experiment config per model class of ``experiments.train --list``).

A 2-process gloo run on CPU (``trainer.devices=2``, batch B per process, forked from the test process so no
interpreter start is paid) must end with the weights and buffers of a 1-process run with batch 2·B, within
float32 reduction-order tolerance, and log the same validation metrics. What makes it hold:

- the train sampler gives rank r the rows r, r + 2, ... of the single process's global batch
  (``datamodules.resumable.EpochSampler``);
- every per-sample random draw (WGAN-GP's α, VAE noise) and every shuffle or roll over the batch (MagGAN's
  target attributes, MaskGAN's reference masks, Gu et al.'s pairing π) is made over the global batch
  (``portrait_models.distributed``);
- ``trainer.sync_batchnorm=true`` normalises with global batch statistics (``GlobalBatchNorm`` on CPU);
- gradients are all-reduced by DDP through ``manual_backward`` (manual optimisation);
- validation: 3 items, so one rank reads 2 and the other 1 (``ShardSampler``, no padding duplicate), and the
  per-sample metrics are logged with ``sync_dist=True`` and the batch size, a weighted mean over both ranks.

Marked ``ddp`` (``make test-ddp``, run by ``.ci/run``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from test_reliability import distinct_systems

import experiments.train as runner
from experiments.config import compose, instantiate

RUN = [
    "trainer.max_steps=-1",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1.0",
    "trainer.check_val_every_n_epoch=1",
    "trainer.log_every_n_steps=1",
    "trainer.sync_batchnorm=true",
    "run.sample_every_n_steps=0",
    "data.num_workers=0",
    "run.cpu_threads=1",  # a forked child of a process whose OpenMP pool has >1 thread hangs (GNU libgomp)
]
# 30 synthetic images give 24 train and 3 validation items in the CelebA, CelebAMask-HQ and Helen layouts. The
# emotion (PortraitGAN) split is by identity: 32 validation pairs, an even number, so no rank reads fewer.
DATA = {"portraitgan_synthetic_64": []}
# MaskGAN: batches 1 and 2 are its MaskVAE and DMN phases. Batch 3 (EBST) renders the argmax of the MaskVAE's
# decoding, which after one MaskVAE step is a near-tie at many pixels: rounding-level weight differences (the
# two runs' MaskVAEs differ by float32 reduction order) flip pixels of the edited masks, and the gradient is
# discontinuous there (measured: 83% relative difference in the first blender-step gradient of dmn.head). So the
# run stops before EBST, and EBST is compared by its own test, with both runs resumed from one checkpoint.
EXTRA = {"maskgan_synthetic_64": ["trainer.limit_train_batches=2"]}
# Gu et al. pair each sample with π(b), another sample of the batch whose component features it borrows
# (gradients flow into both): π is drawn over the global batch and the sources' features are gathered with
# their gradient (``distributed.indexed_rows``).

# float32: the all-reduced sum of 2 ranks and the sum over one batch of 2·B differ in the last bits. The first
# gradient of every optimizer must agree to GRAD_RTOL (relative, per tensor). Adam's first steps are close to
# sign(g), so an element whose gradient is a near-cancelling sum (and a conv bias right before a BatchNorm,
# whose gradient is zero up to rounding) moves by ±lr on rounding noise alone: after 3 batches the weights are
# compared as a whole, ‖w₂ − w₁‖ / ‖w₁ − w₀‖ <= WEIGHT_RATIO (w₀ the initial weights).
GRAD_RTOL, GRAD_FLOOR, WEIGHT_RATIO = 1e-3, 1e-5, 0.05
# MaskGAN's EBST batch steps G_A and D (stage I) before G_B's gradient is taken (stage II): their first Adam
# steps have moved the weights by ±lr where a gradient is rounding noise (above), so G_B's first gradient is not
# taken at equal weights. Measured: 5.2e-3 relative on dmn.head.conv.weight (G_A's and D's within GRAD_RTOL).
EBST_GB_RTOL = 2e-2
# The validation metrics come from weights that differ that little: relative 1e-3 (measured 8e-4 for a loss).
VAL_RTOL = 2e-3


class FirstGradients(pl.Callback):
    """Keep each optimizer's first gradients (rank 0), saved to ``path`` when training ends."""

    def __init__(self, path: Path):
        self.path, self.grads = path, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        index = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        if index in self.grads:
            return
        names = {id(p): n for n, p in pl_module.named_parameters()}
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.grads[index] = {names[id(p)]: p.grad.detach().clone() for p in params}

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            torch.save(self.grads, self.path)


def overrides(experiment: str, out: Path, devices: int) -> list[str]:
    batch = compose(experiment, [str(o) for o in compose(experiment, []).get("smoke") or []]).data.batch_size
    ddp = ["trainer.strategy=ddp_fork_find_unused_parameters_true"] if devices > 1 else []
    data = [*DATA.get(experiment, ["data.synthetic_images=30"]), *EXTRA.get(experiment, [])]
    return [
        f"run.out_dir={out}",
        *RUN,
        *data,
        *ddp,
        f"data.batch_size={batch * 2 // devices}",
        f"trainer.devices={devices}",
    ]


def initial_state(experiment: str, out: Path) -> dict[str, torch.Tensor]:
    """The module as the runner builds it (seeded, data module first) before any step."""
    base = compose(experiment, []).get("smoke") or []
    cfg = compose(experiment, [*map(str, base), *overrides(experiment, out, 1)])
    pl.seed_everything(cfg.run.seed, workers=True, verbose=False)
    instantiate(cfg.data)
    return {k: v.clone() for k, v in instantiate(cfg.model).state_dict().items()}


def val_metrics(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    return {k: float(v) for r in rows for k, v in r.items() if k.startswith("val/") and v}


def state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def record_first_gradients(monkeypatch, tmp_path: Path) -> dict[int, Path]:
    """Patch the runner so each run also keeps its optimizers' first gradients, in ``grads<devices>.pt``."""
    grads = {n: tmp_path / f"grads{n}.pt" for n in (1, 2)}
    make_callbacks = runner.make_callbacks
    monkeypatch.setattr(  # the forked ranks inherit the patched runner
        runner,
        "make_callbacks",
        lambda cfg, run_dir: [*make_callbacks(cfg, run_dir), FirstGradients(grads[cfg.trainer.devices])],
    )
    return grads


def assert_parity(
    experiment: str,
    one,
    two,
    grads: dict[int, Path],
    start: dict[str, torch.Tensor],
    rtol: dict[int, float] | None = None,
) -> None:
    """``one`` (1 process, batch 2·B) and ``two`` (2 processes, B each): first gradients (optimizer i within
    ``rtol[i]``, default GRAD_RTOL), weights moved from ``start`` and validation metrics agree."""
    assert (one.trainer.world_size, two.trainer.world_size) == (1, 2)
    first_one, first_two = torch.load(grads[1], weights_only=True), torch.load(grads[2], weights_only=True)
    assert first_one and first_one.keys() == first_two.keys()
    for index, ref in first_one.items():
        assert ref.keys() == first_two[index].keys(), f"optimizer {index}: other parameters got gradients"
        floor = GRAD_FLOOR * float(torch.stack([g.norm() for g in ref.values()]).norm())
        for name, g in ref.items():
            error = float((first_two[index][name] - g).norm())
            print(
                f"{experiment} opt {index} {name}: {error / max(float(g.norm()), 1e-30):.2e} |g| {float(g.norm()):.2e}"
            )
            assert error <= (rtol or {}).get(index, GRAD_RTOL) * float(g.norm()) + floor, (
                f"optimizer {index}, first gradient of {name}: ‖Δ‖ {error:.3g}, ‖g‖ {float(g.norm()):.3g}"
            )

    a, b = state(one.run_dir), state(two.run_dir)
    assert a["global_step"] == b["global_step"] > 0
    diff = moved = 0.0
    for key, ref in a["state_dict"].items():
        got = b["state_dict"][key]
        if not ref.is_floating_point():
            assert torch.equal(ref, got), f"{key}: {ref} (1 process) vs {got} (2 processes)"
        elif key in start:
            diff += float((got - ref).square().sum())
            moved += float((ref - start[key]).square().sum())
    ratio = (diff / moved) ** 0.5
    print(f"{experiment}: weights ‖w2 - w1‖ / ‖w1 - w0‖ = {ratio:.2e}")
    assert moved > 0 and ratio <= WEIGHT_RATIO, f"‖w2 - w1‖ / ‖w1 - w0‖ = {ratio:.3g}"
    # the validation metrics of both ranks, weighted by their item counts, equal the single process's
    ref_val, got_val = val_metrics(one.run_dir), val_metrics(two.run_dir)
    assert ref_val and ref_val.keys() == got_val.keys()
    for key, value in ref_val.items():
        assert got_val[key] == pytest.approx(value, rel=VAL_RTOL, abs=1e-6, nan_ok=True), (
            f"{key}: {value} vs {got_val[key]}"
        )


@pytest.mark.ddp
@pytest.mark.parametrize("experiment", distinct_systems())
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    grads = record_first_gradients(monkeypatch, tmp_path)
    one = runner.train(experiment, overrides(experiment, tmp_path / "one", 1), smoke=True)
    two = runner.train(experiment, overrides(experiment, tmp_path / "two", 2), smoke=True)
    assert_parity(experiment, one, two, grads, initial_state(experiment, tmp_path / "init"))


@pytest.mark.ddp
def test_maskgan_ebst_phase_two_gloo_processes_equal_one_process(tmp_path, monkeypatch):
    """MaskGAN's EBST batch, both runs resumed from one checkpoint taken at the start of the phase.

    EBST renders argmax masks decoded by the frozen MaskVAE. Started from the same file, both runs hold the same
    MaskVAE bit for bit and decode the same latents (each sample through the same eval-mode network), so the
    simulated edits are the same masks and the phase is compared with the tolerances of every other system.
    """
    experiment = "maskgan_synthetic_64"
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    # a 1-process run whose step-3 checkpoint is taken when its MaskVAE and DMN batches are done (optimizer
    # steps: 1 MaskVAE + 2 DMN), at the end of batch 2
    saves = ["trainer.limit_train_batches=3", "run.save_every_n_steps=3"]
    before = runner.train(experiment, [*overrides(experiment, tmp_path / "before", 1), *saves], smoke=True)
    ckpt = before.run_dir / "checkpoints" / "step00000003.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert int(saved["state_dict"]["batches_seen"]) == 2, "the shared start is not the first EBST batch"
    grads = record_first_gradients(monkeypatch, tmp_path)
    ebst = ["trainer.limit_train_batches=3", f"run.ckpt_path={ckpt}"]
    one = runner.train(experiment, [*overrides(experiment, tmp_path / "one", 1), *ebst], smoke=True)
    two = runner.train(experiment, [*overrides(experiment, tmp_path / "two", 2), *ebst], smoke=True)
    assert {int(one.module.batches_seen), int(two.module.batches_seen)} == {3}
    assert set(torch.load(grads[1], weights_only=True)) == {0, 1, 3}, "EBST steps G_A, D and G_B"
    assert_parity(experiment, one, two, grads, saved["state_dict"], rtol={3: EBST_GB_RTOL})
