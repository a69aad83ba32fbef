"""CelebAMask-HQ reader on synthetic data written in the release layout, plus hand-made part files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import datamodules.celebamaskhq as hq
from datamodules import CelebAMaskHQ, CelebAMaskHQDataModule
from datamodules.labels import CELEBA_ATTRIBUTES, CLASS_INDEX, flip_label_permutation
from datamodules.synthetic import SyntheticFaceWorld, write_celebamaskhq
from datamodules.transforms import hflip

NUM_IMAGES, IMAGE_SIZE, MASK_SIZE, OUT = 24, 128, 64, 64


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 faces, 128 px photos with 64 px masks (the release's 2:1 ratio), read at 64 px."""
    return write_celebamaskhq(
        tmp_path_factory.mktemp("hq"), NUM_IMAGES, seed=3, image_size=IMAGE_SIZE, mask_size=MASK_SIZE
    )


@pytest.fixture(scope="module")
def world() -> SyntheticFaceWorld:
    return SyntheticFaceWorld(seed=3)


def nearest(label: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)


def test_items_follow_the_batch_contract_and_match_the_world(root: Path, world: SyntheticFaceWorld, tmp_path):
    dataset = CelebAMaskHQ(root, "all", OUT, cache_dir=tmp_path)
    assert len(dataset) == NUM_IMAGES
    for i in (0, 5, 17):
        item, face = dataset[i], world.face(i, IMAGE_SIZE)
        assert item["image"].shape == (3, OUT, OUT) and item["image"].dtype == torch.float32
        assert -1.0 <= item["image"].min() < item["image"].max() <= 1.0
        assert item["label"].shape == (OUT, OUT) and item["label"].dtype == torch.int64
        # Masks are written at 64 px from the 128 px parts; merge + resize reproduces the truth exactly.
        np.testing.assert_array_equal(item["label"].numpy(), nearest(nearest(face.label, MASK_SIZE), OUT))
        assert item["attributes"].dtype == torch.float32
        np.testing.assert_array_equal(item["attributes"].numpy(), face.attributes.astype(np.float32))
        assert item["name"] == str(i)
        photo = cv2.resize(face.image, (OUT, OUT), interpolation=cv2.INTER_AREA).astype(np.float32)
        decoded = (item["image"].permute(1, 2, 0).numpy() + 1.0) * 127.5
        assert np.abs(decoded - photo).mean() < 3.0  # JPEG q95 noise only


def test_splits_follow_the_partition_file_and_the_official_rule(root: Path, tmp_path):
    sizes = {s: len(CelebAMaskHQ(root, s, OUT, cache_dir=tmp_path)) for s in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 2, "test": 2}  # the writer's ~80/10/10 for 24 images
    mapping = [line.split() for line in (root / hq.MAPPING_FILE).read_text().splitlines()[1:]]
    by_rule = [hq.official_split(int(orig_idx)) for _, orig_idx, _ in mapping]
    assert {s: by_rule.count(s) for s in sizes} == sizes
    names = {it.index for it in CelebAMaskHQ(root, "val", OUT, cache_dir=tmp_path).items}
    assert names == {i for i, s in enumerate(by_rule) if s == "val"}


def test_unknown_split_lists_the_valid_ones(root: Path):
    with pytest.raises(ValueError, match="train, val, test, all"):
        CelebAMaskHQ(root, "validation")


def test_official_rule_compares_zero_based_index_with_one_based_boundaries():
    assert [hq.official_split(i) for i in (162769, 162770, 162771)] == ["train", "train", "val"]
    assert [hq.official_split(i) for i in (182636, 182637, 182638)] == ["val", "val", "test"]


# ------------------------------------------------------------------------------------- hand-made layout
def _attribute_file(names: list[str]) -> str:
    rows = [f"{n} " + " ".join(["-1"] * len(CELEBA_ATTRIBUTES)) for n in names]
    return "\n".join([str(len(names)), " ".join(CELEBA_ATTRIBUTES), *rows]) + "\n"


def make_root(path: Path, parts: dict[str, np.ndarray], orig_indices: tuple[int, ...] = (0,)) -> Path:
    """A CelebAMask-HQ folder with 16 px grey photos; every image shares the given part masks."""
    (path / hq.IMAGE_DIR).mkdir(parents=True)
    (path / hq.MASK_DIR / "0").mkdir(parents=True)
    for i in range(len(orig_indices)):
        cv2.imwrite(str(path / hq.IMAGE_DIR / f"{i}.jpg"), np.full((16, 16, 3), 128, np.uint8))
        for part, mask in parts.items():
            cv2.imwrite(str(hq.part_path(path / hq.MASK_DIR, i, part)), mask)
    mapping = ["idx orig_idx orig_file"] + [f"{i} {o} {o + 1:06d}.jpg" for i, o in enumerate(orig_indices)]
    (path / hq.MAPPING_FILE).write_text("\n".join(mapping) + "\n")
    (path / hq.ATTRIBUTE_FILE).write_text(_attribute_file([f"{i}.jpg" for i in range(len(orig_indices))]))
    return path


def box(top: int, bottom: int, left: int = 0, right: int = 16, value: int = 255) -> np.ndarray:
    mask = np.zeros((16, 16), np.uint8)
    mask[top:bottom, left:right] = value
    return mask


def test_merge_priority_later_parts_overwrite_earlier(tmp_path):
    parts = {
        "skin": box(10, 16),
        "hair": box(0, 10),
        "hat": box(0, 4),  # hat over hair
        "neck": box(8, 13, 4, 12),  # neck over hair (rows 8-9) and skin
        "eye_g": box(12, 16, 0, 8),
        "l_eye": box(13, 15, 2, 4, value=1),  # eyes over eyeglasses; any non-zero value is "on"
    }
    dataset = CelebAMaskHQ(make_root(tmp_path / "d", parts), image_size=16)
    label = dataset[0]["label"].numpy()
    c = CLASS_INDEX
    assert label[1, 5] == c["hat"] and label[5, 0] == c["hair"] and label[9, 6] == c["neck"]
    assert label[13, 2] == c["l_eye"] and label[12, 0] == c["eye_g"] and label[15, 12] == c["skin"]
    assert label[12, 6] == c["neck"] and label[11, 0] == c["skin"]
    assert not np.isin(label, [0, c["nose"]]).any()  # absent part file = part not visible


def test_partition_file_decides_the_boundary_images(tmp_path, caplog):
    """orig_idx 162770 is 162771.jpg (CelebA val) and 182637 is 182638.jpg (CelebA test)."""
    orig = (162769, 162770, 182637, 182638)
    root = make_root(tmp_path / "d", {"skin": box(0, 16)}, orig)
    no_file = [it.split for it in CelebAMaskHQ(root, cache_dir=tmp_path / "c").items]
    assert no_file == ["train", "train", "val", "test"]  # g_partition.py's off-by-one boundary rule
    CelebAMaskHQ(root, "train", cache_dir=tmp_path / "c")
    warnings = [r for r in caplog.records if "list_eval_partition.txt" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"  # said once, not per construction
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text("162770.jpg 0\n162771.jpg 1\n182638.jpg 2\n182639.jpg 2\n")
    with_file = CelebAMaskHQ(root, partition_file=partition, cache_dir=tmp_path / "c")
    assert [it.split for it in with_file.items] == ["train", "val", "test", "test"]


# --------------------------------------------------------------------------------------------- caching
def test_label_maps_are_merged_once_and_cached(root: Path, tmp_path, monkeypatch):
    calls: list[int] = []
    merge = hq.merge_celebamask_parts

    def counting(mask_root: Path, index: int, size: tuple[int, int]) -> np.ndarray:
        calls.append(index)
        return merge(mask_root, index, size)

    monkeypatch.setattr(hq, "merge_celebamask_parts", counting)
    first = CelebAMaskHQ(root, "test", OUT, cache_dir=tmp_path)
    labels = [first[i]["label"] for i in range(len(first))]
    assert sorted(calls) == sorted(it.index for it in first.items)
    assert sorted(os.listdir(tmp_path / f"labels_{MASK_SIZE}")) == sorted(f"{i}.png" for i in calls)
    calls.clear()
    second = CelebAMaskHQ(root, "test", OUT, cache_dir=tmp_path)
    for i, label in enumerate(labels):
        assert torch.equal(second[i]["label"], label)
    assert calls == []


def test_build_labels_command_fills_the_cache(root: Path, tmp_path):
    hq.main(["build-labels", str(root), "--cache-dir", str(tmp_path)])
    written = sorted(os.listdir(tmp_path / f"labels_{MASK_SIZE}"))
    assert written == sorted(f"{i}.png" for i in range(NUM_IMAGES))


def test_default_cache_sits_beside_the_data_or_falls_back_when_unwritable(tmp_path, monkeypatch):
    root = make_root(tmp_path / "d", {"skin": box(4, 12)})
    assert CelebAMaskHQ(root, image_size=16).label_dir == root / ".portrait_gans_cache" / "labels_16"
    blocked = make_root(tmp_path / "ro", {"skin": box(4, 12)})
    (blocked / ".portrait_gans_cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "home"))
    dataset = CelebAMaskHQ(blocked, image_size=16)
    assert dataset.label_dir.is_relative_to(tmp_path / "home" / "celebamaskhq-labels")
    assert dataset[0]["label"].numpy()[8, 8] == CLASS_INDEX["skin"]
    assert (dataset.label_dir / "0.png").is_file()


# ---------------------------------------------------------------------------------------- augmentation
def test_flip_mirrors_and_swaps_left_and_right_classes(root: Path, tmp_path):
    dataset = CelebAMaskHQ(root, "all", OUT, cache_dir=tmp_path)
    sample = dataset.load(0)
    flipped = hflip(sample, flip_label_permutation(19))
    ys, xs = np.nonzero(sample.label == CLASS_INDEX["l_eye"])
    assert len(ys) > 0
    width = sample.label.shape[1]
    assert (flipped.label[ys, width - 1 - xs] == CLASS_INDEX["r_eye"]).all()
    assert (flipped.label == CLASS_INDEX["l_eye"]).sum() == (sample.label == CLASS_INDEX["r_eye"]).sum()
    np.testing.assert_array_equal(flipped.image, sample.image[:, ::-1])


def test_augmented_items_are_either_unchanged_or_flipped(root: Path, tmp_path):
    plain = CelebAMaskHQ(root, "all", OUT, cache_dir=tmp_path)[2]
    flipped_label = torch.from_numpy(flip_label_permutation(19))[plain["label"].flip(-1)]
    augmented = CelebAMaskHQ(root, "all", OUT, augment=True, cache_dir=tmp_path)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        item = augmented[2]
        if torch.equal(item["label"], plain["label"]):
            assert torch.equal(item["image"], plain["image"])
            seen.add("plain")
        else:
            assert torch.equal(item["label"], flipped_label)
            assert torch.equal(item["image"], plain["image"].flip(-1))
            seen.add("flipped")
    assert seen == {"plain", "flipped"}


def test_photometric_jitter_changes_colours_only(root: Path, tmp_path):
    plain = CelebAMaskHQ(root, "all", OUT, cache_dir=tmp_path)[1]
    flipped_label = torch.from_numpy(flip_label_permutation(19))[plain["label"].flip(-1)]
    jittered = CelebAMaskHQ(root, "all", OUT, augment=True, photometric=True, cache_dir=tmp_path)
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        item = jittered[1]
        was_flipped = not torch.equal(item["label"], plain["label"])
        if was_flipped:
            assert torch.equal(item["label"], flipped_label)
        image = item["image"].flip(-1) if was_flipped else item["image"]
        changed += int((image - plain["image"]).abs().mean() > 0.01)
        assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert changed >= 2


# ------------------------------------------------------------------------------------------ datamodule
def test_datamodule_writes_the_synthetic_default_once_and_serves_contract_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = CelebAMaskHQDataModule(image_size=32, batch_size=4, synthetic_images=20)
    dm.prepare_data()
    folder = tmp_path / "synthetic" / "celebamaskhq-seed0-n20-s32"
    assert dm.data_root == folder and (folder / hq.MAPPING_FILE).is_file()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, 32, 32) and batch["label"].dtype == torch.int64
    assert batch["attributes"].shape == (4, 40) and set(batch["attributes"].unique().tolist()) <= {0.0, 1.0}
    assert len(batch["name"]) == 4 and all(isinstance(n, str) for n in batch["name"])
    assert int(batch["label"].max()) < 19 and batch["image"].abs().max() <= 1.0
    assert len(dm.val_dataloader().dataset) == 2 and len(dm.train_dataloader()) == 4
    monkeypatch.setattr("datamodules.synthetic.write_celebamaskhq", pytest.fail)  # must not write again
    again = CelebAMaskHQDataModule(image_size=32, batch_size=4, synthetic_images=20)
    again.setup("test")
    assert [it.index for it in again.datasets["test"].items] == [it.index for it in dm.test_dataloader().dataset.items]
    assert [p.name for p in (tmp_path / "synthetic").iterdir()] == [folder.name]  # no temp folder left
