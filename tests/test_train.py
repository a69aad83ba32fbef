"""The runner end to end on the synthetic world: checkpoints, exact resume, sample grids, offline wandb."""

from pathlib import Path

import pytest
import torch

from experiments.compare import main as compare_main
from experiments.train import train

EXP = "parser_unet_synthetic_64"


def tiny(out_dir: Path, *extra: str) -> list[str]:
    return [
        f"run.out_dir={out_dir}",
        "run.print_config=false",
        "run.sample_every_n_steps=2",
        "run.num_sample_images=4",
        "data.synthetic_images=24",
        "data.image_size=32",
        "data.batch_size=4",
        "model.unet_feature_scale=16",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def steps_per_epoch(result) -> int:
    return len(result.datamodule.train_dataloader())


def test_resume_is_exact(tmp_path):
    probe = train(EXP, tiny(tmp_path / "probe", "run.dry_run=true"))
    probe.datamodule.prepare_data()
    probe.datamodule.setup("fit")
    k = steps_per_epoch(probe)
    assert k >= 2

    full = train(EXP, tiny(tmp_path / "full", f"trainer.max_steps={2 * k}"))
    first = train(EXP, tiny(tmp_path / "split", f"trainer.max_steps={k}"))
    ckpt = torch.load(first.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    resumed = train(EXP, tiny(tmp_path / "split", f"trainer.max_steps={2 * k}", "run.ckpt_path=last"))
    assert resumed.run_dir == first.run_dir  # resuming continues the same run directory
    assert resumed.trainer.global_step == full.trainer.global_step == 2 * k

    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # and the weights did move during the second epoch (the check is not vacuous)
    moved = [n for n, v in ckpt["state_dict"].items() if v.is_floating_point() and not torch.equal(v, b[n])]
    assert moved


def test_run_writes_checkpoints_grids_csv_and_compares(tmp_path):
    out = tmp_path / "runs"
    result = train(EXP, tiny(out, "trainer.max_steps=6"))
    ckpts = sorted(p.name for p in (result.run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["best.ckpt", "last.ckpt"]
    grids = sorted((result.run_dir / "samples").glob("step_*.png"))
    assert grids and grids[0].name == "step_0000002.png"
    assert (result.run_dir / "config.yaml").is_file()
    metrics_csv = result.run_dir / "csv" / "metrics.csv"
    header = metrics_csv.read_text().splitlines()[0]
    assert "train/loss" in header and "val/pixel_acc" in header
    hparams = (result.run_dir / "csv" / "hparams.yaml").read_text()
    assert "git_sha" in hparams and "params/total" in hparams and "parser_unet_synthetic_64" in hparams

    second = train(EXP, tiny(out, "trainer.max_steps=3", "model.lr=0.0001"))
    assert compare_main([str(result.run_dir), str(second.run_dir), "--out", str(tmp_path / "cmp")]) == 0
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "val/pixel_acc" in summary and result.run_dir.name in summary
    assert (tmp_path / "cmp" / "curves.png").stat().st_size > 5000


def test_offline_wandb_run_holds_image_grids(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = train(EXP, tiny(tmp_path, "trainer.max_steps=2", "logger=wandb"))
    offline = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    images = list(offline[0].glob("files/media/images/samples_*.png"))
    assert images, "the sample grid should be logged to the offline wandb run as a PNG"
    assert (result.run_dir / "wandb_id.txt").read_text().strip() in offline[0].name


def test_exploding_learning_rate_stops_the_run_before_the_diverged_state_is_saved(tmp_path):
    """A real divergence through the config: lr=1e30 turns the first update's weights huge, batch 2's loss NaN."""
    from experiments.callbacks import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"non-finite loss term train/loss = nan in no phases at batch 2 "):
        train(EXP, tiny(tmp_path, "trainer.max_steps=4", "model.lr=1e30", "run.checkpoint_every_n_steps=1"))
    (ckpt,) = tmp_path.glob("*/*/checkpoints/last.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["CelebAMaskHQDataModule"]["train_position"] == [0, 1]  # the state after batch 1, not batch 2


def test_guard_names_a_non_finite_weight():
    from experiments.callbacks import NonFiniteGuard

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert NonFiniteGuard.bad_weight(net) is None
    with torch.no_grad():
        net[1].bias[0] = float("inf")
    assert NonFiniteGuard.bad_weight(net) == "1.bias"


def test_wandb_run_continues_under_its_id_after_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = train(EXP, tiny(tmp_path, "trainer.max_steps=2", "logger=wandb"))
    run_id = (first.run_dir / "wandb_id.txt").read_text().strip()
    __import__("wandb").finish()  # as when the first process ends
    resumed = train(EXP, tiny(tmp_path, "trainer.max_steps=4", "logger=wandb", "run.ckpt_path=last"))
    assert resumed.run_dir == first.run_dir
    assert (resumed.run_dir / "wandb_id.txt").read_text().strip() == run_id
    runs = sorted(p.name for p in (first.run_dir / "wandb").glob("offline-run-*"))
    # wandb names an offline run by start second + id: both processes' logs carry the one id (a resume that
    # starts within the same second as the first run writes into the same folder)
    assert runs and all(name.endswith(run_id) for name in runs), runs


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_falls_back_only_where_the_cpu_lacks_it(tmp_path, monkeypatch, capsys, native):
    import experiments.train as runner

    monkeypatch.setattr(runner, "cpu_has_bf16", lambda: native)
    extra = ["trainer.precision=bf16-mixed", "run.cpu_precision_without_bf16=32-true", "run.dry_run=true"]
    result = train(EXP, tiny(tmp_path / "run", *extra))
    assert result.trainer.precision == ("bf16-mixed" if native else "32-true")
    said = capsys.readouterr().err
    assert ("no native bf16" in said) is not native
    # without the setting a bf16 config keeps bf16 on any CPU
    result = train(EXP, tiny(tmp_path / "keep", "trainer.precision=bf16-mixed", "run.dry_run=true"))
    assert result.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("native", [True, False])
def test_cpu_fp32_math_wraps_the_fit(tmp_path, monkeypatch, capsys, native):
    """run.cpu_fp32_math=bf16 trains under oneDNN's bf16 math where the CPU has it (said where it has not), the
    default under exact fp32; the process's mode is back to what it was after the run."""
    import contextlib

    import experiments.train as runner

    seen, real = [], runner.onednn_fp32_math

    @contextlib.contextmanager
    def recording(mode):
        with real(mode):
            seen.append(torch.backends.mkldnn.conv.fp32_precision)
            yield

    monkeypatch.setattr(runner, "onednn_fp32_math", recording)
    monkeypatch.setattr(runner, "cpu_has_bf16", lambda: native)
    before = torch.backends.mkldnn.conv.fp32_precision
    train(EXP, tiny(tmp_path / "bf16", "run.cpu_fp32_math=bf16", "trainer.max_steps=1", "logger=none"))
    train(EXP, tiny(tmp_path / "ieee", "trainer.max_steps=1", "logger=none"))
    assert seen == ["bf16", "ieee"]
    assert torch.backends.mkldnn.conv.fp32_precision == before
    assert ("no native bf16" in capsys.readouterr().err) is not native


def test_cpu_fp32_math_rejects_an_unknown_mode(tmp_path):
    from experiments.config import ConfigError

    with pytest.raises(ConfigError, match=r"run.cpu_fp32_math='tf32': expected one of ieee, bf16"):
        train(EXP, tiny(tmp_path, "run.cpu_fp32_math=tf32", "run.dry_run=true"))


def test_onednn_fp32_math_rounds_conv_products_to_bf16_and_restores():
    """Exact fp32 matches a float64 convolution to fp32 rounding; bf16 math differs by bf16 rounding of the inputs
    (relative 2^-8) where the CPU runs bf16 natively; the mode is restored, also after an error."""
    from experiments.hardware import cpu_has_bf16, onednn_fp32_math

    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 32, 16, 16, generator=generator), torch.randn(32, 32, 3, 3, generator=generator)
    exact = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    scale = exact.abs().max().item()
    before = torch.backends.mkldnn.conv.fp32_precision
    with onednn_fp32_math("ieee"):
        ieee = torch.nn.functional.conv2d(x, w, padding=1)
    with onednn_fp32_math("bf16"):
        bf16 = torch.nn.functional.conv2d(x, w, padding=1)
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    assert torch.backends.mkldnn.conv.fp32_precision == before
    assert (ieee.double() - exact).abs().max().item() < 1e-5 * scale
    if cpu_has_bf16():
        error = (bf16.double() - exact).abs().max().item()
        assert 1e-4 * scale < error < 2e-2 * scale, error  # bf16 inputs: not exact, but close
    with pytest.raises(RuntimeError), onednn_fp32_math("bf16"):
        raise RuntimeError("inside")
    assert torch.backends.mkldnn.conv.fp32_precision == before
    with pytest.raises(ValueError, match="expected one of ieee, bf16"), onednn_fp32_math("tf32"):
        pass
