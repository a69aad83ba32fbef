"""experiments.parse: soft masks cached per image, read back summing to 1; class-count errors."""

import lightning.pytorch as pl
import pytest
import torch

from datamodules.soft_masks import load_soft_mask, quantize, save_soft_mask
from datamodules.synthetic import write_celebamaskhq, write_helen
from experiments.parse import main
from portrait_models.parsing import FaceParser


def save_parser(path, num_classes):
    parser = FaceParser(num_classes=num_classes, unet_feature_scale=16)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.strategy.connect(parser)
    trainer.save_checkpoint(path)
    return parser


def test_quantized_round_trip(tmp_path):
    probs = torch.softmax(torch.randn(19, 8, 8), 0)
    save_soft_mask(tmp_path, "x", probs)
    back = load_soft_mask(tmp_path, "x")
    assert torch.allclose(back.sum(0), torch.ones(8, 8))
    assert (back - probs).abs().max() < 0.02
    assert quantize(probs).dtype.name == "uint8"
    with pytest.raises(FileNotFoundError, match="soft mask not found"):
        load_soft_mask(tmp_path, "missing")
    with pytest.raises(ValueError, match=r"expected uint8 \(11, H, W\)"):
        load_soft_mask(tmp_path, "x", num_classes=11)


def test_parse_command_writes_one_file_per_image(tmp_path, capsys):
    root = write_celebamaskhq(tmp_path / "hq", 6, image_size=32, mask_size=32)
    parser = save_parser(tmp_path / "p19.ckpt", 19)
    out = tmp_path / "soft"
    assert main(["--checkpoint", str(tmp_path / "p19.ckpt"), "--dataset", "celebamaskhq", "--data", str(root),
                 "--out", str(out), "--image-size", "32", "--device", "cpu"]) == 0  # fmt: skip
    files = sorted(p.stem for p in out.glob("*.npz"))
    assert files == [str(i) for i in range(6)]
    mask = load_soft_mask(out, "0")
    assert mask.shape == (19, 32, 32)
    from datamodules import CelebAMaskHQ

    image = CelebAMaskHQ(root, image_size=32)[0]["image"]
    with torch.no_grad():
        expected = parser.eval().parse(image[None])[0]
    assert (mask - expected).abs().max() < 0.01  # the cached mask is the parser's output
    assert "wrote 6 soft masks" in capsys.readouterr().out


def test_class_count_mismatch_is_named(tmp_path, capsys):
    root = write_helen(tmp_path / "helen", 2, 1, 1, image_size=32)
    save_parser(tmp_path / "p19.ckpt", 19)
    code = main(["--checkpoint", str(tmp_path / "p19.ckpt"), "--dataset", "helen", "--data", str(root),
                 "--out", str(tmp_path / "o"), "--device", "cpu"])  # fmt: skip
    assert code == 2
    assert "predicts 19 classes but helen is labelled with 11" in capsys.readouterr().err
