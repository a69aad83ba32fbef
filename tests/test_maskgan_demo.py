"""The synthetic demo's end-of-run numbers (portrait_models/maskgan/demo.py) on renderers with known answers."""

import pytest
import torch
from conftest import synthetic_tensors
from torch import nn

from portrait_models.maskgan.demo import demo_numbers, format_numbers


class _Split(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return {"image": self.images[index], "label": self.labels[index]}


class _Renderer(nn.Module):
    """Returns the real image itself ("copy") or a fixed face ("constant") as its reconstruction."""

    def __init__(self, mode, constant=None):
        super().__init__()
        self.mode, self.constant = mode, constant
        self.anchor = nn.Parameter(torch.zeros(()))

    def metric_samples(self, batch):
        image = batch["image"]
        fake = image.clone() if self.mode == "copy" else self.constant.expand_as(image).clone()
        return {"fake": fake, "real": image}


def test_demo_numbers_are_exact_for_known_renderers():
    train, val = _Split(*synthetic_tensors(0, 24, 32)), _Split(*synthetic_tensors(100, 8, 32))
    perfect = demo_numbers(_Renderer("copy"), train, val, parser_steps=3, max_images=24)
    assert perfect["ema_l1"] == 0.0 and perfect["l1_ratio"] == 0.0
    assert perfect["parser_on_generated"] == perfect["parser_on_real"] > 0 and perfect["parser_ratio"] == 1.0
    mean_face = train.images.mean(0, keepdim=True)
    average = demo_numbers(_Renderer("constant", mean_face), train, val, parser_steps=3, max_images=24)
    assert average["l1_ratio"] == pytest.approx(1.0)  # the mean face is the baseline itself
    labels = train.labels
    majority = torch.nn.functional.one_hot(labels, 19).sum(0).argmax(-1)
    assert average["majority_mask_agreement"] == pytest.approx((majority == val.labels).float().mean().item())
    text = format_numbers(perfect)
    assert "ratio 0.00 (meets <= 0.6)" in text and "ratio 1.00 (meets >= 0.9)" in text
    assert "(MISSES <= 0.6)" in format_numbers(average)


def test_background_judge_gives_the_foreground_numbers_and_leaves_the_rng_alone(tmp_path):
    """The judge fitted on a second thread while "training" runs equals the one fitted at the end, and starting
    it leaves the main thread's global RNG where it was (the GAN's numbers do not depend on the judge)."""
    from types import SimpleNamespace

    from portrait_models.maskgan.demo import SyntheticDemoReport

    train, val = _Split(*synthetic_tensors(0, 24, 32)), _Split(*synthetic_tensors(100, 8, 32))
    mean_face = train.images.mean(0, keepdim=True)
    module = _Renderer("constant", mean_face + 0.1)
    datamodule = SimpleNamespace(datasets={"train": train, "val": val})
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, datamodule=datamodule,
                              default_root_dir=str(tmp_path))  # fmt: skip
    torch.manual_seed(123)
    expected = torch.rand(3)
    numbers = {}
    for background in (False, True):
        report = SyntheticDemoReport(parser_steps=2, max_images=16, background=background)
        torch.manual_seed(123)
        report.on_fit_start(trainer, module)
        assert (report._judge is not None) == background
        assert torch.equal(torch.rand(3), expected)  # drawn while the judge trains: the stream is untouched
        report.on_fit_end(trainer, module)
        numbers[background] = report.numbers
    assert numbers[True] == numbers[False]
    assert 0 < numbers[True]["parser_on_real"] < 1 and numbers[True]["l1_ratio"] > 1.0
