"""dlib's 128-d face-recognition ResNet behind the same interface as ArcFace (``FaceEmbedder``).

A real, pretrained face-identity network that runs offline: the model files ship inside the
``face_recognition_models`` wheel and dlib comes from the prebuilt ``dlib-bin`` wheel (the ``faces`` extra).
Per image: the HOG frontal-face detector finds the face (the highest-scoring detection; the whole image
when nothing is found, e.g. on small generated faces), the 5-point shape predictor aligns it, and
``face_recognition_model_v1`` maps the aligned chip to 128 numbers. dlib compares faces by Euclidean
distance (< 0.6 = same person); the embeddings are L2-normalised here so that, as for ArcFace,
identity similarity is their cosine.

The ``face_recognition_models`` package is located, never imported: its ``__init__`` needs
``pkg_resources``, which modern environments lack.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"
DLIB_MODEL_FILES: tuple[str, ...] = (
    RECOGNITION_MODEL,
    SHAPE_PREDICTOR_5,
    SHAPE_PREDICTOR_68,
    CNN_FACE_DETECTOR,
)


def face_recognition_models_dir() -> Path:
    """The ``models/`` directory of the installed ``face_recognition_models`` package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package face_recognition_models is not installed; it ships dlib's model files"
            " (pip install 'portrait-gans[faces]', i.e. face-recognition-models and dlib-bin)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as error:
        raise ImportError("dlib is not installed; pip install dlib-bin (the 'faces' extra)") from error
    return dlib


def _model_file(directory: Path, name: str) -> str:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file {name} not found in {directory}")
    return str(path)


def to_uint8_images(images: Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] → (B, H, W, 3) uint8 RGB, the input dlib takes."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    scaled = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(scaled.permute(0, 2, 3, 1).numpy())


class DlibFaceEmbedder:
    """Unit-length dlib face descriptors (128-d) of images given as (B, 3, H, W) RGB in [-1, 1].

    Args:
        models_dir: directory with dlib's ``.dat`` files; default: the installed ``face_recognition_models``.
        upsample: times the detector upsamples the image before searching (finds smaller faces).
        num_jitters: dlib's test-time augmentation (0 = one deterministic pass).
        padding: context around the aligned face chip, dlib's default 0.25.
    """

    embedding_dim = 128

    def __init__(
        self,
        models_dir: str | Path | None = None,
        upsample: int = 1,
        num_jitters: int = 0,
        padding: float = 0.25,
    ) -> None:
        dlib = _import_dlib()
        directory = Path(models_dir) if models_dir is not None else face_recognition_models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(_model_file(directory, SHAPE_PREDICTOR_5))
        self.encoder = dlib.face_recognition_model_v1(_model_file(directory, RECOGNITION_MODEL))
        self.upsample = upsample
        self.num_jitters = num_jitters
        self.padding = padding

    def face_box(self, image: np.ndarray) -> tuple[Any, bool]:
        """``(box, found)``: the best-scoring face box of an (H, W, 3) uint8 image, else the whole image."""
        boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
        if len(boxes) == 0:
            height, width = image.shape[:2]
            return self._dlib.rectangle(0, 0, width - 1, height - 1), False
        return boxes[int(np.argmax(scores))], True

    def embed_array(self, image: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 RGB image → its (128,) descriptor, L2-normalised."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image)
        box, _ = self.face_box(image)
        shape = self.shape_predictor(image, box)
        descriptor = np.asarray(
            self.encoder.compute_face_descriptor(image, shape, self.num_jitters, self.padding),
            dtype=np.float32,
        )
        return descriptor / np.linalg.norm(descriptor)

    def embed(self, images: Tensor) -> Tensor:
        """:class:`FaceEmbedder` interface: (B, 3, H, W) in [-1, 1] → (B, 128) unit vectors, same device."""
        arrays = to_uint8_images(images)
        embeddings = np.stack([self.embed_array(image) for image in arrays])
        return torch.from_numpy(embeddings).to(images.device)

    __call__ = embed
