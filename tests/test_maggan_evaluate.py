"""MagGAN's evaluation protocol: numbers recomputed independently, the hat split, missing-network cells, the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from datamodules.labels import CLASS_INDEX, EDIT_ATTRIBUTES
from experiments.evaluate import main as evaluate_main
from experiments.evaluate.common import Judges, Unavailable
from experiments.evaluate.maggan import MagGANConfig, build_report, evaluate_maggan, table3_label
from metrics.mre import MaskAwareReconstructionError, flip_each_attribute
from portrait_models.maggan import MagGAN
from portrait_models.maggan.attributes import conflict_free_flip

C = len(EDIT_ATTRIBUTES)
TINY = dict(
    image_size=32, enc_dim=4, dec_dim=4, num_layers=3, max_dim=16, shortcut_layers=2, inject_layers=2, spade_hidden=4,
    d_level_size=32, dis_dim=4, dis_layers=3, dis_max_dim=16, dis_fc_dim=8,
)  # fmt: skip


class _BlondJudge(nn.Module):
    """Says Blond_Hair = 1 for images whose mean is above 0 (and has only that output)."""

    attributes = ("Blond_Hair",)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean((1, 2, 3)).unsqueeze(1) * 100


def _faces(hat_fractions: list[float]) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    items = []
    for fraction in hat_fractions:
        masks = torch.zeros(19, 16, 16)
        hat_rows = round(fraction * 16 * 16)
        masks.view(19, -1)[CLASS_INDEX["hat"], :hat_rows] = 1
        masks.view(19, -1)[CLASS_INDEX["hair"], hat_rows:] = 1
        items.append({"image": torch.rand(3, 32, 32, generator=g) * 2 - 1,
                      "attributes": (torch.rand(C, generator=g) > 0.5).float(), "soft_masks": masks})  # fmt: skip
    return items


def _judges(classifier=None) -> Judges:
    none = Unavailable("needs Inception weights: pt_inception.pth")
    return Judges(none, Unavailable("no parser"), classifier or Unavailable("needs --attr-classifier"),
                  Unavailable("no identity"))  # fmt: skip


def test_protocol_numbers_match_independent_computations():
    torch.manual_seed(0)
    model = MagGAN(**TINY).eval()
    faces = _faces([0.05, 0.15, 0.0, 0.5])
    result = evaluate_maggan(model, faces, _judges(_BlondJudge()), MagGANConfig(batch_size=3, progress=False))
    images = torch.stack([f["image"] for f in faces])
    att = torch.stack([f["attributes"] for f in faces])
    masks = torch.stack([f["soft_masks"] for f in faces])
    full = nn.functional.interpolate(masks, size=(32, 32), mode="bilinear", align_corners=False)
    metric = MaskAwareReconstructionError()
    edited, diff = flip_each_attribute(lambda x, d: model.edit(x, d, masks), images, att)
    metric.update(images, edited, full, diff)
    assert result.mre == pytest.approx(float(metric.compute()), rel=1e-5)
    assert result.mre_paper_scale == pytest.approx(result.mre / 6)
    # hat split: 0.05 and 0.0 below the 0.1 threshold, 0.15 and 0.5 above
    assert result.subset_sizes == {"all": 4, "hat": 2, "no_hat": 2}
    blond = EDIT_ATTRIBUTES.index("Blond_Hair")

    def accuracy(edits: torch.Tensor) -> float:
        return float(((edits.mean((1, 2, 3)) > 0).float() == 1 - att[:, blond]).float().mean() * 100)

    # the judged edit follows STGAN's conflict rules (Blond on turns Black and Brown off), the MRE the plain flip
    conflict_free = model.edit(images, conflict_free_flip(att, "Blond_Hair"), masks)
    assert not torch.equal(conflict_free, edited[:, blond])  # these faces do have a conflict to resolve
    assert result.accuracy["all"]["Blond_Hair"] == pytest.approx(accuracy(conflict_free))
    assert isinstance(result.accuracy["all"]["Male"], Unavailable)
    report = build_report(result).markdown()
    assert "MagGAN(256) (paper)" in report and "(vi) MagGAN (paper)" in report
    assert "has no Male output" in report and "needs Inception weights" in report
    assert "STGAN's test-time conflict rules" in report
    config = MagGANConfig(batch_size=3, progress=False, flip_rule="plain")
    plain = evaluate_maggan(model, faces, _judges(_BlondJudge()), config)
    assert plain.accuracy["all"]["Blond_Hair"] == pytest.approx(accuracy(edited[:, blond]))
    assert plain.mre == result.mre and "plain single flips" in build_report(plain).markdown()


def test_an_identity_generator_has_zero_mre_and_unit_ssim():
    class Identity(MagGAN):
        def edit(self, image, att_diff, soft_masks):
            return image

    model = Identity(**TINY).eval()
    result = evaluate_maggan(model, _faces([0.0, 0.3]), _judges(), MagGANConfig(progress=False))
    assert result.mre == 0.0 and result.ssim == pytest.approx(1.0, abs=1e-6)


def test_table3_label_follows_the_switches():
    assert table3_label(MagGAN(**TINY).hparams) == "vi"
    assert table3_label(MagGAN(**TINY, conditioning="replicated", decoder="bn_concat", lambda_mre=0).hparams) == "i"
    assert table3_label(MagGAN(**TINY, table3_row="vii").hparams) == "vii"


def test_cli_on_the_synthetic_split_and_its_errors(tmp_path, monkeypatch, capsys):
    import lightning.pytorch as pl

    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    model = MagGAN(**{**TINY, "image_size": 64, "d_level_size": 64})
    trainer = pl.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.strategy.connect(model)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "report.md"
    code = evaluate_main(["maggan", "--checkpoint", str(ckpt), "--synthetic-images", "20", "--no-progress",
                          "--out", str(out)])  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "**synthetic face world**" in text and "needs --attr-classifier" in text
    assert evaluate_main(["maggan", "--checkpoint", str(ckpt), "--data", str(tmp_path)]) == 2
    assert "--masks" in capsys.readouterr().err
