"""The synthetic face world: exact, deterministic ground truth and the real on-disk layouts it writes."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from datamodules.bench_data import bench, report
from datamodules.labels import (
    ATTRIBUTE_INDEX,
    CELEBA_ATTRIBUTES,
    CELEBAMASK_PARTS,
    CELEBAMASK_TO_HELEN,
    CLASS_INDEX,
    RAFD_EMOTIONS,
)
from datamodules.synthetic import (
    HAIR_COLOURS,
    MODALITIES,
    SyntheticFaceWorld,
    celeba_five_points,
    grid_image,
    helen_name,
    merge_parts,
    rafd_name,
    save_grid,
    write_celeba,
    write_celebamaskhq,
    write_helen,
    write_rafd,
)

EMOTION_DEPENDENT = {"Smiling", "High_Cheekbones", "Mouth_Slightly_Open", "Narrow_Eyes"}


def attr(face, name: str) -> int:
    return int(face.attributes[ATTRIBUTE_INDEX[name]])


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance to the nearest True pixel of ``mask``."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def at(image: np.ndarray, point: np.ndarray):
    x, y = np.round(point).astype(int)
    return image[y, x]


@pytest.fixture(scope="module")
def world() -> SyntheticFaceWorld:
    return SyntheticFaceWorld(seed=0)


@pytest.fixture(scope="module")
def faces128(world):
    return [world.face(i, 128) for i in range(40)]


# ------------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_faces_and_another_seed_differs():
    a, b, c = SyntheticFaceWorld(3), SyntheticFaceWorld(3), SyntheticFaceWorld(4)
    for i in (0, 7, 123):
        fa, fb = a.face(i, 64), b.face(i, 64)
        for key in ("image", "label", "attributes", "landmarks"):
            np.testing.assert_array_equal(getattr(fa, key), getattr(fb, key))
        assert fa.parts.keys() == fb.parts.keys()
    assert not np.array_equal(a.face(0, 64).image, c.face(0, 64).image)
    assert [a.identity_traits(i) for i in range(10)] != [c.identity_traits(i) for i in range(10)]


def test_render_order_does_not_change_a_face(world):
    """Caches must not leak state: a face rendered cold equals the same face rendered after others."""
    warm = world.render(5, "happy", image_size=64, variation=2)
    cold = SyntheticFaceWorld(0).render(5, "happy", image_size=64, variation=2)
    np.testing.assert_array_equal(warm.image, cold.image)
    np.testing.assert_array_equal(warm.landmarks, cold.landmarks)


def test_face_record_types_and_shapes(world):
    face = world.face(3, (218, 178))
    assert face.image.shape == (218, 178, 3) and face.image.dtype == np.uint8
    assert face.label.shape == (218, 178) and face.label.dtype == np.uint8
    assert face.attributes.shape == (40,) and face.attributes.dtype == np.int64
    assert set(np.unique(face.attributes)) <= {0, 1}
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.identity == 3 and face.modality == 0 and 0 <= face.emotion < len(RAFD_EMOTIONS)
    # Centred by the shorter side: the landmarks' centre sits near the middle column.
    assert abs(face.landmarks[:, 0].mean() - 89) < 12


# ------------------------------------------------------------------------------------------ label/parts
def test_merge_parts_follows_the_official_order():
    shape = (2, 4)
    parts = {
        "skin": np.ones(shape, bool),
        "eye_g": np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool),
        "l_eye": np.array([[0, 1, 0, 0], [0, 0, 0, 0]], bool),  # eyes overwrite eyeglasses
        "hair": np.array([[0, 0, 1, 1], [0, 0, 1, 1]], bool),
        "neck": np.array([[0, 0, 0, 1], [0, 0, 0, 0]], np.uint8),  # neck overwrites hair; any non-zero counts
    }
    expected = np.array([[3, 4, 13, 17], [1, 1, 13, 13]], np.uint8)
    np.testing.assert_array_equal(merge_parts(parts, shape), expected)


def test_merge_parts_rejects_unknown_names_and_wrong_shapes():
    with pytest.raises(ValueError, match="unknown part names \\['beard'\\].*skin"):
        merge_parts({"beard": np.ones((2, 2), bool)}, (2, 2))
    with pytest.raises(ValueError, match="'hair' has shape \\(3, 2\\), expected \\(2, 2\\)"):
        merge_parts({"hair": np.ones((3, 2), bool)}, (2, 2))


@pytest.mark.parametrize("size", [64, (218, 178)])
def test_label_is_the_official_merge_of_the_parts(world, size):
    for i in range(25):
        face = world.face(i, size)
        assert set(face.parts) <= set(CELEBAMASK_PARTS)
        assert all(m.dtype == bool and m.any() for m in face.parts.values())
        np.testing.assert_array_equal(face.label, merge_parts(face.parts, face.label.shape))


# (upper, lower) part pairs whose overlap the merge order resolves in favour of ``upper``.
PRIORITY_PAIRS = {
    ("hat", "hair"), ("neck", "hair"), ("cloth", "hair"), ("ear_r", "hair"),
    ("l_eye", "eye_g"), ("r_eye", "eye_g"),
}  # fmt: skip


def test_merge_priority_cases_occur_in_the_world(world):
    """Overlaps that only the merge order resolves: hat over hair, neck and cloth over hair, eyes inside
    the eyeglasses region, earrings over hair."""
    seen = set()
    for identity in range(60):
        face = world.render(identity, image_size=64)
        p = face.parts
        for upper, lower in PRIORITY_PAIRS:
            if upper in p and lower in p and (p[upper] & p[lower]).any():
                overlap = face.label[p[upper] & p[lower]]
                assert (overlap >= CLASS_INDEX[upper]).all()  # the upper part or one merged after it
                assert (overlap == CLASS_INDEX[upper]).any()
                seen.add((upper, lower))
        if "eye_g" in p:  # the eyes lie inside the eyeglasses region
            assert (p["l_eye"] & ~p["eye_g"]).sum() <= 0.05 * p["l_eye"].sum()
    assert seen == PRIORITY_PAIRS


# ------------------------------------------------------------------------------------------- landmarks
def test_landmarks_lie_in_their_classes(faces128):
    """iBUG 36-41 (the image-left eye) lie in l_eye, 42-47 in r_eye: left/right is the viewer's side."""
    C = CLASS_INDEX
    groups = {
        (17, 22): [C["l_brow"]], (22, 27): [C["r_brow"]], (27, 36): [C["nose"]],
        (36, 42): [C["l_eye"]], (42, 48): [C["r_eye"]], (48, 68): [C["mouth"], C["u_lip"], C["l_lip"]],
    }  # fmt: skip
    for face in faces128:
        for (lo, hi), classes in groups.items():
            dist = distance_to(np.isin(face.label, classes))
            assert max(at(dist, p) for p in face.landmarks[lo:hi]) <= 1.5, (face.identity, lo)
        assert at(face.label, face.landmarks[36:42].mean(0)) == C["l_eye"]
        assert at(face.label, face.landmarks[42:48].mean(0)) == C["r_eye"]
        assert face.landmarks[36:42, 0].mean() < face.landmarks[42:48, 0].mean()


def test_jaw_landmarks_follow_the_face_outline(faces128):
    for face in faces128:
        skin = face.parts["skin"]
        edge = skin & ~cv2.erode(skin.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert max(at(distance_to(edge), p) for p in face.landmarks[:17]) <= 1.5
        assert face.landmarks[0, 0] < face.landmarks[8, 0] < face.landmarks[16, 0]
        assert face.landmarks[8, 1] >= face.landmarks[:17, 1].max() - 2.0  # the chin is (about) the lowest


def test_celeba_five_points_come_from_the_68(faces128):
    lm = faces128[0].landmarks
    five = celeba_five_points(lm)
    np.testing.assert_allclose(five[0], lm[36:42].mean(0), rtol=1e-6)
    np.testing.assert_allclose(five[2:], lm[[30, 48, 54]], rtol=1e-6)
    assert five[0, 0] < five[1, 0]  # "lefteye" is the image-left eye, as in CelebA


# ------------------------------------------------------------------------------------------ attributes
def test_part_attributes_match_the_pixels(world):
    pairs = {"Eyeglasses": "eye_g", "Wearing_Hat": "hat", "Wearing_Earrings": "ear_r",
             "Wearing_Necklace": "neck_l", "Mouth_Slightly_Open": "mouth"}  # fmt: skip
    counts = dict.fromkeys(pairs, 0)
    for i in range(80):
        face = world.face(i, 64)
        for name, part in pairs.items():
            assert attr(face, name) == int(part in face.parts), (i, name)
            counts[name] += attr(face, name)
        assert attr(face, "Bald") == int("hair" not in face.parts)
        colours = [attr(face, n) for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")]
        assert sum(colours) == 1 - attr(face, "Bald")
        assert attr(face, "Wavy_Hair") + attr(face, "Straight_Hair") <= 1
        assert attr(face, "No_Beard") + attr(face, "Goatee") <= 1
        if not attr(face, "Male"):
            assert attr(face, "No_Beard") == 1 and attr(face, "Mustache") == 0
    assert all(c > 0 for c in counts.values()), counts  # every attribute occurs, so the test bites


def test_hair_colour_attribute_is_the_visible_colour(faces128):
    names = {"Black_Hair": "black", "Blond_Hair": "blond", "Brown_Hair": "brown", "Gray_Hair": "gray"}
    palette = np.array([HAIR_COLOURS[c] for c in names.values()], np.float32)
    checked = 0
    for face in faces128:
        hair = face.label == CLASS_INDEX["hair"]
        inner = cv2.erode(hair.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if inner.sum() < 30:
            continue
        median = np.median(face.image[inner].astype(np.float32), axis=0)
        nearest = list(names)[int(np.argmin(np.linalg.norm(palette - median, axis=1)))]
        assert attr(face, nearest) == 1, (face.identity, median)
        checked += 1
    assert checked >= 25


def test_emotions_drive_smiling_and_geometry(world):
    identity = 1
    faces = {e: world.render(identity, e, image_size=128) for e in RAFD_EMOTIONS}
    assert [attr(faces[e], "Smiling") for e in RAFD_EMOTIONS] == [int(e == "happy") for e in RAFD_EMOTIONS]
    assert attr(faces["surprised"], "Mouth_Slightly_Open") == 1 and "mouth" in faces["surprised"].parts
    assert attr(faces["neutral"], "Mouth_Slightly_Open") == 0 and "mouth" not in faces["neutral"].parts

    def corner_lift(face) -> float:  # > 0 when the mouth corners are above the lip centre
        lm = face.landmarks
        return float(lm[[51, 57], 1].mean() - lm[[48, 54], 1].mean())

    assert corner_lift(faces["happy"]) > corner_lift(faces["neutral"]) + 1.5
    assert corner_lift(faces["sad"]) < corner_lift(faces["neutral"]) - 1.0
    brow_height = {e: faces[e].landmarks[17:27, 1].mean() for e in ("neutral", "surprised")}
    assert brow_height["surprised"] < brow_height["neutral"] - 2.0
    opening = {e: faces[e].landmarks[66, 1] - faces[e].landmarks[62, 1] for e in ("neutral", "surprised")}
    assert opening["neutral"] == pytest.approx(0.0, abs=1e-4) and opening["surprised"] > 4.0
    inner_brow = {e: faces[e].landmarks[[21, 22], 1].mean() for e in ("neutral", "angry")}
    assert inner_brow["angry"] > inner_brow["neutral"] + 1.5  # angry pulls the inner brow ends down


def test_an_identity_keeps_its_traits_across_emotions_and_variations(world):
    for identity in (0, 2, 5):
        faces = [world.render(identity, e, image_size=64) for e in range(len(RAFD_EMOTIONS))]
        stable = [i for i, n in enumerate(CELEBA_ATTRIBUTES) if n not in EMOTION_DEPENDENT]
        for face in faces[1:]:
            np.testing.assert_array_equal(face.attributes[stable], faces[0].attributes[stable])
            np.testing.assert_array_equal(face.label == CLASS_INDEX["hair"], faces[0].label == CLASS_INDEX["hair"])
            np.testing.assert_array_equal(face.landmarks[:17], faces[0].landmarks[:17])  # the jaw does not move
        moved = world.render(identity, image_size=64, variation=3)
        np.testing.assert_array_equal(moved.attributes, faces[RAFD_EMOTIONS.index("neutral")].attributes)
        assert np.abs(moved.landmarks - faces[RAFD_EMOTIONS.index("neutral")].landmarks).max() > 0.5


def test_modalities_change_the_picture_not_the_truth(world):
    faces = [world.render(2, "happy", m, 64, variation=1) for m in range(len(MODALITIES))]
    for face in faces[1:]:
        np.testing.assert_array_equal(face.label, faces[0].label)
        np.testing.assert_array_equal(face.landmarks, faces[0].landmarks)
        assert np.abs(face.image.astype(int) - faces[0].image).mean() > 10
    sketch = faces[MODALITIES.index("sketch")].image
    assert (sketch[..., 0] == sketch[..., 1]).all() and (sketch[..., 1] == sketch[..., 2]).all()
    assert [f.modality for f in faces] == list(range(len(MODALITIES)))


def test_render_rejects_bad_arguments(world):
    with pytest.raises(ValueError, match="unknown emotion 'joyful'.*'angry'"):
        world.render(0, "joyful")
    with pytest.raises(ValueError, match="emotion index 8 out of range"):
        world.render(0, 8)
    with pytest.raises(ValueError, match="identity 100 out of range.*0..99"):
        world.render(100)
    with pytest.raises(ValueError, match="modality 4 out of range"):
        world.render(0, modality=4)
    with pytest.raises(ValueError, match="image_size must be at least 16"):
        world.render(0, image_size=8)
    with pytest.raises(ValueError, match="face index must be >= 0"):
        world.face(-1)


# --------------------------------------------------------------------------------------------- writers
def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_write_celebamaskhq_layout(tmp_path, world):
    root = write_celebamaskhq(tmp_path / "hq", 20, image_size=64, mask_size=32)
    assert sorted(p.name for p in (root / "CelebA-HQ-img").iterdir()) == sorted(f"{i}.jpg" for i in range(20))
    assert read_gray(root / "CelebA-HQ-img" / "7.jpg").shape == (64, 64, 3)
    for i in (0, 13):
        face = world.face(i, 64)
        files = sorted((root / "CelebAMask-HQ-mask-anno" / "0").glob(f"{i:05d}_*.png"))
        assert [f.stem.split("_", 1)[1] for f in files] == sorted(face.parts)
        parts = {f.stem.split("_", 1)[1]: read_gray(f) for f in files}
        assert all(m.shape == (32, 32) and set(np.unique(m)) <= {0, 255} for m in parts.values())
        small = cv2.resize(face.label, (32, 32), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(merge_parts(parts, (32, 32)), small)

    mapping = (root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()
    assert mapping[0] == "idx orig_idx orig_file" and len(mapping) == 21
    rows = [line.split() for line in mapping[1:]]
    assert [int(r[0]) for r in rows] == list(range(20))
    assert all(r[2] == f"{int(r[1]) + 1:06d}.jpg" for r in rows)
    orig = np.array([int(r[1]) for r in rows])
    splits = np.where(orig < 162770, 0, np.where(orig < 182637, 1, 2))
    assert np.bincount(splits, minlength=3).tolist() == [16, 2, 2]

    attrs = (root / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()
    assert attrs[0] == "20" and attrs[1].split() == list(CELEBA_ATTRIBUTES)
    assert attrs[2].startswith("0.jpg ") and "  " in attrs[2]
    values = np.array([int(v) for v in attrs[2 + 13].split()[1:]])
    np.testing.assert_array_equal(values, 2 * world.face(13, 64).attributes - 1)

    partition = dict(line.split() for line in (root / "list_eval_partition.txt").read_text().splitlines())
    assert set(partition) == {r[2] for r in rows}
    assert sorted(int(v) for v in partition.values()) == sorted(splits.tolist())
    assert not (write_celebamaskhq(tmp_path / "np", 2, image_size=32, mask_size=16, write_partition=False)
                / "list_eval_partition.txt").exists()  # fmt: skip


def test_write_helen_layout(tmp_path, world):
    root = write_helen(tmp_path / "helen", 3, 2, 2, image_size=64)
    lists = {name: (root / name).read_text().splitlines() for name in ("exemplars.txt", "tuning.txt", "testing.txt")}
    assert lists["exemplars.txt"] == [f"{k} , {helen_name(k - 1)}" for k in (1, 2, 3)]
    assert lists["tuning.txt"] == ["1 , 100000003_1", "2 , 100000004_1"]
    assert lists["testing.txt"][1] == f"2 , {helen_name(6)}"
    assert len(list((root / "images").glob("*.jpg"))) == 7
    for index in (0, 6):
        name = helen_name(index)
        maps = np.stack([read_gray(root / "labels" / name / f"{name}_lbl{c:02d}.png") for c in range(11)])
        assert maps.dtype == np.uint8 and maps.shape == (11, 64, 64)
        np.testing.assert_array_equal(maps.argmax(0), CELEBAMASK_TO_HELEN[world.face(index, 64).label])
        assert len(np.unique(maps)) > 10  # soft maps, not hard 0/255 masks


def test_write_celeba_layout(tmp_path, world):
    root = write_celeba(tmp_path / "celeba", 20, image_size=(80, 64))
    names = [f"{k:06d}.jpg" for k in range(1, 21)]
    assert sorted(p.name for p in (root / "img_align_celeba").iterdir()) == names
    assert read_gray(root / "img_align_celeba" / names[0]).shape == (80, 64, 3)
    attrs = (root / "list_attr_celeba.txt").read_text().splitlines()
    assert attrs[0] == "20" and attrs[1].split() == list(CELEBA_ATTRIBUTES) and attrs[2].startswith("000001.jpg ")
    np.testing.assert_array_equal([int(v) for v in attrs[4].split()[1:]], 2 * world.face(2, (80, 64)).attributes - 1)
    partition = [line.split() for line in (root / "list_eval_partition.txt").read_text().splitlines()]
    assert [p[0] for p in partition] == names and [int(p[1]) for p in partition] == [0] * 16 + [1] * 2 + [2] * 2
    marks = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()
    assert marks[0] == "20" and marks[1].split()[0] == "lefteye_x" and len(marks[1].split()) == 10
    row = marks[2 + 5].split()
    expected = np.round(celeba_five_points(world.face(5, (80, 64)).landmarks)).astype(int).ravel()
    assert row[0] == names[5] and [int(v) for v in row[1:]] == expected.tolist()
    ids = (root / "identity_CelebA.txt").read_text().splitlines()
    assert ids[3] == "000004.jpg 4"


def test_write_rafd_layouts_and_pts(tmp_path, world):
    root = write_rafd(tmp_path / "rafd", 2, image_size=32, emotions=("happy", "sad"), angles=(45, 90),
                      gazes=("frontal", "left"))  # fmt: skip
    jpgs = sorted(p.name for p in root.glob("*.jpg"))
    assert len(jpgs) == 16 and len(list(root.glob("*.pts"))) == 16
    pattern = re.compile(r"Rafd(\d{3})_(\d{2})_(Caucasian|Moroccan)_(male|female)_(\w+)_(frontal|left|right)\.jpg")
    for name in jpgs:
        angle, subject, _, gender, emotion, _ = pattern.fullmatch(name).groups()
        assert angle in ("045", "090") and emotion in ("happy", "sad")
        assert (gender == "male") == world.identity_traits(int(subject) - 1).male
    name = rafd_name(world, 1, "happy")
    assert name in jpgs
    lines = (root / name).with_suffix(".pts").read_text().splitlines()
    assert lines[:3] == ["version: 1", "n_points: 68", "{"] and lines[-1] == "}" and len(lines) == 72
    points = np.array([[float(v) for v in line.split()] for line in lines[3:-1]])
    face = world.render(1, "happy", image_size=32)
    np.testing.assert_allclose(points - 1, face.landmarks, atol=1e-3)  # .pts count pixels from 1
    decoded = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - face.image).mean() < 8  # JPEG of the same picture

    folders = write_rafd(tmp_path / "ids", 2, image_size=16, emotions=("angry",), layout="identity_folders",
                         write_pts=False)  # fmt: skip
    assert sorted(p.relative_to(folders).as_posix() for p in folders.rglob("*")) == [
        "001",
        f"001/{rafd_name(world, 0, 'angry')}",
        "002",
        f"002/{rafd_name(world, 1, 'angry')}",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: write_rafd(r, emotions=("smiling",)),
            "emotions has unknown values \\['smiling'\\].*'angry'",
        ),
        (lambda r: write_rafd(r, emotions="happy"), "emotions must be a non-empty sequence"),
        (lambda r: write_rafd(r, layout="flat"), "layout must be one of \\['rafd', 'identity_folders'\\]"),
        (lambda r: write_rafd(r, angles=(60,)), "angles has unknown values \\[60\\]"),
        (lambda r: write_rafd(r, gazes=("up",)), "gazes has unknown values"),
        (lambda r: write_rafd(r, num_identities=0), "num_identities must be in 1..99"),
        (lambda r: write_rafd(r, image_size=8), "image_size must be at least 16"),
        (lambda r: write_celebamaskhq(r, 0), "num_images must be >= 1"),
        (lambda r: write_celebamaskhq(r, 2, mask_size=8), "mask_size must be at least 16"),
        (lambda r: write_helen(r, num_train=0), "num_train must be >= 1"),
        (lambda r: write_celeba(r, 2, image_size=(218, 10)), "image_size must be at least 16"),
    ],
)
def test_writers_reject_bad_arguments(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path)


# ------------------------------------------------------------------------------------------ bench, grid
def test_bench_reports_both_speeds():
    result = bench(num_faces=4, image_size=32)
    assert result.render.count == result.read.count == 4
    assert min(result.render.rate, result.render.cpu_rate, result.read.rate, result.read.cpu_rate) > 0
    text = report(result, target=1e9)
    assert "render:" in text and "read  :" in text and "faces/s per core" in text and "NOT met" in text


def test_grid_has_four_rows_of_faces(tmp_path, world):
    grid = grid_image(world, image_size=32, columns=4)
    assert grid.shape == (4 * 32, 4 * 32, 3)
    path = save_grid(tmp_path / "grid.png", world, image_size=32, columns=4)
    assert cv2.imread(str(path)).shape == (128, 128, 3)
