"""Experiment configuration: OmegaConf only, composed from parts, checked against the constructors it feeds.

An experiment is ``experiments/configs/<name>.yaml``. Its ``defaults`` list names one part per group
(``data: helen`` loads ``configs/data/helen.yaml`` into the ``data`` section, likewise ``trainer``
and ``logger``); the experiment's own keys are merged on top, then command-line dotlist overrides
(``key=value``, the form wandb sweeps pass with ``${args_no_hyphens}``). A dotlist item whose key is a
group and whose value names a part (``logger=csv``) swaps that part.

Every section that builds an object carries ``_target_`` (a full import path, so grep finds it). The
section is validated against a schema made from that class's constructor signature: an unknown key or
a value of the wrong type stops before anything is built, with a message naming the valid keys.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

CONFIG_DIR = Path(__file__).parent / "configs"
GROUPS = ("data", "trainer", "logger")


class ConfigError(ValueError):
    """A configuration problem, reported before any object is built."""


@dataclass
class RunSettings:
    """The ``run`` section: what the runner itself does (not the model, data or Trainer)."""

    name: str = ""  # filled with the experiment name
    seed: int = 0
    out_dir: str = "runs"  # runs/<experiment>/<run name>/
    tag: str = ""  # free text appended to the run name
    ckpt_path: Optional[str] = None  # "last" resumes the newest run of this experiment; or a .ckpt path
    monitor: Optional[str] = None  # metric for the "best" checkpoint, e.g. val/pixel_acc
    monitor_mode: str = "max"
    save_every_n_steps: int = 0  # extra periodic checkpoints (0: last + best only)
    checkpoint_every_n_steps: int = 0  # also rewrite last.ckpt every N training batches (0: at validation only)
    sample_every_n_steps: int = 200  # fixed-seed sample grids
    num_sample_images: int = 8
    dry_run: bool = False  # print the resolved config, build everything, do not fit
    print_config: bool = True
    cpu_threads: Optional[int] = None  # torch.set_num_threads for CPU runs (None: torch's default)
    # a CPU run whose trainer.precision is bf16 but whose oneDNN has no native bf16 (no AVX512-BF16 / AMX; bf16
    # would be emulated, several times slower) trains at this precision instead, saying so (None: keep bf16)
    cpu_precision_without_bf16: Optional[str] = None
    # oneDNN's math for fp32 convolutions and matrix products on CPU: ieee (exact, torch's default) or bf16 (fp32
    # tensors, bf16 products on AMX / AVX512-BF16, as TF32 on a GPU; experiments.hardware.onednn_fp32_math)
    cpu_fp32_math: str = "ieee"
    deterministic_epochs: bool = True  # reseed at each epoch start so a resumed run matches an uninterrupted one


@dataclass
class LoggerSettings:
    """The ``logger`` section. wandb writes offline when no login is configured; a CSV log always sits beside it."""

    kind: str = "wandb"  # wandb | csv | none
    project: str = "portrait-gans"
    entity: Optional[str] = None
    mode: Optional[str] = None  # online | offline | disabled; None: honour WANDB_MODE, else offline without a login
    tags: list[str] = field(default_factory=list)
    log_model: bool = False


TOP_LEVEL_KEYS = ("defaults", "run", "model", "data", "trainer", "logger", "callbacks", "smoke")


# ------------------------------------------------------------------------------------------- schemas
def _omegaconf_type(annotation: Any) -> Any:
    """Map a constructor annotation to a type OmegaConf structured configs can check (Any when it cannot)."""
    if annotation in (int, float, bool, str):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _omegaconf_type(rest[0])
            return Any if inner is Any else Optional[inner]
        return Any
    if origin in (list, typing.List, tuple, typing.Tuple, typing.Sequence):
        inner = {_omegaconf_type(a) for a in args if a is not Ellipsis}
        elem = inner.pop() if len(inner) == 1 else Any
        return typing.List[elem]  # tuples arrive from YAML as lists
    if origin in (dict, typing.Dict):
        return typing.Dict[str, Any]
    return Any


def schema_from_signature(target: Any) -> type:
    """A dataclass mirroring ``target``'s constructor arguments, their types and defaults."""
    init = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be resolved: fall back to unchecked
        hints = {}
    fields_ = [("_target_", str, field(default=f"{target.__module__}.{target.__qualname__}"))]
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        typ = _omegaconf_type(hints.get(name, Any))
        if param.default is inspect.Parameter.empty:
            default = field(default=dataclasses.MISSING) if typ is Any else field(default="???")
        elif isinstance(param.default, (list, tuple, dict)):
            default = field(default_factory=lambda v=param.default: list(v) if isinstance(v, tuple) else v)
        else:
            default = field(default=param.default)
            if param.default is None and typ is not Any and typing.get_origin(typ) is not typing.Union:
                typ = Optional[typ]
        fields_.append((name, typ, default))
    return dataclasses.make_dataclass(f"{target.__name__}Config", fields_)


def import_target(path: str, where: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{where}._target_: cannot import {path!r} ({err})") from err


def _check(section: Any, schema: type, where: str, valid: list[str]) -> DictConfig:
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), section)
    except ConfigKeyError as err:
        key = getattr(err, "key", None) or str(err).split("'")[1]
        raise ConfigError(f"unknown key {where}.{key}; valid keys of {where}: {', '.join(sorted(valid))}") from None
    except ValidationError as err:
        key = getattr(err, "full_key", "?")
        raise ConfigError(f"wrong type for {where}.{key}: {err.msg}") from None


def validate_target_section(section: DictConfig, where: str) -> DictConfig:
    """Check a ``_target_`` section against its constructor: unknown keys and wrong types are errors."""
    if "_target_" not in section:
        raise ConfigError(f"{where} needs a _target_ (the full import path of the class to build)")
    target = import_target(section._target_, where)
    schema = schema_from_signature(target)
    valid = [f.name for f in dataclasses.fields(schema) if f.name != "_target_"]
    checked = _check(section, schema, where, valid)
    missing = [k for k in valid if OmegaConf.is_missing(checked, k)]
    if missing:
        raise ConfigError(f"{where} is missing required keys: {', '.join(missing)}")
    return checked


def validate_trainer_section(section: DictConfig) -> DictConfig:
    import lightning.pytorch as pl

    valid = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p not in ("self", "logger", "callbacks")]
    unknown = [k for k in section if k not in valid]
    if unknown:
        raise ConfigError(f"unknown key trainer.{unknown[0]}; valid keys of trainer: {', '.join(sorted(valid))}")
    try:
        hints = typing.get_type_hints(pl.Trainer.__init__)
    except Exception:  # an annotation that cannot be resolved: keys are still checked
        hints = {}
    for key, value in section.items():
        value = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
        if key in hints and not _accepts(hints[key], value):
            raise ConfigError(f"wrong type for trainer.{key}: {value!r} is not {_describe(hints[key])}")
    return section


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether a plain YAML value fits a Trainer annotation (objects such as strategies are not checked)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if origin is typing.Literal:
        return value in args and type(value) in {type(a) for a in args}
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin in (dict, typing.Dict, collections.abc.Mapping) or annotation is dict:
        return isinstance(value, dict)
    return not isinstance(value, (bool, int, float)) or not inspect.isclass(annotation)  # an object: not checked


def _describe(annotation: Any) -> str:
    text = annotation.__name__ if inspect.isclass(annotation) else str(annotation).replace("typing.", "")
    return text if len(text) < 160 else text[:157] + "..."


# ----------------------------------------------------------------------------------------- composing
def available_experiments() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _load_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        options = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no {what} {path.stem!r} ({path}); available: {', '.join(options) or 'none'}")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} must hold a mapping, got {type(cfg).__name__}")
    return cfg


def _split_overrides(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """Separate group swaps (``logger=csv``) from ordinary dotlist overrides."""
    swaps, rest = {}, []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        key = key.lstrip("+")
        if key in GROUPS:
            swaps[key] = value
        else:
            rest.append(f"{key}={value}")
    return swaps, rest


def compose(experiment: str, overrides: list[str] | None = None) -> DictConfig:
    """Load an experiment, merge its parts and the overrides, and validate every section."""
    overrides = list(overrides or [])
    body = _load_yaml(CONFIG_DIR / f"{experiment}.yaml", "experiment")
    swaps, dotlist = _split_overrides(overrides)
    defaults = body.pop("defaults", ListConfig([]))
    chosen: dict[str, str] = {}
    for entry in defaults:
        if not isinstance(entry, DictConfig) or len(entry) != 1:
            raise ConfigError(f"{experiment}.yaml defaults entries must look like `- group: part`, got {entry}")
        ((group, part),) = entry.items()
        if group not in GROUPS:
            raise ConfigError(f"{experiment}.yaml defaults: unknown group {group!r}; groups: {', '.join(GROUPS)}")
        chosen[group] = part
    chosen.update(swaps)
    cfg = OmegaConf.create({"run": {"name": experiment}})  # defaults and types are filled in by validate()
    for group, part in chosen.items():
        cfg[group] = _load_yaml(CONFIG_DIR / group / f"{part}.yaml", f"{group} part")
    cfg = OmegaConf.merge(cfg, body)
    unknown = [k for k in cfg if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_LEVEL_KEYS[1:])}")
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override: {err}") from None
    return validate(cfg)


def validate(cfg: DictConfig) -> DictConfig:
    unknown = [k for k in cfg if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_LEVEL_KEYS[1:])}")
    run_valid = [f.name for f in dataclasses.fields(RunSettings)]
    cfg.run = _check(cfg.run, RunSettings, "run", run_valid)
    log_valid = [f.name for f in dataclasses.fields(LoggerSettings)]
    cfg.logger = _check(cfg.get("logger", {}), LoggerSettings, "logger", log_valid)
    if cfg.logger.kind not in ("wandb", "csv", "none"):
        raise ConfigError(f"logger.kind must be wandb, csv or none, got {cfg.logger.kind!r}")
    for section in ("model", "data"):
        if section not in cfg:
            raise ConfigError(f"the experiment has no {section} section")
        cfg[section] = validate_target_section(cfg[section], section)
    cfg.trainer = validate_trainer_section(cfg.get("trainer", OmegaConf.create({})))
    for name, cb in (cfg.get("callbacks") or {}).items():
        # `enabled` (default true) switches a configured callback off, e.g. callbacks.fid.enabled=false
        enabled = bool(cb.pop("enabled", True)) if isinstance(cb, DictConfig) else True
        checked = OmegaConf.to_container(validate_target_section(cb, f"callbacks.{name}"))
        cfg.callbacks[name] = OmegaConf.create({**checked, "enabled": enabled})
    return cfg


def instantiate(section: DictConfig, **extra: Any) -> Any:
    """Build the object a validated ``_target_`` section describes."""
    kwargs = OmegaConf.to_container(section, resolve=True)
    kwargs.pop("enabled", None)
    target = import_target(kwargs.pop("_target_"), "section")
    kwargs.update(extra)
    return target(**kwargs)
