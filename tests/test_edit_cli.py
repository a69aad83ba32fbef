"""`python -m experiments.edit maskgan`: file formats, the three edit modes, and errors naming the file."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import synthetic_tensors
from PIL import Image

from datamodules.labels import label_to_color
from experiments.edit import main
from portrait_models.maskgan.editing import read_image, read_mask, render, transfer_parts
from portrait_models.maskgan.module import MaskGAN

TINY = dict(image_size=64, ngf=4, ndf=4, n_blocks=1, style_channels=4, ebst=False, vgg_pretrained=False, vgg_layers=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    model = MaskGAN(**TINY, dmn_steps=1)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    images, labels = synthetic_tensors(0, 2, 64)
    trainer.fit(model, torch.utils.data.DataLoader([{"image": images[0], "label": labels[0]}], batch_size=1))
    trainer.save_checkpoint(root / "model.ckpt")
    for i in range(2):
        array = ((images[i].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(array).save(root / f"face{i}.png")
        Image.fromarray(labels[i].numpy().astype(np.uint8)).save(root / f"label{i}.png")  # label PNG
        Image.fromarray(label_to_color(labels[i])).save(root / f"color{i}.png")  # colour PNG
    return root, labels


def test_label_and_colour_masks_read_the_same(files):
    root, labels = files
    assert torch.equal(read_mask(root / "label0.png", 64)[0], labels[0])
    assert torch.equal(read_mask(root / "color0.png", 64)[0], labels[0])
    assert read_mask(root / "label0.png", 32).shape == (1, 32, 32)


def _expected(root, mode: str) -> np.ndarray:
    """What the CLI must write for ``mode``, rendered here by the EMA DMN of the same checkpoint."""
    model = MaskGAN.load_from_checkpoint(root / "model.ckpt", map_location="cpu", vgg_pretrained=False).eval()
    image, mask = read_image(root / "face0.png", 64), read_mask(root / "label0.png", 64)
    style_image, style_mask = image, mask
    if mode == "mask":
        target = read_mask(root / "color1.png", 64)
    elif mode == "transfer-from":
        target = transfer_parts(mask, read_mask(root / "label1.png", 64))
    else:
        target = mask
        style_image, style_mask = read_image(root / "face1.png", 64), read_mask(root / "label1.png", 64)
    out = render(model, target, style_image, style_mask)[0].clamp(-1, 1)
    return ((out + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


MODES = {
    "mask": ["--mask", "color1.png"],
    "transfer-from": ["--transfer-from", "label1.png"],
    "style-image": ["--style-image", "face1.png", "--style-mask", "label1.png"],
}


def test_edit_modes_render_the_mask_and_style_they_name(files):
    root, labels = files
    written = {}
    for mode, extra in MODES.items():
        out = root / f"out_{mode}.png"
        args = ["maskgan", "--checkpoint", str(root / "model.ckpt"), "--image", str(root / "face0.png"),
                "--image-mask", str(root / "label0.png"), "--out", str(out), "--device", "cpu"]  # fmt: skip
        args += [str(root / a) if a.endswith(".png") else a for a in extra]
        assert main(args) == 0
        written[mode] = np.asarray(Image.open(out).convert("RGB")).astype(int)
        # the file is the EMA DMN's rendering of the mask and style this mode names (PNG: exact uint8)
        assert np.array_equal(written[mode], _expected(root, mode).astype(int)), mode
    # ... and the three modes are different edits: a CLI that ignored its mode arguments would fail here
    assert labels[0].ne(labels[1]).any()
    for a, b in (("mask", "transfer-from"), ("mask", "style-image"), ("transfer-from", "style-image")):
        assert np.abs(written[a] - written[b]).max() > 0, (a, b)


def test_bad_inputs_name_the_file(files, tmp_path, capsys):
    root, _ = files
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((8, 8), 40, dtype=np.uint8)).save(bad)
    base = ["maskgan", "--checkpoint", str(root / "model.ckpt"), "--image", str(root / "face0.png"),
            "--out", str(tmp_path / "o.png"), "--device", "cpu"]  # fmt: skip
    assert main([*base, "--image-mask", str(bad)]) == 2
    assert f"{bad}: label value 40 is not a class" in capsys.readouterr().err
    assert main([*base, "--image-mask", str(tmp_path / "missing.png")]) == 2
    assert "mask not found" in capsys.readouterr().err
    assert main([*base, "--image-mask", str(root / "label0.png"), "--style-image", str(root / "face1.png")]) == 2
    assert "--style-image needs --style-mask" in capsys.readouterr().err
