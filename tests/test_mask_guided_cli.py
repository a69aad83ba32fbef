"""Gu et al.'s editing API and CLIs: mask editing, component transfer, face swap+, the evaluation report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_mask_guided_training import TINY, _loader, _trainer, helen_tensors

from experiments.edit import main as edit_main
from experiments.evaluate import main as evaluate_main
from portrait_models.mask_guided.editing import (
    component_transfer,
    face_swap,
    load_system,
    mask_edit,
    read_image,
    read_label,
)
from portrait_models.mask_guided.module import MaskGuidedSystem


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    images, labels = helen_tensors(0, 8)
    system = MaskGuidedSystem(**TINY)
    trainer = _trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(system, _loader(images, labels))
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    images, labels = helen_tensors(10, 2)
    folder = tmp_path_factory.mktemp("faces")
    paths = []
    for k in range(2):
        rgb = ((images[k].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(rgb).save(folder / f"face{k}.png")
        Image.fromarray(labels[k].numpy().astype(np.uint8)).save(folder / f"mask{k}.png")
        paths.append((folder / f"face{k}.png", folder / f"mask{k}.png"))
    return paths


def test_transfer_of_nothing_reproduces_the_reconstruction_and_edits_use_the_new_centres(checkpoint):
    system = load_system(checkpoint)
    images, labels = helen_tensors(20, 2)
    recon = system.reconstruct(images, labels)
    assert torch.equal(component_transfer(system, images, labels, images.flip(0), labels.flip(0), ()), recon)
    assert torch.equal(mask_edit(system, images, labels, labels), recon)
    moved = labels.roll(3, dims=2)  # the whole face 3 px to the right: eyes and mouth follow
    assert not torch.equal(mask_edit(system, images, labels, moved), recon)
    swapped = face_swap(system, images.flip(0), labels.flip(0), images, labels)
    assert torch.equal(swapped, system.swap(images.flip(0), labels.flip(0), images, labels))
    with pytest.raises(ValueError, match="unknown component"):
        component_transfer(system, images, labels, images, labels, ["beard"])


def test_edit_cli_runs_the_three_applications(checkpoint, files, tmp_path, capsys):
    (face, mask), (other, other_mask) = files
    common = ["mask-guided", "--checkpoint", str(checkpoint), "--image", str(face), "--image-mask", str(mask)]
    assert edit_main([*common, "--mask", str(other_mask), "--out", str(tmp_path / "edit.png")]) == 0
    assert edit_main([*common, "--transfer", "hair,mouth", "--from", str(other), "--from-mask", str(other_mask),
                      "--out", str(tmp_path / "transfer.png")]) == 0  # fmt: skip
    assert edit_main([*common, "--swap-into", str(other), "--swap-into-mask", str(other_mask),
                      "--out", str(tmp_path / "swap.png")]) == 0  # fmt: skip
    for name in ("edit", "transfer", "swap"):
        assert Image.open(tmp_path / f"{name}.png").size == (64, 64)
    assert edit_main([*common, "--transfer", "hair", "--out", str(tmp_path / "x.png")]) == 2
    assert "--from" in capsys.readouterr().err


def test_read_label_rejects_non_helen_values(tmp_path):
    Image.fromarray(np.full((8, 8), 15, dtype=np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="is not a class; a Helen label PNG"):
        read_label(tmp_path / "bad.png", 8)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "absent.png", 8)


def test_evaluation_report_says_what_is_missing(checkpoint, tmp_path, capsys):
    out = tmp_path / "report.md"
    args = ["--samples", "6", "--synthetic-images", "20", "--no-progress", "--out", str(out)]
    code = evaluate_main(["mask-guided", "--checkpoint", str(checkpoint), *args, "--fid-weights", str(tmp_path / "x")])
    assert code == 0
    text = out.read_text()
    assert "Table 1" in text and "11.02" in text and "needs --parser" in text
    assert "synthetic face world" in text
