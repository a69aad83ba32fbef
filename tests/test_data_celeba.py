"""CelebA reader (aligned images + annotation files) on synthetic data written in the release layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datamodules import CelebA, CelebADataModule, DatasetError
from datamodules.celeba import NUM_CELEBA_IMAGES, STGAN_SPLIT_BOUNDS, stgan_crop_box
from datamodules.labels import EDIT_ATTRIBUTE_COLUMNS, EDIT_ATTRIBUTES
from datamodules.synthetic import SyntheticFaceWorld, celeba_five_points, write_celeba
from datamodules.transforms import hflip

NUM_IMAGES = 24


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba"), NUM_IMAGES, seed=2)


@pytest.fixture(scope="module")
def world() -> SyntheticFaceWorld:
    return SyntheticFaceWorld(seed=2)


def decode(item: dict) -> np.ndarray:
    return np.round((item["image"].permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.uint8)


def raw_photo(root: Path, k: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(root / "img_align_celeba" / f"{k:06d}.jpg")), cv2.COLOR_BGR2RGB)


def test_items_carry_attributes_identity_and_five_landmarks(root: Path, world: SyntheticFaceWorld):
    dataset = CelebA(root, "all", 64)
    assert len(dataset) == NUM_IMAGES
    for i in (0, 9, 23):
        item, face = dataset[i], world.face(i, (218, 178))
        assert item["name"] == f"{i + 1:06d}" and item["identity"] == face.identity + 1
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
        np.testing.assert_array_equal(item["attributes"].numpy(), face.attributes.astype(np.float32))
        # The file stores the rounded points in the 178x218 frame; plain resize maps pixel centres.
        scale = np.array([64 / 178, 64 / 218])
        truth = (celeba_five_points(face.landmarks) + 0.5) * scale - 0.5
        assert item["landmarks5"].shape == (5, 2) and item["landmarks5"].dtype == torch.float32
        assert np.abs(item["landmarks5"].numpy() - truth).max() <= 0.5 * scale.max() + 1e-4


@pytest.mark.parametrize("size", [64, 128])
def test_stgan_crop_then_bicubic_resize(root: Path, size: int):
    top, left, side = stgan_crop_box(size)
    assert (top, left, side) == ((40, 15, 148) if size == 64 else (26, 3, 170))
    item = CelebA(root, "all", size, crop="stgan")[4]
    box = raw_photo(root, 5)[top : top + side, left : left + side]
    expected = cv2.resize(box, (size, size), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(decode(item), expected)
    points = np.loadtxt(root / "list_landmarks_align_celeba.txt", skiprows=2, usecols=range(1, 11))[4]
    moved = (points.reshape(5, 2) - [left, top] + 0.5) * size / side - 0.5
    np.testing.assert_allclose(item["landmarks5"].numpy(), moved, atol=1e-4)


def test_center_crop_takes_the_middle_square(root: Path):
    item = CelebA(root, "all", 178, crop="center")[0]
    np.testing.assert_array_equal(decode(item), raw_photo(root, 1)[20:198])


def test_official_split_reads_the_partition_file(root: Path):
    sizes = [len(CelebA(root, s, 32)) for s in ("train", "val", "test")]
    assert sizes == [20, 2, 2]
    assert CelebA(root, "test", 32).items == ["000023.jpg", "000024.jpg"]


def test_stgan_split_needs_the_full_attribute_file(root: Path):
    with pytest.raises(DatasetError, match=r"24 images; STGAN's line-index split is defined for the full 202599"):
        CelebA(root, "train", split_scheme="stgan")
    spans = {s: b - a for s, (a, b) in STGAN_SPLIT_BOUNDS.items()}
    assert spans == {"train": 182_000, "val": 637, "test": 19_962, "all": NUM_CELEBA_IMAGES}


def test_attribute_subset_in_the_given_order(root: Path, world: SyntheticFaceWorld):
    item = CelebA(root, "all", 32, attribute_names=EDIT_ATTRIBUTES)[6]
    expected = world.face(6, (218, 178)).attributes[EDIT_ATTRIBUTE_COLUMNS].astype(np.float32)
    np.testing.assert_array_equal(item["attributes"].numpy(), expected)
    reordered = CelebA(root, "all", 32, attribute_names=("Young", "Bald"))[6]["attributes"]
    assert reordered.tolist() == [
        expected[EDIT_ATTRIBUTES.index("Young")],
        expected[EDIT_ATTRIBUTES.index("Bald")],
    ]
    with pytest.raises(ValueError, match="Blonde_Hair"):
        CelebA(root, attribute_names=("Blonde_Hair",))


def test_flip_swaps_the_eyes_and_mouth_corners(root: Path):
    sample = CelebA(root, "all", 64).load(3)
    points = sample.points["landmarks5"]
    flipped = hflip(sample, None).points["landmarks5"]
    width = sample.size[1]
    for i, j in ((0, 1), (1, 0), (2, 2), (3, 4), (4, 3)):
        np.testing.assert_allclose(flipped[i], [width - 1 - points[j, 0], points[j, 1]])
    assert flipped[0, 0] < flipped[1, 0]  # the left eye is still the one on the image left


def test_datamodule_synthetic_default_in_the_aligned_frame(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = CelebADataModule(image_size=32, batch_size=4, synthetic_images=20, attribute_names=EDIT_ATTRIBUTES)
    dm.prepare_data()
    folder = tmp_path / "synthetic" / "celeba-seed0-n20-s218x178"
    assert cv2.imread(str(folder / "img_align_celeba" / "000001.jpg")).shape == (218, 178, 3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["attributes"].shape == (4, 13)
    assert batch["landmarks5"].shape == (4, 5, 2) and batch["identity"].dtype == torch.int64
    assert ((batch["landmarks5"] >= 0) & (batch["landmarks5"] < 32)).all()
