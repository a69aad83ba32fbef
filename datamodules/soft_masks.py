"""Cached soft parser masks: one quantized file per image, as ``experiments.parse`` writes them.

MagGAN conditions on the 19-class soft masks of a pre-trained parser. They are computed once per dataset
and stored as ``<cache>/<image name>.npz`` holding ``probs``: uint8 (C, H, W) = round(255 · p). Reading
dequantizes and renormalizes so the classes sum to 1 at every pixel (quantization error ≤ 1/510 per class).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from datamodules.base import DatasetError, MissingDataError

PARSE_COMMAND = (
    "python -m experiments.parse --checkpoint <parser.ckpt> (or --bisenet 79999_iter.pth) --dataset celeba "
    "--data {root} --out {cache} --image-size 256"
)


def soft_mask_path(cache_dir: str | Path, name: str) -> Path:
    return Path(cache_dir) / f"{name}.npz"


def require_soft_mask_cache(
    cache_dir: str | Path, names: list[str], root: str | Path, command: str = PARSE_COMMAND
) -> Path:
    """Check that ``cache_dir`` holds one soft mask per name (a name may hold '/': nested files); one error
    naming the first missing file, how many are missing and the command (``{root}``, ``{cache}``) that builds
    the cache."""
    cache = Path(cache_dir).expanduser()
    present = (
        {p.relative_to(cache).with_suffix("").as_posix() for p in cache.rglob("*.npz")} if cache.is_dir() else set()
    )
    missing = [n for n in names if n not in present]
    if missing:
        raise MissingDataError(
            f"soft-mask cache {cache} is {'missing' if not cache.is_dir() else 'incomplete'}: "
            f"{len(missing)} of {len(names)} masks absent, first {soft_mask_path(cache, missing[0])}; build it with "
            f"`{command.format(root=root, cache=cache)}`"
        )
    return cache


def one_hot_soft_mask(label: np.ndarray, num_classes: int = 19) -> torch.Tensor:
    """(H, W) integer labels -> (C, H, W) one-hot "soft" mask (exact labels standing in for a parser)."""
    if label.max(initial=0) >= num_classes:
        raise ValueError(f"label value {int(label.max())} >= num_classes={num_classes}")
    return torch.nn.functional.one_hot(torch.from_numpy(label.astype(np.int64)), num_classes).permute(2, 0, 1).float()


def quantize(probs: torch.Tensor) -> np.ndarray:
    """(C, H, W) probabilities -> uint8 (C, H, W)."""
    return (probs.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def save_soft_mask(cache_dir: str | Path, name: str, probs: torch.Tensor) -> Path:
    path = soft_mask_path(cache_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:  # atomic: a crash never leaves a truncated mask under the real name
            np.savez_compressed(handle, probs=quantize(probs))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_soft_mask(cache_dir: str | Path, name: str, num_classes: int = 19) -> torch.Tensor:
    """(C, H, W) float32 soft mask summing to 1 over C; a clear error for a missing or wrong file."""
    path = soft_mask_path(cache_dir, name)
    if not path.is_file():
        raise MissingDataError(
            f"soft mask not found: {path} (build the cache with `python -m experiments.parse --checkpoint ...`)"
        )
    try:
        with np.load(path) as archive:
            probs = archive["probs"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated, garbage, wrong keys
        raise DatasetError(
            f"{path}: not a soft-mask file (expected an .npz with uint8 'probs'): {err}; delete it and rebuild the "
            "cache with `python -m experiments.parse ...`"
        ) from None
    if probs.ndim != 3 or probs.shape[0] != num_classes or probs.dtype != np.uint8:
        raise DatasetError(
            f"{path}: soft mask has shape {probs.shape} and dtype {probs.dtype}; expected uint8 ({num_classes}, H, W)"
        )
    soft = torch.from_numpy(probs.astype(np.float32))
    total = soft.sum(0, keepdim=True)
    if bool((total == 0).any()):  # every pixel belongs somewhere; an all-zero pixel is a broken file
        y, x = (int(v) for v in (total[0] == 0).nonzero()[0])
        raise DatasetError(f"{path}: pixel (x={x}, y={y}) has probability 0 for every class; expected a parser output")
    return soft / total
