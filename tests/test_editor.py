"""The browser editor's pieces that need no browser: palette snapping, the canvas -> label map, checkpoints, tabs."""

import os
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from datamodules.labels import CELEBAMASK_PALETTE, CLASS_INDEX, label_to_color, snap_to_palette
from experiments import editor
from experiments.editor import common
from experiments.editor.__main__ import parse_checkpoints
from portrait_models.maskgan.editing import read_mask

SKIN, HAIR, NOSE = CLASS_INDEX["skin"], CLASS_INDEX["hair"], CLASS_INDEX["nose"]


def two_class_mask(size: int, scale: int) -> Image.Image:
    """Skin with a hair disc and a nose bar, drawn at ``scale`` x ``size``."""
    img = Image.new("RGB", (size * scale, size * scale), tuple(int(c) for c in CELEBAMASK_PALETTE[SKIN]))
    draw = ImageDraw.Draw(img)
    s = scale
    draw.ellipse((6 * s, 6 * s, 40 * s, 30 * s), fill=tuple(int(c) for c in CELEBAMASK_PALETTE[HAIR]))
    draw.rectangle((30 * s, 34 * s, 37 * s, 58 * s), fill=tuple(int(c) for c in CELEBAMASK_PALETTE[NOSE]))
    return img


@pytest.mark.parametrize("resample", [Image.BOX, Image.BILINEAR, Image.LANCZOS])
def test_anti_aliased_colour_mask_snaps_to_the_majority_class(tmp_path, resample):
    big = two_class_mask(64, 8)
    smooth = big.resize((64, 64), resample)  # an anti-aliased rendering of the same mask: blended edge colours
    # truth: the class covering most of each 8x8 block of the sharp 512² drawing
    blocks = snap_to_palette(np.asarray(big)).reshape(64, 8, 64, 8).transpose(0, 2, 1, 3).reshape(64, 64, 64)
    truth = np.apply_along_axis(lambda b: np.bincount(b, minlength=19).argmax(), -1, blocks)
    colours = np.asarray(smooth).reshape(-1, 3)
    off_palette = ~(colours[:, None, :] == CELEBAMASK_PALETTE[None]).all(-1).any(-1)
    assert off_palette.sum() > 100  # the smooth mask really is anti-aliased
    # plain nearest-colour snapping gets skin/hair edges wrong (purple is nearest to other classes)
    nearest = ((colours[:, None, :].astype(int) - CELEBAMASK_PALETTE[None].astype(int)) ** 2).sum(-1).argmin(-1)
    nearest_wrong = int((nearest.reshape(64, 64) != truth).sum())
    snapped = snap_to_palette(np.asarray(smooth))
    wrong = int((snapped != truth).sum())
    # measured: 0 wrong pixels for BOX and BILINEAR, 1 for LANCZOS (ringing); nearest colour: 16-18 wrong
    assert wrong <= 2 and nearest_wrong >= wrong + 8, (wrong, nearest_wrong)
    # the CLI reader accepts the same file (it used to reject every off-palette pixel)
    smooth.save(tmp_path / "smooth.png")
    assert (read_mask(tmp_path / "smooth.png", 64)[0].numpy() != truth).sum() <= 2


def test_a_photo_is_not_taken_for_a_colour_mask(tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="far from every class colour"):
        snap_to_palette(photo)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(ValueError, match=r"photo.png: colour mask not in the project palette"):
        read_mask(tmp_path / "photo.png", 32)


def test_canvas_strokes_paint_their_class_where_opaque():
    label = np.full((64, 64), SKIN, dtype=np.int64)
    label[40:, :] = NOSE
    value = common.canvas_value(label)
    assert value["background"].shape == (common.CANVAS, common.CANVAS, 3)
    # a hair stroke whose alpha falls off across rows 80..119 of the 512 canvas (anti-aliased edge)
    layer = np.zeros((common.CANVAS, common.CANVAS, 4), dtype=np.uint8)
    layer[80:120, 100:300, :3] = CELEBAMASK_PALETTE[HAIR] - np.array([0, 0, 3], dtype=np.uint8)  # off by rounding
    layer[80:120, 100:300, 3] = np.linspace(255, 0, 40, dtype=np.uint8)[:, None]
    value["layers"] = [layer]
    out = common.canvas_to_label(value, 64)
    expected = label.copy()
    rows = np.arange(64) * 8 + 4  # the nearest reduction samples the centre of each 8-px block
    opaque_rows = [i for i, r in enumerate(rows) if 80 <= r < 120 and np.linspace(255, 0, 40)[r - 80] >= 128]
    cols = [j for j, c in enumerate(rows) if 100 <= c < 300]
    expected[np.ix_(opaque_rows, cols)] = HAIR
    assert len(opaque_rows) >= 2 and np.array_equal(out, expected)
    with pytest.raises(ValueError, match="mask canvas is empty"):
        common.canvas_to_label({"background": None, "layers": []}, 64)


def test_saved_masks_round_trip(tmp_path):
    label = np.random.default_rng(1).integers(0, 19, (16, 16))
    result = np.zeros((16, 16, 3), dtype=np.uint8)
    paths = common.save_edit(tmp_path, "x", result, label)
    assert np.array_equal(np.asarray(Image.open(paths[1])), label)
    assert np.array_equal(np.asarray(Image.open(paths[2])), label_to_color(label))
    assert np.array_equal(read_mask(paths[2], 16)[0].numpy(), label)


SPEC = common.TabSpec(title="Demo", experiment="demo_synthetic_64", train_command="make train-demo")


def test_default_checkpoint_is_the_newest_run(tmp_path):
    assert common.default_checkpoint(SPEC, tmp_path) is None
    message = common.no_checkpoint_message(SPEC, tmp_path)
    assert "make train-demo" in message and str(tmp_path / "demo_synthetic_64") in message
    paths = []
    for i, run in enumerate(["2026-01-02_000000", "2026-01-01_000000"]):
        path = tmp_path / "demo_synthetic_64" / run / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))  # the second one is newer although its name sorts first
        paths.append(path)
    assert common.default_checkpoint(SPEC, tmp_path) == paths[1]


def test_wrong_checkpoints_become_page_messages(tmp_path):
    def loader(path, device):
        return torch.load(path, weights_only=True)["state_dict"]["w"]

    cache = common.ModelCache(loader, "cpu")
    model, message = common.load_message(SPEC, cache, str(tmp_path / "nope.ckpt"))
    assert model is None and "checkpoint not found" in message and "nope.ckpt" in message
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    model, message = common.load_message(SPEC, cache, str(tmp_path / "text.ckpt"))
    assert model is None and message.startswith("**Loading") and "text.ckpt" in message
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "good.ckpt")
    model, message = common.load_message(SPEC, cache, str(tmp_path / "good.ckpt"))
    assert torch.equal(model, torch.ones(2)) and "Loaded" in message
    assert cache.get(tmp_path / "good.ckpt") is model  # loaded once


def test_a_tab_appears_only_when_its_model_has_landed(monkeypatch):
    landed = types.ModuleType("fake_tab_landed")
    landed.EDITING = "portrait_models.maskgan.editing"
    missing = types.ModuleType("fake_tab_missing")
    missing.EDITING = "portrait_models.not_a_paper.editing"
    monkeypatch.setitem(sys.modules, "fake_tab_landed", landed)
    monkeypatch.setitem(sys.modules, "fake_tab_missing", missing)
    monkeypatch.setattr(editor, "TABS", {"landed": "fake_tab_landed", "missing": "fake_tab_missing"})
    assert list(editor.available_tabs()) == ["landed"]


def test_checkpoint_arguments_name_their_tab():
    tabs = ["maskgan", "portraitgan"]
    assert parse_checkpoints(["portraitgan=a.ckpt", "runs/maskgan_synthetic_64/r/last.ckpt"], tabs) == {
        "portraitgan": "a.ckpt",
        "maskgan": "runs/maskgan_synthetic_64/r/last.ckpt",
    }
    assert parse_checkpoints(["x.ckpt"], ["maskgan"]) == {"maskgan": "x.ckpt"}
    with pytest.raises(ValueError, match="say which tab it is for"):
        parse_checkpoints(["x.ckpt"], tabs)
