"""The synthetic face world: procedural faces with exact ground truth, written in real dataset layouts.

No real face dataset can be downloaded on our machines, so every reader, model and metric is exercised on
faces drawn here. A face is built from a handful of polygons in a *canonical face frame* (x right, y down,
the face oval about 2 units wide, centred between the eyes and the nose), moved to pixels by one similarity
transform, rasterised with OpenCV, and painted in the official CelebAMask-HQ merge order. The same geometry
gives the 19-class label, each part's mask, the 68 iBUG landmarks and the 40 CelebA attributes, so the
ground truth is exact by construction and a test can assert learning, not only that code ran.

Conventions (one for the whole project):

* **Left/right is the viewer's side.** ``l_eye``/``l_brow``/``l_ear`` lie on the image LEFT, which is the
  subject's right. This matches the iBUG 68-point order (points 36-41 are the image-left eye, so they fall
  inside ``l_eye``), CelebA's ``lefteye_x`` (the smaller x) and relabelled Helen ("left = viewer side").
* **Pixel coordinates**: landmarks are (x, y) floats with integer values at pixel centres, the convention
  of ``cv2.fillPoly``; the drawing and the landmarks share one transform.
* **Parts overlap as annotations do** and the merge order resolves them (``merge_parts``): the hair mask
  runs on behind the neck and the cloth (long hair), the hat covers the top of the hair, the eyes lie
  inside the eyeglasses region, the earrings lie on the hair, the nose runs under the glasses' bridge.
* **Beards, make-up, wrinkles and the necktie are texture**, not classes: CelebAMask-HQ has no class for
  them, so a beard is painted on ``skin`` pixels and a tie on ``cloth`` pixels.

Public API: ``SyntheticFace``, ``IdentityTraits``, ``SyntheticFaceWorld`` (``identity_traits``, ``render``,
``face``), ``merge_parts``, ``MODALITIES``; the writers ``write_celebamaskhq``, ``write_helen``,
``write_celeba``, ``write_rafd`` with their helpers ``helen_name``, ``helen_soft_maps``,
``celeba_five_points``, ``rafd_name`` (and ``RAFD_YAW``/``RAFD_GAZE``); ``grid_image``
and ``save_grid``.
Run ``python -m datamodules.synthetic --grid docs/synthetic_grid.png`` to redraw the overview grid and
``python -m datamodules.bench_data`` to time rendering against reading files.

Speed: painting touches only each part's pixel box, the canonical geometry is cached per identity and per
(identity, emotion), and sensor noise comes from one precomputed tile; about 300 faces/s at 128² on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from datamodules.labels import (
    ATTRIBUTE_INDEX,
    CELEBA_ATTRIBUTES,
    CELEBAMASK_PARTS,
    CELEBAMASK_TO_HELEN,
    CLASS_INDEX,
    NUM_CELEBA_ATTRIBUTES,
    NUM_HELEN_CLASSES,
    RAFD_EMOTIONS,
    label_to_color,
)

MODALITIES: tuple[str, ...] = ("photo", "sketch", "cartoon", "painting")
NUM_MODALITIES = len(MODALITIES)
NEUTRAL = RAFD_EMOTIONS.index("neutral")
MIN_IMAGE_SIZE = 16
_GEOMETRY_CACHE_SIZE = 4096
_NOISE_TILE = 512

HAIR_STYLES: tuple[str, ...] = ("bald", "short", "medium", "long")
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 24, 24),
    "blond": (228, 192, 102),
    "brown": (112, 62, 30),
    "gray": (172, 172, 178),
}
_HAIR_ATTRIBUTE = {"black": "Black_Hair", "blond": "Blond_Hair", "brown": "Brown_Hair", "gray": "Gray_Hair"}
BEARD_STYLES: tuple[str, ...] = ("none", "stubble", "moustache", "goatee", "full")
FACE_SHAPES: tuple[str, ...] = ("oval", "round", "long", "square", "heart")
HAT_STYLES: tuple[str, ...] = ("none", "beanie", "brim")
CLOTH_STYLES: tuple[str, ...] = ("crew", "vneck", "shirt")
# Skin tones from pale to dark; the first is "Pale_Skin". RaFD's two ethnicity tokens follow the tone.
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (250, 226, 212), (238, 198, 170), (222, 172, 138), (196, 146, 106), (166, 116, 80), (122, 84, 58),
)  # fmt: skip
EYE_COLOURS: tuple[tuple[int, int, int], ...] = ((92, 56, 30), (60, 110, 170), (70, 120, 70), (40, 30, 25))

# Face-shape parameters: half width, chin depth, lower-outline superellipse exponents (width, depth).
_FACE_SHAPE_PARAMS: dict[str, tuple[float, float, float, float]] = {
    "oval": (0.88, 1.18, 2.0, 2.0),
    "round": (0.98, 1.06, 2.2, 2.2),
    "long": (0.83, 1.32, 2.0, 1.9),
    "square": (0.93, 1.13, 2.8, 3.2),
    "heart": (0.92, 1.20, 1.9, 1.45),
}


# ================================================================================================ records
@dataclass
class SyntheticFace:
    """One rendered face and its exact ground truth (see the module docstring for the conventions)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8, official 19-class order; equals merge_parts(parts)
    parts: dict[str, np.ndarray]  # part name -> (H, W) bool full (un-occluded) region; present parts only
    attributes: np.ndarray  # (40,) int64 in {0, 1}, CelebA order
    landmarks: np.ndarray  # (68, 2) float32 pixel (x, y), iBUG 68-point scheme
    identity: int
    emotion: int  # index into RAFD_EMOTIONS
    modality: int  # index into MODALITIES


@dataclass(frozen=True)
class IdentityTraits:
    """Everything that makes one synthetic person recognisable; fixed per (world seed, identity)."""

    male: bool
    young: bool
    face_shape: str
    face_width: float  # half width of the face oval, canonical units
    forehead: float  # distance from the face centre to the top of the forehead
    chin: float  # distance from the face centre to the chin
    jaw_exponents: tuple[float, float]
    skin_tone: int  # index into SKIN_TONES
    ethnicity: str  # "Caucasian" or "Moroccan" (RaFD file-name token)
    hair_style: str
    hair_colour: str
    wavy: bool
    bangs: bool
    receding: bool
    sideburns: bool
    beard: str
    eyeglasses: bool
    round_glasses: bool
    hat: str
    hat_colour: tuple[int, int, int]
    earrings: bool
    necklace: bool
    necktie: bool
    cloth_style: str
    cloth_colour: tuple[int, int, int]
    background: tuple[int, int, int]
    eye_colour: tuple[int, int, int]
    eye_spacing: float
    eye_size: float
    narrow_eyes: bool
    brow_thickness: float
    bushy_brows: bool
    arched_brows: bool
    big_nose: bool
    pointy_nose: bool
    big_lips: bool
    mouth_width: float
    lipstick: bool
    heavy_makeup: bool
    rosy_cheeks: bool
    open_smile: bool

    @property
    def bald(self) -> bool:
        return self.hair_style == "bald"

    @property
    def chubby(self) -> bool:
        return self.face_shape == "round"


@dataclass(frozen=True)
class _Expression:
    """How an emotion moves the features (canonical units; brow_inner > 0 pulls the inner brow ends down)."""

    brow_raise: float = 0.0
    brow_inner: float = 0.0
    eye_open: float = 1.0
    mouth_curve: float = 0.0  # > 0 lifts the mouth corners (smile)
    mouth_open: float = 0.0  # lip gap at the centre
    mouth_width: float = 1.0
    mouth_asym: float = 0.0  # > 0 lifts only the image-right corner (contempt)
    round_mouth: bool = False


_EXPRESSIONS: dict[str, _Expression] = {
    "angry": _Expression(brow_raise=-0.04, brow_inner=0.1, eye_open=0.85, mouth_curve=-0.02,
                         mouth_width=0.88),
    "contemptuous": _Expression(brow_raise=0.01, eye_open=0.92, mouth_asym=0.09),
    "disgusted": _Expression(brow_inner=0.06, eye_open=0.66, mouth_curve=-0.06, mouth_open=0.035),
    "fearful": _Expression(brow_raise=0.07, brow_inner=-0.08, eye_open=1.3, mouth_curve=-0.03,
                           mouth_open=0.08, mouth_width=1.08),
    "happy": _Expression(brow_raise=0.02, eye_open=0.82, mouth_curve=0.12, mouth_width=1.2),
    "neutral": _Expression(),
    "sad": _Expression(brow_inner=-0.1, eye_open=0.85, mouth_curve=-0.08, mouth_width=0.95),
    "surprised": _Expression(brow_raise=0.11, brow_inner=-0.02, eye_open=1.35, mouth_open=0.2,
                             mouth_width=0.7, round_mouth=True),
}  # fmt: skip
_OPEN_SMILE_GAP = 0.07
#: ``SyntheticFaceWorld(open_mouths=True)``: the mouth-opening expressions with lip gaps that stay visible at 64²
#: (there the standard surprised mouth is 6-10 pixels of the "mouth" class, fearful's 0-6 and the open smile's
#: 0-2; with these about 21, 12 and 8). Only the lips and the opening change; everything else is the standard
#: world's. For PortraitGAN's open-mouth claim (RaFD's open mouths are tens of pixels even at 64²); its synthetic
#: config leaves it off (``data.synthetic_open_mouths``).
_OPEN_MOUTH_EXPRESSIONS: dict[str, _Expression] = {
    "surprised": dataclasses.replace(_EXPRESSIONS["surprised"], mouth_open=0.35, mouth_width=0.8),
    "fearful": dataclasses.replace(_EXPRESSIONS["fearful"], mouth_open=0.2),
}
_OPEN_MOUTH_SMILE_GAP = 0.16
_MOUTH_OPEN_THRESHOLD = 0.02  # a lip gap above this draws the "mouth" class and sets Mouth_Slightly_Open
_NARROW_EYES_THRESHOLD = 0.72


@dataclass(frozen=True)
class _Pose:
    """Per-variation jitter: similarity transform, small yaw, gaze, lighting and background."""

    angle: float = 0.0  # in-plane rotation, radians
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of the shorter image side
    yaw: float = 0.0  # radians; interior features slide sideways by their depth
    gaze: float = 0.0  # iris offset, fraction of the eye half width (> 0 looks to the image right)
    light: tuple[float, float] = (-0.5, -0.6)  # direction the light comes from, image plane
    brightness: float = 1.0
    background: tuple[int, int, int] | None = None  # None: the identity's background


# ================================================================================================ merging
def merge_parts(parts: Mapping[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Merge part masks into a label map with the official CelebAMask-HQ rule.

    Start from zeros; for each part in ``CELEBAMASK_PARTS`` order set its pixels to the part's class index,
    so later parts overwrite earlier ones (``face_parsing/Data_preprocessing/g_mask.py``). Masks may be bool
    or any numeric type (non-zero = inside).
    """
    unknown = sorted(set(parts) - set(CELEBAMASK_PARTS))
    if unknown:
        raise ValueError(f"unknown part names {unknown}; expected names from {list(CELEBAMASK_PARTS)}")
    shape = (int(shape[0]), int(shape[1]))
    label = np.zeros(shape, dtype=np.uint8)
    for name in CELEBAMASK_PARTS:
        mask = parts.get(name)
        if mask is None:
            continue
        if mask.shape != shape:
            raise ValueError(f"part {name!r} has shape {mask.shape}, expected {shape}")
        label[mask != 0] = CLASS_INDEX[name]
    return label


# ============================================================================================ small maths
def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float, n: int = 24) -> np.ndarray:
    """Points of an ellipse arc from angle t0 to t1 (radians, y down)."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, tilt: float = 0.0) -> np.ndarray:
    pts = _arc(0.0, 0.0, rx, ry, 0.0, 2 * math.pi, n)[:-1]
    c, s = math.cos(tilt), math.sin(tilt)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * (-1.0, 1.0)


def _ribbon(centre: np.ndarray, half_width: np.ndarray | float) -> np.ndarray:
    """Closed polygon of a band of the given half width around an open centre line."""
    d = np.gradient(centre, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    hw = np.broadcast_to(np.asarray(half_width, dtype=float), (len(centre),))[:, None]
    return np.concatenate([centre + normal * hw, (centre - normal * hw)[::-1]])


def _sanitize_size(image_size: int | Sequence[int], name: str = "image_size") -> tuple[int, int]:
    """(H, W) from an int or a pair, each at least MIN_IMAGE_SIZE."""
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        size = tuple(int(s) for s in image_size)
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or an (height, width) pair, got {image_size!r}")
    if min(size) < MIN_IMAGE_SIZE:
        raise ValueError(f"{name} must be at least {MIN_IMAGE_SIZE} pixels per side, got {image_size!r}")
    return size  # type: ignore[return-value]


def _emotion_index(emotion: int | str) -> int:
    if isinstance(emotion, str):
        if emotion not in RAFD_EMOTIONS:
            raise ValueError(f"unknown emotion {emotion!r}; expected one of {list(RAFD_EMOTIONS)}")
        return RAFD_EMOTIONS.index(emotion)
    if not 0 <= int(emotion) < len(RAFD_EMOTIONS):
        raise ValueError(f"emotion index {emotion} out of range; expected 0..{len(RAFD_EMOTIONS) - 1} "
                         f"for {list(RAFD_EMOTIONS)}")  # fmt: skip
    return int(emotion)


# ========================================================================================== identity traits
def _sample_traits(rng: np.random.Generator, visible_bald: bool = False) -> IdentityTraits:
    """Draw one person. Correlations follow CelebA loosely (beards only on men, gray hair mostly when old).

    ``visible_bald`` (off by default) makes baldness easier to learn: older men are bald about 49 % of the time
    instead of 24 %, and no bald person wears a hat. The same random numbers are drawn in the same order either
    way (the style's one draw only sees other weights, the hat is drawn and then dropped), so only older men whose
    style changes and bald people who drew a hat differ from the default world.
    """
    male = bool(rng.random() < 0.5)
    young = bool(rng.random() < 0.7)
    shape = str(rng.choice(FACE_SHAPES, p=[0.35, 0.2, 0.15, 0.15, 0.15]))
    width, chin, ex_w, ex_d = _FACE_SHAPE_PARAMS[shape]
    width += 0.03 * male + rng.uniform(-0.03, 0.03)
    tone = int(rng.choice(len(SKIN_TONES), p=[0.15, 0.3, 0.2, 0.15, 0.1, 0.1]))

    bald_weight = 0.06 if young else (0.9 if visible_bald else 0.3)
    style_p = np.array([bald_weight, 0.6, 0.22, 0.12] if male else [0.0, 0.12, 0.38, 0.5])
    style = str(rng.choice(HAIR_STYLES, p=style_p / style_p.sum()))
    colour_p = [0.35, 0.25, 0.4, 0.0] if young else [0.15, 0.1, 0.15, 0.6]
    colour = str(rng.choice(list(HAIR_COLOURS), p=colour_p))
    has_hair = style != "bald"
    receding = bool(male and not young and style == "short" and rng.random() < 0.5)
    bangs = bool(has_hair and not receding and rng.random() < (0.15 if male else 0.4))
    beard = str(rng.choice(BEARD_STYLES, p=[0.35, 0.15, 0.15, 0.15, 0.2])) if male else "none"
    hat = str(rng.choice(HAT_STYLES, p=[0.8, 0.1, 0.1]))
    if visible_bald and not has_hair:
        hat = "none"
    necktie = bool(male and rng.random() < 0.2)
    lipstick = bool(not male and rng.random() < 0.45)
    heavy_makeup = bool(lipstick and rng.random() < 0.6)
    bushy = bool(rng.random() < (0.35 if male else 0.08))
    nose_kind = rng.random()
    background = tuple(int(c) for c in rng.integers(90, 235, size=3))
    return IdentityTraits(
        male=male,
        young=young,
        face_shape=shape,
        face_width=float(width),
        forehead=float(rng.uniform(1.15, 1.25)),
        chin=float(chin + rng.uniform(-0.03, 0.03)),
        jaw_exponents=(ex_w, ex_d),
        skin_tone=tone,
        ethnicity="Caucasian" if tone < 3 else "Moroccan",
        hair_style=style,
        hair_colour=colour,
        wavy=bool(style in ("medium", "long") and rng.random() < 0.45),
        bangs=bangs,
        receding=receding,
        sideburns=bool(male and style in ("short", "medium") and rng.random() < 0.4),
        beard=beard,
        eyeglasses=bool(rng.random() < 0.3),
        round_glasses=bool(rng.random() < 0.4),
        hat=hat,
        hat_colour=tuple(int(c) for c in rng.integers(20, 220, size=3)),
        earrings=bool(rng.random() < (0.05 if male else 0.5)),
        necklace=bool(rng.random() < (0.05 if male else 0.35)),
        necktie=necktie,
        cloth_style="shirt" if necktie else str(rng.choice(CLOTH_STYLES[:2])),
        cloth_colour=tuple(int(c) for c in rng.integers(15, 240, size=3)),
        background=background,  # type: ignore[arg-type]
        eye_colour=EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))],
        eye_spacing=float(rng.uniform(0.36, 0.41)),
        eye_size=float(rng.uniform(0.92, 1.08)),
        narrow_eyes=bool(rng.random() < 0.12),
        brow_thickness=float((0.105 if bushy else 0.06 + 0.012 * male) * rng.uniform(0.9, 1.1)),
        bushy_brows=bushy,
        arched_brows=bool(rng.random() < (0.15 if male else 0.5)),
        big_nose=bool(nose_kind < 0.2),
        pointy_nose=bool(0.2 <= nose_kind < 0.4),
        big_lips=bool(rng.random() < 0.2),
        mouth_width=float(rng.uniform(0.92, 1.08)),
        lipstick=lipstick,
        heavy_makeup=heavy_makeup,
        rosy_cheeks=bool(heavy_makeup or rng.random() < 0.1),
        open_smile=bool(rng.random() < 0.5),
    )


def _attributes(traits: IdentityTraits, expr: _Expression, mouth_gap: float, eye_open: float) -> np.ndarray:
    """The 40 CelebA attributes implied by the drawing (every 1 is visible in the picture)."""
    has_hair = not traits.bald
    smiling = expr.mouth_curve > 0.05
    on = {
        "5_o_Clock_Shadow": traits.beard == "stubble",
        "Arched_Eyebrows": traits.arched_brows,
        "Attractive": traits.young and not traits.chubby and has_hair,
        "Bags_Under_Eyes": not traits.young,
        "Bald": not has_hair,
        "Bangs": traits.bangs,
        "Big_Lips": traits.big_lips,
        "Big_Nose": traits.big_nose,
        "Bushy_Eyebrows": traits.bushy_brows,
        "Chubby": traits.chubby,
        "Double_Chin": traits.chubby and not traits.young,
        "Eyeglasses": traits.eyeglasses,
        "Goatee": traits.beard == "goatee",
        "Heavy_Makeup": traits.heavy_makeup,
        "High_Cheekbones": smiling,
        "Male": traits.male,
        "Mouth_Slightly_Open": mouth_gap > _MOUTH_OPEN_THRESHOLD,
        "Mustache": traits.beard in ("moustache", "full"),
        "Narrow_Eyes": eye_open < _NARROW_EYES_THRESHOLD,
        "No_Beard": traits.beard in ("none", "stubble"),
        "Oval_Face": traits.face_shape == "oval",
        "Pale_Skin": traits.skin_tone == 0,
        "Pointy_Nose": traits.pointy_nose,
        "Receding_Hairline": traits.receding,
        "Rosy_Cheeks": traits.rosy_cheeks,
        "Sideburns": traits.sideburns,
        "Smiling": smiling,
        "Straight_Hair": has_hair and traits.hair_style != "short" and not traits.wavy,
        "Wavy_Hair": has_hair and traits.wavy,
        "Wearing_Earrings": traits.earrings,
        "Wearing_Hat": traits.hat != "none",
        "Wearing_Lipstick": traits.lipstick,
        "Wearing_Necklace": traits.necklace,
        "Wearing_Necktie": traits.necktie,
        "Young": traits.young,
    }
    if has_hair:
        on[_HAIR_ATTRIBUTE[traits.hair_colour]] = True
    attributes = np.zeros(NUM_CELEBA_ATTRIBUTES, dtype=np.int64)
    for name, value in on.items():
        attributes[ATTRIBUTE_INDEX[name]] = int(bool(value))
    return attributes


# ============================================================================================== geometry
_Shapes = dict[str, list[np.ndarray]]  # name -> polygons or polylines, (N, 2) arrays


@dataclass
class _Geometry:
    """Canonical-frame polygons (lists of (N, 2) arrays) for parts and painted details, plus landmarks."""

    regions: dict[str, list[np.ndarray]]
    details: dict[str, list[np.ndarray]]
    lines: dict[str, list[np.ndarray]]  # open polylines painted with a thickness
    landmarks: np.ndarray
    depth: dict[str, float]  # extra depth per region/detail name for the yaw warp
    mouth_gap: float
    eye_open: float


def _face_outline(t: np.ndarray, traits: IdentityTraits) -> np.ndarray:
    """Face contour at parameter t (radians, y down): upper half an ellipse, lower half a superellipse."""
    w, top, chin = traits.face_width, traits.forehead, traits.chin
    mw, md = traits.jaw_exponents
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    u = np.where(lower, w * np.sign(c) * np.abs(c) ** (2.0 / mw), w * c)
    v = np.where(lower, chin * np.abs(s) ** (2.0 / md), top * s)
    return np.stack([u, v], axis=1)


def _hairline(u: np.ndarray, traits: IdentityTraits) -> np.ndarray:
    """y of the hairline (top edge of the visible forehead) across the face."""
    w = traits.face_width
    r = np.clip(np.abs(u) / w, 0.0, 1.2)
    if traits.bangs:
        return -0.72 + 0.04 * np.abs(np.sin(9.0 * u)) + 0.2 * r**4
    centre = -0.9 if traits.receding else -0.82
    line = centre + 0.5 * r**3
    if traits.receding:
        line -= 0.22 * np.exp(-(((r - 0.55) / 0.18) ** 2))
    return line


def _hair_silhouette(traits: IdentityTraits, rng: np.random.Generator) -> np.ndarray:
    """Outer outline of the hair mass (the face window is cut out of it later)."""
    w = traits.face_width
    style = traits.hair_style
    side, top, end = {"short": (0.1, 0.2, -0.05), "medium": (0.22, 0.3, 0.9), "long": (0.3, 0.32, 2.7)}[style]
    cy = -0.3
    crown = _arc(0.0, cy, w + side, traits.forehead - 0.3 + top, math.pi, 2 * math.pi, 40)
    sides_v = np.linspace(cy, end, 24)[1:]
    flare = 0.2 * np.clip((sides_v - 0.6) / 2.0, 0.0, 1.0)
    right = np.stack([w + side + flare, sides_v], axis=1)
    if style == "short":
        right[:, 0] = w + side - 0.08 * (sides_v - cy) / (end - cy)
    bottom_u = np.linspace(w + side, -(w + side), 17)
    bottom = np.stack([bottom_u, np.full_like(bottom_u, end)], axis=1)
    if style == "long":
        bottom[:, 0] *= 1.0 + 0.2 * np.clip((end - 0.6) / 2.0, 0.0, 1.0)
        bottom[1::2, 1] -= 0.12  # pointed strand ends
    outline = np.concatenate([crown, right, bottom[1:-1], _mirror(right)[::-1]])
    if traits.wavy:
        phase = rng.uniform(0, 2 * math.pi)
        wave = 0.06 * np.sin(9.0 * outline[:, 1] + phase) * (outline[:, 1] > cy)
        outline[:, 0] += np.sign(outline[:, 0]) * wave
    return outline


# --- layout constants of the canonical frame shared by the builders below
_EYE_Y = -0.1
_BROW_Y = -0.4
_EYE_HALF_WIDTH = 0.16


def _nose_bottom(traits: IdentityTraits) -> float:
    return 0.5 + (0.05 if traits.big_nose or traits.pointy_nose else 0.0)


def _nose_width(traits: IdentityTraits) -> float:
    return 1.25 if traits.big_nose else (0.85 if traits.pointy_nose else 1.0)


def _mouth_y(traits: IdentityTraits) -> float:
    return _nose_bottom(traits) + 0.22 + 0.3 * (traits.chin - 1.18)


class _Builder:
    """Collects canonical polygons and landmarks; ``geometry()`` freezes them into a ``_Geometry``."""

    def __init__(self) -> None:
        self.regions: dict[str, list[np.ndarray]] = {}
        self.details: dict[str, list[np.ndarray]] = {}
        self.lines: dict[str, list[np.ndarray]] = {}
        self.depth: dict[str, float] = {}
        self.landmarks = np.full((68, 2), np.nan)

    def region(self, name: str, *polygons: np.ndarray, depth: float = 0.0) -> None:
        self.regions.setdefault(name, []).extend(polygons)
        self._set_depth(name, depth)

    def detail(self, name: str, *polygons: np.ndarray, depth: float = 0.0) -> None:
        self.details.setdefault(name, []).extend(polygons)
        self._set_depth(name, depth)

    def line(self, name: str, *polylines: np.ndarray, depth: float = 0.0) -> None:
        self.lines.setdefault(name, []).extend(polylines)
        self._set_depth(name, depth)

    def _set_depth(self, name: str, depth: float) -> None:
        if depth:
            self.depth[name] = depth

    def geometry(self, mouth_gap: float = 0.0, eye_open: float = 1.0) -> _Geometry:
        return _Geometry(self.regions, self.details, self.lines, self.landmarks, self.depth, mouth_gap, eye_open)


# ------------------------------------------------------------------------- identity-level (per person)
def _add_head(b: _Builder, t: IdentityTraits) -> None:
    """Face oval, jaw landmarks 0-16 (0 = image left at eye level, 8 = chin), ears."""
    w = t.face_width
    b.region("face", _face_outline(np.linspace(0, 2 * math.pi, 72, endpoint=False), t))
    delta = 0.12
    b.landmarks[0:17] = _face_outline(math.pi + delta - np.arange(17) * (math.pi + 2 * delta) / 16, t)
    ear = _ellipse(w + 0.1, 0.04, 0.15, 0.27, 20, tilt=0.12)
    b.region("l_ear", _mirror(ear))
    b.region("r_ear", ear)
    inner = _ellipse(w + 0.12, 0.05, 0.06, 0.15, 14)
    b.detail("inner_ear", _mirror(inner), inner)


def _add_body(b: _Builder, t: IdentityTraits) -> None:
    """Neck, clothes (crew neck, V-neck or shirt with collar and tie) and necklace."""
    nw = 0.5 if t.male else 0.42
    b.region("neck", np.array([[-nw, 0.2], [nw, 0.2], [nw * 1.02, 1.45], [nw * 1.35, 2.1], [nw * 1.4, 8.0],
                               [-nw * 1.4, 8.0], [-nw * 1.35, 2.1], [-nw * 1.02, 1.45]]))  # fmt: skip
    # The neckline dips at the centre; at 128² the image bottom is near y = 1.9, so collar and tie start
    # high enough to stay in the picture.
    dip = {"crew": 1.72, "vneck": 1.98, "shirt": 1.7}[t.cloth_style]
    shoulder = np.array([[0.0, dip], [0.45, 1.58], [0.8, 1.64], [1.4, 1.76], [2.2, 2.0], [3.0, 2.4],
                         [3.6, 3.2], [3.6, 8.0]])  # fmt: skip
    if t.cloth_style == "crew":
        neckline = _arc(0.0, 1.56, 0.46, dip - 1.56, 0.5 * math.pi, 0.05, 8)
        shoulder = np.concatenate([neckline, shoulder[2:]])
    b.region("cloth", np.concatenate([_mirror(shoulder)[::-1], shoulder[1:]]))
    if t.cloth_style == "shirt":
        collar = np.array([[0.02, dip], [0.42, 1.5], [0.58, 1.62], [0.2, 2.0]])
        b.detail("collar", _mirror(collar), collar)
        b.detail("tie", np.array([[-0.07, dip], [0.07, dip], [0.1, dip + 0.1], [0.17, 2.9], [0.0, 3.1],
                                  [-0.17, 2.9], [-0.1, dip + 0.1]]))  # fmt: skip
    if t.necklace:
        x = np.linspace(-nw * 1.02, nw * 1.02, 21)
        chain = np.stack([x, 1.3 + 0.25 * (1 - (x / (nw * 1.02)) ** 2)], axis=1)
        b.region("neck_l", _ribbon(chain, 0.028), _ellipse(0.0, 1.6, 0.055, 0.065, 12))


def _add_hair_and_hat(b: _Builder, t: IdentityTraits, rng: np.random.Generator) -> None:
    """Hair silhouette, the hairline that cuts the face window out of it, sideburns; hat with its band."""
    w = t.face_width
    if not t.bald:
        b.region("hair_outline", _hair_silhouette(t, rng))
        u = np.linspace(-w - 0.4, w + 0.4, 41)
        below = np.stack([u, _hairline(u, t)], axis=1)
        b.region("below_hairline", np.concatenate([below, [[w + 0.4, 9.0], [-w - 0.4, 9.0]]]))
        if t.sideburns:
            burn = np.array([[-w - 0.02, -0.45], [-w + 0.13, -0.45], [-w + 0.12, 0.18], [-w + 0.02, 0.25]])
            b.region("sideburns", burn, _mirror(burn))
    if t.hat == "none":
        return
    crown = _arc(0.0, -0.84, w + 0.14, t.forehead - 0.1, math.pi, 2 * math.pi, 30)
    band = np.array([[w + 0.2, -0.84], [w + 0.2, -0.7], [-w - 0.2, -0.7], [-w - 0.2, -0.84]])
    b.region("hat", np.concatenate([crown, band]))
    if t.hat == "brim":
        b.region("hat", _ellipse(0.0, -0.8, w + 0.6, 0.1, 32))
        b.detail("hat_band", np.array([[-w - 0.15, -1.05], [w + 0.15, -1.05], [w + 0.15, -0.9], [-w - 0.15, -0.9]]))
    else:
        b.detail("hat_band", band + (0.0, -0.1))


def _add_nose(b: _Builder, t: IdentityTraits) -> None:
    """Nose region (narrow bridge widening to the wings), landmarks 27-35, nostrils, bridge highlight."""
    nw, nb = _nose_width(t), _nose_bottom(t)
    half = np.array([[0.05, -0.16], [0.07, 0.08], [0.12 * nw, nb - 0.22], [0.19 * nw, nb - 0.09],
                     [0.18 * nw, nb - 0.02], [0.09, nb + 0.01], [0.0, nb + 0.02]])  # fmt: skip
    depth = 0.25
    b.region("nose", np.concatenate([half, _mirror(half)[-2:0:-1]]), depth=depth)
    b.landmarks[27:31] = [[0.0, -0.1], [0.0, 0.07], [0.0, nb - 0.3], [0.0, nb - 0.1]]
    b.landmarks[31:36] = [[-0.13 * nw, nb - 0.06], [-0.065, nb - 0.025], [0.0, nb - 0.015],
                          [0.065, nb - 0.025],
                          [0.13 * nw, nb - 0.06]]  # fmt: skip
    b.detail("nostrils", _ellipse(-0.075 * nw, nb - 0.035, 0.04, 0.022, 10, 0.3),
             _ellipse(0.075 * nw, nb - 0.035, 0.04, 0.022, 10, -0.3), depth=depth)  # fmt: skip
    highlight = np.array([[-0.02, -0.05], [0.02, -0.05], [0.03, nb - 0.15], [-0.03, nb - 0.15]])
    b.detail("nose_highlight", highlight,
             depth=depth)  # fmt: skip


def _add_face_texture(b: _Builder, t: IdentityTraits) -> None:
    """Painted-only marks on the skin that do not move with the expression: beard, cheeks, forehead lines."""
    my, chin = _mouth_y(t), t.chin
    mw = 0.32 * t.mouth_width
    if t.beard == "goatee":
        b.detail("goatee", _ellipse(0.0, (my + chin) / 2 + 0.08, mw * 0.75, (chin - my) / 2 + 0.02, 20))
    if t.beard in ("full", "stubble"):
        jaw = _face_outline(np.linspace(0.05, math.pi - 0.05, 30), t)
        low = float(jaw[:, 1].min())
        inner = np.stack([0.8 * jaw[:, 0], 0.38 + (jaw[:, 1] - low) * (my + 0.14 - 0.38) / (chin - low)], axis=1)
        b.detail("beard", np.concatenate([jaw, inner[::-1]]))
    if t.rosy_cheeks:
        b.detail("blush", _ellipse(-0.52, 0.25, 0.2, 0.13, 16), _ellipse(0.52, 0.25, 0.2, 0.13, 16))
    if not t.young:
        for i in range(2):
            b.line("wrinkle", _arc(0.0, -0.57 - 0.12 * i, 0.35, 0.08, 1.15 * math.pi, 1.85 * math.pi, 9))
        fold = np.array([[0.16 * _nose_width(t), _nose_bottom(t) - 0.05], [0.3, _nose_bottom(t) + 0.1],
                         [mw + 0.06, my + 0.05]])  # fmt: skip
        b.line("wrinkle", fold, _mirror(fold))
        if t.chubby:
            b.line("wrinkle", _arc(0.0, chin - 0.2, 0.4, 0.25, 0.2 * math.pi, 0.8 * math.pi, 9))


def _add_accessories(b: _Builder, t: IdentityTraits) -> None:
    """Eyeglasses (lenses, bridge, arms; the eyes lie inside the lenses) and earrings."""
    w, ex, ey = t.face_width, t.eye_spacing, _EYE_Y
    if t.eyeglasses:
        if t.round_glasses:
            lens = _ellipse(ex, ey + 0.01, 0.2, 0.17, 28)
        else:
            q = _ellipse(0.0, 0.0, 1.0, 1.0, 32)
            lens = np.sign(q) * np.abs(q) ** 0.5 * (0.23, 0.15) + (ex, ey + 0.02)
        bridge = np.array([[-ex + 0.2, ey - 0.08], [ex - 0.2, ey - 0.08], [ex - 0.2, ey - 0.04],
                           [-ex + 0.2, ey - 0.04]])  # fmt: skip
        arm = np.array([[ex + 0.2, ey - 0.07], [w + 0.02, ey - 0.06], [w + 0.02, ey - 0.025], [ex + 0.2, ey - 0.035]])
        b.region("eye_g", _mirror(lens), lens, bridge, arm, _mirror(arm), depth=0.08)
        b.detail("lens", _mirror(lens), lens, depth=0.08)
        b.line("frame", np.concatenate([lens, lens[:1]]), np.concatenate([_mirror(lens), _mirror(lens)[:1]]),
               depth=0.08)  # fmt: skip
    if t.earrings:
        ring = _ellipse(w + 0.14, 0.4, 0.055, 0.07, 14)
        b.region("ear_r", _mirror(ring), ring)


def _identity_geometry(t: IdentityTraits, rng: np.random.Generator) -> _Geometry:
    b = _Builder()
    _add_head(b, t)
    _add_body(b, t)
    _add_hair_and_hat(b, t, rng)
    _add_nose(b, t)
    _add_face_texture(b, t)
    _add_accessories(b, t)
    return b.geometry()


# ------------------------------------------------------------------------ expression-level (per emotion)
def _add_eyes(b: _Builder, t: IdentityTraits, expr: _Expression) -> float:
    """Almond eye regions, landmarks 36-47, lash lines, under-eye bags, eye shadow; returns the openness."""
    ex, ey, size = t.eye_spacing, _EYE_Y, t.eye_size
    eye_open = expr.eye_open * (0.6 if t.narrow_eyes else 1.0)
    ew, up, lo = _EYE_HALF_WIDTH * size, 0.085 * size * eye_open, 0.055 * size * eye_open
    s = np.linspace(0.0, 1.0, 17)  # outer corner (0) -> inner corner (1)
    # iBUG order per eye as (lid, sample): 36-41 run outer, upper lid, inner, lower lid; 42-47 inner first.
    order = {"l_eye": ((0, 0), (0, 5), (0, 11), (0, 16), (1, 11), (1, 5)),
             "r_eye": ((0, 16), (0, 11), (0, 5), (0, 0), (1, 5), (1, 11))}  # fmt: skip
    for name, sign, first in (("l_eye", -1.0, 36), ("r_eye", 1.0, 42)):
        x = sign * (ex + ew - 2 * ew * s)
        upper = np.stack([x, ey - up * np.sin(math.pi * s) ** 0.8 - 0.012 * (1 - s)], axis=1)
        lower = np.stack([x, ey + lo * np.sin(math.pi * s) - 0.012 * (1 - s)], axis=1)
        b.region(name, np.concatenate([upper, lower[-2:0:-1]]))
        lids = (upper, lower)
        b.landmarks[first : first + 6] = [lids[lid][k] for lid, k in order[name]]
        b.line("lash", upper)
        if not t.young:
            b.line("bag", _arc(sign * ex, ey + lo + 0.02, ew * 0.8, 0.07, 0.15 * math.pi, 0.85 * math.pi, 10))
        if t.heavy_makeup:
            b.detail("eyeshadow", np.concatenate([upper, upper[::-1] + (0.0, -0.08)]))
    return eye_open


def _add_brows(b: _Builder, t: IdentityTraits, expr: _Expression) -> None:
    """Tapered brow bands; landmarks 17-21 (image-left brow, outer to inner) and 22-26 (inner to outer)."""
    arch = 0.06 if t.arched_brows else 0.025
    by = _BROW_Y - expr.brow_raise
    s = np.linspace(0.0, 1.0, 15)  # inner end (0) -> outer end (1)
    picks = np.array([0.92, 0.7, 0.48, 0.26, 0.06])  # landmark positions along the brow, outer to inner
    outer = t.eye_spacing + _EYE_HALF_WIDTH * t.eye_size + 0.1
    for name, sign in (("l_brow", -1.0), ("r_brow", 1.0)):
        x = sign * (0.13 + (outer - 0.13) * s)
        y = by - arch * (1 - ((s - 0.6) / 0.6) ** 2) + expr.brow_inner * (1 - s) ** 2
        b.region(name, _ribbon(np.stack([x, y], axis=1), t.brow_thickness * (1.0 - 0.5 * s) / 2))
        pts = np.stack([np.interp(picks, s, x), np.interp(picks, s, y)], axis=1)
        if name == "l_brow":
            b.landmarks[17:22] = pts
        else:
            b.landmarks[22:27] = pts[::-1]


def _add_mouth(b: _Builder, t: IdentityTraits, expr: _Expression, smile_gap: float = _OPEN_SMILE_GAP) -> float:
    """Lips, the opening ("mouth") with teeth, landmarks 48-67 and moustache; returns the lip gap
    (``smile_gap``: the extra gap of an open smile)."""
    my = _mouth_y(t)
    mw = 0.32 * t.mouth_width * expr.mouth_width
    gap = expr.mouth_open + (smile_gap if expr.mouth_curve > 0.05 and t.open_smile else 0.0)
    mwi = 0.8 * mw
    lip = 1.3 if t.big_lips else 1.0
    x = np.linspace(-mw, mw, 31)

    def midline(xx: np.ndarray) -> np.ndarray:
        r = xx / mw
        return my - expr.mouth_curve * r**2 - expr.mouth_asym * np.clip(r, 0, None) ** 2

    q = np.sqrt(np.clip(1 - (x / mwi) ** 2, 0.0, None))
    opening = q**0.6 if expr.round_mouth else q
    profile = np.clip(1 - (x / mw) ** 2, 0.0, None) ** 0.6
    in_up = midline(x) - 0.4 * gap * opening
    in_lo = midline(x) + 0.6 * gap * opening
    out_up = in_up - lip * (0.065 * profile - 0.012 * np.exp(-((x / 0.05) ** 2)))
    out_lo = in_lo + lip * 0.085 * profile
    depth = 0.1

    def band(top: np.ndarray, bottom: np.ndarray, top_x: np.ndarray = x, bottom_x: np.ndarray = x) -> np.ndarray:
        """Closed polygon between two curves over x (left to right along the top, back along the bottom)."""
        return np.concatenate([np.stack([top_x, top], 1), np.stack([bottom_x, bottom], 1)[::-1]])

    b.region("u_lip", band(out_up, in_up), depth=depth)
    b.region("l_lip", band(in_lo, out_lo), depth=depth)
    if gap > _MOUTH_OPEN_THRESHOLD:
        b.region("mouth", band(in_up, in_lo), depth=depth)
        b.detail("teeth", band(in_up - 0.01, in_up + min(0.5 * gap, 0.05)), depth=depth)
    if t.beard in ("moustache", "full"):
        lower_edge = out_up - 0.005
        upper_edge = out_up - 0.11 + 0.05 * (x / mw) ** 2
        b.detail("moustache", band(upper_edge, lower_edge, x * 1.05, x * 1.15), depth=depth)

    def at(xs: Sequence[float], ys: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(xs), np.interp(xs, x, ys)], axis=1)

    k = [-2 / 3 * mw, -1 / 3 * mw, 0.0, 1 / 3 * mw, 2 / 3 * mw]
    ki = [-mwi / 2, 0.0, mwi / 2]
    lm = b.landmarks
    lm[48], lm[54] = (-mw, midline(np.array([-mw]))[0]), (mw, midline(np.array([mw]))[0])
    lm[49:54] = at(k, (out_up + 0.3 * in_up) / 1.3)  # a little inside the outer lip edge
    lm[55:60] = at(k[::-1], (out_lo + 0.3 * in_lo) / 1.3)
    lm[60], lm[64] = (-mwi, midline(np.array([-mwi]))[0]), (mwi, midline(np.array([mwi]))[0])
    lm[61:64] = at(ki, in_up)
    lm[65:68] = at(ki[::-1], in_lo)
    return gap


def _expression_geometry(t: IdentityTraits, expr: _Expression, smile_gap: float = _OPEN_SMILE_GAP) -> _Geometry:
    b = _Builder()
    eye_open = _add_eyes(b, t, expr)
    _add_brows(b, t, expr)
    gap = _add_mouth(b, t, expr, smile_gap)
    return b.geometry(mouth_gap=gap, eye_open=eye_open)


def _iris_geometry(t: IdentityTraits, gaze: float) -> dict[str, list[np.ndarray]]:
    """Iris, pupil and glint of both eyes, shifted sideways by ``gaze`` (-1..1, > 0 = image right)."""
    size = t.eye_size
    offset = gaze * 0.45 * _EYE_HALF_WIDTH * size
    details = {}
    for name, radius, dx, dy in (
        ("iris", 0.075, 0, 0),
        ("pupil", 0.033, 0, 0),
        ("glint", 0.014, 0.025, -0.026),
    ):
        details[name] = [_ellipse(sign * t.eye_spacing + offset + dx, _EYE_Y - 0.004 + dy, radius * size,
                                  radius * size, 16) for sign in (-1.0, 1.0)]  # fmt: skip
    return details


def _combine(person: _Geometry, face: _Geometry, iris: dict[str, list[np.ndarray]]) -> _Geometry:
    """One face's geometry from its identity part, its expression part and the iris."""
    landmarks = np.where(np.isnan(face.landmarks), person.landmarks, face.landmarks)
    return _Geometry(
        regions={**person.regions, **face.regions},
        details={**person.details, **face.details, **iris},
        lines={**person.lines, **face.lines},
        landmarks=landmarks,
        depth={**person.depth, **face.depth},
        mouth_gap=face.mouth_gap,
        eye_open=face.eye_open,
    )


# ====================================================================================== pixel transforms
class _Projector:
    """Canonical face frame -> pixel (x, y): a yaw warp (depth-dependent sideways slide) then a similarity."""

    def __init__(self, size: tuple[int, int], traits: IdentityTraits, pose: _Pose) -> None:
        h, w = size
        side = min(h, w)
        self.scale = 0.25 * side * pose.scale
        self.centre = np.array([w / 2 - 0.5 + pose.shift[0] * side, h / 2 - 0.5 + 0.03 * side + pose.shift[1] * side])
        c, s = math.cos(pose.angle), math.sin(pose.angle)
        self.rot = np.array([[c, s], [-s, c]]) * self.scale  # row-vector convention: p @ rot
        self.yaw = pose.yaw
        self.face_w, self.face_h = traits.face_width, 0.5 * (traits.forehead + traits.chin)

    def __call__(self, points: np.ndarray, extra_depth: float | np.ndarray = 0.0) -> np.ndarray:
        if self.yaw:
            u, v = points[:, 0], points[:, 1]
            inside = np.clip(1 - (u / self.face_w) ** 2 - (v / self.face_h) ** 2, 0.0, None)
            z = 0.6 * np.sqrt(inside) + extra_depth * (inside > 0)
            points = np.stack([u * math.cos(self.yaw) + z * math.sin(self.yaw), v], axis=1)
        return points @ self.rot + self.centre

    def canonical_grid(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (u, v) of every pixel centre (inverse similarity; the small yaw is ignored)."""
        h, w = size
        inv = np.linalg.inv(self.rot)
        xs = np.arange(w, dtype=np.float32) - np.float32(self.centre[0])
        ys = np.arange(h, dtype=np.float32) - np.float32(self.centre[1])
        inv = inv.astype(np.float32)
        u = xs[None, :] * inv[0, 0] + ys[:, None] * inv[1, 0]
        v = xs[None, :] * inv[0, 1] + ys[:, None] * inv[1, 1]
        return u, v


def _fill(size: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Union of filled pixel polygons as a bool mask (sub-pixel vertices via cv2's fixed-point shift)."""
    buf = np.zeros(size, dtype=np.uint8)
    for poly in polygons:  # one call each: several contours in one call fill by the even-odd rule
        cv2.fillPoly(buf, [np.round(poly * 16.0).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return buf.view(bool)


def _stroke(size: tuple[int, int], polylines: Sequence[np.ndarray], thickness: int) -> np.ndarray:
    buf = np.zeros(size, dtype=np.uint8)
    pts = [np.round(p * 16.0).astype(np.int32) for p in polylines]
    cv2.polylines(buf, pts, False, 1, thickness=max(1, thickness), lineType=cv2.LINE_8, shift=4)
    return buf.view(bool)


# =============================================================================================== painting
def _darker(colour: Sequence[int], factor: float) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32) * factor


class _Brush:
    """Paints one part inside its pixel box: a view of the canvas, the part's mask there and the box's
    canonical coordinates. ``where`` names a detail mask (iris, teeth, ...) intersected with the part."""

    def __init__(self, img: np.ndarray, mask: np.ndarray, box: tuple[slice, slice],
                 uv: tuple[np.ndarray, np.ndarray], extra: dict[str, np.ndarray]) -> None:  # fmt: skip
        self.img, self.box, self.extra = img[box], box, extra
        self.mask = mask[box]
        self.u, self.v = uv[0][box][self.mask], uv[1][box][self.mask]

    def where(self, detail: str) -> np.ndarray | None:
        if detail not in self.extra:
            return None
        return self.mask & self.extra[detail][self.box]

    def put(self, colour: Sequence[float] | np.ndarray, detail: str | None = None) -> None:
        """Fill the part (or part & detail) with a colour; an (N, 3) array gives one colour per part pixel."""
        mask = self.mask if detail is None else self.where(detail)
        if mask is not None:
            self.img[mask] = colour

    def blend(self, colour: Sequence[float] | np.ndarray, alpha: float | np.ndarray, detail: str) -> None:
        mask = self.where(detail)
        if mask is None:
            return
        a = alpha if np.isscalar(alpha) else np.asarray(alpha, np.float32)[..., None]
        self.img[mask] = self.img[mask] * (1 - a) + np.asarray(colour, np.float32) * a


def _beard_colour(traits: IdentityTraits) -> np.ndarray:
    return _darker((60, 50, 45) if traits.bald else HAIR_COLOURS[traits.hair_colour], 0.8)


def _paint_skin(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    skin = np.asarray(SKIN_TONES[t.skin_tone], np.float32)
    b.put(skin)
    b.blend((235, 110, 120), 0.35, "blush")
    b.blend((150, 80, 140), 0.45, "eyeshadow")
    beard = b.where("beard")
    if beard is not None:
        stubble = t.beard == "stubble"
        alpha = (0.35 if stubble else 0.8) * (0.7 + 0.3 * rng.random(int(beard.sum()), dtype=np.float32))
        b.blend(_beard_colour(t) * (0.7 if stubble else 1.0), alpha, "beard")
    b.blend(_beard_colour(t), 0.85, "moustache")
    b.blend(_beard_colour(t), 0.85, "goatee")
    b.blend(skin * 0.7, 0.5, "wrinkle")
    b.blend(skin * 0.72, 0.45, "bag")


def _paint_nose(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    skin = np.asarray(SKIN_TONES[t.skin_tone], np.float32)
    b.put(skin * 0.96 * (1.0 - 0.12 * np.clip(np.abs(b.u) / 0.2, 0, 1) ** 2)[:, None])
    b.blend(np.minimum(skin * 1.1, 255), 0.5, "nose_highlight")
    b.put(skin * 0.35, "nostrils")


def _paint_glasses(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.blend((200, 220, 235), 0.18, "lens")
    frame = b.mask & (b.extra["frame"][b.box] | ~b.extra["lens"][b.box])
    b.img[frame] = (25, 25, 30) if t.male else (120, 30, 50)


def _paint_eye(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put((236, 234, 228))
    b.put(t.eye_colour, "iris")
    b.put((12, 10, 10), "pupil")
    b.put((250, 250, 250), "glint")
    b.put((20, 16, 16), "lash")


def _paint_brow(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    colour = (70, 52, 40) if t.bald else HAIR_COLOURS[t.hair_colour]
    b.put(_darker(colour, 0.75 if t.hair_colour in ("blond", "gray") and not t.bald else 1.0))


def _paint_ear(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    skin = np.asarray(SKIN_TONES[t.skin_tone], np.float32)
    b.put(skin * 0.93)
    b.put(skin * 0.75, "inner_ear")


def _paint_mouth(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put((95, 25, 35))
    b.put((242, 238, 228), "teeth")


def _lip_colour(t: IdentityTraits) -> np.ndarray:
    if t.lipstick:
        return np.array((196, 40, 64), np.float32)
    return np.asarray(SKIN_TONES[t.skin_tone], np.float32) * (0.86, 0.58, 0.58) + (20, 0, 5)


def _paint_upper_lip(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put(_lip_colour(t) * 0.9)


def _paint_lower_lip(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put(np.minimum(_lip_colour(t) * 1.04, 255))


def _paint_hair(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    """Strands radiate from the crown; wavy hair bends them."""
    angle = np.arctan2(b.u, b.v + 1.7)
    if t.wavy:
        angle = angle + 0.008 * np.sin(4.0 * b.v)
    strands = 1.0 + 0.14 * np.sin(60.0 * angle) + 0.08 * np.sin(23.0 * angle + 1.0)
    fade = 1.05 - 0.1 * np.clip(b.v + 1.2, 0, 2)
    b.put(np.asarray(HAIR_COLOURS[t.hair_colour], np.float32) * (strands * fade)[:, None])


def _paint_hat(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    knit = 1.0 + (0.1 * np.sin(b.v * 60.0) if t.hat == "beanie" else 0.0 * b.v)
    b.put(np.asarray(t.hat_colour, np.float32) * knit[:, None])
    b.put(_darker(t.hat_colour, 0.7), "hat_band")


def _paint_earring(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put((235, 195, 70))


def _paint_necklace(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    b.put((240, 210, 110) if t.skin_tone > 2 else (200, 200, 210))


def _paint_neck(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    shadow = 0.76 + 0.12 * np.clip(b.v - t.chin, 0, 1)
    b.put(np.asarray(SKIN_TONES[t.skin_tone], np.float32) * shadow[:, None])


def _paint_cloth(b: _Brush, t: IdentityTraits, rng: np.random.Generator) -> None:
    folds = 1.0 + 0.06 * np.sin(3.0 * b.u + 1.0)
    b.put(np.asarray(t.cloth_colour, np.float32) * folds[:, None])
    b.put((240, 240, 238), "collar")
    b.put(_darker(t.cloth_colour[::-1], 0.6) + 30, "tie")


_PAINTERS = {
    "skin": _paint_skin, "nose": _paint_nose, "eye_g": _paint_glasses,
    "l_eye": _paint_eye, "r_eye": _paint_eye,
    "l_brow": _paint_brow, "r_brow": _paint_brow, "l_ear": _paint_ear, "r_ear": _paint_ear,
    "mouth": _paint_mouth, "u_lip": _paint_upper_lip, "l_lip": _paint_lower_lip, "hair": _paint_hair,
    "hat": _paint_hat, "ear_r": _paint_earring, "neck_l": _paint_necklace, "neck": _paint_neck,
    "cloth": _paint_cloth,
}  # fmt: skip


def _paint(
    parts: dict[str, np.ndarray],
    boxes: dict[str, tuple[slice, slice]],
    extra: dict[str, np.ndarray],
    traits: IdentityTraits,
    background: Sequence[int],
    uv: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Colour ("albedo") image painted part by part in the official merge order, so that every pixel shows
    the part its label names. Each part touches only its pixel box."""
    h, w = uv[0].shape
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.asarray(background, np.float32) * (1.08 - 0.25 * (np.arange(h, dtype=np.float32) / h))[:, None, None]
    for name in CELEBAMASK_PARTS:
        if name in parts:
            _PAINTERS[name](_Brush(img, parts[name], boxes[name], uv, extra), traits, rng)
    return img


_HEAD_CLASSES = np.isin(np.arange(len(CELEBAMASK_PARTS) + 1), [*range(1, 13), CLASS_INDEX["neck"]])


def _noise_patch(tile: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An (H, W) window of a precomputed Gaussian noise tile at a random offset (wrapping if needed);
    much cheaper than drawing fresh normals for every image."""
    n = tile.shape[0]
    oy, ox = (int(o) for o in rng.integers(0, n, size=2))
    if oy + size[0] <= n and ox + size[1] <= n:
        return tile[oy : oy + size[0], ox : ox + size[1]]
    return tile[np.ix_((oy + np.arange(size[0])) % n, (ox + np.arange(size[1])) % n)]


def _shade(
    img: np.ndarray,
    label: np.ndarray,
    traits: IdentityTraits,
    pose: _Pose,
    uv: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    noise: np.ndarray,
) -> np.ndarray:
    """Directional light, rounded-head falloff, faint blotches and sensor noise on the albedo -> uint8 RGB."""
    h, w = label.shape
    u, v = uv
    k = 0.06 * pose.brightness
    light = pose.brightness - (k * pose.light[0]) * u - (k * pose.light[1]) * v
    r2 = np.minimum(np.square(u * (1.0 / traits.face_width)) + np.square((v + 0.1) * 0.8), 1.4)
    light *= np.where(_HEAD_CLASSES[label], 1.0 - 0.22 * np.square(r2), np.float32(1.0))
    blotch = cv2.resize(rng.standard_normal((5, 5), dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    light += light * (0.025 * blotch)
    out = img * light[..., None]
    out += (np.float32(4.0) * _noise_patch(noise, rng, (h, w)))[..., None]
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


# ============================================================================================ modalities
def _boundaries(label: np.ndarray) -> np.ndarray:
    edge = np.zeros(label.shape, bool)
    edge[1:] |= label[1:] != label[:-1]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    return edge


def _to_sketch(photo: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pencil sketch: pale luminance, dark contours along part boundaries, paper grain."""
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    pale = 255.0 - 0.45 * (255.0 - gray)
    pale[_boundaries(label)] = 60.0
    pale += rng.standard_normal(gray.shape, dtype=np.float32) * 6.0
    out = np.clip(pale, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def _to_cartoon(albedo: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Flat cartoon: quantised, saturated albedo without shading, black outlines."""
    flat = np.clip(albedo, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.int32) * 3 // 2, 0, 255).astype(np.uint8)
    flat = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    flat = (flat // 32) * 32 + 16
    flat[_boundaries(label)] = 15
    return flat


def _to_painting(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Painting-like: smoothed, posterised, warm-shifted colours with diagonal brush texture."""
    smooth = cv2.medianBlur(photo, 5)
    h, w = photo.shape[:2]
    strokes = rng.standard_normal((h, w), dtype=np.float32)
    strokes = cv2.filter2D(strokes, -1, np.eye(7, dtype=np.float32) / 7.0)
    out = smooth.astype(np.float32) * (1.0, 0.96, 0.85) + 18.0 * strokes[..., None] + (12, 6, 0)
    out = np.round(out / 24.0) * 24.0
    return np.clip(out, 0, 255).astype(np.uint8)


# ================================================================================================= world
class SyntheticFaceWorld:
    """A deterministic population of synthetic people.

    Args:
        seed: world seed; every trait, pose and noise pattern derives from it (same seed, same pixels).
        num_identities: how many people exist; ``face(index)`` cycles through them.
        visible_bald: more bald older men (49 % instead of 24 %) and no hats on bald heads; off (the default)
            is the standard world, pixel for pixel. MagGAN's synthetic config turns it on (its Bald edit needs
            bald heads the critic's classifier can find).
        open_mouths: the mouth-opening expressions drawn with wider lip gaps, visible at 64² (surprised 0.35
            instead of 0.2 and 0.8 instead of 0.7 of the mouth width, fearful 0.2 instead of 0.08, the open
            smile 0.16 instead of 0.07; at 64² about 21, 12 and 8 pixels of the "mouth" class instead of 8, 1
            and 0); every other pixel of every face is the standard world's. An option of PortraitGAN's
            synthetic data (``data.synthetic_open_mouths``, off in its config): its open-mouth claim needs a
            mouth the 64² landmark map and image can show.
    """

    def __init__(
        self, seed: int = 0, num_identities: int = 100, *, visible_bald: bool = False, open_mouths: bool = False
    ) -> None:
        if num_identities < 1:
            raise ValueError(f"num_identities must be >= 1, got {num_identities}")
        self.seed = int(seed)
        self.num_identities = int(num_identities)
        self.visible_bald = bool(visible_bald)
        self.open_mouths = bool(open_mouths)
        self._traits: dict[int, IdentityTraits] = {}
        self._noise = _rng(self.seed, 0x0153).standard_normal((_NOISE_TILE, _NOISE_TILE), dtype=np.float32)
        # Pose-independent canonical geometry, cached per identity and per (identity, emotion).
        self._person_geometry: dict[int, _Geometry] = {}
        self._expression_geometry: dict[tuple[int, int], _Geometry] = {}

    # ------------------------------------------------------------------------------------------ traits
    def identity_traits(self, identity: int) -> IdentityTraits:
        """Traits of one person, a pure function of (seed, identity)."""
        identity = self._check_identity(identity)
        if identity not in self._traits:
            self._traits[identity] = _sample_traits(_rng(self.seed, identity, 0x1D), self.visible_bald)
        return self._traits[identity]

    def _check_identity(self, identity: int) -> int:
        if not 0 <= int(identity) < self.num_identities:
            raise ValueError(
                f"identity {identity} out of range; this world has identities 0..{self.num_identities - 1}"
            )
        return int(identity)

    def _pose(self, identity: int, variation: int) -> _Pose:
        """Variation 0 is the canonical frontal pose; others jitter pose, gaze, light and background."""
        if variation == 0:
            return _Pose()
        r = _rng(self.seed, identity, variation, 0x905E)
        bg = tuple(int(c) for c in r.integers(80, 240, size=3))
        return _Pose(
            angle=float(r.uniform(-0.1, 0.1)),
            scale=float(r.uniform(0.93, 1.07)),
            shift=(float(r.uniform(-0.04, 0.04)), float(r.uniform(-0.03, 0.03))),
            yaw=float(r.uniform(-0.15, 0.15)),
            gaze=float(r.uniform(-0.3, 0.3)),
            light=(float(r.uniform(-1, 1)), float(r.uniform(-1, 0.3))),
            brightness=float(r.uniform(0.88, 1.08)),
            background=bg,  # type: ignore[arg-type]
        )

    def _geometry(self, identity: int, emotion: int, gaze: float) -> _Geometry:
        traits = self.identity_traits(identity)
        if len(self._expression_geometry) >= _GEOMETRY_CACHE_SIZE:
            self._person_geometry.clear()
            self._expression_geometry.clear()
        if identity not in self._person_geometry:
            self._person_geometry[identity] = _identity_geometry(traits, _rng(self.seed, identity, 0x6E0))
        key = (identity, emotion)
        if key not in self._expression_geometry:
            smile_gap = _OPEN_MOUTH_SMILE_GAP if self.open_mouths else _OPEN_SMILE_GAP
            self._expression_geometry[key] = _expression_geometry(traits, self._expression(emotion), smile_gap)
        return _combine(self._person_geometry[identity], self._expression_geometry[key], _iris_geometry(traits, gaze))

    def _expression(self, emotion: int) -> _Expression:
        name = RAFD_EMOTIONS[emotion]
        return _OPEN_MOUTH_EXPRESSIONS.get(name, _EXPRESSIONS[name]) if self.open_mouths else _EXPRESSIONS[name]

    # ------------------------------------------------------------------------------------------ render
    def render(
        self,
        identity: int,
        emotion: int | str = NEUTRAL,
        modality: int = 0,
        image_size: int | tuple[int, int] = 128,
        variation: int = 0,
        *,
        yaw: float | None = None,
        gaze: float | None = None,
    ) -> SyntheticFace:
        """Draw one person with one emotion in one modality.

        Args:
            identity: 0 <= identity < num_identities.
            emotion: index into ``RAFD_EMOTIONS`` (or its name); 5 = neutral.
            modality: index into ``MODALITIES`` (0 photo, 1 sketch, 2 cartoon, 3 painting).
            image_size: int or (height, width); the face is centred and sized by the shorter side.
            variation: 0 = canonical pose; other values give a small deterministic jitter of pose, position,
                gaze, lighting and background (the same for every emotion of this identity).
            yaw, gaze: override the variation's head yaw (radians) and iris offset (-1..1, > 0 = image right).
        """
        traits = self.identity_traits(identity)
        emotion = _emotion_index(emotion)
        if not 0 <= int(modality) < NUM_MODALITIES:
            raise ValueError(f"modality {modality} out of range; expected 0..{NUM_MODALITIES - 1} for {MODALITIES}")
        size = _sanitize_size(image_size)
        pose = self._pose(identity, int(variation))
        if yaw is not None:
            pose = dataclasses.replace(pose, yaw=float(yaw))
        if gaze is not None:
            pose = dataclasses.replace(pose, gaze=float(gaze))
        geometry = self._geometry(int(identity), emotion, pose.gaze)
        project = _Projector(size, traits, pose)
        layers = _rasterise(geometry, project, size)
        label = merge_parts(layers.parts, size)
        noise_rng = _rng(self.seed, identity, emotion, variation, modality, size[0], size[1], 0x401)
        uv = project.canonical_grid(size)
        background = pose.background or traits.background
        albedo = _paint(layers.parts, layers.boxes, layers.details, traits, background, uv, noise_rng)
        image = _shade(albedo, label, traits, pose, uv, noise_rng, self._noise)
        image = _stylise(int(modality), image, albedo, label, noise_rng)
        expr = self._expression(emotion)
        return SyntheticFace(
            image=image,
            label=label,
            parts=layers.parts,
            attributes=_attributes(traits, expr, geometry.mouth_gap, geometry.eye_open),
            landmarks=layers.landmarks.astype(np.float32),
            identity=int(identity),
            emotion=emotion,
            modality=int(modality),
        )

    def face(self, index: int, image_size: int | tuple[int, int] = 128) -> SyntheticFace:
        """The index-th photo of the world: identity ``index % num_identities``, an emotion and a jittered
        pose drawn from (seed, index). Dataset writers use this, so face i of a written set is
        ``SyntheticFaceWorld(seed).face(i, image_size)``."""
        if index < 0:
            raise ValueError(f"face index must be >= 0, got {index}")
        identity = index % self.num_identities
        emotion = int(_rng(self.seed, index, 0xE40).integers(len(RAFD_EMOTIONS)))
        return self.render(identity, emotion, 0, image_size, variation=1 + index // self.num_identities)


@dataclass
class _Layers:
    """Rasterised geometry of one face: part masks (with pixel boxes), painted-detail masks, landmarks."""

    parts: dict[str, np.ndarray]
    boxes: dict[str, tuple[slice, slice]]
    details: dict[str, np.ndarray]
    landmarks: np.ndarray


# Stroke widths of the polyline details, in canonical units (others: 0.02).
_LINE_WIDTHS = {"frame": 0.035, "lash": 0.025}


def _rasterise(geometry: _Geometry, project: _Projector, size: tuple[int, int]) -> _Layers:
    regions, details, lines, landmarks = _project_geometry(geometry, project)
    parts = _assemble_parts({name: _fill(size, polygons) for name, polygons in regions.items()})
    masks = {name: _fill(size, polygons) for name, polygons in details.items()}
    for name, polylines in lines.items():
        masks[name] = _stroke(size, polylines, round(project.scale * _LINE_WIDTHS.get(name, 0.02)))
    return _Layers(parts, _part_boxes(regions, size), masks, landmarks)


def _stylise(modality: int, photo: np.ndarray, albedo: np.ndarray, label: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """The picture in the requested modality (the label and landmarks never change)."""
    name = MODALITIES[modality]
    if name == "sketch":
        return _to_sketch(photo, label, rng)
    if name == "cartoon":
        return _to_cartoon(albedo, label)
    if name == "painting":
        return _to_painting(photo, rng)
    return photo


def _box(polygons: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[slice, slice]:
    """Pixel box (row slice, column slice) that holds every rasterised pixel of the polygons."""
    pts = np.concatenate(polygons)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    return slice(max(y0, 0), min(y1, size[0])), slice(max(x0, 0), min(x1, size[1]))


def _part_boxes(regions: dict[str, list[np.ndarray]], size: tuple[int, int]) -> dict[str, tuple[slice, slice]]:
    """Box of each part from the raw shapes it is cut from (see ``_assemble_parts``)."""
    sources = {"skin": ["face"], "hair": ["hair_outline", "sideburns"]}
    boxes = {}
    for part in CELEBAMASK_PARTS:
        polygons = [p for name in sources.get(part, [part]) for p in regions.get(name, [])]
        if polygons:
            boxes[part] = _box(polygons, size)
    return boxes


# Extra depth of each landmark for the yaw warp, matching the region it lies on (nose 0.25, lips 0.1).
_LANDMARK_DEPTH = np.array([0.0] * 27 + [0.25] * 9 + [0.0] * 12 + [0.1] * 20)


def _project_geometry(geometry: _Geometry, project: _Projector) -> tuple[_Shapes, _Shapes, _Shapes, np.ndarray]:
    """Project regions, details, lines and landmarks to pixels in one vectorised call (same order out)."""
    groups = (geometry.regions, geometry.details, geometry.lines)
    points, depth, index = [geometry.landmarks], [_LANDMARK_DEPTH], []
    for g, group in enumerate(groups):
        for name, polygons in group.items():
            d = geometry.depth.get(name, 0.0)
            for poly in polygons:
                index.append((g, name, len(poly)))
                points.append(poly)
                depth.append(np.full(len(poly), d))
    flat = project(np.concatenate(points), np.concatenate(depth))
    out: tuple[_Shapes, _Shapes, _Shapes] = ({}, {}, {})
    start = 68
    for g, name, n in index:
        out[g].setdefault(name, []).append(flat[start : start + n])
        start += n
    return out[0], out[1], out[2], flat[:68]


def _assemble_parts(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn raw shape masks into annotation-like part regions (what an annotator would paint per part).

    Ears and neck stop at the face outline and the neck stops at the necklace (so their higher merge priority
    cannot eat into the face or the necklace); hair is its silhouette minus the face window below the
    hairline, plus sideburns, and keeps the area behind the neck and cloth (which overwrite it).
    """
    face = masks["face"]
    parts: dict[str, np.ndarray] = {"skin": face}
    for name in ("nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow"):
        if name in masks:
            parts[name] = masks[name]
    for name in ("l_ear", "r_ear"):
        parts[name] = masks[name] & ~face
    for name in ("mouth", "u_lip", "l_lip"):
        if name in masks:
            parts[name] = masks[name]
    if "hair_outline" in masks:
        hair = masks["hair_outline"] & ~(face & masks["below_hairline"])
        if "sideburns" in masks:
            hair |= masks["sideburns"]
        parts["hair"] = hair
    for name in ("hat", "ear_r"):
        if name in masks:
            parts[name] = masks[name]
    neck = masks["neck"] & ~face
    if "neck_l" in masks:
        parts["neck_l"] = masks["neck_l"] & masks["neck"] & ~face
        neck &= ~masks["neck_l"]
    parts["neck"] = neck
    parts["cloth"] = masks["cloth"]
    return {name: m for name, m in parts.items() if m.any()}


# ================================================================================================ writers
# CelebA's official partition boundaries (1-based file numbers), list_eval_partition.txt.
CELEBA_TRAIN_LAST = 162770
CELEBA_VAL_LAST = 182637
CELEBA_NUM_IMAGES = 202599
CELEBA_LANDMARK_COLUMNS: tuple[str, ...] = (
    "lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y",
)  # fmt: skip
RAFD_ANGLES: tuple[int, ...] = (0, 45, 90, 135, 180)
RAFD_GAZES: tuple[str, ...] = ("frontal", "left", "right")
RAFD_LAYOUTS: tuple[str, ...] = ("rafd", "identity_folders")
# Our stand-ins for RaFD's camera angles and gaze directions: a small head yaw (radians; 90 = frontal) and
# an iris offset ("left" = towards the image left). Real RaFD profiles (0, 180) are far stronger.
RAFD_YAW: dict[int, float] = {0: -0.3, 45: -0.15, 90: 0.0, 135: 0.15, 180: 0.3}
RAFD_GAZE: dict[str, float] = {"frontal": 0.0, "left": -0.8, "right": 0.8}


def _check_count(value: int, name: str, minimum: int = 1) -> int:
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def _write_png(path: Path, gray: np.ndarray) -> None:
    if not cv2.imwrite(str(path), gray):
        raise OSError(f"could not write {path}")


def _attribute_row(name: str, attributes: np.ndarray) -> str:
    """``name -1  1 ...``: ±1 values right-aligned in width 2, as in CelebA's annotation files."""
    return name + " " + " ".join(f"{2 * int(a) - 1:2d}" for a in attributes)


def _split_counts(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes close to 80/10/10 with at least two val/test images once n >= 20."""
    held = max(round(0.1 * n), 2 if n >= 20 else (1 if n >= 3 else 0))
    return n - 2 * held, held, held


def write_celebamaskhq(
    root: str | Path,
    num_images: int = 40,
    *,
    seed: int = 0,
    image_size: int = 128,
    mask_size: int = 64,
    write_partition: bool = True,
) -> Path:
    """Write a synthetic CelebAMask-HQ in the public layout (reference_implementations.md §2).

    Files: ``CelebA-HQ-img/{i}.jpg`` (JPEG q95), ``CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png``
    (one 0/255 PNG per present part, its full region, nearest-resized to ``mask_size``),
    ``CelebA-HQ-to-CelebA-mapping.txt``, ``CelebAMask-HQ-attribute-anno.txt`` and, if ``write_partition``,
    CelebA's ``list_eval_partition.txt`` for the mapped files. Image i is ``SyntheticFaceWorld(seed).face(i,
    image_size)``. The ``orig_idx`` values put about 80/10/10 % of the images into CelebA's train/val/test
    ranges, away from the two boundary images where 0- and 1-based readings of the thresholds differ.
    """
    root = Path(root)
    num_images = _check_count(num_images, "num_images")
    _sanitize_size(image_size, "image_size")
    _sanitize_size(mask_size, "mask_size")
    world = SyntheticFaceWorld(seed)
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    attribute_rows = []
    for i in range(num_images):
        face = world.face(i, image_size)
        _write_jpeg(root / "CelebA-HQ-img" / f"{i}.jpg", face.image)
        folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for part, mask in face.parts.items():
            small = cv2.resize(mask.astype(np.uint8) * 255, (mask_size, mask_size), interpolation=cv2.INTER_NEAREST)
            _write_png(folder / f"{i:05d}_{part}.png", small)
        attribute_rows.append(_attribute_row(f"{i}.jpg", face.attributes))

    orig = _celeba_orig_indices(num_images, seed)
    mapping = ["idx orig_idx orig_file"] + [f"{i} {o} {o + 1:06d}.jpg" for i, o in enumerate(orig)]
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    header = [str(num_images), " ".join(CELEBA_ATTRIBUTES)]
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(header + attribute_rows) + "\n")
    if write_partition:
        rows = [f"{o + 1:06d}.jpg {_celeba_split_of(o + 1)}" for o in sorted(orig)]
        (root / "list_eval_partition.txt").write_text("\n".join(rows) + "\n")
    return root


def _celeba_split_of(file_number: int) -> int:
    """CelebA's official split of a 1-based image number: 0 train, 1 val, 2 test."""
    return 0 if file_number <= CELEBA_TRAIN_LAST else (1 if file_number <= CELEBA_VAL_LAST else 2)


def _celeba_orig_indices(num_images: int, seed: int) -> np.ndarray:
    """Distinct 0-based CelebA indices for CelebA-HQ images 0..n-1, ~80/10/10 % per official split."""
    rng = _rng(seed, num_images, 0x0216)
    n_train, n_val, n_test = _split_counts(num_images)
    ranges = ((0, CELEBA_TRAIN_LAST - 500), (CELEBA_TRAIN_LAST + 500, CELEBA_VAL_LAST - 500),
              (CELEBA_VAL_LAST + 500, CELEBA_NUM_IMAGES - 1))  # fmt: skip
    chosen = [lo + rng.choice(hi - lo, size=k, replace=False) for (lo, hi), k in zip(ranges, (n_train, n_val, n_test))]
    return rng.permutation(np.concatenate(chosen)).astype(np.int64)


def helen_name(index: int) -> str:
    """Helen-style image name of synthetic face ``index`` (the real names look like ``100032540_1``)."""
    return f"1000{index:05d}_1"


def helen_soft_maps(label: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """(11, H, W) uint8 probability maps for a 19-class label, in the SmithCVPR2013 style.

    Each map is ``0.5 * onehot + 0.5 * blur(onehot)`` of the Helen label, scaled to 0..255. The true class
    always scores at least 0.5 plus half the kernel's centre weight and every other class at most half of
    (1 - centre weight), so the argmax over the maps recovers the label exactly, pixel for pixel.
    """
    helen = CELEBAMASK_TO_HELEN[label]
    onehot = (helen[None] == np.arange(NUM_HELEN_CLASSES)[:, None, None]).astype(np.float32)
    maps = np.empty_like(onehot)
    for k in range(NUM_HELEN_CLASSES):
        maps[k] = 0.5 * onehot[k] + 0.5 * cv2.GaussianBlur(onehot[k], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return np.round(maps * 255.0).astype(np.uint8)


def write_helen(
    root: str | Path,
    num_train: int = 12,
    num_val: int = 4,
    num_test: int = 4,
    *,
    seed: int = 0,
    image_size: int = 128,
) -> Path:
    """Write a synthetic Helen in the ``SmithCVPR2013_dataset_resized`` layout (reference §6).

    Files: ``images/<name>.jpg``, ``labels/<name>/<name>_lbl00.png`` … ``_lbl10.png`` (8-bit soft
    probability maps, see ``helen_soft_maps``), and ``exemplars.txt`` / ``tuning.txt`` / ``testing.txt``
    with lines ``k , name``. Faces are numbered over train, then val, then test: face j is
    ``SyntheticFaceWorld(seed).face(j, image_size)`` and is named ``helen_name(j)``.
    """
    root = Path(root)
    counts = (_check_count(num_train, "num_train"), _check_count(num_val, "num_val", 0),
              _check_count(num_test, "num_test", 0))  # fmt: skip
    _sanitize_size(image_size, "image_size")
    world = SyntheticFaceWorld(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    index = 0
    for list_name, count in zip(("exemplars.txt", "tuning.txt", "testing.txt"), counts):
        lines = []
        for k in range(1, count + 1):
            name = helen_name(index)
            face = world.face(index, image_size)
            _write_jpeg(root / "images" / f"{name}.jpg", face.image)
            folder = root / "labels" / name
            folder.mkdir(parents=True, exist_ok=True)
            for c, soft in enumerate(helen_soft_maps(face.label)):
                _write_png(folder / f"{name}_lbl{c:02d}.png", soft)
            lines.append(f"{k} , {name}")
            index += 1
        (root / list_name).write_text("\n".join(lines) + ("\n" if lines else ""))
    return root


def write_celeba(
    root: str | Path,
    num_images: int = 40,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] = (218, 178),
    visible_bald: bool = False,
) -> Path:
    """Write a synthetic aligned CelebA (reference §7).

    Files: ``img_align_celeba/{k:06d}.jpg`` (k = i + 1, H x W = ``image_size``), ``list_attr_celeba.txt``,
    ``list_eval_partition.txt`` (contiguous ~80/10/10 %, as the real file is ordered), ``list_landmarks_align_
    celeba.txt`` (eye centres = means of iBUG 36-41 / 42-47, nose = 30, mouth corners = 48 / 54, rounded)
    and ``identity_CelebA.txt`` (1-based identity). Image k is ``SyntheticFaceWorld(seed).face(k - 1,
    image_size)`` (``SyntheticFaceWorld(seed, visible_bald=visible_bald)``).
    """
    root = Path(root)
    num_images = _check_count(num_images, "num_images")
    size = _sanitize_size(image_size, "image_size")
    world = SyntheticFaceWorld(seed, visible_bald=visible_bald)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    n_train, n_val, _ = _split_counts(num_images)
    attrs, parts, marks, ids = [], [], [], []
    for i in range(num_images):
        name = f"{i + 1:06d}.jpg"
        face = world.face(i, size)
        _write_jpeg(root / "img_align_celeba" / name, face.image)
        attrs.append(_attribute_row(name, face.attributes))
        parts.append(f"{name} {0 if i < n_train else (1 if i < n_train + n_val else 2)}")
        five = celeba_five_points(face.landmarks)
        values = np.round(five).astype(int).ravel()
        marks.append(f"{name} {values[0]:d}" + "".join(f"{v:5d}" for v in values[1:]))
        ids.append(f"{name} {face.identity + 1}")
    header = [str(num_images), " ".join(CELEBA_ATTRIBUTES)]
    (root / "list_attr_celeba.txt").write_text("\n".join(header + attrs) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    mark_header = " ".join(CELEBA_LANDMARK_COLUMNS)
    (root / "list_landmarks_align_celeba.txt").write_text("\n".join([str(num_images), mark_header] + marks) + "\n")
    (root / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    return root


def celeba_five_points(landmarks: np.ndarray) -> np.ndarray:
    """CelebA's 5 points from 68 iBUG landmarks: left eye, right eye, nose, left and right mouth corner."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def rafd_name(world: SyntheticFaceWorld, identity: int, emotion: str, angle: int = 90, gaze: str = "frontal") -> str:
    """RaFD name ``Rafd{angle:03d}_{id:02d}_{Ethnicity}_{gender}_{emotion}_{gaze}.jpg``, id = identity + 1."""
    traits = world.identity_traits(identity)
    gender = "male" if traits.male else "female"
    return f"Rafd{angle:03d}_{identity + 1:02d}_{traits.ethnicity}_{gender}_{emotion}_{gaze}.jpg"


def _check_choices(values: Sequence, valid: Sequence, name: str) -> None:
    if isinstance(values, str) or not len(values):
        raise ValueError(f"{name} must be a non-empty sequence of values from {list(valid)}, got {values!r}")
    bad = [v for v in values if v not in valid]
    if bad:
        raise ValueError(f"{name} has unknown values {bad}; valid values are {list(valid)}")


def write_rafd(
    root: str | Path,
    num_identities: int = 4,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] = 128,
    emotions: Sequence[str] = RAFD_EMOTIONS,
    angles: Sequence[int] = (90,),
    gazes: Sequence[str] = ("frontal",),
    layout: str = "rafd",
    write_pts: bool = True,
    modalities: Sequence[str] = ("photo",),
    open_mouths: bool = False,
) -> Path:
    """Write synthetic RaFD photos named as in the release (reference §5.4).

    ``modalities`` (names from ``MODALITIES``, ``"photo"`` first) also writes each other modality of every
    photo to ``root/modalities/<name>/<same relative path>``, PortraitGAN's modality layout (the landmarks,
    the same for every modality, are written once beside the photo).

    ``layout="rafd"`` puts every ``Rafd{angle:03d}_{id:02d}_{Ethnicity}_{gender}_{emotion}_{gaze}.jpg`` in
    ``root``; ``layout="identity_folders"`` puts them in ``root/{id:03d}/`` (id = identity + 1, as in the
    name). Photo = ``SyntheticFaceWorld(seed).render(identity, emotion, image_size=image_size,
    yaw=RAFD_YAW[angle], gaze=RAFD_GAZE[gaze])``; with ``write_pts`` an iBUG ``.pts`` sidecar (same stem)
    holds its 68 landmarks. ``open_mouths``: ``SyntheticFaceWorld(seed, open_mouths=True)``, wider lip gaps of
    the mouth-opening emotions.
    """
    from datamodules.emotion import write_pts as write_ibug_pts  # the one .pts writer (1-based)

    root = Path(root)
    if not 1 <= int(num_identities) <= 99:
        raise ValueError(f"num_identities must be in 1..99 (two-digit RaFD ids), got {num_identities}")
    _sanitize_size(image_size, "image_size")
    _check_choices(emotions, RAFD_EMOTIONS, "emotions")
    _check_choices(angles, RAFD_ANGLES, "angles")
    _check_choices(gazes, RAFD_GAZES, "gazes")
    if layout not in RAFD_LAYOUTS:
        raise ValueError(f"layout must be one of {list(RAFD_LAYOUTS)}, got {layout!r}")
    _check_choices(modalities, MODALITIES, "modalities")
    if not modalities or modalities[0] != "photo":
        raise ValueError(f"modalities must start with 'photo' (the photos under root), got {list(modalities)}")
    world = SyntheticFaceWorld(seed, num_identities=max(100, int(num_identities)), open_mouths=open_mouths)
    for identity in range(int(num_identities)):
        folder = root / f"{identity + 1:03d}" if layout == "identity_folders" else root
        folder.mkdir(parents=True, exist_ok=True)
        for angle in angles:
            for gaze in gazes:
                for emotion in emotions:
                    face = world.render(identity, emotion, image_size=image_size, yaw=RAFD_YAW[angle],
                                        gaze=RAFD_GAZE[gaze])  # fmt: skip
                    path = folder / rafd_name(world, identity, emotion, angle, gaze)
                    _write_jpeg(path, face.image)
                    if write_pts:
                        write_ibug_pts(path.with_suffix(".pts"), face.landmarks)
                    for name in modalities[1:]:
                        styled = world.render(identity, emotion, MODALITIES.index(name), image_size,
                                              yaw=RAFD_YAW[angle], gaze=RAFD_GAZE[gaze])  # fmt: skip
                        target = root / "modalities" / name / path.relative_to(root)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _write_jpeg(target, styled.image)
    return root


# =================================================================================================== grid
def _draw_landmarks(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    out = image.copy()
    for x, y in np.round(landmarks).astype(int):
        cv2.circle(out, (int(x), int(y)), 1, (255, 255, 255), -1, lineType=cv2.LINE_8)
    return out


def grid_image(world: SyntheticFaceWorld | None = None, *, image_size: int = 128, columns: int = 8) -> np.ndarray:
    """Overview grid (RGB uint8) of the world, four rows of ``columns`` cells:

    1. photos ``world.face(0..columns-1)`` (several identities, emotions and poses);
    2. their 19-class colour label maps with the 68 landmarks as white dots;
    3. identity 1 in the eight RaFD emotions (neutral pose);
    4. modalities: identities 0 and 1 as photo, sketch, cartoon and painting.
    """
    world = world or SyntheticFaceWorld(0)
    faces = [world.face(i, image_size) for i in range(columns)]
    rows = [
        [f.image for f in faces],
        [_draw_landmarks(label_to_color(f.label), f.landmarks) for f in faces],
        [world.render(1, k % len(RAFD_EMOTIONS), 0, image_size).image for k in range(columns)],
        [
            world.render(k // NUM_MODALITIES, 5, k % NUM_MODALITIES, image_size, variation=1).image
            for k in range(columns)
        ],
    ]
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def save_grid(path: str | Path, world: SyntheticFaceWorld | None = None, *, image_size: int = 128,
              columns: int = 8) -> Path:  # fmt: skip
    """Write ``grid_image`` as a PNG (``python -m datamodules.synthetic --grid docs/synthetic_grid.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = Image.fromarray(grid_image(world, image_size=image_size, columns=columns))
    # A 256-colour palette (median cut, no dithering) keeps the PNG small without visible loss.
    grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the synthetic face world.")
    parser.add_argument("--grid", type=Path, required=True, help="where to write the overview grid PNG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args(argv)
    path = save_grid(args.grid, SyntheticFaceWorld(args.seed), image_size=args.image_size)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
