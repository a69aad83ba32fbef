"""Every experiment config trains for two steps on synthetic fixtures (the fast form of `make smoke`)."""

import pytest

from experiments.config import available_experiments
from experiments.train import train


@pytest.mark.parametrize("experiment", available_experiments())
def test_experiment_smoke(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    result = train(experiment, [f"run.out_dir={tmp_path / 'runs'}"], smoke=True)
    assert result.trainer.global_step >= 1
    assert (result.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (result.run_dir / "config.yaml").is_file()
