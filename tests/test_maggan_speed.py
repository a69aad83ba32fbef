"""MagGAN's speed options: ``channels_last`` training (same losses as the contiguous layout) and bench_maggan's
paths (names, precision, one tiny run that prints the device and every ratio)."""

from __future__ import annotations

import argparse

import pytest
import torch

from experiments import bench_maggan
from portrait_models.maggan import MagGAN

TINY = dict(
    image_size=16, enc_dim=4, dec_dim=4, num_layers=2, max_dim=8, shortcut_layers=1, inject_layers=1, spade_hidden=4,
    d_level_size=16, dis_dim=4, dis_layers=2, dis_max_dim=8, dis_fc_dim=8,
)  # fmt: skip


def test_channels_last_training_layout_gives_the_same_losses():
    torch.manual_seed(0)
    batch = {
        "image": torch.rand(2, 3, 16, 16) * 2 - 1,
        "attributes": (torch.rand(2, 13) > 0.5).float(),
        "soft_masks": torch.rand(2, 19, 16, 16).softmax(1),
    }
    losses = {}
    for layout in (False, True):
        torch.manual_seed(1)
        model = MagGAN(**TINY, channels_last=layout)
        model.setup("fit")
        conv = model.generator.encoder[0][0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == layout
        image, att, masks = model.inputs(batch)
        assert image.is_contiguous(memory_format=torch.channels_last) == layout
        target = att.roll(1, 0)
        losses[layout] = model.generator_loss(image, att, target, target - att, masks)["total"]
    assert not MagGAN(**TINY).hparams.channels_last  # off by default
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-5)


def _args(**kw) -> argparse.Namespace:
    base = {"device": "cpu", "cpu_bf16": "off", "paths": None}
    return argparse.Namespace(**{**base, **kw})


def test_cpu_paths_name_their_layout_and_precision():
    paths = bench_maggan.bench_paths(_args(cpu_bf16="on"))
    assert [(p.name, p.channels_last, p.bf16) for p in paths] == [
        ("eager fp32", False, False), ("cl fp32", True, False), ("cl bf16", True, True),
    ]  # fmt: skip
    assert [p.name for p in bench_maggan.bench_paths(_args())] == ["eager fp32", "cl fp32"]
    assert [p.name for p in bench_maggan.bench_paths(_args(cpu_bf16="on", paths="cl bf16"))] == [
        "eager fp32", "cl bf16",
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="cl bf16"):
        bench_maggan.bench_paths(_args(paths="cl bf16"))  # bf16 off: not a path here


def test_a_tiny_run_prints_the_device_and_each_ratio(capsys):
    argv = "--device cpu --size 16 --batch 2 --width 4 --layers 2 --n-critic 2 --warmup 0 --iters 1 --cpu-bf16 off"
    assert bench_maggan.main(argv.split()) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: ")
    assert "cl fp32 / eager fp32: critic " in out and "cycle " in out
