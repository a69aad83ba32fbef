"""PortraitGAN Table 1 protocol: the paper's SSIM equals old scikit-image's defaults, the pair rules, baselines
on known numbers, the report in Table 1's layout."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from experiments.evaluate import main
from experiments.evaluate.portraitgan import row_label, select_pairs
from metrics.functional import ssim_skimage014_per_image
from portrait_models.portraitgan import PortraitGAN

SIZE = 32


def test_paper_ssim_matches_skimage_with_the_old_defaults():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 24, 20))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    ours = ssim_skimage014_per_image(torch.from_numpy(a), torch.from_numpy(b))
    for k in range(2):
        ref = structural_similarity(
            a[k].transpose(1, 2, 0), b[k].transpose(1, 2, 0), channel_axis=-1, win_size=7, data_range=2.0
        )
        assert abs(float(ours[k]) - ref) < 1e-6
    assert torch.allclose(ssim_skimage014_per_image(torch.from_numpy(a), torch.from_numpy(a)), torch.ones(2).double())


def test_row_labels():
    class H:
        def __init__(self, k, eta):
            self.num_levels, self.lambda_texture = k, eta

    assert [row_label(H(2, 10)), row_label(H(1, 10)), row_label(H(2, 0)), row_label(H(1, 0))] == [
        "Ours", "Ours wo/ L_multi", "Ours wo/ L_texture", "Ours wo/ L_multi + L_texture",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg_eval")
    model = PortraitGAN(image_size=SIZE, ngf=4, n_downsample=2, n_blocks=1, ndf=4, texture_pretrained=False,
                        texture_layers=1)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(model)
    path = root / "pg.ckpt"
    trainer.save_checkpoint(path)
    return root, path


def test_table1_report_with_baselines(checkpoint, monkeypatch, capsys):
    root, path = checkpoint
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(root / "cache"))
    out, js = root / "t1.md", root / "t1.json"
    args = ["portraitgan", "--checkpoint", str(path), "--synthetic-images", "40", "--pairs", "30", "--timing-iters",
            "2", "--device", "cpu", "--no-progress", "--out", str(out), "--json", str(js)]  # fmt: skip
    assert main(args) == 0
    text = out.read_text()
    assert "| Ours (paper) | 0.011 | 0.655 | - | 0.290 |" in text
    assert "synthetic face world" in text and "30 stylized + 30 natural" in text
    metrics = json.loads(js.read_text())
    key = "test/portraitgan_table1/{}/{}/{}".format
    # the modality oracle IS the ground truth on stylized pairs and the copy on natural pairs
    assert metrics[key("oracle", "stylized", "mse")] == 0.0
    assert abs(metrics[key("oracle", "stylized", "ssim_paper")] - 1.0) < 1e-9
    assert metrics[key("oracle", "natural", "mse")] == metrics[key("copy", "natural", "mse")]
    assert metrics[key("copy", "stylized", "mse")] > 0.005  # modalities really differ
    assert metrics["test/portraitgan_table1/model/inference_s"] > 0


def test_pair_rules_on_the_synthetic_split(checkpoint, monkeypatch):
    from datamodules import EmotionLandmarksDataModule
    from experiments.evaluate import common

    root, path = checkpoint
    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(root / "cache"))
    dataset, _, _ = common.load_test_split(
        EmotionLandmarksDataModule, None, SIZE, path, 40, "RaFD", paired=True, partner="uniform",
        modalities=["photo", "sketch", "cartoon", "painting"], split_by="identity", test_fraction=0.3,
    )  # fmt: skip
    pairs = select_pairs(dataset, 1000, 0)
    test_ids = {r.identity for r in dataset.items}
    assert len(pairs["stylized"]) == len(dataset.items) * 3  # all of them when fewer than asked
    assert all(a is b and ma == 0 and mb > 0 for a, ma, b, mb in pairs["stylized"])
    assert all(a.identity == b.identity and a.emotion != b.emotion and mb == 0 for a, _, b, mb in pairs["natural"])
    assert {a.identity for a, *_ in pairs["natural"]} <= test_ids
    assert select_pairs(dataset, 5, 0) == select_pairs(dataset, 5, 0)
