"""Time PortraitGAN's training step, the default module against the optimized path, in one process.

``python -m experiments.bench_portraitgan`` (``make bench-portraitgan``). Each path trains the real
:class:`~portrait_models.portraitgan.module.PortraitGAN` under a Lightning Trainer on one fixed paired batch;
per-part times come from wrapping the module's own helpers:

* **G passes**: ``translate`` (both directions batched, then the cycle pass: 4 G forwards per pair);
* **G loss**: ``generator_terms`` (D on fakes and reals per level, Gram texture on VGG19);
* **D loss**: ``discriminator_terms``;
* **rest**: the two backward passes, Adam, landmark-map drawing, logging, Lightning's loop.

Paths: **eager fp32** is the default module; **optimized** sets ``batch_d_calls`` (one D call per level on
real + fake) and on a GPU adds bf16 autocast and channels_last. Output: median ms per part and per step over
``--iters`` steps after ``--warmup``, images/s (pairs × 2 directions), their ratio, and on a GPU the model
FLOP utilisation from the analytic FLOPs of one step (G: 4 forwards + backward ≈ 3× forward; D and VGG
counted the same way), scaled from the measured per-network forward FLOPs of torch's FLOP counter.

Defaults: on a GPU the paper's settings (512², batch 2, ngf 64, 4 downsamplings, 9 blocks, ndf 64, K = 2, VGG19
to relu5_1); on a CPU a small setting (64², batch 4, ngf 16, 3 downsamplings, 3 blocks, ndf 16, VGG19 to
relu1_1), about a minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.bench_common import PartTimer, Result, cpu_description, peak_tflops, print_comparison
from portrait_models.portraitgan.module import PortraitGAN

PARTS = ("G passes", "G loss", "D loss")
WRAPPED = (("translate", "G passes"), ("generator_terms", "G loss"), ("discriminator_terms", "D loss"))


class _SamePairs(Dataset):
    """One fixed paired batch (random images, synthetic-world landmarks), repeated."""

    def __init__(self, size: int, batch: int, length: int, num_modalities: int) -> None:
        from datamodules.synthetic import SyntheticFaceWorld

        generator = torch.Generator().manual_seed(0)
        world = SyntheticFaceWorld(0)
        self.items = []
        for k in range(batch):
            a, b = world.render(k, 5, 0, size), world.render(k, 7, 0, size)
            self.items.append({
                "image": torch.rand(3, size, size, generator=generator) * 2 - 1,
                "image_b": torch.rand(3, size, size, generator=generator) * 2 - 1,
                "landmarks": torch.from_numpy(a.landmarks),
                "landmarks_b": torch.from_numpy(b.landmarks),
                "modality": torch.tensor(k % max(1, num_modalities)),
                "modality_b": torch.tensor((k + 1) % max(1, num_modalities)),
            })  # fmt: skip
        self.length = length

    def __len__(self) -> int:
        return self.length * len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index % len(self.items)]


def build(args: argparse.Namespace, optimized: bool, steps: int = 1) -> PortraitGAN:
    return PortraitGAN(
        image_size=args.size, ngf=args.ngf, n_downsample=args.n_down, n_blocks=args.n_blocks, ndf=args.ndf,
        texture_pretrained=False, texture_layers=args.vgg_layers, batch_d_calls=optimized,
        channels_last=optimized and args.device == "cuda", decay_length=0,
    )  # fmt: skip


def step_flops(args: argparse.Namespace) -> float:
    """FLOPs of one training step: forward FLOPs of each network counted by torch, backward taken as 2× forward
    where gradients flow (G, D on fakes and the G-step D calls, VGG on fakes)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: counting a 512² step costs no compute
        model = build(args, optimized=False)
        b, s, n = args.batch, args.size, model.hparams.num_modalities
        x, lm, code = torch.zeros(2 * b, 3, s, s), torch.zeros(2 * b, 1, s, s), torch.zeros(2 * b, n, s, s)

    def forward_flops(fn: Callable[[], Any]) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    with torch.no_grad():
        g = forward_flops(lambda: model.generator(x, lm, code))
        levels = model.generator(x, lm, code)
        d = forward_flops(lambda: model.discriminator(levels))
        vgg = forward_flops(lambda: model.texture.vgg(x)) if model.texture is not None else 0.0
    # G: 2 passes of 2B images, forward + backward; G-step D: fake (fwd+bwd) + real (fwd);
    # VGG: fake (fwd+bwd) + target (fwd); D step: real + fake (fwd+bwd, input grads not needed: ~2x).
    return 3 * 2 * g + (3 * d + d) + (3 * vgg + vgg) + 2 * 2 * d


def time_path(name: str, args: argparse.Namespace, *, optimized: bool, flops: float | None) -> Result:
    cuda = args.device == "cuda"
    pl.seed_everything(0, verbose=False)
    steps = args.warmup + args.iters
    model = build(args, optimized)
    timer = PartTimer(PARTS, cuda)
    for attribute, part in WRAPPED:
        timer.wrap(model, attribute, part)
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed" if optimized and cuda else "32-true",
        max_steps=-1, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    loader = DataLoader(_SamePairs(args.size, args.batch, steps, 4), batch_size=args.batch, shuffle=False)
    trainer.fit(model, loader)
    parts = {part: 1000 * statistics.median(timer.times[part][args.warmup :]) for part in (*PARTS, "rest")}
    seconds = statistics.median(timer.times["step"][args.warmup :])
    images_per_s = 2 * args.batch / seconds  # both directions of every pair
    peak = peak_tflops()
    mfu = flops / seconds / (peak * 1e12) if peak and flops else None
    return Result(name, images_per_s, 1000 * seconds, parts, mfu)


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512 if cuda else 64)
    parser.add_argument("--batch", type=int, default=2 if cuda else 4)
    parser.add_argument("--ngf", type=int, default=64 if cuda else 16)
    parser.add_argument("--n-down", type=int, default=4 if cuda else 3)
    parser.add_argument("--n-blocks", type=int, default=9 if cuda else 3)
    parser.add_argument("--ndf", type=int, default=64 if cuda else 16)
    parser.add_argument("--vgg-layers", type=int, default=5 if cuda else 1, help="VGG19 slices of the texture loss")
    parser.add_argument("--iters", type=int, default=20 if cuda else 6)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    what = (
        f"training step, {args.size}², batch {args.batch} pairs, ngf {args.ngf}, n_down {args.n_down}, "
        f"{args.n_blocks} blocks, ndf {args.ndf}, K 2, VGG19 x{args.vgg_layers}, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"bench-portraitgan: {what}" + (f" ({torch.cuda.get_device_name()})" if cuda else ""))
    if not cuda:
        print(f"  device: {cpu_description()}")
    flops = step_flops(args)
    base = time_path("eager fp32 (default)", args, optimized=False, flops=flops)
    label = "batch_d_calls" + (" + bf16 + channels_last" if cuda else "")
    fast = time_path(label, args, optimized=True, flops=flops)
    print_comparison(base, fast, PARTS)
    print(f"  model FLOPs per step: {flops / 1e9:.1f} GFLOP (torch FLOP counter, backward = 2x forward)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setting": what, "results": [asdict(base), asdict(fast)]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
