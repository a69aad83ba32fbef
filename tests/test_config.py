"""The experiment config: composition, overrides, and errors that name the valid keys."""

import pytest
from omegaconf import OmegaConf

from experiments.config import ConfigError, available_experiments, compose, schema_from_signature
from experiments.sweep import load_sweep, sweep_experiment
from experiments.train import main

EXP = "parser_unet_synthetic_64"


def test_compose_merges_parts_experiment_and_overrides():
    cfg = compose(EXP, ["model.lr=0.005", "data.image_size=48"])
    assert cfg.model.lr == 0.005 and cfg.data.image_size == 48
    assert cfg.trainer.accelerator == "cpu"  # from trainer/cpu.yaml
    assert cfg.logger.kind == "wandb"
    assert cfg.model.unet_feature_scale == 8  # from the experiment body
    assert cfg.model.ohem_thresh == 0.7  # constructor default filled in by the schema
    assert cfg.run.name == EXP


def test_group_swap():
    assert compose(EXP, ["logger=csv"]).logger.kind == "csv"
    with pytest.raises(ConfigError, match="no logger part 'tensorboard'.*available: csv, none, wandb"):
        compose(EXP, ["logger=tensorboard"])


def test_unknown_key_names_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        compose(EXP, ["model.learning_rate=0.1"])
    message = str(err.value)
    assert "unknown key model.learning_rate" in message
    assert "lr" in message and "unet_feature_scale" in message and "arch" in message


def test_unknown_keys_in_every_section():
    with pytest.raises(ConfigError, match=r"unknown key data\.imagesize.*image_size"):
        compose(EXP, ["data.imagesize=32"])
    with pytest.raises(ConfigError, match=r"unknown key trainer\.max_step\b.*max_steps"):
        compose(EXP, ["trainer.max_step=3"])
    with pytest.raises(ConfigError, match=r"unknown key run\.sed.*seed"):
        compose(EXP, ["run.sed=3"])
    with pytest.raises(ConfigError, match="unknown top-level key 'modle'"):
        compose(EXP, ["modle.lr=3"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"wrong type for model\.lr"):
        compose(EXP, ["model.lr=fast"])
    with pytest.raises(ConfigError, match=r"wrong type for data\.batch_size"):
        compose(EXP, ["data.batch_size=0.5"])


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(ConfigError, match="no experiment 'nope'.*parser_unet_synthetic_64"):
        compose("nope")


def test_schema_from_signature_types_and_defaults():
    def build(a: int, b: float = 0.5, c: str | None = None, d: tuple[float, float] = (0.5, 0.9)):
        return a, b, c, d

    schema = OmegaConf.structured(schema_from_signature(build))
    assert OmegaConf.is_missing(schema, "a") and schema.b == 0.5 and schema.c is None and list(schema.d) == [0.5, 0.9]


def test_every_experiment_composes():
    names = available_experiments()
    assert EXP in names and "parser_unet_helen_256" in names
    for name in names:
        cfg = compose(name)
        assert cfg.model._target_ and cfg.data._target_
        for item in cfg.get("smoke") or []:  # smoke overrides are valid overrides
            compose(name, [item])


def test_sweep_parameters_are_valid_overrides():
    sweep = load_sweep("parser_lr")
    experiment = sweep_experiment(sweep)
    assert "${args_no_hyphens}" in sweep["command"]
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec["min"]
        compose(experiment, [f"{key}={value}"])


def test_cli_reports_config_errors(capsys):
    assert main([EXP, "model.nope=1"]) == 2
    assert "config error: unknown key model.nope" in capsys.readouterr().err
    assert main([EXP, "--print-config", "model.lr=0.003"]) == 0
    assert "lr: 0.003" in capsys.readouterr().out


def test_sweep_without_wandb_login_says_how(monkeypatch, tmp_path, capsys):
    from experiments.sweep import main as sweep_main

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert sweep_main(["parser_lr"]) == 2
    assert "run `wandb login`" in capsys.readouterr().err
    assert sweep_main(["nope"]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err


def test_configured_callbacks_are_validated_and_can_be_switched_off(tmp_path):
    from experiments.train import make_callbacks
    from metrics.callbacks import FIDCallback

    cfg = compose("maskgan_celebamaskhq_512")
    assert cfg.callbacks.fid.num_samples == 2000 and cfg.callbacks.fid.enabled
    assert any(isinstance(cb, FIDCallback) for cb in make_callbacks(cfg, tmp_path))
    off = compose("maskgan_celebamaskhq_512", ["callbacks.fid.enabled=false"])
    assert not any(isinstance(cb, FIDCallback) for cb in make_callbacks(off, tmp_path))
    with pytest.raises(ConfigError, match=r"unknown key callbacks\.fid\.num_sample;.*num_samples"):
        compose("maskgan_celebamaskhq_512", ["callbacks.fid.num_sample=3"])
