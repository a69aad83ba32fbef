"""Face parsers: official U-Net shape, BiSeNet + checkpoint remap, OHEM loss, the FaceParser system, and
learning on synthetic faces with known ground truth."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from datamodules.labels import (
    BISENET_TO_CELEBAMASK,
    CELEBAMASK_CLASSES,
    CELEBAMASK_PALETTE,
    HELEN_CLASSES,
    label_to_color,
)
from metrics.parsing import ParsingAccuracy
from portrait_models.parsing import BiSeNet, FaceParser, OhemCELoss, UNet, load_bisenet_checkpoint
from portrait_models.parsing.module import warmup_poly_factor
from portrait_models.pretrained import MissingWeightsError


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def _batch(size: int = 32, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images whose label (8 classes) is the sign pattern of the three colour channels."""
    image = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    label = ((image > 0).long() * torch.tensor([1, 2, 4]).view(1, 3, 1, 1)).sum(1)
    return {"image": image, "label": label}


# ----------------------------------------------------------------------------------------------- U-Net
def _unet_count_by_hand(n_classes: int, in_channels: int, feature_scale: int) -> int:
    """Parameters of the official U-Net from its description: conv3×3 (+bias) and BN (γ, β) per layer."""
    w = [c // feature_scale for c in (64, 128, 256, 512, 1024)]

    def block(cin: int, cout: int) -> int:
        return (9 * cin * cout + cout + 2 * cout) + (9 * cout * cout + cout + 2 * cout)

    down = block(in_channels, w[0]) + sum(block(w[i], w[i + 1]) for i in range(4))
    up = sum(4 * w[i + 1] * w[i] + w[i] + block(w[i + 1], w[i]) for i in range(4))
    return down + up + w[0] * n_classes + n_classes


def test_official_unet_parameter_count_on_meta_device():
    with torch.device("meta"):
        net = UNet(n_classes=19, in_channels=3, feature_scale=4, is_deconv=True, is_batchnorm=True)
    assert _count(net) == 1_944_355 == _unet_count_by_hand(19, 3, 4)
    assert next(net.parameters()).device.type == "meta"


def test_unet_keeps_official_module_names_and_shapes():
    names = set(UNet(feature_scale=16).state_dict())
    official_keys = {
        "conv1.conv1.0.weight", "conv1.conv1.1.running_mean", "center.conv2.0.bias",
        "up_concat4.up.weight", "up_concat1.conv.conv2.1.weight", "final.weight", "final.bias",
    }  # fmt: skip
    assert official_keys <= names


@pytest.mark.parametrize("is_deconv", [True, False])
def test_unet_output_shape_and_size_check(is_deconv):
    net = UNet(n_classes=11, feature_scale=16, is_deconv=is_deconv)
    assert net(torch.zeros(2, 3, 32, 48)).shape == (2, 11, 32, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.zeros(1, 3, 30, 32))


# --------------------------------------------------------------------------------------------- BiSeNet
def test_bisenet_three_outputs_at_input_size_and_main_only_inference():
    net = BiSeNet(19)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    outputs = net(x)
    assert len(outputs) == 3 and all(o.shape == (2, 19, 64, 64) for o in outputs)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net.main_logits(x), net(x)[0])
    assert _count(net) == 13_300_416  # zllrunning BiSeNet(19): the 53 MB 79999_iter.pth holds 13.3 M floats


def test_bisenet_param_groups_cover_everything_once_with_reference_rules():
    net = BiSeNet(5)
    groups = net.param_groups(lr=0.01, weight_decay=5e-4, head_lr_mult=10.0)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(net.conv_out.conv_out.weight)]["lr"] == pytest.approx(0.1)
    assert by_id[id(net.conv_out.conv_out.weight)]["weight_decay"] == 5e-4
    assert by_id[id(net.ffm.convblk.bn.weight)]["weight_decay"] == 0.0
    assert by_id[id(net.cp.resnet.conv1.weight)]["lr"] == pytest.approx(0.01)
    assert by_id[id(net.cp.resnet.bn1.bias)]["weight_decay"] == 0.0


def test_bisenet_checkpoint_remap_gives_official_class_order(tmp_path):
    original = BiSeNet(19).eval()
    file = tmp_path / "79999_iter.pth"
    # DataParallel-style prefix, as some re-saved copies carry it; the loader strips it.
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, file)
    remapped = load_bisenet_checkpoint(file)
    assert not remapped.training

    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before, after = original(x), remapped(x)
    inverse = np.argsort(BISENET_TO_CELEBAMASK)
    for old, new in zip(before, after):
        for k in range(19):  # official channel k = BiSeNet channel table⁻¹[k]
            torch.testing.assert_close(new[:, k], old[:, inverse[k]])
    # Concretely: official 13 (hair) is BiSeNet 17, official 2 (nose) is BiSeNet 10.
    torch.testing.assert_close(after[0][:, 13], before[0][:, 17])
    torch.testing.assert_close(after[0][:, 2], before[0][:, 10])


def test_bisenet_checkpoint_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="79999_iter.pth"):
        load_bisenet_checkpoint()
    wrong = tmp_path / "unet.pth"
    torch.save(UNet(feature_scale=16).state_dict(), wrong)
    with pytest.raises(ValueError, match="unet.pth"):
        load_bisenet_checkpoint(wrong)
    bad_keys = tmp_path / "partial.pth"
    state = BiSeNet(19).state_dict()
    state.pop("ffm.conv1.weight")
    torch.save(state, bad_keys)
    with pytest.raises(ValueError, match="(?s)partial.pth.*ffm.conv1.weight"):
        load_bisenet_checkpoint(bad_keys)


def test_pretrained_backbone_missing_file_fails_at_fit_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    parser = FaceParser(arch="bisenet", bisenet_pretrained=True)  # constructing needs no file
    with pytest.raises(MissingWeightsError, match="resnet18-f37072fd.pth"):
        parser.setup("fit")


# ------------------------------------------------------------------------------------------------ OHEM
def _logits_with_true_prob(probs: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class logits (1, 2, 1, N) whose true class (0) has probability ``probs[i]`` at pixel i."""
    p = torch.tensor(probs, dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()]).float().view(1, 2, 1, -1)
    return logits, torch.zeros(1, 1, len(probs), dtype=torch.long)


def test_ohem_keeps_every_pixel_above_threshold_when_more_than_n_min():
    probs = [0.9, 0.8, 0.6, 0.5, 0.3, 0.95]
    logits, label = _logits_with_true_prob(probs)
    loss = OhemCELoss(thresh=0.7, n_min=2)(logits, label)
    expected = -(math.log(0.6) + math.log(0.5) + math.log(0.3)) / 3  # the three pixels with p < 0.7
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_keeps_n_min_hardest_when_few_are_above_threshold():
    probs = [0.9, 0.8, 0.6, 0.5, 0.3, 0.95]
    logits, label = _logits_with_true_prob(probs)
    loss = OhemCELoss(thresh=0.7, n_min=5)(logits, label)
    expected = -sum(math.log(p) for p in (0.3, 0.5, 0.6, 0.8, 0.9)) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_default_n_min_is_one_sixteenth_of_the_pixels():
    probs = [0.99] * 28 + [0.95, 0.94, 0.93, 0.92]  # 32 easy pixels: n_min = 2 → the two hardest
    logits, label = _logits_with_true_prob(probs)
    expected = -(math.log(0.92) + math.log(0.93)) / 2
    assert OhemCELoss(thresh=0.7)(logits, label).item() == pytest.approx(expected, rel=1e-5)


def test_ohem_ignores_void_pixels_and_caps_at_valid_count():
    logits, label = _logits_with_true_prob([0.9, 0.4, 0.01, 0.2])
    label[0, 0, 2] = 255  # the hardest pixel is void: it must not count
    assert OhemCELoss(0.7, n_min=1)(logits, label).item() == pytest.approx(
        -(math.log(0.4) + math.log(0.2)) / 2, rel=1e-5
    )
    everything = -(math.log(0.9) + math.log(0.4) + math.log(0.2)) / 3
    assert OhemCELoss(0.7, n_min=100)(logits, label).item() == pytest.approx(everything, rel=1e-5)
    label.fill_(255)
    assert OhemCELoss(0.7, n_min=1)(logits, label).item() == 0.0


def test_ohem_bad_arguments():
    with pytest.raises(ValueError, match="probability"):
        OhemCELoss(thresh=1.5)
    with pytest.raises(ValueError, match="label"):
        OhemCELoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))


# ------------------------------------------------------------------------------------------ FaceParser
def test_warmup_poly_schedule_values():
    def f(step: int) -> float:
        return warmup_poly_factor(step, warmup_steps=10, warmup_start_ratio=1e-3, max_steps=110, power=0.9)

    assert f(0) == pytest.approx(1e-3)
    assert f(5) == pytest.approx(1e-3**0.5)  # geometric warm-up
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5**0.9)
    assert f(110) == 0.0 and f(500) == 0.0


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("unet", dict(unet_feature_scale=16, lr=1e-2)),
        ("bisenet", dict(optimizer="sgd_poly", lr=1e-2, weight_decay=5e-4, warmup_steps=3,
                         max_steps_for_schedule=100)),
    ],
)  # fmt: skip
def test_training_decreases_loss_on_a_fixed_batch(arch, kwargs):
    batch = _batch(size=32 if arch == "unet" else 64)
    parser = FaceParser(arch=arch, **kwargs)
    with torch.no_grad():
        parser.train()
        before = sum(parser._loss_terms(batch["image"], batch["label"]).values()).item()
    loader = DataLoader([batch] * 20, batch_size=None)
    _trainer(max_steps=20).fit(parser, loader)
    with torch.no_grad():
        parser.train()
        after = sum(parser._loss_terms(batch["image"], batch["label"]).values()).item()
    assert after < 0.8 * before
    if arch == "bisenet":
        lr_now = parser.trainer.optimizers[0].param_groups[0]["lr"]
        assert lr_now == pytest.approx(1e-2 * warmup_poly_factor(20, 3, 1e-3, 100, 0.9))


def test_bad_labels_and_batches_give_clear_errors():
    helen_parser = FaceParser(num_classes=11, unet_feature_scale=16)
    batch = _batch(size=32)
    batch["label"][0, 0, 0] = 255  # ignore_index is allowed
    helen_parser._unpack(batch)
    batch["label"][1, 5, 5] = 15  # a 19-class label (ear_r) for an 11-class parser
    with pytest.raises(ValueError, match="label value 15 .* 11-class parser"):
        helen_parser.training_step(batch, 0)
    batch["label"][1, 5, 5] = -3
    with pytest.raises(ValueError, match="11-class"):
        helen_parser._unpack(batch)
    with pytest.raises(KeyError, match="label"):
        helen_parser._unpack({"image": batch["image"]})
    with pytest.raises(TypeError, match="integer"):
        helen_parser._unpack({"image": batch["image"], "label": batch["label"].float()})
    with pytest.raises(ValueError, match="must be \\(B, H, W\\)"):
        helen_parser._unpack({"image": batch["image"], "label": batch["label"][:, :16]})
    with pytest.raises(ValueError, match="collides"):
        FaceParser(num_classes=19, ignore_index=3)
    with pytest.raises(ValueError, match="arch"):
        FaceParser(arch="deeplab")


def test_validation_logs_exact_pixel_accuracy_and_named_f1():
    parser = FaceParser(num_classes=11, unet_feature_scale=16).eval()
    batches = [_batch(size=32, n=2, seed=s) for s in range(2)]
    batches[1]["label"][:, :4] = 255  # void pixels are not scored
    results = _trainer().validate(parser, DataLoader(batches, batch_size=None), verbose=False)[0]
    with torch.no_grad():
        correct = total = 0
        for b in batches:
            pred, keep = parser(b["image"]).argmax(1), b["label"] != 255
            correct += (pred[keep] == b["label"][keep]).sum().item()
            total += keep.sum().item()
    assert results["val/pixel_acc"] == pytest.approx(correct / total, abs=1e-6)
    assert {f"val/f1/{name}" for name in HELEN_CLASSES} <= set(results)
    assert {"val/miou", "val/mean_f1", "val/helen_overall_f1", "val/loss"} <= set(results)
    test_results = _trainer().test(parser, DataLoader(batches, batch_size=None), verbose=False)[0]
    assert test_results["test/pixel_acc"] == pytest.approx(correct / total, abs=1e-6)


def test_parse_soft_masks_sample_grid_and_checkpoint_roundtrip(tmp_path):
    parser = FaceParser(unet_feature_scale=16).eval()
    batch = _batch(size=32, n=3)
    masks = parser.parse(batch["image"])
    assert masks.shape == (3, 19, 32, 32)
    torch.testing.assert_close(masks.sum(1), torch.ones(3, 32, 32))
    torch.testing.assert_close(parser.predict_step(batch), masks)

    grid = parser.sample_grid(batch)
    assert grid.shape == (3, 3 * 34 + 2, 3 * 34 + 2)  # 3 rows × 3 images, make_grid padding 2
    torch.testing.assert_close(grid[:, 2:34, 2:34], (batch["image"][0] + 1) / 2)  # input row
    target_colours = torch.from_numpy(label_to_color(batch["label"][1], CELEBAMASK_PALETTE)).permute(2, 0, 1)
    torch.testing.assert_close(grid[:, 36:68, 36:68], target_colours.float() / 255)  # target row
    pred_colours = torch.from_numpy(label_to_color(masks[2].argmax(0), CELEBAMASK_PALETTE)).permute(2, 0, 1)
    torch.testing.assert_close(grid[:, 70:102, 70:102], pred_colours.float() / 255)  # prediction row
    assert not parser.training

    trainer = _trainer(max_steps=1)
    trainer.fit(parser.train(), DataLoader([batch], batch_size=None))
    trainer.save_checkpoint(tmp_path / "parser.ckpt")
    restored = FaceParser.load_from_checkpoint(tmp_path / "parser.ckpt").eval()
    parser.eval()
    assert restored.hparams.unet_feature_scale == 16
    torch.testing.assert_close(restored.parse(batch["image"]), parser.parse(batch["image"]))


# ------------------------------------------------------------------------------ learning on known truth
def _synthetic_tensors(first: int, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from datamodules.synthetic import SyntheticFaceWorld

    world = SyntheticFaceWorld(seed=0)
    faces = [world.face(i, image_size=size) for i in range(first, first + count)]
    images = torch.from_numpy(np.stack([f.image for f in faces])).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.from_numpy(np.stack([f.label for f in faces])).long()
    return images, labels


def test_unet_learns_to_parse_held_out_synthetic_faces():
    """Official U-Net recipe (pixel CE, Adam β=(0.5, 0.999); lr 3e-3 for speed) on 400 synthetic faces at 64²,
    widths /8; scored on 64 faces it never saw, against the per-pixel majority mask of the training labels (an
    input-ignoring parser), which it must beat by 10 points."""
    train_x, train_y = _synthetic_tensors(0, 400, 64)
    test_x, test_y = _synthetic_tensors(10_000, 64, 64)
    train_set = [{"image": x, "label": y} for x, y in zip(train_x, train_y)]
    loader = DataLoader(train_set, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    parser = FaceParser(unet_feature_scale=8, lr=3e-3)
    _trainer(max_steps=300).fit(parser, loader)
    parser.eval()
    with torch.no_grad():
        pred = parser(test_x).argmax(1)
    accuracy = (pred == test_y).float().mean().item()
    majority = F.one_hot(train_y, 19).sum(0).argmax(-1)  # (H, W): the most frequent class at each pixel
    baseline = (majority.expand_as(test_y) == test_y).float().mean().item()
    assert accuracy >= 0.90, f"held-out pixel accuracy {accuracy:.3f}"
    assert accuracy >= baseline + 0.10, f"parser {accuracy:.3f} vs per-pixel majority mask {baseline:.3f}"
    scores = ParsingAccuracy(19)
    scores.update(pred, test_y)
    f1 = dict(zip(CELEBAMASK_CLASSES, scores.compute()["f1"].tolist()))
    assert min(f1["skin"], f1["hair"], f1["cloth"]) >= 0.8, f1  # not just background
