"""PortraitGAN's applications with a trained model (§III-E, Figs. 4-5): landmark editing, continuous editing by
landmark interpolation, modality transfer; the functions behind ``python -m experiments.edit portraitgan`` and
the browser editor.

All landmarks are (68, 2) pixel (x, y) in the frame of the image they belong to; :func:`to_frame` maps them to
the model's working size (the image is squashed to S×S, as the research code resizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from portrait_models.portraitgan.landmark_map import (
    FIG5_ORDER,
    fig5_schedule,
    interpolate_landmarks,
)
from portrait_models.portraitgan.module import PortraitGAN

#: The synthetic world's modality order (datamodules.synthetic.MODALITIES); real runs name their folders.
DEFAULT_MODALITY_NAMES = ("photo", "sketch", "cartoon", "painting")


def load_portraitgan(checkpoint: str | Path, device: str = "cpu") -> PortraitGAN:
    """A trained PortraitGAN from a Lightning checkpoint, in eval mode (the texture VGG is not needed for
    inference, so no VGG weight file is read)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    try:
        model = PortraitGAN.load_from_checkpoint(
            checkpoint, map_location=device, texture_pretrained=False, texture_weights=None
        )
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{checkpoint}: not a PortraitGAN checkpoint ({err})") from None
    return model.to(device).eval()


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a missing or undecodable file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as err:
        raise ValueError(f"{path}: cannot decode the image ({err})") from None


def to_tensor(image: np.ndarray, size: int) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) in [-1, 1] (bicubic squash to the working size)."""
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)


def to_frame(landmarks: np.ndarray, image_shape: tuple[int, ...], size: int) -> np.ndarray:
    """Landmarks of an (H, W) image mapped to the size×size working frame (pixel-centre convention)."""
    h, w = image_shape[:2]
    scale = np.array([size / w, size / h])
    return (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5


def read_landmarks(path: str | Path) -> np.ndarray:
    """68 (x, y) points from an iBUG ``.pts`` file, a ``.json`` list of pairs or a ``.npy`` array."""
    from datamodules.emotion import read_pts

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    if path.suffix == ".pts":
        return read_pts(path).astype(np.float64)
    try:
        points = np.asarray(json.loads(path.read_text()) if path.suffix == ".json" else np.load(path), np.float64)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: cannot read landmarks ({err}); expected .pts, .json or .npy") from None
    if points.shape != (68, 2):
        raise ValueError(f"{path}: holds landmarks of shape {points.shape}; expected (68, 2) pixel (x, y)")
    return points


def detect_landmarks(image: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks of the best face in a plain photo (needs the ``faces`` extra)."""
    from datamodules.emotion import detect_landmarks as detect
    from datamodules.emotion import dlib_landmark_models

    detector, predictor = dlib_landmark_models()
    faces = detect(image, detector, predictor, upsample=1)
    if not faces:
        raise ValueError("dlib found no face in the image; pass --landmarks FILE (.pts/.json/.npy)")
    return faces[0].astype(np.float64)


def modality_index(name_or_index: str | int, names: tuple[str, ...], num_modalities: int) -> int:
    """A modality given by name (from ``names``) or by index, checked against the model's code size."""
    text = str(name_or_index)
    index = int(text) if text.isdigit() else (names.index(text) if text in names else -1)
    if not 0 <= index < max(1, num_modalities):
        raise ValueError(f"unknown modality {text!r}; the model has {num_modalities} codes named {list(names)}")
    return index


@torch.no_grad()
def translate(model: PortraitGAN, image: Tensor, landmarks: np.ndarray, modality: int) -> Tensor:
    """G(I, render(landmarks), c_modality) for one (1, 3, S, S) image; landmarks in the S×S frame."""
    points = torch.as_tensor(np.asarray(landmarks, np.float32))[None]
    return model.generate(image.to(model.device), points, torch.tensor([modality])).cpu()


def interpolation_frames(
    model: PortraitGAN, image: Tensor, start: np.ndarray, end: np.ndarray, modality: int, frames: int
) -> list[Tensor]:
    """``frames`` outputs G(I, render(L(t)), c) for t evenly from 0 to 1 (continuous editing)."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    return [translate(model, image, interpolate_landmarks(start, end, t), modality) for t in np.linspace(0, 1, frames)]


def fig5_frames(
    model: PortraitGAN, first: Tensor, last: Tensor, start: np.ndarray, end: np.ndarray, modality: int
) -> list[tuple[float, Tensor]]:
    """Fig. 5's recursive in-betweening: faces 1 and 7 real, 4, 2, 5, 3, 6 each generated from the left member
    of its pair at the midpoint landmarks; returned as (t, image) in spatial order."""
    times = dict(fig5_schedule())
    faces = {1: first.cpu(), 7: last.cpu()}
    for new, source, _, _ in FIG5_ORDER:
        faces[new] = translate(model, faces[source], interpolate_landmarks(start, end, times[new]), modality)
    return [(times[k], faces[k]) for k in sorted(faces)]


def to_uint8(image: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    image = image[0] if image.dim() == 4 else image
    return ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def save_image(image: Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def save_gif(frames: list[Tensor], path: str | Path, duration_ms: int = 120) -> Path:
    """An animated GIF of the frames, forth and back (loops forever)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [Image.fromarray(to_uint8(f)) for f in frames]
    loop = pictures + pictures[-2:0:-1]
    loop[0].save(path, save_all=True, append_images=loop[1:], duration=duration_ms, loop=0)
    return path
