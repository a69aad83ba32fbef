"""Time MaskGAN's DMN training step, today's default against the optimized path, in one process.

``python -m experiments.bench_maskgan`` (``make bench-maskgan``). Each path trains the real
:class:`~portrait_models.maskgan.module.MaskGAN` (DMN phase: ``_dmn_step``) under a Lightning Trainer on one
fixed random batch, and the per-part times are read by wrapping the module's own step helpers:

* **G forward**: the Dense Mapping Network (style encoder + trunk) on the batch;
* **D step**: D on real and fake, backward, Adam;
* **G step**: D on fake (+ D on real when recomputed), VGG19 on fake and real, backward, Adam;
* **rest**: EMA update, logging, Lightning's loop.

Paths: **eager fp32** is the default module (``reuse_real_features=False``: four D forwards per step);
**optimized** sets ``reuse_real_features=True`` (feature matching against the D-step's real features, one
batched D call: three D forwards, as the released code) and on a GPU adds bf16 autocast and channels_last
(``--compile`` is not offered: the module's step is not compiled). Output: ms per part and per step (median
over ``--iters`` steps after ``--warmup``), images/s, their ratio, and on a GPU the model FLOP utilisation (MFU)
from the analytic 1.76 TFLOP per image per step at 512² (``shared/tools/gan_flops.py``, scaled by (size/512)²).

Defaults: on a GPU the paper's settings (512², batch 8, ngf 64, ndf 64, VGG19 to relu5_1); on a CPU the
setting of the side-by-side measurement against the released code in issue 8 (64², batch 4, ngf 16, ndf 64,
random VGG19 to relu5_1), about a minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.bench_common import PartTimer, Result, peak_tflops, print_comparison
from portrait_models.maskgan.module import MaskGAN

TFLOP_PER_IMAGE_512 = 1.76
PARTS = ("G forward", "D step", "G step")


class _SameBatch(Dataset):
    def __init__(self, size: int, batch: int, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
        self.labels = torch.randint(0, 19, (batch, size, size), generator=generator)
        self.length = length

    def __len__(self) -> int:
        return self.length * len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k = index % len(self.images)
        return {"image": self.images[k], "label": self.labels[k]}


def time_path(name: str, args: argparse.Namespace, *, optimized: bool) -> Result:
    cuda = args.device == "cuda"
    pl.seed_everything(0, verbose=False)
    steps = args.warmup + args.iters
    model = MaskGAN(
        image_size=args.size, ngf=args.ngf, ndf=args.ndf, ebst=False, dmn_steps=steps, vgg_pretrained=False,
        vgg_layers=args.vgg_layers, lr_decay=False, reuse_real_features=optimized,
        channels_last=optimized and cuda,
    )  # fmt: skip
    timer = PartTimer(PARTS, cuda)
    timer.wrap(model.dmn, "forward", "G forward")  # training calls only (the EMA copy is a separate network)
    timer.wrap(model, "_discriminator_step", "D step")
    timer.wrap(model, "_generator_step", "G step")
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed" if optimized and cuda else "32-true",
        max_steps=-1, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    loader = DataLoader(_SameBatch(args.size, args.batch, steps), batch_size=args.batch, shuffle=False)
    trainer.fit(model, loader)
    parts = {part: 1000 * statistics.median(timer.times[part][args.warmup :]) for part in (*PARTS, "rest")}
    seconds = statistics.median(timer.times["step"][args.warmup :])
    images_per_s = args.batch / seconds
    peak = peak_tflops()
    mfu = images_per_s * TFLOP_PER_IMAGE_512 * (args.size / 512) ** 2 / peak if peak else None
    return Result(name, images_per_s, 1000 * seconds, parts, mfu)


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512 if cuda else 64)
    parser.add_argument("--batch", type=int, default=8 if cuda else 4)
    parser.add_argument("--ngf", type=int, default=64 if cuda else 16)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--vgg-layers", type=int, default=5, help="VGG19 slices of the perceptual loss (paper: 5)")
    parser.add_argument("--iters", type=int, default=20 if cuda else 7)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    what = (
        f"DMN step, {args.size}², batch {args.batch}, ngf {args.ngf}, ndf {args.ndf}, VGG19 x{args.vgg_layers}, "
        f"{args.device}, {torch.get_num_threads()} threads"
    )
    print(f"bench-maskgan: {what}" + (f" ({torch.cuda.get_device_name()})" if cuda else ""))
    base = time_path("eager fp32 (default)", args, optimized=False)
    label = "reuse_real_features" + (" + bf16 + channels_last" if cuda else "")
    fast = time_path(label, args, optimized=True)
    print_comparison(base, fast, PARTS)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setting": what, "results": [asdict(base), asdict(fast)]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
