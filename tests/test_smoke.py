"""Every experiment config trains for two steps on synthetic fixtures (the fast form of `make smoke`)."""

import pytest
import torch

from experiments.config import available_experiments
from experiments.train import train


@pytest.mark.parametrize("experiment", available_experiments())
def test_experiment_smoke(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    result = train(experiment, [f"run.out_dir={tmp_path / 'runs'}"], smoke=True)
    last = result.run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # Smoke runs stop at trainer.max_steps=2 optimizer steps; the checkpoint loads as plain weights and holds
    # the trained module's every tensor at the step it stopped at.
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == result.trainer.global_step >= 2
    state = result.module.state_dict()
    assert sorted(checkpoint["state_dict"]) == sorted(state)
    assert all(torch.equal(checkpoint["state_dict"][key], value.cpu()) for key, value in state.items())
    assert (result.run_dir / "config.yaml").is_file()
