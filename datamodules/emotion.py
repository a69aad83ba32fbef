"""Faces of several identities showing several emotions, with 68 landmarks: PortraitGAN's data (RaFD-like).

Photos follow RaFD's file naming. Landmarks come from iBUG/300-W ``.pts`` sidecars or from a landmark
cache file that dlib's 68-point predictor fills once::

    python -m datamodules.emotion build-landmarks /data/RaFD [--out FILE] [--upsample 1] [--downsample 1]

(needs the ``faces`` extra: ``dlib-bin`` and ``face-recognition-models``).

Modalities (PortraitGAN): modality 0 is the release itself (``photo``); every other modality is a folder
``root/modalities/<name>/`` holding the same relative paths, made by any tool (the paper used fast neural
style). Every modality of a photo shares the photo's landmarks. Without a style-transfer network at hand,
OpenCV's non-photorealistic filters make three offline::

    python -m datamodules.emotion build-modalities /data/RaFD [--styles pencil_sketch stylization edge_preserving]

which writes ``root/modalities/{pencil_sketch,stylization,edge_preserving}/`` (and skips files already there).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from datamodules.base import (
    IMAGE_SUFFIXES,
    DatasetError,
    FaceDataModule,
    FaceDataset,
    MissingDataError,
    read_lines,
    read_rgb,
    warn_once,
)
from datamodules.labels import EMOTION_INDEX, RAFD_EMOTIONS
from datamodules.transforms import FaceSample, to_batch

Layout = Literal["auto", "rafd", "identity_folders"]
SplitBy = Literal["frames", "identity"]
Partner = Literal["other_emotion", "uniform"]
Crop = Literal["none", "landmark_box"]
MODALITY_FOLDER = "modalities"
LANDMARK_CACHE = "landmarks_68.json"
LANDMARK_CACHE_FORMAT = "portrait-gans 68-point landmarks v1"
NUM_LANDMARKS = 68
# Rafd{angle}_{subject}_{ethnicity}_{gender}_{emotion}_{gaze}, e.g. Rafd090_01_Caucasian_female_angry_frontal
RAFD_NAME = re.compile(
    r"^Rafd(?P<angle>\d{3})_(?P<subject>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<gender>male|female)"
    r"_(?P<emotion>[a-z]+)_(?P<gaze>frontal|left|right)$"
)


# --------------------------------------------------------------------------------------------- file names
@dataclass(frozen=True)
class RafdName:
    """The fields of a RaFD file name."""

    angle: int  # camera angle in degrees: 0, 45, 90 (frontal camera), 135, 180
    subject: int
    ethnicity: str
    gender: str
    emotion: int  # index into labels.RAFD_EMOTIONS
    gaze: str


def parse_rafd_name(path: Path) -> RafdName:
    """The RaFD fields of ``path.stem``; a DatasetError for a non-RaFD name or an unknown emotion."""
    match = RAFD_NAME.match(path.stem)
    if match is None:
        raise DatasetError(f"{path}: not a RaFD name Rafd<angle>_<id>_<ethnicity>_<gender>_<emotion>_<gaze>")
    if match["emotion"] not in EMOTION_INDEX:
        raise DatasetError(f"{path}: unknown emotion {match['emotion']!r}; expected one of {', '.join(RAFD_EMOTIONS)}")
    return RafdName(
        angle=int(match["angle"]),
        subject=int(match["subject"]),
        ethnicity=match["ethnicity"],
        gender=match["gender"],
        emotion=EMOTION_INDEX[match["emotion"]],
        gaze=match["gaze"],
    )


def _rafd_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and RAFD_NAME.match(p.stem) is not None
    )


def discover_images(root: Path, layout: Layout = "auto") -> tuple[str, list[Path]]:
    """The layout in use and the RaFD-named photos under ``root`` (sorted, relative to ``root``).

    ``rafd``: one flat folder; ``identity_folders``: ``root/<identity>/<RaFD name>``; ``auto`` picks
    ``rafd`` when ``root`` itself holds RaFD-named photos, else ``identity_folders``.
    """
    if layout not in ("auto", "rafd", "identity_folders"):
        raise ValueError(f"unknown layout {layout!r}; expected 'auto', 'rafd' or 'identity_folders'")
    flat = _rafd_images(root)
    if layout == "auto":
        layout = "rafd" if flat else "identity_folders"
    if layout == "rafd":
        images = flat
    else:
        images = [
            p for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") for p in _rafd_images(d)
        ]
    if not images:
        raise DatasetError(
            "no RaFD-named photos (Rafd<angle>_<id>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg) found in "
            f"{root} "
            f"with layout {layout!r}"
        )
    return layout, [p.relative_to(root) for p in images]


# ---------------------------------------------------------------------------------------------- landmarks
def read_pts(path: Path) -> np.ndarray:
    """Read an iBUG/300-W ``.pts`` file (``version: 1``, ``n_points: 68``, ``{``, 68 lines ``x y``, ``}``).

    The format counts pixels from 1 (the centre of the top-left pixel is (1, 1)), so 1 is subtracted to
    give the pixel-centre (x, y) convention used throughout (top-left centre (0, 0)).
    """
    lines = read_lines(path)
    try:
        header = dict(line.split(":", 1) for line in lines[: lines.index("{")])
        n_points = int(header["n_points"])
        body = lines[lines.index("{") + 1 : lines.index("}")]
    except (ValueError, KeyError) as err:
        raise DatasetError(f"{path}: not an iBUG .pts file ('n_points: 68', '{{', 68 lines 'x y', '}}')") from err
    rows = []
    for number, line in enumerate(body, start=1):
        try:
            row = [float(v) for v in line.split()]
        except ValueError:
            row = []
        if len(row) != 2 or not np.isfinite(row).all():
            raise DatasetError(f"{path}: point {number} is {line[:40]!r}; expected two finite numbers 'x y'")
        rows.append(row)
    points = np.array(rows, dtype=np.float32).reshape(-1, 2)
    if n_points != NUM_LANDMARKS or points.shape != (NUM_LANDMARKS, 2):
        raise DatasetError(f"{path}: holds {len(points)} points; expected {NUM_LANDMARKS} (x y) rows")
    return points - 1.0


def write_pts(path: Path, points: np.ndarray) -> None:
    """Write pixel-centre (x, y) points as an iBUG ``.pts`` file (1-based, see :func:`read_pts`)."""
    rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(points, dtype=np.float64))
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{rows}\n}}\n", encoding="utf-8")


@dataclass
class LandmarkCache:
    """Landmarks of a folder of photos keyed by path relative to the root (the JSON written by
    ``build-landmarks``). ``skipped`` maps the photos left out to the reason (no face, several faces)."""

    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        payload = {
            "format": LANDMARK_CACHE_FORMAT,
            "convention": "pixel-centre (x, y), top-left pixel centre = (0, 0)",
            "landmarks": {k: np.round(v, 3).tolist() for k, v in sorted(self.landmarks.items())},
            "skipped": dict(sorted(self.skipped.items())),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=0), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LandmarkCache:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("format") != LANDMARK_CACHE_FORMAT:
                raise ValueError(f"format is {payload.get('format')!r}")
            landmarks = {k: np.asarray(v, dtype=np.float32) for k, v in payload["landmarks"].items()}
        except FileNotFoundError:
            raise MissingDataError(f"landmark cache not found: {path}") from None
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path}: not a landmark cache ({LANDMARK_CACHE_FORMAT!r}): {err}") from err
        bad = next((k for k, v in landmarks.items() if v.shape != (NUM_LANDMARKS, 2)), None)
        if bad is not None:
            raise DatasetError(f"{path}: entry {bad!r} has shape {landmarks[bad].shape}; expected (68, 2)")
        return cls(landmarks, dict(payload.get("skipped", {})))


def dlib_landmark_models() -> tuple[Any, Any]:
    """dlib's HOG frontal face detector and 68-point shape predictor (from the ``face_recognition_models``
    wheel, located without importing that package, whose ``__init__`` needs ``pkg_resources``)."""
    try:
        import dlib
    except ImportError as err:
        raise ImportError("landmark detection needs dlib: pip install 'portrait-gans[faces]' (dlib-bin)") from err
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError("the 68-point model ships in face-recognition-models: pip install 'portrait-gans[faces]'")
    model = Path(locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not model.is_file():
        raise MissingDataError(f"dlib 68-point predictor not found: expected {model}")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


def detect_landmarks(
    image: np.ndarray, detector: Any, predictor: Any, *, upsample: int = 1, downsample: int = 1
) -> list[np.ndarray]:
    """68 landmarks (pixel-centre x, y) of every face dlib finds in an RGB image, best detection first.

    Detection may run on a ``downsample``-times smaller copy (PortraitGAN detects on 4x smaller video
    frames); the predictor always runs on the full image, inside the box scaled back up.
    """
    import cv2
    import dlib

    small = image
    if downsample > 1:
        small = cv2.resize(
            image, (image.shape[1] // downsample, image.shape[0] // downsample), interpolation=cv2.INTER_AREA
        )
    boxes, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
    faces = []
    for _, box in sorted(zip(scores, boxes, strict=True), key=lambda pair: -pair[0]):
        full = dlib.rectangle(*(int(v * downsample) for v in (box.left(), box.top(), box.right(), box.bottom())))
        shape = predictor(image, full)
        faces.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32))
    return faces


def build_landmark_cache(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    layout: Layout = "auto",
    upsample: int = 1,
    downsample: int = 1,
    single_face_only: bool = False,
) -> LandmarkCache:
    """Run dlib over every RaFD-named photo under ``root`` and save the landmark cache.

    The cache goes to ``out`` (default ``root/landmarks_68.json``). A photo without a detected face is
    skipped and reported. With several detections the best-scoring face is kept, unless
    ``single_face_only`` (PortraitGAN's rule for video frames) skips the photo.
    """
    root = Path(root)
    _, images = discover_images(root, layout)
    detector, predictor = dlib_landmark_models()
    cache = LandmarkCache()
    for rel in tqdm(images, desc="dlib landmarks"):
        faces = detect_landmarks(read_rgb(root / rel), detector, predictor, upsample=upsample, downsample=downsample)
        key = rel.as_posix()
        if not faces:
            cache.skipped[key] = "no face detected"
        elif len(faces) > 1 and single_face_only:
            cache.skipped[key] = f"{len(faces)} faces detected"
        else:
            cache.landmarks[key] = faces[0]
    cache.save(Path(out) if out is not None else root / LANDMARK_CACHE)
    return cache


# ------------------------------------------------------------------------------------------------ splits
def identity_split(identities: Sequence[int], *, test_fraction: float, val_fraction: float, seed: int) -> list[str]:
    """Per identity, a deterministic ~``test_fraction`` of its images to ``test`` (PortraitGAN's
    ``train_test_split.py`` holds out 10% of each identity's frames), then ~``val_fraction`` to ``val``.

    Each count is ``round(fraction * n)``, at least 1 when the fraction is positive and the identity has
    two or more images, and at most ``n - 1`` in all so each identity keeps a training image. The images
    held out are drawn with a generator seeded by (seed, identity), independent of the other identities.
    """
    splits = ["train"] * len(identities)
    groups: dict[int, list[int]] = defaultdict(list)
    for position, identity in enumerate(identities):
        groups[identity].append(position)
    for identity, positions in groups.items():
        n = len(positions)
        order = np.random.default_rng([seed, identity]).permutation(n)
        counts = [_held_out(fraction, n) for fraction in (test_fraction, val_fraction)]
        counts[1] = min(counts[1], max(0, n - 1 - counts[0]))
        for k in order[: counts[0]]:
            splits[positions[k]] = "test"
        for k in order[counts[0] : counts[0] + counts[1]]:
            splits[positions[k]] = "val"
    return splits


def identity_disjoint_split(identities: Sequence[int], *, test_fraction: float, seed: int) -> list[str]:
    """Whole identities to ``test`` (PortraitGAN: "split into training and test sets by 7:3 according to
    identity"): the sorted distinct ids permuted by ``rng(seed)``, the first ``round(test_fraction·N_id)``
    are test (at least 1 when the fraction is positive and there are two or more ids), the rest train."""
    distinct = sorted(set(identities))
    order = np.random.default_rng(seed).permutation(len(distinct))
    count = _held_out(test_fraction, len(distinct))
    test = {distinct[k] for k in order[:count]}
    return ["test" if identity in test else "train" for identity in identities]


def landmark_box_crops(records: Sequence[Any], names: dict[Path, RafdName]) -> dict[Path, tuple[int, int, int]]:
    """``path -> (x0, y0, side)``: one square per (identity, angle, gaze) from the mean landmark box of the
    group (centre (cx, cy - 0.15 h), side round(2·max(w, h)))."""
    groups: dict[tuple[int, int, str], list[Any]] = defaultdict(list)
    for record in records:
        name = names[record.path]
        groups[(name.subject, name.angle, name.gaze)].append(record)
    crops = {}
    for members in groups.values():
        boxes = np.array([[*r.landmarks.min(0), *r.landmarks.max(0)] for r in members], np.float64)
        x0, y0, x1, y1 = boxes.mean(0)
        w, h = x1 - x0, y1 - y0
        side = int(round(2.0 * max(w, h)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.15 * h
        corner = (int(round(cx - side / 2)), int(round(cy - side / 2)), side)
        crops.update({r.path: corner for r in members})
    return crops


def crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The ``side``×``side`` window at (x0, y0) of an (H, W, C) image, edge pixels replicated outside it."""
    import cv2

    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side])


def modality_path(root: Path, relative: Path, modality: str, index: int) -> Path:
    """Where modality ``index`` (named ``modality``) of photo ``relative`` lives: the release itself for 0,
    else ``root/modalities/<modality>/<relative>``."""
    return root / relative if index == 0 else root / MODALITY_FOLDER / modality / relative


def _held_out(fraction: float, n: int) -> int:
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


# ---------------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class EmotionRecord:
    """One photo: path relative to the root, its RaFD fields, landmarks and split."""

    path: Path
    identity: int
    emotion: int
    angle: int
    landmarks: np.ndarray = field(repr=False, compare=False)
    split: str = "train"


class EmotionLandmarks(FaceDataset):
    """RaFD-style emotion photos with 68 landmarks, one photo per item.

    Layouts::

        layout="rafd":              root/Rafd090_01_Caucasian_female_angry_frontal.jpg ...
        layout="identity_folders":  root/<identity>/Rafd090_01_Caucasian_female_angry_frontal.jpg ...
        landmarks:                  a .pts sidecar beside each photo (same stem), or root/landmarks_68.json
                                    written by ``python -m datamodules.emotion build-landmarks ROOT``

    Names follow RaFD: ``Rafd{angle:03d}_{subject}_{ethnicity}_{gender}_{emotion}_{gaze}``; the emotion
    indexes ``labels.RAFD_EMOTIONS``; the identity is the subject number of the name. Other files are ignored.

    Items: ``image``, ``landmarks`` (68,2) pixel (x, y) in the output frame, ``emotion``, ``identity``,
    ``modality`` (0: the photo), ``name``.

    Split (PortraitGAN holds out 10% of each identity's frames as test; there is no validation set):
    :func:`identity_split` with ``test_fraction`` (0.1) and ``val_fraction``. With ``val_fraction=0``
    (default) the ``val`` split is the test split, which is where PortraitGAN draws its samples from.

    Args:
        root: the folder of photos.
        split: ``train``, ``val``, ``test`` or ``all``.
        image_size: output side (or (height, width)).
        augment: random horizontal flip (landmark indices swapped); PortraitGAN does not flip.
        photometric: colour jitter on top of the flip (when ``augment``).
        layout: ``"auto"``, ``"rafd"`` or ``"identity_folders"``.
        landmarks: a landmark cache file; None: ``root/landmarks_68.json`` if present, else ``.pts`` files.
        angles: camera angles to keep (e.g. ``(90,)``, the frontal camera StarGAN uses); None keeps all.
        test_fraction, val_fraction, seed: the split (see :func:`identity_split`).
        split_by: ``"frames"`` (the per-identity rule above) or ``"identity"`` (PortraitGAN's paper split:
            whole identities, :func:`identity_disjoint_split`; ``val`` is the test split).
        modalities: names of the modalities, the first being the photos under ``root`` (e.g. ``[photo,
            la_muse, rain_princess, wave]``); the others are read from ``root/modalities/<name>/`` with the
            photo's relative path, and a missing file is an error naming it. None: photos only.
        crop: ``"none"`` (the whole photo, squashed to ``image_size``) or ``"landmark_box"``: one square crop per
            (identity, camera angle, gaze) from the mean box (w, h) of that group's landmarks, centred at
            (cx, cy - 0.15 h), side 2·max(w, h), replicate padding outside the photo; the same crop for every
            emotion and modality of the group, so pairs stay aligned (landmarks follow it).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "all",
        image_size: int | tuple[int, int] = 64,
        augment: bool = False,
        *,
        photometric: bool = False,
        layout: Layout = "auto",
        landmarks: str | os.PathLike[str] | None = None,
        angles: Sequence[int] | None = None,
        test_fraction: float = 0.1,
        val_fraction: float = 0.0,
        seed: int = 0,
        split_by: SplitBy = "frames",
        modalities: Sequence[str] | None = None,
        crop: Crop = "none",
    ) -> None:
        if crop not in ("none", "landmark_box"):
            raise ValueError(f"crop must be 'none' or 'landmark_box', got {crop!r}")
        if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1):
            raise ValueError(f"test_fraction and val_fraction must lie in [0, 1); got {test_fraction}, {val_fraction}")
        if split_by not in ("frames", "identity"):
            raise ValueError(f"split_by must be 'frames' or 'identity', got {split_by!r}")
        if split_by == "identity" and val_fraction > 0:
            raise ValueError("split_by='identity' has no validation split (val is the test split); set val_fraction=0")
        names_given = ["photo"] if modalities is None else [str(m) for m in modalities]
        if not names_given or len(set(names_given)) != len(names_given):
            raise ValueError(f"modalities must be distinct names, the photos first; got {names_given}")
        super().__init__(root, split, image_size, augment=augment, photometric=photometric, num_classes=None)
        self.seed = seed
        self.modalities = tuple(names_given)
        self.layout, paths = discover_images(self.root, layout)
        names = {p: parse_rafd_name(p) for p in paths}
        if angles is not None:
            paths = [p for p in paths if names[p].angle in set(angles)]
        points = self._landmarks(paths, landmarks)
        paths = [p for p in paths if p in points]
        identities = [names[p].subject for p in paths]
        if split_by == "identity":
            splits = identity_disjoint_split(identities, test_fraction=test_fraction, seed=seed)
        else:
            splits = identity_split(identities, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
        self.records = [
            EmotionRecord(p, names[p].subject, names[p].emotion, names[p].angle, points[p], assigned)
            for p, assigned in zip(paths, splits, strict=True)
        ]
        self.crops = landmark_box_crops(self.records, names) if crop == "landmark_box" else {}
        wanted = "test" if split == "val" and val_fraction == 0 else split
        self._set_items([r for r in self.records if wanted in ("all", r.split)], f"the {self.layout} photos under it")
        self._check_modalities()

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    def _check_modalities(self) -> None:
        """Every item needs a file in every modality folder: the first one missing is named."""
        for index, name in enumerate(self.modalities[1:], start=1):
            folder = self.root / MODALITY_FOLDER / name
            if not folder.is_dir():
                raise MissingDataError(
                    f"modality {name!r}: folder {folder} not found; make it with any style-transfer tool (same "
                    f"relative paths as the photos) or python -m datamodules.emotion build-modalities {self.root}"
                )
            for record in self.items:
                path = modality_path(self.root, record.path, name, index)
                if not path.is_file():
                    raise DatasetError(f"modality {name!r} has no file for {record.path}: expected {path}")

    def _landmarks(self, paths: list[Path], cache_file: str | os.PathLike[str] | None) -> dict[Path, np.ndarray]:
        """Landmarks of every photo, from the cache file or the ``.pts`` sidecars; photos the cache lists as
        skipped (no face found) are left out."""
        cache_path = Path(cache_file) if cache_file is not None else self.root / LANDMARK_CACHE
        if cache_file is not None or cache_path.is_file():
            cache = LandmarkCache.load(cache_path)
            skipped = [p for p in paths if p.as_posix() in cache.skipped]
            if skipped:
                warn_once(f"{len(skipped)} photos under {self.root} have no landmarks ({cache_path} lists them)")
            missing = next((p for p in paths if p.as_posix() not in cache.landmarks and p not in skipped), None)
            if missing is not None:
                raise DatasetError(
                    f"{cache_path} has no landmarks for {missing}; rebuild it with "
                    f"python -m datamodules.emotion build-landmarks {self.root}"
                )
            return {p: cache.landmarks[p.as_posix()] for p in paths if p not in skipped}
        points = {}
        for p in paths:
            sidecar = (self.root / p).with_suffix(".pts")
            if not sidecar.is_file():
                raise MissingDataError(
                    f"no landmarks for {self.root / p}: expected {sidecar} or a cache {cache_path} "
                    f"(python -m datamodules.emotion build-landmarks {self.root})"
                )
            points[p] = read_pts(sidecar)
        return points

    def load_record(self, record: EmotionRecord, modality: int = 0) -> FaceSample:
        """The photo of ``record`` in modality ``modality`` (its landmarks in every modality)."""
        path = modality_path(self.root, record.path, self.modalities[modality], modality)
        image, landmarks = read_rgb(path), record.landmarks
        if record.path in self.crops:
            x0, y0, side = self.crops[record.path]
            image, landmarks = crop_square(image, x0, y0, side), landmarks - np.array([x0, y0], np.float32)
        return FaceSample(
            image=image,
            points={"landmarks": landmarks},
            extras={
                "emotion": record.emotion,
                "identity": record.identity,
                "modality": modality,
                "name": record.path.stem,
            },
        )

    def load(self, index: int) -> FaceSample:
        return self.load_record(self.items[index])


def check_partner_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """``weights`` as a plain dict of RaFD emotion name -> weight > 0 (empty for None), or a ValueError."""
    if not weights:
        return {}
    unknown = sorted(set(weights) - set(EMOTION_INDEX))
    if unknown:
        raise ValueError(f"partner_weights names unknown emotions {unknown}; RaFD's are {list(RAFD_EMOTIONS)}")
    checked = {str(k): float(v) for k, v in weights.items()}
    bad = {k: v for k, v in checked.items() if not np.isfinite(v) or v <= 0}
    if bad:
        raise ValueError(f"partner_weights must be finite and > 0, got {bad}")
    return checked


class EmotionPairs(EmotionLandmarks):
    """Pairs of photos of the same identity, as PortraitGAN trains on (I_A, L_A) -> (I_B, L_B).

    Item ``i`` is photo ``i`` of the split (``image``, ``landmarks``, ``emotion``, ``modality``, ``name``)
    with a partner of the same identity (``image_b``, ``landmarks_b``, ``emotion_b``, ``modality_b``,
    ``name_b``) and the shared ``identity``.

    ``partner="other_emotion"``: another photo of the same split, preferably with another emotion; an
    identity with a single photo in the split (usual in a 10% test split) takes its partner from its other
    photos; photos of identities with no other photo at all are left out. ``partner="uniform"``
    (PortraitGAN's rule: "a tuple of four images randomly chosen from possible modalities of the same
    identity"): any photo of the identity in the split, the item itself included (a pure modality-transfer
    pair). With several ``modalities`` both sides' modalities are drawn uniformly and independently.
    Draws are random on ``train`` and fixed (seeded by ``seed`` and ``i``) on other splits.
    ``partner_weights`` (train only; e.g. ``{"surprised": 4}``): a candidate partner is drawn with probability
    proportional to the weight of its emotion (emotions not named weigh 1; weights > 0), so a stated share of
    the pairs has a partner with that emotion; val/test pairs keep the plain rule. Other arguments as
    :class:`EmotionLandmarks`.
    """

    def __init__(
        self,
        *args: Any,
        partner: Partner = "other_emotion",
        partner_weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if partner not in ("other_emotion", "uniform"):
            raise ValueError(f"partner must be 'other_emotion' or 'uniform', got {partner!r}")
        self.partner = partner
        self.partner_weights = check_partner_weights(partner_weights)
        super().__init__(*args, **kwargs)
        self.random_pairs = self.split == "train"
        by_identity: dict[int, list[EmotionRecord]] = defaultdict(list)
        for record in self.records:
            by_identity[record.identity].append(record)
        pairs = [(r, self._partners(r, by_identity[r.identity])) for r in self.items]
        self._set_items([r for r, c in pairs if c], "photos with a partner of the same identity")
        self.partners = [c for _, c in pairs if c]
        self.partner_probabilities: list[torch.Tensor] | None = None
        if self.partner_weights and self.random_pairs:
            weight = [self.partner_weights.get(name, 1.0) for name in RAFD_EMOTIONS]
            self.partner_probabilities = [torch.tensor([weight[r.emotion] for r in c], dtype=torch.float64)
                                          for c in self.partners]  # fmt: skip

    def _partners(self, record: EmotionRecord, same_identity: list[EmotionRecord]) -> list[EmotionRecord]:
        if self.partner == "uniform":
            return [r for r in same_identity if self.split == "all" or r.split == record.split]
        others = [r for r in same_identity if r.path != record.path]
        same_split = [r for r in others if self.split == "all" or r.split == record.split]
        pool = same_split or others
        other_emotion = [r for r in pool if r.emotion != record.emotion]
        return other_emotion or pool

    def draws(self, index: int) -> tuple[int, int, int]:
        """(partner choice, modality of A, modality of B) of item ``index``: random on train, else fixed."""
        candidates, n = len(self.partners[index]), self.num_modalities
        if self.random_pairs:
            if self.partner_probabilities is None:
                choice = int(torch.randint(candidates, ()))
            else:  # one weighted draw in place of the uniform one (no draw is wasted)
                choice = int(torch.multinomial(self.partner_probabilities[index], 1))
            m_a, m_b = (int(torch.randint(n, ())) for _ in range(2))
        else:
            rng = np.random.default_rng([self.seed, index])
            choice = int(rng.integers(candidates))
            m_a, m_b = (int(v) for v in rng.integers(n, size=2))
        if n == 1:
            m_a = m_b = 0
        return choice, m_a, m_b

    def __getitem__(self, index: int) -> dict[str, Any]:
        choice, m_a, m_b = self.draws(index)
        a = to_batch(self.transform(self.load_record(self.items[index], m_a)))
        b = to_batch(self.transform(self.load_record(self.partners[index][choice], m_b)))
        return {
            **a,
            "image_b": b["image"],
            "landmarks_b": b["landmarks"],
            "emotion_b": b["emotion"],
            "modality_b": b["modality"],
            "name_b": b["name"],
        }


class EmotionLandmarksDataModule(FaceDataModule):
    """Loaders over :class:`EmotionLandmarks` or, with ``paired``, :class:`EmotionPairs`.

    The synthetic default writes ``max(2, synthetic_images // 8)`` identities with the 8 RaFD emotions each
    (frontal camera and gaze, ``.pts`` landmarks).

    Args (beyond :class:`~datamodules.base.FaceDataModule`'s): ``paired``, ``partner``, ``partner_weights``
    (:class:`EmotionPairs`)
    and the :class:`EmotionLandmarks` options ``layout``, ``landmarks``, ``angles``, ``test_fraction``,
    ``val_fraction``, ``split_by``, ``modalities``, ``crop``. The synthetic default writes every listed modality
    (names from ``datamodules.synthetic.MODALITIES``) in the ``modalities/<name>/`` layout.
    ``synthetic_open_mouths`` (synthetic world only): write it with the wider lip gaps of
    ``SyntheticFaceWorld(open_mouths=True)``; its own cache folder ends in ``-open-mouths``.
    """

    synthetic_layout = "rafd"

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: bool = True,
        photometric: bool = False,
        synthetic_images: int = 200,
        seed: int = 0,
        paired: bool = False,
        layout: Layout = "auto",
        landmarks: str | None = None,
        angles: Sequence[int] | None = None,
        test_fraction: float = 0.1,
        val_fraction: float = 0.0,
        split_by: SplitBy = "frames",
        modalities: Sequence[str] | None = None,
        partner: Partner = "other_emotion",
        crop: Crop = "none",
        synthetic_open_mouths: bool = False,
        partner_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(root, image_size, batch_size, num_workers, augment, photometric, synthetic_images, seed)
        if synthetic_open_mouths and root is not None:
            raise ValueError(
                "synthetic_open_mouths=true changes the synthetic world (root=None); it does nothing on real "
                f"photos under {root}"
            )
        self.synthetic_open_mouths = bool(synthetic_open_mouths)
        self.partner_weights = check_partner_weights(partner_weights)
        self.crop: Crop = crop
        self.split_by: SplitBy = split_by
        self.modalities = None if modalities is None else tuple(str(m) for m in modalities)
        self.partner: Partner = partner
        self.paired = paired
        self.layout: Layout = layout
        self.landmarks = landmarks
        self.angles = None if angles is None else tuple(angles)
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction

    def make_dataset(self, split: str, augment: bool) -> EmotionLandmarks:
        extra: dict[str, Any] = (
            {"partner": self.partner, "partner_weights": self.partner_weights} if self.paired else {}
        )
        cls = EmotionPairs if self.paired else EmotionLandmarks
        return cls(
            self.data_root,
            split,
            self.image_size,
            augment,
            photometric=self.photometric,
            layout=self.layout,
            landmarks=self.landmarks,
            angles=self.angles,
            test_fraction=self.test_fraction,
            val_fraction=self.val_fraction,
            seed=self.seed,
            split_by=self.split_by,
            modalities=self.modalities,
            crop=self.crop,
            **extra,
        )

    def synthetic_size_tag(self) -> str:
        """``s<size>``, plus the modality names when more than the photos are written and ``open-mouths`` with
        ``synthetic_open_mouths`` (each its own cache folder)."""
        extra = self.modalities[1:] if self.modalities else ()
        return "-".join([str(self.image_size), *extra, *(["open-mouths"] if self.synthetic_open_mouths else [])])

    def write_synthetic(self, directory: Path) -> None:
        from datamodules.synthetic import write_rafd

        write_rafd(
            directory,
            num_identities=max(2, self.synthetic_images // 8),
            seed=self.seed,
            image_size=self.image_size,
            modalities=self.modalities or ("photo",),
            open_mouths=self.synthetic_open_mouths,
        )


# ---------------------------------------------------------------------------------------------- modalities
def _pencil_sketch(bgr: np.ndarray) -> np.ndarray:
    import cv2

    gray, _ = cv2.pencilSketch(bgr, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _stylization(bgr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)


def _edge_preserving(bgr: np.ndarray) -> np.ndarray:
    import cv2

    smooth = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
    return cv2.detailEnhance(smooth, sigma_s=10, sigma_r=0.15)


#: OpenCV non-photorealistic filters (BGR uint8 -> BGR uint8) that ``build-modalities`` can apply.
NPR_FILTERS = {"pencil_sketch": _pencil_sketch, "stylization": _stylization, "edge_preserving": _edge_preserving}


def build_modalities(
    root: str | os.PathLike[str],
    styles: Sequence[str] = tuple(NPR_FILTERS),
    *,
    layout: Layout = "auto",
    overwrite: bool = False,
) -> dict[str, int]:
    """Write ``root/modalities/<style>/<relative path>`` for every RaFD-named photo under ``root`` with the
    OpenCV filters named in ``styles``; returns how many files each style wrote. Files are written atomically
    (a temporary name, then a rename), so an interrupted run leaves no half-written image and is resumed by
    running it again; existing files are kept unless ``overwrite``."""
    import cv2

    unknown = [s for s in styles if s not in NPR_FILTERS]
    if unknown:
        raise ValueError(f"unknown style(s) {unknown}; expected some of {', '.join(NPR_FILTERS)}")
    root = Path(root)
    _, images = discover_images(root, layout)
    written = dict.fromkeys(styles, 0)
    for rel in tqdm(images, desc="modalities"):
        bgr = None
        for style in styles:
            out = modality_path(root, rel, style, 1)
            if out.is_file() and not overwrite:
                continue
            if bgr is None:
                bgr = np.ascontiguousarray(read_rgb(root / rel)[:, :, ::-1])
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
            if not cv2.imwrite(str(tmp), NPR_FILTERS[style](bgr)):
                raise OSError(f"could not write {tmp}")
            os.replace(tmp, out)
            written[style] += 1
    return written


# ----------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.emotion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-landmarks", help="detect 68 landmarks with dlib and cache them")
    build.add_argument("root", help="folder of RaFD-named photos (flat or one folder per identity)")
    build.add_argument("--out", default=None, help=f"cache file (default: ROOT/{LANDMARK_CACHE})")
    build.add_argument("--layout", default="auto", choices=["auto", "rafd", "identity_folders"])
    build.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (finds smaller faces)")
    build.add_argument("--downsample", type=int, default=1, help="detect on an N-times smaller copy (faster)")
    build.add_argument("--single-face-only", action="store_true", help="skip photos with several detected faces")
    styles = commands.add_parser(
        "build-modalities",
        help="write ROOT/modalities/<style>/ with OpenCV non-photorealistic filters (PortraitGAN's modalities)",
    )
    styles.add_argument("root", help="folder of RaFD-named photos (flat or one folder per identity)")
    styles.add_argument("--styles", nargs="+", default=list(NPR_FILTERS), choices=list(NPR_FILTERS))
    styles.add_argument("--layout", default="auto", choices=["auto", "rafd", "identity_folders"])
    styles.add_argument("--overwrite", action="store_true", help="rewrite files that already exist")
    args = parser.parse_args(argv)
    if args.command == "build-modalities":
        counts = build_modalities(args.root, args.styles, layout=args.layout, overwrite=args.overwrite)
        for style, count in counts.items():
            print(f"{style}: wrote {count} files under {Path(args.root) / MODALITY_FOLDER / style}")
        print("train with data.modalities=[photo," + ",".join(args.styles) + "]")
        return
    cache = build_landmark_cache(
        args.root,
        args.out,
        layout=args.layout,
        upsample=args.upsample,
        downsample=args.downsample,
        single_face_only=args.single_face_only,
    )
    print(f"landmarks for {len(cache.landmarks)} photos; {len(cache.skipped)} skipped")
    for name, reason in sorted(cache.skipped.items()):
        print(f"  skipped {name}: {reason}")


if __name__ == "__main__":
    main()
