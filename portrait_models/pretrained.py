"""One table of every pretrained weight file the project can use, and the one way to find it.

No weight is downloaded at run time: users place the files in the cache directory
(``$PORTRAIT_GANS_WEIGHTS``, default ``~/.cache/portrait-gans/weights``) or pass an explicit path.
A missing file stops with one message naming the file, its expected sha256 and where to get it.

``sha256`` is the full digest where one is published, otherwise the digest prefix that the file name
itself carries (the torch-hub naming convention, e.g. ``vgg19-dcbb9e9d.pth``), otherwise ``None``
(nothing published: the file is accepted and its digest is reported, so a run log records it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    sha256: str | None
    source: str
    licence: str
    used_by: str


WEIGHTS: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            "inception_fid", "weights-inception-2015-12-05-6726825d.pth", "6726825d",
            "torch-fidelity GitHub release v0.2.0 (the TF-FID Inception ported to PyTorch; the file torchmetrics"
            " and torch-fidelity load)", "Apache-2.0 (torch-fidelity); weights from TensorFlow FID", "metrics FID/KID",
        ),
        WeightFile(
            "vgg19", "vgg19-dcbb9e9d.pth", "dcbb9e9d", "torchvision ImageNet VGG19 (IMAGENET1K_V1)",
            "BSD-3 (torchvision)", "perceptual and Gram losses",
        ),
        WeightFile(
            "resnet18", "resnet18-f37072fd.pth", "f37072fd", "torchvision ImageNet ResNet-18 (IMAGENET1K_V1)",
            "BSD-3 (torchvision)", "BiSeNet context path, attribute classifier backbone",
        ),
        WeightFile(
            "arcface_r50", "ms1mv3_arcface_r50_fp16_backbone.pth", None,
            "insightface arcface_torch model zoo, ms1mv3_arcface_r50_fp16/backbone.pth (rename on download)",
            "non-commercial research only (insightface model zoo)", "ArcFace identity verification",
        ),
        WeightFile(
            "arcface_r100", "ms1mv3_arcface_r100_fp16_backbone.pth", None,
            "insightface arcface_torch model zoo, ms1mv3_arcface_r100_fp16/backbone.pth (rename on download)",
            "non-commercial research only (insightface model zoo)", "ArcFace identity verification",
        ),
        WeightFile(
            "bisenet_celebamaskhq", "79999_iter.pth", None,
            "zllrunning/face-parsing.PyTorch README (Google Drive); class order differs, see labels.BISENET_*",
            "MIT (code); CelebAMask-HQ data non-commercial", "MagGAN soft masks (optional)",
        ),
        WeightFile(
            "maskgan_official_G", "latest_net_G.pth", None,
            "switchablenorms/CelebAMask-HQ MaskGAN_demo README (Google Drive), checkpoints/label2face_512p/",
            "CC BY-NC-SA 4.0 (CelebAMask-HQ)", "experiments.convert maskgan",
        ),
    )
}  # fmt: skip


def weights_dir() -> Path:
    """The cache directory users put weight files in."""
    return Path(os.environ.get("PORTRAIT_GANS_WEIGHTS", Path.home() / ".cache" / "portrait-gans" / "weights"))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class MissingWeightsError(FileNotFoundError):
    """A pretrained file is absent or does not match its published digest."""


def resolve_weights(name: str, path: str | Path | None = None, *, verify: bool = True) -> Path:
    """Return the local path of weight file ``name`` after checking it exists and matches its sha256.

    ``path`` overrides the cache location (a file, or a directory holding the file under its name).
    """
    if name not in WEIGHTS:
        raise KeyError(f"unknown weight file {name!r}; known: {', '.join(sorted(WEIGHTS))}")
    entry = WEIGHTS[name]
    candidate = Path(path) if path is not None else weights_dir() / entry.filename
    if candidate.is_dir():
        candidate = candidate / entry.filename
    if not candidate.is_file():
        raise MissingWeightsError(
            f"pretrained weights {name!r} not found at {candidate}. Expected file {entry.filename}"
            f" (sha256 {entry.sha256 or 'not published'}), from: {entry.source}. Put it in {weights_dir()}"
            " (or set PORTRAIT_GANS_WEIGHTS) and run again; `python -m experiments.weights` lists what is present."
        )
    if verify and entry.sha256 is not None:
        digest = sha256_of(candidate)
        if not digest.startswith(entry.sha256):
            raise MissingWeightsError(
                f"{candidate} has sha256 {digest}, expected {entry.sha256}{'…' if len(entry.sha256) < 64 else ''}"
                f" for {name!r} ({entry.source}); the file is corrupt or a different release"
            )
    return candidate
