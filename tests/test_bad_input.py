"""More bad input, each with one clear error naming the file (or key) and what was expected; caches that
are stale get rebuilt or refused, never used silently; every cache write is atomic.

The cases here add to tests/test_data_errors.py: non-UTF-8 annotation files, non-numeric landmarks,
CelebAMask-HQ photo/mask shape mismatches and missing parts, stale label and soft-mask caches, 16-bit
probability maps, corrupt or foreign checkpoints given to the command-line tools, trainer values of the
wrong type, and writes interrupted half-way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import CelebA, CelebAMaskHQ, DatasetError, EmotionLandmarks, Helen, MissingDataError
from datamodules.base import atomic_write_png
from datamodules.soft_masks import load_soft_mask, save_soft_mask, soft_mask_path
from datamodules.synthetic import write_celeba, write_celebamaskhq, write_helen, write_rafd
from experiments.callbacks import AtomicCheckpointIO
from experiments.config import ConfigError, compose
from portrait_models.checkpoints import CheckpointError, load_module
from portrait_models.classifiers.attributes import AttributeClassifier
from portrait_models.parsing import FaceParser


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pristine")
    return {
        "hq": write_celebamaskhq(base / "hq", 6, image_size=64, mask_size=32),
        "celeba": write_celeba(base / "celeba", 6),
        "helen": write_helen(base / "helen", 2, 1, 1, image_size=32),
        "rafd": write_rafd(base / "rafd", 1, image_size=32),
    }


@pytest.fixture
def copy(pristine: dict[str, Path], tmp_path: Path):
    def make(kind: str) -> Path:
        return Path(shutil.copytree(pristine[kind], tmp_path / kind))

    return make


# ------------------------------------------------------------------------------------ text files
def _latin1_byte(path: Path, line: int) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line] = lines[line] + b" caf\xe9"
    path.write_bytes(b"\n".join(lines))


def test_attribute_file_that_is_not_utf8(copy):
    root = copy("celeba")
    _latin1_byte(root / "list_attr_celeba.txt", 3)
    with pytest.raises(DatasetError, match=r"list_attr_celeba\.txt: not UTF-8 text \(byte \d+, line 4: b'\\xe9"):
        CelebA(root)


def test_helen_split_list_that_is_not_utf8(copy):
    root = copy("helen")
    _latin1_byte(root / "testing.txt", 0)
    with pytest.raises(DatasetError, match=r"testing\.txt: not UTF-8 text \(byte \d+, line 1"):
        Helen(root, "test")


@pytest.mark.parametrize("field", ["12.5 abc", "nan 3.0", "7.0"])
def test_landmark_point_that_is_not_two_numbers(copy, field):
    root = copy("rafd")
    pts = sorted(root.glob("*.pts"))[0]
    lines = pts.read_text().splitlines()
    lines[lines.index("{") + 5] = field  # point 5
    pts.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{pts.name}: point 5 is {field!r}; expected two finite numbers"):
        EmotionLandmarks(root)


# ------------------------------------------------------------------------------ CelebAMask-HQ parts
def test_photo_and_masks_of_different_shape(copy):
    root = copy("hq")
    photo = root / "CelebA-HQ-img" / "1.jpg"
    cv2.imwrite(str(photo), np.zeros((64, 48, 3), np.uint8))
    dataset = CelebAMaskHQ(root, "all", 32, cache_dir=root / "cache")
    assert dataset[0]["label"].shape == (32, 32)
    with pytest.raises(DatasetError, match=r"photo .*1\.jpg is 64x48 but its part masks .* are 32x32"):
        dataset[1]


def test_image_whose_part_masks_are_all_missing(copy):
    root = copy("hq")
    for path in (root / "CelebAMask-HQ-mask-anno").rglob("00002_*.png"):
        path.unlink()
    dataset = CelebAMaskHQ(root, "all", 32, cache_dir=root / "cache")
    with pytest.raises(MissingDataError, match=r"no part mask of image 2 exists: expected files like .*00002_skin"):
        dataset[2]


@pytest.mark.parametrize("damage", ["truncated", "out_of_range", "wrong_size"])
def test_stale_label_cache_is_merged_again(copy, damage):
    root = copy("hq")
    dataset = CelebAMaskHQ(root, "all", 32, cache_dir=root / "cache")
    fresh = dataset.label_map(0)
    cached = dataset.label_dir / f"{dataset.items[0].index}.png"
    if damage == "truncated":  # what an older, non-atomic writer killed half-way left behind
        cached.write_bytes(cached.read_bytes()[:40])
    elif damage == "out_of_range":
        cv2.imwrite(str(cached), np.full((32, 32), 200, np.uint8))
    else:
        cv2.imwrite(str(cached), np.zeros((16, 16), np.uint8))
    assert np.array_equal(dataset.label_map(0), fresh)  # rebuilt from the parts, not used as found
    assert np.array_equal(np.asarray(Image.open(cached)), fresh)  # and the cache repaired


def test_sixteen_bit_probability_maps_read_like_eight_bit(copy):
    root = copy("helen")
    expected = Helen(root, "train", 32)[0]["label"]
    name = Helen(root, "train").items[0]
    for path in (root / "labels" / name).glob("*.png"):
        eight = np.asarray(Image.open(path).convert("L")).astype(np.uint16)
        Image.fromarray(eight * 257).save(path)  # 255 -> 65535: probability 1 in 16 bits
        assert Image.open(path).mode.startswith("I")
    assert torch.equal(Helen(root, "train", 32)[0]["label"], expected)


# ------------------------------------------------------------------------------------ soft masks
def test_truncated_soft_mask_is_named(tmp_path):
    path = save_soft_mask(tmp_path, "a", torch.softmax(torch.randn(19, 8, 8), 0))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DatasetError, match=r"a\.npz: not a soft-mask file .*rebuild the cache"):
        load_soft_mask(tmp_path, "a")


def test_soft_mask_without_probs_is_named(tmp_path):
    np.savez(soft_mask_path(tmp_path, "b"), masks=np.zeros((19, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"b\.npz: not a soft-mask file \(expected an \.npz with uint8 'probs'\)"):
        load_soft_mask(tmp_path, "b")


def test_soft_mask_pixel_without_any_class(tmp_path):
    probs = np.full((19, 4, 4), 13, np.uint8)
    probs[:, 2, 3] = 0
    np.savez(soft_mask_path(tmp_path, "c"), probs=probs)
    with pytest.raises(DatasetError, match=r"c\.npz: pixel \(x=3, y=2\) has probability 0 for every class"):
        load_soft_mask(tmp_path, "c")


# ----------------------------------------------------------------------------------- checkpoints
def save_checkpoint(module: pl.LightningModule, path: Path) -> Path:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ckpts")
    parser = save_checkpoint(FaceParser(unet_feature_scale=16), base / "parser.ckpt")
    truncated = base / "truncated.ckpt"
    truncated.write_bytes(parser.read_bytes()[:1000])
    raw = base / "raw.pth"
    torch.save(FaceParser(unet_feature_scale=16).state_dict(), raw)
    classifier = save_checkpoint(AttributeClassifier(width=8, num_layers=2), base / "classifier.ckpt")
    return {"parser": parser, "truncated": truncated, "raw": raw, "classifier": classifier}


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", r"truncated\.ckpt is not a readable PyTorch checkpoint"),
        ("raw", r"raw\.pth is not a Lightning checkpoint \(no 'state_dict'"),
        ("classifier", r"classifier\.ckpt is not a FaceParser checkpoint: its hyper-parameters .* are not"),
    ],
)
def test_parse_cli_names_a_bad_checkpoint(checkpoints, kind, message, tmp_path, capsys):
    from experiments.parse import main

    root = write_celebamaskhq(tmp_path / "hq", 2, image_size=32, mask_size=32)
    code = main(["--checkpoint", str(checkpoints[kind]), "--dataset", "celebamaskhq", "--data", str(root),
                 "--out", str(tmp_path / "soft"), "--device", "cpu"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_edit_cli_names_a_foreign_checkpoint(checkpoints, tmp_path, capsys):
    from experiments.edit import main

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "m.png")
    code = main(["maskgan", "--checkpoint", str(checkpoints["parser"]), "--image", str(image),
                 "--image-mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert code != 0
    assert "parser.ckpt is not a MaskGAN checkpoint" in capsys.readouterr().err


def test_evaluate_loader_names_a_foreign_checkpoint(checkpoints):
    from experiments.evaluate.common import load_parser

    with pytest.raises(CheckpointError, match=r"classifier\.ckpt is not a FaceParser checkpoint"):
        load_parser(checkpoints["classifier"], "cpu")
    assert isinstance(load_module(FaceParser, checkpoints["parser"]), FaceParser)


def test_resume_from_a_corrupt_checkpoint_is_a_config_error(checkpoints, tmp_path):
    from experiments.train import train

    with pytest.raises(ConfigError, match=r"run\.ckpt_path: .*truncated\.ckpt is not a readable Lightning"):
        train("parser_unet_synthetic_64", [f"run.out_dir={tmp_path}", f"run.ckpt_path={checkpoints['truncated']}"])


# ----------------------------------------------------------------------------- trainer value types
@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_steps=ten", r"trainer\.max_steps: 'ten' is not int"),
        ("trainer.precision=33", r"trainer\.precision: 33 is not"),
        ("trainer.benchmark=sometimes", r"trainer\.benchmark: 'sometimes' is not"),
        ("trainer.gradient_clip_val=[1]", r"trainer\.gradient_clip_val: \[1\] is not"),
    ],
)
def test_trainer_value_of_the_wrong_type(override, message):
    with pytest.raises(ConfigError, match=rf"wrong type for {message}"):
        compose("parser_unet_synthetic_64", [override])


def test_trainer_values_of_the_right_types_pass():
    cfg = compose(
        "parser_unet_synthetic_64",
        ["trainer.precision=bf16-mixed", "trainer.devices=auto", "trainer.limit_train_batches=0.5",
         "trainer.strategy=ddp_find_unused_parameters_true", "trainer.max_epochs=null", "trainer.devices=2"],
    )  # fmt: skip
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.devices == 2


# --------------------------------------------------------------------------------- atomic writes
class Killed(Exception):
    pass


def test_label_cache_write_interrupted_leaves_no_file(tmp_path, monkeypatch):
    def half_then_die(self, fp, format=None, **kw):
        Path(fp).write_bytes(b"\x89PNG half")
        raise Killed

    monkeypatch.setattr(Image.Image, "save", half_then_die)
    with pytest.raises(Killed):
        atomic_write_png(tmp_path / "7.png", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temporary is left


def test_soft_mask_write_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    old = torch.softmax(torch.randn(19, 4, 4), 0)
    save_soft_mask(tmp_path, "d", old)

    def half_then_die(handle, **arrays):
        handle.write(b"PK half")
        raise Killed

    monkeypatch.setattr(np, "savez_compressed", half_then_die)
    with pytest.raises(Killed):
        save_soft_mask(tmp_path, "d", torch.softmax(torch.randn(19, 4, 4), 0))
    assert (load_soft_mask(tmp_path, "d") - old).abs().max() < 0.02
    assert [p.name for p in tmp_path.iterdir() if p.name != "d.npz"] == []


def test_checkpoint_write_interrupted_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    import lightning.fabric.plugins.io.torch_io as plugin

    def half_then_die(checkpoint, filepath):
        Path(filepath).write_bytes(b"PK half")
        raise Killed

    monkeypatch.setattr(plugin, "_atomic_save", half_then_die)
    with pytest.raises(Killed):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
