"""Time PortraitGAN's training step, the default module against the optimized paths, interleaved in one process.

``python -m experiments.bench_portraitgan`` (``make bench-portraitgan``). Each path trains the real
:class:`~portrait_models.portraitgan.module.PortraitGAN` under a Lightning Trainer on one fixed paired batch;
per-part times come from wrapping the module's own helpers:

* **G passes**: ``translate`` (both directions batched, then the cycle pass: 4 G forwards per pair);
* **G loss**: ``generator_terms`` (D on fakes and reals per level, Gram texture on VGG19);
* **D loss**: ``discriminator_terms``;
* **rest**: the two backward passes, Adam, landmark-map drawing, logging, Lightning's loop.

Paths: **eager fp32** is the default module. On a GPU one optimized path: ``batch_d_calls`` (one D call per level
on real + fake), bf16 autocast (``bf16-mixed``) and channels_last. On a CPU the fp32 paths ``batch_d_calls`` and
``batch_d_calls`` + channels_last (the same math in NHWC memory: oneDNN's blocked kernels), and, where oneDNN runs
bf16 natively (AVX512-BF16 / AMX; ``--cpu-bf16 auto``, the default), ``batch_d_calls`` + channels_last +
``bf16-mixed``; on a CPU without it (e.g. AVX2-only AMD EPYC) bf16 would be emulated and slow, so auto skips it and
says so (``--cpu-bf16 on`` times it anyway, ``off`` never). The paths run in alternating rounds (``--rounds`` fits of
``--chunk`` batches, each fit's first batch dropped as warm-up), so load from other processes falls on all alike.
Output: the CPU's model and units (or the GPU's name), median ms per part and per step, images/s (pairs × 2
directions), each path's time ratio to eager per part and per step, in wall time and on a CPU also in this process's
CPU time, the load average, and on a GPU the model FLOP utilisation from the analytic FLOPs of one step (G: 4
forwards + backward ≈ 3× forward; D and VGG counted the same way), scaled from the measured per-network forward
FLOPs of torch's FLOP counter.

Defaults: on a GPU the paper's settings (512², batch 2, ngf 64, 4 downsamplings, 9 blocks, ndf 64, K = 2, VGG19
to relu5_1); on a CPU a small setting (64², batch 4, ngf 16, 3 downsamplings, 3 blocks, ndf 16, VGG19 to
relu1_1), about a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from experiments.bench_common import PathSpec, Result, TimedPath, peak_tflops, print_comparison, run_interleaved
from experiments.hardware import cpu_bf16_wanted, cpu_description
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


def build(args: argparse.Namespace, **options: bool) -> PortraitGAN:
    return PortraitGAN(
        image_size=args.size, ngf=args.ngf, n_downsample=args.n_down, n_blocks=args.n_blocks, ndf=args.ndf,
        texture_pretrained=False, texture_layers=args.vgg_layers, decay_length=0, **options,
    )  # fmt: skip


def step_flops(args: argparse.Namespace) -> float:
    """FLOPs of one training step: forward FLOPs of each network counted by torch, backward taken as 2× forward
    where gradients flow (G, D on fakes and the G-step D calls, VGG on fakes)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: counting a 512² step costs no compute
        model = build(args)
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


BATCHED = (("batch_d_calls", True),)
CHANNELS_LAST = (("channels_last", True),)


def paths_for(device: str, cpu_bf16: str = "auto") -> list[PathSpec]:
    """Eager fp32 first (every ratio divides by it). On a GPU one optimized path (``batch_d_calls`` + bf16 +
    channels_last); on a CPU the fp32 ones (``batch_d_calls``, then + channels_last) and, where ``--cpu-bf16``
    wants it (auto: oneDNN has native bf16), ``batch_d_calls`` + channels_last + bf16-mixed."""
    eager = PathSpec("eager fp32 (default)")
    if device == "cuda":
        return [eager, PathSpec("batch_d_calls + bf16 + channels_last", BATCHED + CHANNELS_LAST, "bf16-mixed")]
    paths = [
        eager,
        PathSpec("batch_d_calls fp32", BATCHED),
        PathSpec("batch_d_calls + channels_last fp32", BATCHED + CHANNELS_LAST),
    ]
    if cpu_bf16_wanted(cpu_bf16):
        paths.append(PathSpec("batch_d_calls + channels_last + bf16", BATCHED + CHANNELS_LAST, "bf16-mixed"))
    return paths


class _Path(TimedPath):
    """PortraitGAN under one path's options, timed per part; ``result`` gives the medians of the kept batches."""

    def __init__(self, spec: PathSpec, args: argparse.Namespace, flops: float | None) -> None:
        self.args, self.flops = args, flops
        pl.seed_everything(0, verbose=False)
        model = build(args, **dict(spec.options))
        wrapped = [(model, attribute, part) for attribute, part in WRAPPED]
        super().__init__(spec, model, PARTS, wrapped, self._loader, args.device == "cuda")

    def _loader(self, batches: int) -> DataLoader:
        return DataLoader(_SamePairs(self.args.size, self.args.batch, batches, 4), batch_size=self.args.batch)

    def result(self, cpu: bool = False) -> Result:
        """Medians of the kept batches in wall time, or in this process's CPU time (``cpu``)."""
        parts = {p: self.median_ms(p, cpu) for p in (*PARTS, "rest")}
        seconds = self.median_ms("step", cpu) / 1000
        peak = peak_tflops()
        mfu = self.flops / seconds / (peak * 1e12) if peak and self.flops and not cpu else None
        return Result(self.name, 2 * self.args.batch / seconds, 1000 * seconds, parts, mfu)  # 2 directions


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
    parser.add_argument("--rounds", type=int, default=4 if cuda else 3, help="interleaved fits per path")
    parser.add_argument("--chunk", type=int, default=5 if cuda else 2, help="timed batches per fit (after 1 warm-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's)")
    parser.add_argument(
        "--cpu-bf16", choices=("auto", "on", "off"), default="auto",
        help="CPU: the bf16-mixed + channels_last path (auto: only where oneDNN has native bf16)",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.device = "cuda" if cuda else "cpu"
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-fit banner
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    what = (
        f"training step, {args.size}², batch {args.batch} pairs, ngf {args.ngf}, n_down {args.n_down}, "
        f"{args.n_blocks} blocks, ndf {args.ndf}, K 2, VGG19 x{args.vgg_layers}, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    device = torch.cuda.get_device_name() if cuda else cpu_description()
    print(f"bench-portraitgan: {what}")
    print(f"  device: {device}")
    specs = paths_for(args.device, args.cpu_bf16)
    if not cuda and not cpu_bf16_wanted(args.cpu_bf16):
        why = "off (--cpu-bf16 off)" if args.cpu_bf16 == "off" else "skipped: oneDNN bf16 is emulated on this CPU"
        print(f"  bf16 path {why}; --cpu-bf16 on times it anyway")
    flops = step_flops(args)
    load_before = os.getloadavg()[0]
    paths = [_Path(spec, args, flops) for spec in specs]
    run_interleaved(paths, args.rounds, args.chunk)  # so load from other processes falls on every path alike
    results = [p.result() for p in paths]
    print_comparison(*results, parts=PARTS)
    cpu_results = []
    if not cuda:  # this process's CPU time: under load, inflated far less than wall time
        cpu_results = [p.result(cpu=True) for p in paths]
        print_comparison(*cpu_results, parts=PARTS, clock=f"CPU ({torch.get_num_threads()} threads summed)")
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1-min, {os.cpu_count()} CPUs)"
    print(f"  {args.rounds} interleaved rounds x {args.chunk} timed batches per path; {load}")
    print(f"  model FLOPs per step: {flops / 1e9:.1f} GFLOP (torch FLOP counter, backward = 2x forward)")
    if args.json:
        with open(args.json, "w") as fh:
            report = {
                "setting": what, "device": device, "load_1min": [load_before, os.getloadavg()[0]],
                "results": [asdict(r) for r in results], "cpu_time_results": [asdict(r) for r in cpu_results],
            }  # fmt: skip
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
