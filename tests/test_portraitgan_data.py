"""PortraitGAN data: modality folders, shared landmarks, identity-disjoint 7/3 split, uniform pairs, the
OpenCV modality builder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import EmotionLandmarksDataModule, EmotionPairs
from datamodules.base import DatasetError, MissingDataError
from datamodules.emotion import build_modalities, identity_disjoint_split, main, parse_rafd_name
from datamodules.synthetic import MODALITIES, SyntheticFaceWorld, write_rafd

SIZE, IDENTITIES = 32, 10


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rafd_modalities")
    write_rafd(root, IDENTITIES, seed=0, image_size=SIZE, emotions=("neutral", "happy", "surprised"),
               modalities=MODALITIES)  # fmt: skip
    return root


def _pairs(root: Path, split: str, **kw) -> EmotionPairs:
    return EmotionPairs(root, split, SIZE, False, modalities=MODALITIES, split_by="identity", test_fraction=0.3,
                        partner="uniform", **kw)  # fmt: skip


def test_modality_folders_hold_the_true_renders_and_share_the_landmarks(world_root):
    pairs = _pairs(world_root, "all")
    world = SyntheticFaceWorld(0, num_identities=100)
    record = pairs.items[4]
    name = parse_rafd_name(record.path)
    for m in range(len(MODALITIES)):
        sample = pairs.load_record(record, m)
        assert sample.extras["modality"] == m
        errors = [
            np.abs(sample.image.astype(float) - world.render(name.subject - 1, name.emotion, k, SIZE).image).mean()
            for k in range(4)
        ]
        assert int(np.argmin(errors)) == m and errors[m] < 10  # JPEG at 32²
        assert np.array_equal(sample.points["landmarks"], record.landmarks)
    # the four modalities of a photo really differ (the folder is not the photo again)
    images = [pairs.load_record(record, m).image.astype(float) for m in range(4)]
    assert min(np.abs(images[0] - images[m]).mean() for m in (1, 2, 3)) > 10


def test_identity_disjoint_split_seven_three():
    ids = [i for i in range(20) for _ in range(3)]
    splits = identity_disjoint_split(ids, test_fraction=0.3, seed=0)
    test_ids = {i for i, s in zip(ids, splits, strict=True) if s == "test"}
    train_ids = {i for i, s in zip(ids, splits, strict=True) if s == "train"}
    assert len(test_ids) == 6 and not test_ids & train_ids and len(train_ids) == 14
    assert splits == identity_disjoint_split(ids, test_fraction=0.3, seed=0)
    assert splits != identity_disjoint_split(ids, test_fraction=0.3, seed=1)


def test_pairs_same_identity_partner_landmarks_and_modalities(world_root):
    train, test = _pairs(world_root, "train"), _pairs(world_root, "test")
    assert {r.identity for r in train.items}.isdisjoint({r.identity for r in test.items})
    assert len({r.identity for r in test.items}) == round(0.3 * IDENTITIES)
    seen_modalities, seen_self = set(), False
    torch.manual_seed(0)
    for i in range(len(train)):
        item = train[i]
        assert item["identity"] == parse_rafd_name(Path(item["name_b"])).subject
        partner = next(r for r in train.records if r.path.stem == item["name_b"])
        assert torch.allclose(item["landmarks_b"], torch.as_tensor(partner.landmarks))
        seen_modalities |= {int(item["modality"]), int(item["modality_b"])}
        seen_self |= item["name"] == item["name_b"]
    assert seen_modalities == {0, 1, 2, 3} and seen_self
    first = [test[i]["name_b"] + str(int(test[i]["modality_b"])) for i in range(len(test))]
    assert first == [test[i]["name_b"] + str(int(test[i]["modality_b"])) for i in range(len(test))]


def test_missing_modality_file_or_folder_is_named(world_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(world_root, root)
    victim = sorted((root / "modalities" / "cartoon").glob("*.jpg"))[3]
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        _pairs(root, "all")
    shutil.rmtree(root / "modalities" / "sketch")
    with pytest.raises(MissingDataError, match="sketch"):
        _pairs(root, "all")


def test_build_modalities_with_opencv_filters_then_read_by_name(tmp_path, capsys):
    root = tmp_path / "photos"
    write_rafd(root, 2, seed=0, image_size=SIZE, emotions=("neutral", "happy"))
    counts = build_modalities(root, ["pencil_sketch", "stylization"])
    assert counts == {"pencil_sketch": 4, "stylization": 4}
    assert build_modalities(root, ["pencil_sketch"]) == {"pencil_sketch": 0}  # resumable: nothing rewritten
    assert not list(root.rglob(".*tmp*"))
    main(["build-modalities", str(root), "--styles", "edge_preserving"])
    assert "edge_preserving: wrote 4" in capsys.readouterr().out
    pairs = EmotionPairs(root, "all", SIZE, False, modalities=["photo", "pencil_sketch", "stylization",
                         "edge_preserving"], partner="uniform")  # fmt: skip
    sketch = pairs.load_record(pairs.items[0], 1).image
    assert np.ptp(sketch.astype(int), axis=2).max() <= 2  # pencil sketch is grey
    with pytest.raises(ValueError, match="unknown style"):
        build_modalities(root, ["oil"])


def test_datamodule_writes_the_synthetic_modalities(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = EmotionLandmarksDataModule(None, image_size=SIZE, batch_size=2, augment=False, synthetic_images=40,
                                    paired=True, modalities=list(MODALITIES), split_by="identity",
                                    test_fraction=0.3, partner="uniform")  # fmt: skip
    assert "sketch" in dm.synthetic_dir.name
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_b"].shape == (2, 3, SIZE, SIZE) and batch["modality_b"].shape == (2,)
    assert (dm.data_root / "modalities" / "painting").is_dir()


def test_landmark_box_crop_is_shared_per_group_and_moves_the_landmarks(tmp_path):
    from datamodules.emotion import crop_square

    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    assert np.array_equal(crop_square(image, 1, 1, 3), image[1:4, 1:4])
    padded = crop_square(image, -2, 3, 4)  # 2 columns left of the photo, 2 rows below it: replicated edges
    assert padded.shape == (4, 4, 3)
    assert np.array_equal(padded[0, 0], image[3, 0]) and np.array_equal(padded[3, 3], image[4, 1])
    write_rafd(tmp_path, 2, seed=0, image_size=64, emotions=("neutral", "surprised"), gazes=("frontal", "left"))
    plain = EmotionPairs(tmp_path, "all", 64, False, partner="uniform")
    cropped = EmotionPairs(tmp_path, "all", 48, False, partner="uniform", crop="landmark_box")
    groups = {}
    for record in cropped.records:
        name = parse_rafd_name(record.path)
        groups.setdefault((name.subject, name.gaze), set()).add(cropped.crops[record.path])
    assert len(groups) == 4 and all(len(c) == 1 for c in groups.values())  # one crop per (id, angle, gaze)
    record = cropped.items[0]
    x0, y0, side = cropped.crops[record.path]
    points = record.landmarks
    w, h = np.ptp(points, 0)
    assert abs(side - 2 * max(w, h)) < 0.25 * max(w, h)  # the group mean is close to this photo's box
    sample = cropped.load_record(record)
    assert sample.image.shape[:2] == (side, side)
    assert np.allclose(sample.points["landmarks"], points - [x0, y0])
    original = plain.load_record(next(r for r in plain.records if r.path == record.path)).image
    ya, yb, xa, xb = max(0, y0), min(64, y0 + side), max(0, x0), min(64, x0 + side)  # the window inside the photo
    assert yb - ya > 32 and xb - xa > 32
    assert np.array_equal(sample.image[ya - y0 : yb - y0, xa - x0 : xb - x0], original[ya:yb, xa:xb])
    item = cropped[0]
    assert item["image"].shape == (3, 48, 48)
    assert torch.allclose(
        item["landmarks"], torch.as_tensor((points - [x0, y0] + 0.5) * 48 / side - 0.5).float(), atol=1e-3
    )
