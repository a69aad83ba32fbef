"""Gu et al. (mask-guided portrait editing), Tables 1–3.

Unpaired samples: ``--samples`` outputs G(x^s, m^s, x^t, m^t) (paper: 5,000) with targets (x^t, m^t) cycling
through the test split and sources x^s drawn from the training split with ``rng(seed)`` (specs/mask_guided.md
A21); faces are aligned as in training.

* **Table 1 (FID)**: FID of the samples against the training faces (the standard Inception, ``--fid-weights``
  or the weight cache; a "needs …" cell without it). Rows: the checkpoint's setting (``ablation``).
* **Table 2 (parsing accuracy)**: an evaluator parser trained separately from P_F (``--parser``, an 11-class
  ``FaceParser`` .ckpt) parses the samples; per-pixel accuracy against the target masks over all pixels
  (the paper's number) and over face pixels. Baselines on the same targets: the source copied unchanged
  (ignores the target mask) and the evaluator on the real targets (an upper bound).
* **Table 3 (parser + generated faces)**, with ``--table3``: trains three U-Net parsers for ``--table3-steps``
  steps on (a) the training split, (b) the same with augmentation (flip, scale, rotation, shift), (c) (b) plus
  one generated face per training mask (sources: random other training faces; Helen has no gender labels, so
  the paper's same-gender filter is not applied) and scores each on the test split: pixel accuracy and Helen
  overall F1 (``metrics.functional.parsing``; the paper does not define its "accuracy").
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.evaluate import common

HELP = "Tables 1-3: FID of unpaired samples, parsing accuracy of generated faces, parser trained with generated faces"
PAPER_TABLE1 = {"setting 1 (global AE, pasted bg)": (11.02,), "setting 2 (local AEs, pasted bg)": (11.26,),
                "ours": (8.92,)}  # fmt: skip
PAPER_TABLE2 = {"w/o face parsing loss": (0.946, None), "w face parsing loss": (0.977, None)}
PAPER_TABLE3 = {"Helen": (0.728, None), "Helen (with data augmentation)": (0.863, None),
                "Helen + generated (with data augmentation)": (0.871, None)}  # fmt: skip
ROW = {"global_paste": "setting 1 (global AE, pasted bg)", "local_paste": "setting 2 (local AEs, pasted bg)",
       "full": "ours"}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a MaskGuidedSystem .ckpt or the official folder")
    parser.add_argument("--samples", type=int, default=5000, help="unpaired samples (paper: 5,000)")
    parser.add_argument("--parser", default=None, help="evaluator parser (11-class FaceParser .ckpt), not P_F")
    parser.add_argument("--fid-weights", default=None, help="FID Inception weights (default: the weight cache)")
    parser.add_argument("--table3", action="store_true", help="train and score the three Table 3 parsers")
    parser.add_argument("--table3-steps", type=int, default=2000, help="optimizer steps per Table 3 parser")
    common.add_run_arguments(parser)
    common.add_output_arguments(parser)


def split_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x["image"] for x in items]), torch.stack([x["label"] for x in items]).long()


def load_splits(args: argparse.Namespace, image_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, str, bool]:
    from datamodules import HelenDataModule

    test, description, synthetic = common.load_test_split(
        HelenDataModule, args.data, image_size, args.checkpoint, args.synthetic_images, "Helen", align=True
    )
    trained = common.training_data_settings(args.checkpoint)
    if args.data is None:
        count = args.synthetic_images or trained.get("synthetic_images") or 200
        module = HelenDataModule(None, image_size, synthetic_images=count, seed=int(trained.get("seed", 0)),
                                 augment=False, align=True)  # fmt: skip
    else:
        module = HelenDataModule(args.data, image_size, augment=False, align=True)
    module.setup("fit")
    return (*split_tensors(module.datasets["train"]), *split_tensors(test), description, synthetic)


def unpaired_pairs(num_targets: int, num_sources: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Target indices cycling through the test split, sources drawn uniformly from the training split."""
    rng = np.random.default_rng(seed)
    return np.arange(samples) % num_targets, rng.integers(0, num_sources, samples)


@torch.no_grad()
def generate(system: Any, sources: tuple[Tensor, Tensor], targets: tuple[Tensor, Tensor], pairs, batch: int):
    """Yield (output, source image, target image, target label) batches of the unpaired samples."""
    device = next(system.parameters()).device
    target_index, source_index = pairs
    for start in range(0, len(target_index), batch):
        t, s = target_index[start : start + batch], source_index[start : start + batch]
        x_s, m_s = sources[0][s].to(device), sources[1][s].to(device)
        x_t, m_t = targets[0][t].to(device), targets[1][t].to(device)
        yield system.swap(x_s, m_s, x_t, m_t), x_s, x_t, m_t


def parse_accuracy(parser: Any, images: Tensor, labels: Tensor) -> tuple[float, float, int, int]:
    """(correct pixels, correct face pixels, pixels, face pixels) of ``parser``'s argmax against ``labels``."""
    correct = parser(images).argmax(1) == labels
    face = labels != 0
    return float(correct.sum()), float((correct & face).sum()), labels.numel(), int(face.sum())


def augment_batch(images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random flip (swapping left/right brows and eyes), scale 0.9–1.1, rotation ±10°, shift ±5 %."""
    b = images.shape[0]
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    swapped = labels.flip(-1).clone()
    for a, c in ((2, 3), (4, 5)):
        swapped[labels.flip(-1) == a], swapped[labels.flip(-1) == c] = c, a
    labels = torch.where(flip[:, None, None], swapped, labels)
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * 0.1
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale, -angle.sin() / scale
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale, angle.cos() / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    onehot = F.one_hot(labels, 11).permute(0, 3, 1, 2).float()
    warped_labels = F.grid_sample(onehot, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped, warped_labels.argmax(1)


def train_table3_parser(images: Tensor, labels: Tensor, steps: int, augment: bool, seed: int, device: str):
    from portrait_models.parsing.unet import UNet

    torch.manual_seed(seed)
    net = UNet(11, feature_scale=4).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, images.shape[0], (8,), generator=g)
        x, y = images[index], labels[index]
        if augment:
            x, y = augment_batch(x, y, g)
        loss = F.cross_entropy(net(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def score_parser(net: Any, images: Tensor, labels: Tensor, batch: int, device: str) -> tuple[float, float]:
    from metrics.functional.parsing import confusion_histogram, parsing_scores

    hist = torch.zeros(11, 11, dtype=torch.long)
    for start in range(0, images.shape[0], batch):
        pred = net(images[start : start + batch].to(device)).argmax(1).cpu()
        hist += confusion_histogram(pred, labels[start : start + batch], 11).long()
    scores = parsing_scores(hist, helen_overall=True)
    return float(scores["pixel_acc"]), float(scores["helen_overall_f1"])


def run(args: argparse.Namespace) -> int:
    from portrait_models.mask_guided.editing import load_system

    checkpoint = args.checkpoint
    system = load_system(checkpoint, args.device)
    size = int(system.hparams.image_size)
    train_x, train_m, test_x, test_m, description, synthetic = load_splits(args, size)
    pairs = unpaired_pairs(len(test_x), len(train_x), args.samples, args.seed)
    judges_parser = common.load_parser(args.parser, args.device, 11)
    extractor = common.load_fid_extractor(args.fid_weights)
    fid = None if isinstance(extractor, common.Unavailable) else common.FID(feature_extractor=extractor).to(args.device)
    counts = np.zeros(4)
    copy_counts = np.zeros(4)
    real_counts = np.zeros(4)
    for output, source, target, label in generate(system, (train_x, train_m), (test_x, test_m), pairs,
                                                  args.batch_size):  # fmt: skip
        if fid is not None:
            fid.update(output, real=False)
        if not isinstance(judges_parser, common.Unavailable):
            counts += parse_accuracy(judges_parser, output, label)
            copy_counts += parse_accuracy(judges_parser, source, label)
            real_counts += parse_accuracy(judges_parser, target, label)
    if fid is not None:
        for start in range(0, len(train_x), args.batch_size):
            fid.update(train_x[start : start + args.batch_size].to(args.device), real=True)
        fid_value: common.Score = float(fid.compute())
    else:
        fid_value = extractor

    def accuracies(c: np.ndarray) -> list[common.Score]:
        if isinstance(judges_parser, common.Unavailable):
            return [judges_parser, judges_parser]
        return [c[0] / c[2], c[1] / c[3]]

    row = ROW[system.hparams.ablation]
    parsing_on = system.weights["parsing"] > 0 or system.weights["parsing_recon"] > 0
    report = common.Report(
        "Mask-guided portrait editing (Gu et al.) evaluation",
        facts=[
            f"checkpoint: {checkpoint} ({row}; parsing loss {'on' if parsing_on else 'off'}; {size}²)",
            common.data_fact(description, synthetic, "Helen"),
            f"samples: {args.samples} unpaired (targets: {len(test_x)} test faces cycled; sources: random "
            f"training faces, seed {args.seed}); FID reference: {len(train_x)} training faces",
        ],
    )
    report.sections.append(common.paper_table(
        "Table 1", ("Setting", "FID ↓"), PAPER_TABLE1, [(f"{row} (this checkpoint)", [fid_value])], (2,),
        notes=["The paper does not say which Inception or how sources and targets were paired; see the module doc."],
    ))  # fmt: skip
    label2 = "w face parsing loss" if parsing_on else "w/o face parsing loss"
    report.sections.append(common.paper_table(
        "Table 2", ("Method", "per-pixel accuracy (all) ↑", "per-pixel accuracy (face) ↑"), PAPER_TABLE2,
        [(f"{label2} (this checkpoint)", accuracies(counts)), ("copy of the source (ignores m^t)",
          accuracies(copy_counts)), ("real target (evaluator bound)", accuracies(real_counts))],
        (3, 3), notes=["The evaluator parser must be trained separately from the P_F used in training."],
    ))  # fmt: skip
    metrics: dict[str, common.Score] = {
        "test/mask_guided_table1/fid": fid_value,
        "test/mask_guided_table2/pixel_acc": accuracies(counts)[0],
        "test/mask_guided_table2/face_pixel_acc": accuracies(counts)[1],
        "test/mask_guided_table2/copy_pixel_acc": accuracies(copy_counts)[0],
    }
    if args.table3:
        rows = []
        sources = np.random.default_rng(args.seed + 1).permutation(len(train_x))  # other faces into each mask
        own = (np.arange(len(train_x)), sources)
        gen_x = torch.cat([o[0].cpu() for o in generate(system, (train_x, train_m), (train_x, train_m), own,
                                                         args.batch_size)])  # fmt: skip
        for name, (x, m, augment) in {
            "Helen": (train_x, train_m, False),
            "Helen (with data augmentation)": (train_x, train_m, True),
            "Helen + generated (with data augmentation)": (torch.cat([train_x, gen_x]), torch.cat([train_m, train_m]),
                                                          True),
        }.items():  # fmt: skip
            net = train_table3_parser(x, m, args.table3_steps, augment, args.seed, args.device)
            acc, f1 = score_parser(net, test_x, test_m, args.batch_size, args.device)
            rows.append((f"{name} (ours)", [acc, f1]))
            key = name.split(" (")[0].replace(" + ", "_").lower() + ("_aug" if augment else "")
            metrics[f"test/mask_guided_table3/{key}/pixel_acc"] = acc
            metrics[f"test/mask_guided_table3/{key}/helen_overall_f1"] = f1
        report.sections.append(common.paper_table(
            "Table 3", ("Training data", "pixel accuracy ↑", "Helen overall F1 ↑"), PAPER_TABLE3, rows, (3, 3),
            notes=[f"U-Net parsers, {args.table3_steps} steps each; the paper's number is an undefined "
                   "'accuracy', shown in the first column."],
        ))  # fmt: skip
    report.metrics.update(common.flat_metrics(metrics))
    report.write(args.out, args.json)
    return 0
