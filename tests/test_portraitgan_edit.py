"""PortraitGAN editing CLI and helpers on a tiny checkpoint: named edits, landmark files, modality transfer,
interpolation frames + GIF, Fig. 5 order, clear errors."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.emotion import write_pts
from datamodules.synthetic import SyntheticFaceWorld
from experiments.edit import main
from portrait_models.portraitgan import PortraitGAN
from portrait_models.portraitgan import editing as E

SIZE = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg_edit")
    model = PortraitGAN(image_size=SIZE, ngf=4, n_downsample=2, n_blocks=1, ndf=4, texture_pretrained=False,
                        texture_layers=1)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(model)
    ckpt = root / "pg.ckpt"
    trainer.save_checkpoint(ckpt)
    world = SyntheticFaceWorld(0)
    neutral, surprised = world.render(0, 5, 0, 64), world.render(0, 7, 0, 64)
    Image.fromarray(neutral.image).save(root / "face.png")
    Image.fromarray(surprised.image).save(root / "end.png")
    write_pts(root / "face.pts", neutral.landmarks)
    write_pts(root / "end.pts", surprised.landmarks)
    return root, ckpt, neutral


def _cli(root, ckpt, *extra):
    return main(["portraitgan", "--checkpoint", str(ckpt), "--image", str(root / "face.png"), "--landmarks",
                 str(root / "face.pts"), "--device", "cpu", *extra])  # fmt: skip


def test_named_edit_and_modality_transfer_match_the_library_calls(files):
    root, ckpt, neutral = files
    assert _cli(root, ckpt, "--edit", "mouth_open", "--modality", "sketch", "--out", str(root / "o.png")) == 0
    written = np.asarray(Image.open(root / "o.png"))
    assert written.shape == (SIZE, SIZE, 3)
    model = E.load_portraitgan(ckpt)
    landmarks = E.to_frame(neutral.landmarks, neutral.image.shape, SIZE)
    assert np.allclose(landmarks, neutral.landmarks / 2 - 0.25)
    from portrait_models.portraitgan.landmark_map import mouth_open

    expected = E.translate(model, E.to_tensor(neutral.image, SIZE), mouth_open(landmarks, SIZE / 16), 1)
    assert np.abs(E.to_uint8(expected).astype(int) - written).max() <= 1
    # another modality code changes the output
    other = E.translate(model, E.to_tensor(neutral.image, SIZE), mouth_open(landmarks, SIZE / 16), 2)
    assert not torch.equal(other, expected)


def test_interpolation_writes_frames_and_a_gif(files):
    root, ckpt, _ = files
    out = root / "frames"
    assert _cli(root, ckpt, "--interpolate-to", str(root / "end.pts"), "--frames", "5", "--out", str(out)) == 0
    assert len(list(out.glob("frame_*.png"))) == 5
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 8  # forth and back
    fig5 = root / "fig5"
    assert _cli(root, ckpt, "--interpolate-to", str(root / "end.pts"), "--fig5", "--end-image",
                str(root / "end.png"), "--out", str(fig5)) == 0  # fmt: skip
    assert len(list(fig5.glob("frame_*.png"))) == 7


def test_clear_errors(files, capsys):
    root, ckpt, _ = files
    assert _cli(root, ckpt, "--modality", "oil", "--out", str(root / "x.png")) == 2
    assert "unknown modality 'oil'" in capsys.readouterr().err
    assert main(["portraitgan", "--checkpoint", str(root / "none.ckpt"), "--image", str(root / "face.png"),
                 "--out", str(root / "x.png")]) == 2  # fmt: skip
    assert "checkpoint not found" in capsys.readouterr().err
    bad = root / "bad.json"
    bad.write_text("[[1, 2]]")
    assert _cli(root, ckpt, "--target-landmarks", str(bad), "--out", str(root / "x.png")) == 2
    assert "(68, 2)" in capsys.readouterr().err
