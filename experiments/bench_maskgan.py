"""Time MaskGAN's DMN training step, today's default against the optimized paths, interleaved in one process.

``python -m experiments.bench_maskgan`` (``make bench-maskgan``). Each path trains the real
:class:`~portrait_models.maskgan.module.MaskGAN` (DMN phase: ``_dmn_step``) under a Lightning Trainer on one
fixed random batch. The paths run in alternating rounds (``--rounds`` fits of ``--chunk`` batches each, the
first batch of every fit dropped as warm-up), so load from other processes falls on all alike; the medians are
over the kept batches. Per-part times come from wrapping the module's own step helpers:

* **G forward**: the Dense Mapping Network (style encoder + trunk) on the batch;
* **D step**: D on real and fake, backward, Adam;
* **G step**: D on fake (+ D on real when recomputed), VGG19 on fake and real, backward, Adam;
* **D+G**: the two together; with ``shared_d_forward`` they are one piece (two D forwards serve both
  backwards), so only this column is filled;
* **rest**: EMA update, logging, Lightning's loop.

Paths: **eager fp32** is the default module (four D forwards per step: real and fake for D's update, fake and
real again with the updated D for the generator's). The optimized paths set ``shared_d_forward`` (two D
forwards; the generator meets D from before its update, as the released code, which runs three) and
``adam_fused``; on a CPU one more fp32 path adds ``channels_last`` (networks and inputs in channels-last
memory: the same math, oneDNN's faster blocked kernels on AVX-512 CPUs) and another keeps D contiguous in it
(``channels_last_d=False``), and on a GPU the one optimized path
adds bf16 autocast and channels_last. Output per setting: the CPU's model name (or the GPU's), each path's
GFLOP per step and its ratio to the default's (one extra untimed batch per path under
``torch.utils.flop_counter``: convolutions and matrix products, forward and backward; ``--no-flops`` skips it;
the ratio is what a path's time ratio would be if every FLOP cost the same, so a path below it gains from
kernel efficiency, not from less arithmetic), ms per part and
per step (median), images/s, each path's time ratios to the default (in wall time, and on a CPU also in this
process's CPU time, which load from other processes inflates far less at one thread), the load average, and
on a GPU the model FLOP utilisation (MFU) from the analytic 1.76 TFLOP per image per step at 512²
(``shared/tools/gan_flops.py``, scaled by (size/512)²).

On a CPU with native bf16 (oneDNN reports it: AVX512-BF16 or AMX) two more paths add bf16 mixed precision
(``trainer.precision=bf16-mixed``, autocast: convolutions in bf16, norms and losses in fp32) to the fp32 ones,
in the contiguous and the channels-last layout, and two keep every tensor fp32 but let oneDNN round the
convolutions' and matrix products' inputs to bf16 ("bf16 math": ``run.cpu_fp32_math=bf16`` in the runner,
:func:`experiments.hardware.onednn_fp32_math`, the CPU counterpart of TF32 on a GPU), channels-last with D
channels-last or contiguous. All four change the numerics (options, never the default on CPU);
``--no-cpu-bf16`` leaves them out.

Settings: on a GPU the paper's (512², batch 8, ngf 64, ndf 64, VGG19 to relu5_1); on a CPU both settings of
the side-by-side measurement against the released code in issue 8 (64² x 4 with ngf 16 and 128² x 2 with ngf
32; ndf 64, random VGG19 to relu5_1), a few minutes. ``--size/--batch/--ngf`` time one setting of your own.
Measured and left out on CPU: ``torch.compile`` of G, D and VGG19 (no gain at one thread, 2-6 minutes of
compilation each).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
from dataclasses import asdict

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from experiments.bench_common import (
    PathSpec,
    Result,
    TimedPath,
    cpu_description,
    cpu_has_bf16,
    peak_tflops,
    run_interleaved,
)
from portrait_models.maskgan.module import MaskGAN

TFLOP_PER_IMAGE_512 = 1.76
PARTS = ("G forward", "D step", "G step", "D+G shared")
COLUMNS = ("G forward", "D step", "G step", "D+G", "rest")
CPU_SETTINGS = ((64, 4, 16), (128, 2, 32))  # (size, batch, ngf) of the issue-8 side-by-side measurement


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


FAST = (("shared_d_forward", True), ("adam_fused", True))
CHANNELS_LAST = (("channels_last", True),)
D_CONTIGUOUS = (("channels_last_d", False),)
DEFAULT_PATH = PathSpec("eager fp32 (default)")


def paths_for(device: str, cpu_bf16: bool) -> list[PathSpec]:
    """The default first, then the optimized paths: on a GPU one (all options + bf16); on a CPU the fp32 ones
    (``shared_d_forward + adam_fused``, then + channels_last) and, where oneDNN has native bf16, the bf16 ones."""
    if device == "cuda":
        return [DEFAULT_PATH, PathSpec("shared_d_forward + adam_fused + bf16 + channels_last", FAST + CHANNELS_LAST,
                                       "bf16-mixed")]  # fmt: skip
    paths = [
        DEFAULT_PATH,
        PathSpec("shared_d_forward + adam_fused", FAST),
        PathSpec("shared_d_forward + adam_fused + channels_last", FAST + CHANNELS_LAST),
        PathSpec("shared_d_forward + adam_fused + channels_last, D contiguous", FAST + CHANNELS_LAST + D_CONTIGUOUS),
    ]
    if cpu_bf16 and cpu_has_bf16():
        paths += [
            PathSpec("shared_d_forward + adam_fused + bf16", FAST, "bf16-mixed"),
            PathSpec("shared_d_forward + adam_fused + channels_last + bf16", FAST + CHANNELS_LAST, "bf16-mixed"),
            PathSpec(
                "shared_d_forward + adam_fused + channels_last + bf16 math", FAST + CHANNELS_LAST, fp32_math="bf16"
            ),
            PathSpec(
                "shared_d_forward + adam_fused + channels_last, D contiguous + bf16 math",
                FAST + CHANNELS_LAST + D_CONTIGUOUS,
                fp32_math="bf16",
            ),
        ]
    return paths


class _FlopCount(pl.Callback):
    """FLOPs of one training batch (forwards and backwards, as ``torch.utils.flop_counter`` counts convolutions
    and matrix products; the optimizers' elementwise updates are not counted)."""

    def __init__(self) -> None:
        self.mode: FlopCounterMode | None = None
        self.flops = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.mode = FlopCounterMode(display=False)
        self.mode.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        assert self.mode is not None
        self.mode.__exit__(None, None, None)
        self.flops = self.mode.get_total_flops()


class _Path(TimedPath):
    """The MaskGAN DMN phase under one path's options, timed per part; ``result`` gives the kept medians."""

    def __init__(self, spec: PathSpec, args: argparse.Namespace, size: int, batch: int, ngf: int) -> None:
        self.batch, self.size = batch, size
        pl.seed_everything(0, verbose=False)
        model = MaskGAN(
            image_size=size, ngf=ngf, ndf=args.ndf, ebst=False, dmn_steps=10**6, vgg_pretrained=False,
            vgg_layers=args.vgg_layers, lr_decay=False, **dict(spec.options),
        )  # fmt: skip
        wrapped = (
            (model.dmn, "forward", "G forward"),  # training calls only (the EMA copy is separate)
            (model, "_discriminator_step", "D step"),
            (model, "_generator_step", "G step"),
            (model, "_shared_d_step", "D+G shared"),
        )
        super().__init__(spec, model, PARTS, wrapped, self._loader, args.device == "cuda")
        self.gflop = 0.0

    def _loader(self, batches: int) -> DataLoader:
        return DataLoader(_SameBatch(self.size, self.batch, batches), batch_size=self.batch)

    def count_flops(self) -> None:
        """FLOPs of one untimed training batch of this path (``gflop``)."""
        counter = _FlopCount()
        self.fit(1, [counter])
        self.gflop = counter.flops / 1e9

    def result(self, cpu: bool = False) -> Result:
        """Medians of the kept batches, in wall time (default) or this process's CPU time (``cpu``)."""
        times = self.times(cpu)
        parts = {p: self.median_ms(p, cpu) for p in (*PARTS, "rest")}
        d_and_g = [times[p] for p in ("D step", "G step", "D+G shared")]
        parts["D+G"] = 1000 * statistics.median(sum(t[i] for t in d_and_g) for i in self.kept)
        seconds = self.median_ms("step", cpu) / 1000
        images_per_s = self.batch / seconds
        peak = peak_tflops()
        mfu = images_per_s * TFLOP_PER_IMAGE_512 * (self.size / 512) ** 2 / peak if peak else None
        return Result(self.name, images_per_s, 1000 * seconds, parts, mfu)


def print_table(base: Result, *faster: Result, clock: str = "wall") -> None:
    """Median ms per part and per step and img/s of every path, then each faster path's time ratios to the
    default (``base``) per part and per step."""
    width = max(len(r.path) for r in (base, *faster)) + len("ratio ")
    print(f"  {'median ' + clock + ' ms':<{width}} " + " ".join(f"{c:>10}" for c in (*COLUMNS, "step")) + "      img/s")
    for r in (base, *faster):
        cells = " ".join(f"{r.parts_ms[c]:10.1f}" if r.parts_ms[c] > 0 else f"{'(in D+G)':>10}" for c in COLUMNS)
        mfu = f"  MFU {100 * r.mfu:.1f}%" if r.mfu is not None else ""
        print(f"  {r.path:<{width}} {cells} {r.step_ms:10.1f} {r.images_per_s:10.2f}{mfu}")
    print(f"  time ratio to the default ({base.path}):")
    for fast in faster:
        ratios = " ".join(
            f"{fast.parts_ms[c] / base.parts_ms[c]:10.2f}" if fast.parts_ms[c] > 0 else f"{'':>10}" for c in COLUMNS
        )
        print(f"  {'ratio ' + fast.path:<{width}} {ratios} {fast.step_ms / base.step_ms:10.2f}"
              f"   speed-up {fast.images_per_s / base.images_per_s:.2f}x")  # fmt: skip


def print_flops(paths: list[_Path]) -> None:
    """Count one batch's FLOPs per path and print them with their ratio to the default's: the share of the
    default's arithmetic a path still does, i.e. the time ratio it would reach if every FLOP cost the same."""
    for path in paths:
        path.count_flops()
    base = paths[0].gflop
    print("  GFLOP per step (convolutions and matrix products, forward + backward; ratio to the default):")
    for path in paths:
        print(f"    {path.name:<60} {path.gflop:8.2f}   {path.gflop / base:5.2f}")


def bench_setting(args: argparse.Namespace, size: int, batch: int, ngf: int) -> dict:
    what = (
        f"DMN step, {size}², batch {batch}, ngf {ngf}, ndf {args.ndf}, VGG19 x{args.vgg_layers}, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    load_before = os.getloadavg()[0]
    print(f"bench-maskgan: {what}, {torch.cuda.get_device_name() if args.device == 'cuda' else cpu_description()}")
    paths = [_Path(spec, args, size, batch, ngf) for spec in paths_for(args.device, args.cpu_bf16)]
    if args.flops:
        print_flops(paths)
    run_interleaved(paths, args.rounds, args.chunk)
    results = [p.result() for p in paths]
    print_table(*results)
    cpu_results = []
    if args.device == "cpu":  # CPU time of this process: under load, one thread's is inflated far less than wall
        cpu_results = [p.result(cpu=True) for p in paths]
        print_table(*cpu_results, clock=f"CPU ({torch.get_num_threads()} threads summed)")
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1-min, {os.cpu_count()} CPUs)"
    print(f"  {args.rounds} interleaved rounds x {args.chunk} timed batches per path; {load}")
    return {
        "setting": what, "device": torch.cuda.get_device_name() if args.device == "cuda" else cpu_description(),
        "load_1min": [load_before, os.getloadavg()[0]], "results": [asdict(r) for r in results],
        "cpu_time_results": [asdict(r) for r in cpu_results],
        "gflop_per_step": {p.name: p.gflop for p in paths} if args.flops else {},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, help="one setting of your own (default: the paper's on GPU, both CPU ones)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--ngf", type=int)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--vgg-layers", type=int, default=5, help="VGG19 slices of the perceptual loss (paper: 5)")
    parser.add_argument("--rounds", type=int, default=5 if cuda else 3, help="interleaved fits per path")
    parser.add_argument("--chunk", type=int, default=5 if cuda else 2, help="timed batches per fit (after 1 warm-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: PyTorch's)")
    parser.add_argument(
        "--no-cpu-bf16",
        dest="cpu_bf16",
        action="store_false",
        help="CPU: leave out the bf16 mixed-precision path (added where oneDNN has native bf16)",
    )
    parser.add_argument(
        "--no-flops", dest="flops", action="store_false", help="leave out the per-path FLOP count (one batch each)"
    )
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
        settings = [(args.size or 512, args.batch or 8, args.ngf or 64)]
    elif args.size or args.batch or args.ngf:
        settings = [(args.size or 64, args.batch or 4, args.ngf or 16)]
    else:
        settings = list(CPU_SETTINGS)
    reports = [bench_setting(args, *setting) for setting in settings]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(reports, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
