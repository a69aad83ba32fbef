"""Bad input gets one clear error naming the file and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from datamodules import (
    CelebA,
    CelebAMaskHQ,
    CelebAMaskHQDataModule,
    DatasetError,
    EmotionLandmarks,
    Helen,
    MissingDataError,
)
from datamodules.synthetic import write_celeba, write_celebamaskhq, write_helen, write_rafd


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pristine")
    return {
        "hq": write_celebamaskhq(base / "hq", 8, image_size=64, mask_size=32),
        "celeba": write_celeba(base / "celeba", 8),
        "helen": write_helen(base / "helen", 4, 2, 2, image_size=32),
        "rafd": write_rafd(base / "rafd", 2, image_size=32),
    }


@pytest.fixture
def copy(pristine: dict[str, Path], tmp_path: Path):
    """A writable copy of one pristine set, to break."""

    def make(kind: str) -> Path:
        return Path(shutil.copytree(pristine[kind], tmp_path / kind))

    return make


@pytest.mark.parametrize("cls", [CelebAMaskHQ, Helen, CelebA, EmotionLandmarks])
def test_missing_root_folder(cls, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{cls.__name__} root not found: .*nowhere"):
        cls(tmp_path / "nowhere")


@pytest.mark.parametrize("cls, kind", [(CelebAMaskHQ, "hq"), (Helen, "helen"), (CelebA, "celeba")])
def test_unknown_split(cls, kind, pristine):
    with pytest.raises(ValueError, match=r"unknown split 'dev'; expected one of train, val, test, all"):
        cls(pristine[kind], "dev")


def test_missing_image(copy):
    root = copy("hq")
    (root / "CelebA-HQ-img" / "3.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"CelebA-HQ-to-CelebA-mapping.txt lists '3.jpg', but .*3.jpg"):
        CelebAMaskHQ(root)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_image_is_named_when_read(copy, damage):
    root = copy("celeba")
    path = root / "img_align_celeba" / "000002.jpg"
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2] if damage == "truncated" else b"not a jpeg at all" * 40)
    dataset = CelebA(root, "all", 32)  # construction checks lists, not pixels
    assert dataset[0]["image"].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match=r"cannot decode image .*000002\.jpg"):
        dataset[1]


def test_part_mask_of_the_wrong_size(copy):
    root = copy("hq")
    part = root / "CelebAMask-HQ-mask-anno" / "0" / "00001_skin.png"
    cv2.imwrite(str(part), np.full((48, 48), 255, np.uint8))
    dataset = CelebAMaskHQ(root, "all", 32, cache_dir=root / "cache")
    assert dataset[0]["label"].shape == (32, 32)
    with pytest.raises(DatasetError, match=r"part mask .*00001_skin\.png is 48x48; expected 32x32"):
        dataset[1]
    with pytest.raises(DatasetError, match=r"00000_skin\.png is 32x32; expected 48x48"):
        CelebAMaskHQ(root, "all", 32, cache_dir=root / "cache2", mask_size=48)[0]


def test_split_list_naming_a_missing_file(copy):
    root = copy("helen")
    with open(root / "testing.txt", "a") as f:
        f.write("3 , ghost_1\n")
    with pytest.raises(MissingDataError, match=r"testing\.txt lists 'ghost_1\.jpg', but .*ghost_1\.jpg does not"):
        Helen(root, "test")


def test_helen_label_map_missing_is_named(copy):
    root = copy("helen")
    name = Helen(root, "train").items[0]
    (root / "labels" / name / f"{name}_lbl07.png").unlink()
    with pytest.raises(MissingDataError, match=rf"{name}_lbl07\.png \(11 maps lbl00\.\.lbl10\)"):
        Helen(root, "train")[0]


def _edit_attribute_file(root: Path, line: int, new: str) -> None:
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[line] = new
    path.write_text("\n".join(lines) + "\n")


def test_attribute_header_with_a_wrong_name(copy):
    root = copy("celeba")
    header = (root / "list_attr_celeba.txt").read_text().splitlines()[1]
    _edit_attribute_file(root, 1, header.replace("Bald ", "Baldness "))
    with pytest.raises(DatasetError, match=r"list_attr_celeba\.txt: line 2 .* name 5 is 'Baldness', expected 'Bald'"):
        CelebA(root)


def test_attribute_header_with_39_names(copy):
    root = copy("celeba")
    header = (root / "list_attr_celeba.txt").read_text().splitlines()[1]
    _edit_attribute_file(root, 1, header.replace(" Young", ""))
    with pytest.raises(DatasetError, match=r"the 40 CelebA attribute names in order; got 39 names"):
        CelebA(root)


def test_attribute_count_line_disagrees_with_rows(copy):
    root = copy("hq")
    path = root / "CelebAMask-HQ-attribute-anno.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["9", *lines[1:]]) + "\n")
    with pytest.raises(DatasetError, match=r"attribute-anno\.txt: line 1 announces 9 images but the file has 8 rows"):
        CelebAMaskHQ(root)


def test_attribute_value_that_is_not_plus_minus_one(copy):
    root = copy("celeba")
    row = (root / "list_attr_celeba.txt").read_text().splitlines()[4].split()
    _edit_attribute_file(root, 4, " ".join([row[0], "0", *row[2:]]))
    with pytest.raises(DatasetError, match=r"line 5, 5_o_Clock_Shadow is '0'; expected 1 or -1"):
        CelebA(root)


def test_empty_split(copy):
    root = copy("celeba")
    path = root / "list_eval_partition.txt"
    path.write_text("".join(f"{line.split()[0]} 0\n" for line in path.read_text().splitlines()))
    with pytest.raises(DatasetError, match=r"split 'test' of .* is empty"):
        CelebA(root, "test")


def test_missing_annotation_file(copy):
    root = copy("celeba")
    (root / "list_eval_partition.txt").unlink()
    assert len(CelebA(root, "all")) == 8  # "all" needs no partition
    with pytest.raises(MissingDataError, match=r"CelebA partition file not found: expected the file .*partition"):
        CelebA(root, "train")


def test_partition_file_missing_an_entry(copy):
    root = copy("hq")
    path = root / "list_eval_partition.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[1:]))
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt has no entry for '\d{6}\.jpg', which"):
        CelebAMaskHQ(root, "train")


def test_missing_landmarks(copy):
    root = copy("rafd")
    pts = sorted(root.glob("*.pts"))[2]
    pts.unlink()
    with pytest.raises(MissingDataError, match=rf"no landmarks for .*: expected .*{pts.name} or a cache"):
        EmotionLandmarks(root)


def test_folder_without_rafd_names(tmp_path):
    cv2.imwrite(str(tmp_path / "portrait.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"no RaFD-named photos .* found in"):
        EmotionLandmarks(tmp_path)


def test_batch_larger_than_the_train_split(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path))
    dm = CelebAMaskHQDataModule(image_size=16, batch_size=64, synthetic_images=20)
    with pytest.raises(DatasetError, match=r"train split .* has 16 items, fewer than batch_size=64"):
        dm.train_dataloader()
