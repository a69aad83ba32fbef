"""Load a Lightning checkpoint of a known class, with one clear error for a file that is not one.

The command-line tools (``experiments.parse``, ``experiments.edit``, ``experiments.evaluate``) take
checkpoint paths from users; a missing, truncated or foreign file (another model's checkpoint, a raw
``state_dict``, a converted ``.pth``) stops with a :class:`CheckpointError` naming the file, what it holds
and what was expected, instead of a traceback from deep inside ``torch.load`` or ``load_state_dict``.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

M = TypeVar("M")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or of another model (the message says which)."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` (what every checkpoint of the project allows)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format?): {first[:200]}"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        what = f"a dict with keys {sorted(ckpt)[:6]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict'; it holds {what})")
    return ckpt


def load_module(cls: type[M], path: str | Path, map_location: Any = "cpu", **overrides: Any) -> M:
    """``cls.load_from_checkpoint(path, ...)`` after checking the file really is a ``cls`` checkpoint.

    Another model's checkpoint is recognised by its hyper-parameters: names the ``cls`` constructor does not
    take (a parser's ``arch`` given to MaskGAN) mean another class wrote it.
    """
    ckpt = read_checkpoint(path)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    foreign = sorted(set(ckpt.get("hyper_parameters") or {}) - accepted)
    if foreign:
        raise CheckpointError(
            f"{path} is not a {cls.__name__} checkpoint: its hyper-parameters {', '.join(foreign[:5])} are not "
            f"arguments of {cls.__name__} (a checkpoint of another model?)"
        )
    try:
        return cls.load_from_checkpoint(path, map_location=map_location, **overrides)  # type: ignore[attr-defined]
    except (RuntimeError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(f"{path} does not fit {cls.__name__} (another model or version?): {first}") from None


def keep_state_layout(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer.load_state_dict`` give every per-parameter state tensor its parameter's memory layout.

    A checkpoint written by a ``channels_last`` model holds Adam moments in channels-last strides; resumed into
    a contiguous model (or the other way round) they keep those strides, and PyTorch's fused CPU Adam walks
    parameter, gradient and moments as flat buffers, so it would silently pair the wrong elements (the loop
    and foreach implementations index by position and are unaffected). The hook re-lays such state tensors
    out like their parameter after each load; values are unchanged. Returns the optimizer.
    """

    def relayout(opt: torch.optim.Optimizer) -> None:
        for param, state in opt.state.items():
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)

    optimizer.register_load_state_dict_post_hook(relayout)
    return optimizer
