"""Emotion/landmark reader (RaFD names, iBUG .pts, dlib cache), split, pairs, and dlib on a real photo."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from datamodules import EmotionLandmarks, EmotionLandmarksDataModule, EmotionPairs
from datamodules.emotion import (
    LANDMARK_CACHE,
    LandmarkCache,
    detect_landmarks,
    dlib_landmark_models,
    identity_split,
    main,
    parse_rafd_name,
    read_pts,
    write_pts,
)
from datamodules.labels import RAFD_EMOTIONS
from datamodules.synthetic import RAFD_GAZE, RAFD_YAW, SyntheticFaceWorld, write_rafd
from datamodules.transforms import hflip

SIZE, IDENTITIES = 64, 4


def write_set(root: Path, layout: str = "rafd", angles: tuple[int, ...] = (90,)) -> dict[str, np.ndarray]:
    """RaFD-named synthetic photos with 1-based iBUG .pts sidecars; returns the true landmarks by stem."""
    write_rafd(root, IDENTITIES, seed=0, image_size=SIZE, layout=layout, angles=angles, write_pts=False)
    world = SyntheticFaceWorld(0, num_identities=100)  # as write_rafd draws them
    truth = {}
    for path in sorted(root.rglob("Rafd*.jpg")):
        name = parse_rafd_name(path)
        assert name is not None
        face = world.render(
            name.subject - 1,
            name.emotion,
            image_size=SIZE,
            yaw=RAFD_YAW[name.angle],
            gaze=RAFD_GAZE[name.gaze],
        )
        write_pts(path.with_suffix(".pts"), face.landmarks)
        truth[path.stem] = face.landmarks
    return truth


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("rafd")
    return root, write_set(root)


def test_items_carry_image_landmarks_emotion_identity(flat):
    root, truth = flat
    dataset = EmotionLandmarks(root, "all", SIZE)
    assert dataset.layout == "rafd" and len(dataset) == IDENTITIES * len(RAFD_EMOTIONS)
    for i in (0, 13, 31):
        item = dataset[i]
        name = parse_rafd_name(Path(item["name"] + ".jpg"))
        assert item["emotion"] == name.emotion and item["identity"] == name.subject
        assert RAFD_EMOTIONS[item["emotion"]] in item["name"]
        assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
        assert item["landmarks"].shape == (68, 2) and item["landmarks"].dtype == torch.float32
        np.testing.assert_allclose(item["landmarks"].numpy(), truth[item["name"]], atol=1e-3)


def test_landmarks_follow_the_resize(flat):
    root, truth = flat
    item = EmotionLandmarks(root, "all", 32)[5]
    np.testing.assert_allclose(item["landmarks"].numpy(), (truth[item["name"]] + 0.5) * 0.5 - 0.5, atol=1e-3)


def test_pts_files_count_pixels_from_one(tmp_path):
    path = tmp_path / "a.pts"
    rows = "\n".join(["1 1", "10.5 3"] + ["2 2"] * 66)
    path.write_text(f"version: 1\nn_points:  68\n{{\n{rows}\n}}\n")
    points = read_pts(path)
    np.testing.assert_allclose(points[:2], [[0, 0], [9.5, 2]])
    write_pts(tmp_path / "b.pts", points)
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts"), points)


def test_identity_folders_and_angle_filter(tmp_path):
    write_set(tmp_path, layout="identity_folders", angles=(45, 90))
    everything = EmotionLandmarks(tmp_path, "all", SIZE)
    assert everything.layout == "identity_folders" and len(everything) == 2 * IDENTITIES * 8
    frontal = EmotionLandmarks(tmp_path, "all", SIZE, angles=(90,))
    assert len(frontal) == IDENTITIES * 8 and {r.angle for r in frontal.items} == {90}
    assert {r.path.parent.name for r in frontal.items} == {f"{k:03d}" for k in range(1, IDENTITIES + 1)}


def test_split_holds_out_about_ten_percent_of_each_identity(flat):
    root, _ = flat
    splits = {s: EmotionLandmarks(root, s, SIZE).items for s in ("train", "val", "test")}
    test_ids = sorted(r.identity for r in splits["test"])
    assert test_ids == list(range(1, IDENTITIES + 1))  # 10% of 8 photos -> one per identity
    assert len(splits["train"]) == IDENTITIES * 7
    assert {r.path for r in splits["train"]}.isdisjoint(r.path for r in splits["test"])
    assert splits["val"] == splits["test"]  # no validation set by default, as in PortraitGAN
    assert EmotionLandmarks(root, "test", SIZE).items == splits["test"]  # deterministic
    with_val = EmotionLandmarks(root, "val", SIZE, val_fraction=0.25)
    assert len(with_val) == 2 * IDENTITIES and {r.path for r in with_val.items}.isdisjoint(
        r.path for r in splits["test"]
    )


def test_identity_split_counts():
    splits = identity_split([7] * 20 + [8] + [9] * 3, test_fraction=0.1, val_fraction=0.0, seed=0)
    assert splits[:20].count("test") == 2 and splits[20] == "train" and splits[21:].count("test") == 1
    again = identity_split([7] * 20 + [8] + [9] * 3, test_fraction=0.1, val_fraction=0.0, seed=0)
    assert again == splits and identity_split([7] * 20, test_fraction=0.1, val_fraction=0, seed=1) != splits[:20]


def test_flip_swaps_landmark_indices_and_mirrors_x(flat):
    root, _ = flat
    sample = EmotionLandmarks(root, "all", SIZE).load(0)
    points = sample.points["landmarks"]
    flipped = hflip(sample, None).points["landmarks"]
    np.testing.assert_allclose(flipped[36], [SIZE - 1 - points[45, 0], points[45, 1]])
    np.testing.assert_allclose(flipped[45], [SIZE - 1 - points[36, 0], points[36, 1]])
    np.testing.assert_allclose(flipped[30], [SIZE - 1 - points[30, 0], points[30, 1]])
    assert flipped[36, 0] < flipped[45, 0]


def test_pairs_share_identity_and_differ_in_emotion(flat):
    root, truth = flat
    pairs = EmotionPairs(root, "test", SIZE)
    assert len(pairs) == IDENTITIES
    for i in range(len(pairs)):
        item = pairs[i]
        assert item["identity"] == parse_rafd_name(Path(item["name_b"] + ".jpg")).subject
        assert item["emotion"] != item["emotion_b"]
        assert item["image_b"].shape == (3, SIZE, SIZE)
        np.testing.assert_allclose(item["landmarks_b"].numpy(), truth[item["name_b"]], atol=1e-3)
    repeat = EmotionPairs(root, "test", SIZE)
    assert [repeat[i]["name_b"] for i in range(len(repeat))] == [pairs[i]["name_b"] for i in range(len(pairs))]
    train = EmotionPairs(root, "train", SIZE)
    partners = set()
    for seed in range(6):
        torch.manual_seed(seed)
        partners.add(train[0]["name_b"])
    assert len(partners) > 1  # random partners on train


def test_landmark_cache_replaces_sidecars_and_skips_faceless_photos(tmp_path):
    truth = write_set(tmp_path)
    photos = sorted(tmp_path.glob("*.jpg"))
    cache = LandmarkCache({p.name: truth[p.stem] for p in photos[1:]}, {photos[0].name: "no face detected"})
    cache.save(tmp_path / LANDMARK_CACHE)
    for pts in tmp_path.glob("*.pts"):
        pts.unlink()
    dataset = EmotionLandmarks(tmp_path, "all", SIZE)
    assert len(dataset) == len(photos) - 1 and photos[0].name not in {r.path.name for r in dataset.items}
    np.testing.assert_allclose(dataset[0]["landmarks"].numpy(), truth[dataset[0]["name"]], atol=1e-3)


# ------------------------------------------------------------------------------------- dlib, real photo
@pytest.fixture(scope="module")
def dlib_models():
    return dlib_landmark_models()


def test_dlib_landmarks_land_on_the_astronauts_face(dlib_models):
    photo = skimage_data.astronaut()
    faces = detect_landmarks(photo, *dlib_models, upsample=0)
    assert len(faces) == 1
    points = faces[0]
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    eyes, nose_tip, mouth = points[36:48].mean(axis=0), points[30], points[48:68].mean(axis=0)
    assert 150 < left and right < 290 and 60 < top and bottom < 200  # the face, not the flag or the suit
    assert top < eyes[1] < (top + bottom) / 2  # eyes in the upper half of the face
    assert eyes[1] < nose_tip[1] < mouth[1]  # nose tip between eyes and mouth
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # 36-41 is the image-left eye
    assert abs(nose_tip[0] - (left + right) / 2) < 0.15 * (right - left)


def test_build_landmarks_command_writes_a_cache_and_reports_faceless_photos(tmp_path, capsys, dlib_models):
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "Rafd090_01_Caucasian_female_happy_frontal.jpg"), astronaut)
    cv2.imwrite(str(tmp_path / "Rafd090_01_Caucasian_female_sad_frontal.jpg"), np.full((96, 96, 3), 200, np.uint8))
    main(["build-landmarks", str(tmp_path), "--upsample", "0"])
    report = capsys.readouterr().out
    assert "landmarks for 1 photos; 1 skipped" in report
    assert "Rafd090_01_Caucasian_female_sad_frontal.jpg: no face detected" in report
    payload = json.loads((tmp_path / LANDMARK_CACHE).read_text())
    assert list(payload["landmarks"]) == ["Rafd090_01_Caucasian_female_happy_frontal.jpg"]
    dataset = EmotionLandmarks(tmp_path, "all", 128)
    assert len(dataset) == 1 and dataset[0]["emotion"] == RAFD_EMOTIONS.index("happy")
    eyes = dataset[0]["landmarks"][36:48].mean(0) * 512 / 128
    assert 80 < float(eyes[1]) < 130 and 190 < float(eyes[0]) < 260


# ------------------------------------------------------------------------------------------ datamodule
def test_paired_datamodule_on_the_synthetic_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = EmotionLandmarksDataModule(image_size=32, batch_size=4, synthetic_images=32, paired=True)
    assert dm.hparams["paired"] is True and dm.hparams["test_fraction"] == 0.1  # saved into checkpoints
    dm.prepare_data()
    assert len(list((tmp_path / "synthetic" / "rafd-seed0-n32-s32").glob("Rafd090_*.jpg"))) == 32
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 28 and len(dm.datasets["val"]) == 4
    batch = next(iter(dm.train_dataloader()))
    for key in ("image", "image_b"):
        assert batch[key].shape == (4, 3, 32, 32) and batch[key].dtype == torch.float32
    for key in ("landmarks", "landmarks_b"):
        assert batch[key].shape == (4, 68, 2) and ((batch[key] > 0) & (batch[key] < 31)).all()
    assert batch["emotion"].dtype == torch.int64 and (batch["emotion"] != batch["emotion_b"]).all()
    assert batch["identity"].shape == (4,)
