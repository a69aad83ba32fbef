"""Metric callbacks inside real (tiny, CPU) Lightning runs: logged keys, when FID runs, real statistics
computed once, perfect generators and an oracle parser scoring perfectly."""

import csv
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from metrics.callbacks import (
    FIDCallback,
    ImageQualityCallback,
    ParsingCallback,
    SupportsMetricSamples,
    protocol_name,
)
from metrics.inception import RandomConvFeatureExtractor
from portrait_models.pretrained import WEIGHTS, MissingWeightsError

# Four classes drawn in four pure colours, so a parser can read the mask back from a perfect image.
PALETTE = torch.tensor([[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
SIZE = 16


class ColourMasks(Dataset):
    """Random blocky 4-class masks and their palette images, ``{"image", "label"}`` per item."""

    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(7)
        coarse = torch.randint(0, len(PALETTE), (n, SIZE // 4, SIZE // 4), generator=generator)
        self.labels = coarse.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        label = self.labels[index]
        return {"image": PALETTE[label].permute(2, 0, 1).clone(), "label": label}


class TinyGenerator(LightningModule):
    """A 1×1-conv "generator"; ``perfect=True`` returns the real image itself as the fake."""

    def __init__(self, perfect: bool = False, share_samples: bool = False):
        super().__init__()
        self.generator = nn.Conv2d(3, 3, 1)
        self.perfect = perfect
        self.share_samples = share_samples
        self.sample_calls = 0

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return (self.generator(batch["image"]) - batch["image"]).square().mean()

    def validation_step(self, batch: dict, batch_idx: int) -> dict | None:
        return self.metric_samples(batch) if self.share_samples else None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def metric_samples(self, batch: dict) -> dict[str, Tensor]:
        self.sample_calls += 1
        real = batch["image"]
        fake = real.clone() if self.perfect else torch.tanh(self.generator(real))
        return {"fake": fake, "real": real, "label": batch["label"]}


class CountingExtractor(nn.Module):
    """The fixed random feature network, counting the images it sees."""

    def __init__(self):
        super().__init__()
        self.net = RandomConvFeatureExtractor(num_features=6, width=8, seed=1)
        self.num_features = 6
        self.images_seen = 0

    def forward(self, images: Tensor) -> Tensor:
        self.images_seen += images.shape[0]
        return self.net(images)


class OracleParser(nn.Module):
    """Scores each class by closeness to its palette colour: exact on palette images."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, images: Tensor) -> Tensor:
        self.calls += 1
        return -(images[:, None] - PALETTE.to(images)[None, :, :, None, None]).square().sum(dim=2)


def _fit(module: LightningModule, callbacks: list, tmp_path: Path, val_items: int = 12, **trainer_kwargs) -> Trainer:
    defaults = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
        logger=CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer = Trainer(callbacks=callbacks, **{**defaults, **trainer_kwargs})
    trainer.fit(
        module,
        train_dataloaders=DataLoader(ColourMasks(8), batch_size=4),
        val_dataloaders=DataLoader(ColourMasks(val_items), batch_size=4),
    )
    return trainer


def _logged_rows(tmp_path: Path) -> list[dict[str, str]]:
    (metrics_file,) = tmp_path.glob("logs/*/metrics.csv")
    with open(metrics_file) as handle:
        return list(csv.DictReader(handle))


def _logged(tmp_path: Path, key: str) -> list[float]:
    return [float(row[key]) for row in _logged_rows(tmp_path) if row.get(key)]


def test_protocol_name():
    assert [protocol_name(n) for n in (2000, 200, 50000, 1500, 10000)] == ["2k", "200", "50k", "1500", "10k"]
    with pytest.raises(ValueError, match="positive"):
        protocol_name(0)


def test_fid_runs_after_sanity_check_with_real_statistics_extracted_once(tmp_path):
    extractor = CountingExtractor()
    fid = FIDCallback(num_samples=12, batch_size=4, feature_extractor=extractor, kid=True, kid_subsets=5)
    with pytest.warns(UserWarning, match="KID subset_size lowered from 1000 to 12"):
        _fit(TinyGenerator(), [fid], tmp_path, max_epochs=2)
    assert fid.real_passes == 1
    assert extractor.images_seen == 12 + 2 * 12  # reals once, fakes at both epochs, nothing in the sanity check
    fids = _logged(tmp_path, "val/fid_12")
    assert len(fids) == 2 and all(value > 0 for value in fids)
    assert _logged(tmp_path, "val/fid_12_best")[-1] == pytest.approx(min(fids))
    assert len(_logged(tmp_path, "val/kid_12")) == 2 and len(_logged(tmp_path, "val/kid_12_std")) == 2


def test_fid_is_skipped_under_fast_dev_run_but_cheap_metrics_run(tmp_path):
    extractor = CountingExtractor()
    trainer = _fit(
        TinyGenerator(),
        [FIDCallback(num_samples=8, feature_extractor=extractor), ImageQualityCallback()],
        tmp_path,
        fast_dev_run=True,
        logger=False,
    )
    assert extractor.images_seen == 0
    assert "val/fid_8" not in trainer.callback_metrics
    assert "val/psnr" in trainer.callback_metrics


def test_default_inception_is_loaded_at_setup_except_under_fast_dev_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path / "empty_cache"))
    trainer = _fit(TinyGenerator(), [FIDCallback(num_samples=8)], tmp_path, fast_dev_run=True, logger=False)
    assert trainer.state.finished
    with pytest.raises(MissingWeightsError, match=WEIGHTS["inception_fid"].filename):
        _fit(TinyGenerator(), [FIDCallback(num_samples=8)], tmp_path, logger=False)


def test_fid_every_n_epochs(tmp_path):
    extractor = CountingExtractor()
    fid = FIDCallback(num_samples=8, batch_size=4, every_n_epochs=2, feature_extractor=extractor)
    _fit(TinyGenerator(), [fid], tmp_path, max_epochs=3)
    assert extractor.images_seen == 8 + 8  # only after epoch 2: reals and fakes once
    assert len(_logged(tmp_path, "val/fid_8")) == 1


def test_perfect_generator_and_oracle_parser_score_perfectly(tmp_path):
    parser = OracleParser()
    callbacks = [
        FIDCallback(num_samples=12, batch_size=4, feature_extractor=CountingExtractor()),
        ParsingCallback(parser, num_classes=len(PALETTE), max_batches=1),
        ImageQualityCallback(),
    ]
    trainer = _fit(TinyGenerator(perfect=True), callbacks, tmp_path)
    logged = trainer.callback_metrics
    assert abs(logged["val/fid_12"].item()) < 1e-9
    assert math.isinf(logged["val/psnr"].item()) and logged["val/ssim"].item() == pytest.approx(1.0)
    assert logged["val/parse_pixel_acc"].item() == 1.0 and logged["val/parse_miou"].item() == 1.0
    assert parser.calls == 1 + 1  # sanity check + epoch, one batch each (max_batches=1)
    assert not parser.training and not any(p.requires_grad for p in callbacks[1].parser.parameters())


def test_imperfect_generator_parses_worse_and_samples_are_shared(tmp_path):
    module = TinyGenerator(share_samples=True)
    callbacks = [ParsingCallback(OracleParser(), num_classes=len(PALETTE)), ImageQualityCallback()]
    trainer = _fit(module, callbacks, tmp_path, num_sanity_val_steps=0)
    assert trainer.callback_metrics["val/parse_pixel_acc"].item() < 1.0
    assert math.isfinite(trainer.callback_metrics["val/psnr"].item())
    assert module.sample_calls == 2  # two validation batches; both callbacks reused validation_step's samples


def test_real_statistics_file_is_reused_by_the_next_run(tmp_path):
    stats = tmp_path / "fid_stats.npz"
    first_extractor, second_extractor = CountingExtractor(), CountingExtractor()
    first = FIDCallback(num_samples=8, batch_size=4, feature_extractor=first_extractor, real_stats_path=stats)
    torch.manual_seed(0)
    _fit(TinyGenerator(), [first], tmp_path / "first")
    second = FIDCallback(num_samples=8, batch_size=4, feature_extractor=second_extractor, real_stats_path=stats)
    torch.manual_seed(0)
    _fit(TinyGenerator(), [second], tmp_path / "second")
    assert stats.is_file() and first.real_passes == 1 and second.real_passes == 0
    assert second_extractor.images_seen == 8  # fakes only
    assert _logged(tmp_path / "second", "val/fid_8") == pytest.approx(_logged(tmp_path / "first", "val/fid_8"))


def test_misconfiguration_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"num_samples=50\) needs at least that many val items.* has 12"):
        _fit(TinyGenerator(), [FIDCallback(num_samples=50, feature_extractor=CountingExtractor())], tmp_path)

    class NoSamples(TinyGenerator):
        metric_samples = None

    assert not isinstance(NoSamples(), SupportsMetricSamples) and isinstance(TinyGenerator(), SupportsMetricSamples)
    with pytest.raises(TypeError, match="NoSamples has no metric_samples"):
        _fit(NoSamples(), [ImageQualityCallback()], tmp_path, logger=False)

    class NoLabels(TinyGenerator):
        def metric_samples(self, batch: dict) -> dict[str, Tensor]:
            return {"fake": batch["image"], "real": batch["image"]}

    with pytest.raises(KeyError, match=r"missing \['label'\]"):
        _fit(NoLabels(), [ParsingCallback(OracleParser(), num_classes=4)], tmp_path, logger=False)
    with pytest.raises(ValueError, match="every_n_epochs"):
        ImageQualityCallback(every_n_epochs=0)
    with pytest.raises(ValueError, match="dataloader must be"):
        FIDCallback(dataloader="test")


def _validate_fid(tmp_path: Path, **trainer_kwargs) -> float:
    torch.manual_seed(0)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[FIDCallback(num_samples=12, batch_size=2, feature_extractor=CountingExtractor())],
        **trainer_kwargs,
    )
    (results,) = trainer.validate(TinyGenerator(), DataLoader(ColourMasks(12), batch_size=4), verbose=False)
    return results["val/fid_12"]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_processes_give_the_single_process_fid(tmp_path):
    """Each rank takes every second item of the fixed subset; the summed states reproduce one process."""
    single = _validate_fid(tmp_path, devices=1)
    distributed = _validate_fid(tmp_path, devices=2, strategy="ddp_spawn")
    assert distributed == pytest.approx(single, rel=1e-6)
