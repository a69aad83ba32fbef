"""Helen reader (SmithCVPR2013_dataset_resized layout) on synthetic and hand-made data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datamodules import Helen, HelenDataModule
from datamodules.helen import merge_probability_maps
from datamodules.labels import CELEBAMASK_TO_HELEN, HELEN_CLASSES, HELEN_TO_CELEBAMASK, flip_label_permutation
from datamodules.synthetic import SyntheticFaceWorld, helen_name, write_helen
from datamodules.transforms import hflip

SIZE = 64


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_helen(tmp_path_factory.mktemp("helen"), 12, 4, 4, seed=1, image_size=SIZE)


@pytest.fixture(scope="module")
def world() -> SyntheticFaceWorld:
    return SyntheticFaceWorld(seed=1)


def test_labels_are_the_argmax_of_the_soft_maps_and_match_the_world(root: Path, world: SyntheticFaceWorld):
    dataset = Helen(root, "all", SIZE)
    for j in (0, 7, 19):
        item, face = dataset[j], world.face(j, SIZE)
        assert item["name"] == helen_name(j)
        assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
        assert item["label"].dtype == torch.int64
        np.testing.assert_array_equal(item["label"].numpy(), CELEBAMASK_TO_HELEN[face.label])
        assert int(item["label"].max()) < len(HELEN_CLASSES)


def test_smaller_output_resizes_labels_with_nearest(root: Path, world: SyntheticFaceWorld):
    item = Helen(root, "all", 32)[3]
    truth = CELEBAMASK_TO_HELEN[world.face(3, SIZE).label].astype(np.uint8)
    np.testing.assert_array_equal(item["label"].numpy(), cv2.resize(truth, (32, 32), interpolation=cv2.INTER_NEAREST))


def test_celebamask_classes_map_through_the_table(root: Path, world: SyntheticFaceWorld):
    item = Helen(root, "all", SIZE, classes="celebamask")[5]
    expected = HELEN_TO_CELEBAMASK[CELEBAMASK_TO_HELEN[world.face(5, SIZE).label]]
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    with pytest.raises(ValueError, match="'helen' or 'celebamask'"):
        Helen(root, classes="lapa")  # type: ignore[arg-type]


def test_splits_come_from_the_three_lists(root: Path):
    names = {s: Helen(root, s, SIZE).items for s in ("train", "val", "test", "all")}
    assert [len(names[s]) for s in ("train", "val", "test", "all")] == [12, 4, 4, 20]
    assert names["train"] == [helen_name(j) for j in range(12)]
    assert names["test"] == [helen_name(j) for j in range(16, 20)]
    assert names["all"] == names["train"] + names["val"] + names["test"]


def test_argmax_merge_prefers_the_highest_map_and_lower_labels_on_ties():
    maps = np.zeros((11, 1, 4), np.uint8)
    maps[3, 0, 0], maps[10, 0, 0] = 200, 180  # r_brow wins over hair
    maps[10, 0, 1] = 1  # a faint hair probability beats all-zero background
    maps[4, 0, 3] = maps[5, 0, 3] = 128  # tie: the lower label (l_eye)
    np.testing.assert_array_equal(merge_probability_maps(maps)[0], [3, 10, 0, 4])


def test_handmade_soft_maps_through_the_reader(tmp_path):
    name = "2371615952_1"
    (tmp_path / "images").mkdir()
    (tmp_path / "labels" / name).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / f"{name}.jpg"), np.full((8, 12, 3), 90, np.uint8))
    maps = np.zeros((11, 8, 12), np.uint8)
    maps[0] = 100
    maps[1, :, 6:] = 101  # skin on the right half, by a hair's breadth
    maps[10, :2] = 255  # hair on top
    for k, m in enumerate(maps):
        cv2.imwrite(str(tmp_path / "labels" / name / f"{name}_lbl{k:02d}.png"), m)
    for list_name in ("exemplars.txt", "tuning.txt", "testing.txt"):
        (tmp_path / list_name).write_text(f"1 , {name}\n")
    label = Helen(tmp_path, "test", (8, 12))[0]["label"].numpy()
    expected = np.zeros((8, 12), np.int64)
    expected[:, 6:] = 1
    expected[:2] = 10
    np.testing.assert_array_equal(label, expected)


def test_flip_swaps_left_and_right_helen_labels(root: Path):
    sample = Helen(root, "all", SIZE).load(2)
    flipped = hflip(sample, flip_label_permutation(len(HELEN_CLASSES)))
    width = sample.label.shape[1]
    for left, right in ((2, 3), (4, 5)):
        ys, xs = np.nonzero(sample.label == left)
        assert len(ys) > 0
        assert (flipped.label[ys, width - 1 - xs] == right).all()
    assert (flipped.label == 10).sum() == (sample.label == 10).sum()


def test_datamodule_synthetic_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = HelenDataModule(image_size=32, batch_size=4, synthetic_images=20, classes="celebamask")
    dm.prepare_data()
    assert (tmp_path / "synthetic" / "helen-seed0-n20-s32" / "exemplars.txt").is_file()
    dm.setup("fit")
    assert [len(dm.datasets[s]) for s in ("train", "val")] == [16, 2]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["label"].shape == (4, 32, 32)
    assert batch["label"].dtype == torch.int64 and int(batch["label"].max()) < 19
