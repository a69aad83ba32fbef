"""Time Gu et al.'s training iteration (G, D and D2 steps), the default against the optimized path, in one process.

``python -m experiments.bench_mask_guided`` (``make bench-mask-guided``). Each path trains the real
:class:`~portrait_models.mask_guided.module.MaskGuidedSystem` under a Lightning Trainer on one fixed random
batch for ``--warmup + --iters`` iterations (an even count, so paired and unpaired iterations of the "(1+1)"
schedule are equally represented) and reports the median time of an iteration pair, images/s and their
ratio; on a GPU also the model FLOP utilisation from a FLOP count of one pair (``torch.utils.flop_counter``).

Paths: **eager fp32** is the default module. **optimized** takes only what helps on the device: on a GPU
``batch_paths=True`` (reconstruction and transfer through G_m as one 2B batch on paired iterations) and bf16
autocast; on a CPU ``channels_last=True`` (oneDNN convolutions without layout reorders). ``batch_paths`` is
not used on a CPU: it measured 0.59× there (2 Dec, 64², batch 4), the 2B-sample activations of G_m
falling out of cache while a CPU gains nothing from the larger kernels; channels-last measured 9% less
CPU time per generator step (same setting, alternating in one process). Both paths share what the module
always does beyond the released code: the reconstruction path has no graph and D takes no step on unpaired
iterations (the released code back-propagates a zeroed loss and steps D's Adam anyway).

Besides the wall time of an iteration pair, each path reports the process CPU time (all threads; under a
shared machine's load the wall time inflates, the CPU time much less) and, per iteration, the time of the
generator forward, its backward + step, and the D and D2 steps (the released code's phases, for the CPU
reference below).

Defaults: on a GPU the paper's settings (256², batch 4, official widths, masked VGG19 to relu5_1); on a CPU a
small setting (64², batch 4, ngf 16, tiny autoencoders, no VGG), about a minute. ``--official`` selects the
official widths at any size (the issue's CPU reference: the released code's iteration takes 4.36 s at 256²,
batch 1, 2 threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from portrait_models.mask_guided.module import MaskGuidedSystem

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
TINY = dict(ngf=16, ae_width=16, latent_dim=64, fc_hidden=128, feat_channels=32, n_res_blocks=2, ndf=16)


@dataclass
class Result:
    path: str
    images_per_s: float
    pair_ms: float
    pair_cpu_ms: float
    phases_ms: dict[str, float]
    mfu: float | None = None


class _SameBatch(Dataset):
    """One random batch with a face-like label (eyes, mouth, skin, hair) repeated."""

    def __init__(self, size: int, batch: int, length: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        s = size / 64
        label = torch.zeros(size, size, dtype=torch.long)
        label[int(10 * s) : int(54 * s), int(12 * s) : int(52 * s)] = 1
        label[int(4 * s) : int(12 * s), int(8 * s) : int(56 * s)] = 10
        label[int(28 * s) : int(30 * s), int(22 * s) : int(27 * s)] = 4
        label[int(28 * s) : int(30 * s), int(38 * s) : int(43 * s)] = 5
        label[int(44 * s) : int(48 * s), int(27 * s) : int(37 * s)] = 7
        self.label = label
        self.length = length

    def __len__(self) -> int:
        return self.length * len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index % len(self.images)], "label": self.label}


class _Timer(pl.Callback):
    def __init__(self, cuda: bool) -> None:
        self.cuda, self.times, self.cpu_times, self._start, self._cpu = cuda, [], [], 0.0, 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, *args: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)
        self.cpu_times.append(time.process_time() - self._cpu)


class _PhasedSystem(MaskGuidedSystem):
    """The system with the wall time of its phases recorded per iteration: ``forward`` (batch start to the
    generator's backward), ``g_backward_step``, ``d`` and ``d2`` (each discriminator's forward, backward
    and step). Timing marks only; the computation is the parent's."""

    def __init__(self, *args: Any, cuda: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cuda, self.phases, self._marks = cuda, [], {}

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self._marks = {"start": self._now()}
        super().training_step(batch, batch_idx)
        self.phases.append(self._marks)

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._marks.setdefault("g_backward", self._now())  # the first backward of an iteration is the generator's
        super().manual_backward(loss, *args, **kwargs)

    def _discriminator_step(self, opt: Any, disc: torch.nn.Module, *args: Any) -> dict:
        name = "d" if disc is self.discriminator else "d2"
        start = self._now()
        out = super()._discriminator_step(opt, disc, *args)
        self._marks[f"{name}_start"], self._marks[f"{name}_end"] = start, self._now()
        return out


def phase_means(marks: list[dict[str, float]]) -> dict[str, float]:
    """Mean ms per iteration of each phase (D over the paired iterations, where it steps)."""
    forward = [m["g_backward"] - m["start"] for m in marks]
    g_step = [min(m.get("d_start", m["d2_start"]), m["d2_start"]) - m["g_backward"] for m in marks]
    d = [m["d_end"] - m["d_start"] for m in marks if "d_start" in m]
    d2 = [m["d2_end"] - m["d2_start"] for m in marks]
    mean = lambda v: 1000 * statistics.fmean(v) if v else float("nan")  # noqa: E731
    return {"forward": mean(forward), "g_backward_step": mean(g_step), "d": mean(d), "d2": mean(d2)}


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    widths = {} if args.official else TINY
    vgg = {} if args.vgg else {"loss_weights": {"vgg": 0.0}}
    return dict(image_size=args.size, vgg_pretrained=False, **widths, **vgg)


def pair_flops(args: argparse.Namespace) -> float:
    """FLOPs of one paired + one unpaired iteration (forward and backward), counted on the CPU at batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    model = MaskGuidedSystem(**model_kwargs(args))
    data = _SameBatch(args.size, 1, 1)
    image, label = data.images, data.label[None]
    counter = FlopCounterMode(display=False)
    with counter:
        for paired in (True, False):
            prepared = model.prepare(image, label)
            codes = model.encode(prepared, sample=True)
            out = model.forward_paths(image, prepared, codes, torch.zeros(1, dtype=torch.long), paired)
            terms = model.generator_terms(image, prepared, codes, out, paired)
            model.total_generator_loss(terms, paired).backward()
    return float(counter.get_total_flops()) * args.batch


def time_path(name: str, args: argparse.Namespace, *, optimized: bool) -> Result:
    cuda = args.device == "cuda"
    pl.seed_everything(0, verbose=False)
    iterations = 2 * ((args.warmup + args.iters + 1) // 2)
    chosen = {"batch_paths": True} if cuda else {"channels_last": True}
    model = _PhasedSystem(**model_kwargs(args), **(chosen if optimized else {}), cuda=cuda)
    timer = _Timer(cuda)
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed" if optimized and cuda else "32-true",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, DataLoader(_SameBatch(args.size, args.batch, iterations), batch_size=args.batch))
    skip = 2 * (args.warmup // 2)
    times, cpu_times = timer.times[skip:], timer.cpu_times[skip:]
    pairs = [a + b for a, b in zip(times[::2], times[1::2], strict=False)]
    cpu_pairs = [a + b for a, b in zip(cpu_times[::2], cpu_times[1::2], strict=False)]
    seconds = statistics.median(pairs)
    images_per_s = 2 * args.batch / seconds
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in torch.cuda.get_device_name()), None) if cuda else None
    mfu = args.flops / seconds / (peak * 1e12) if peak and args.flops else None
    phases = phase_means(model.phases[skip:])
    return Result(name, images_per_s, 1000 * seconds, 1000 * statistics.median(cpu_pairs), phases, mfu)


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256 if cuda else 64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--official", action=argparse.BooleanOptionalAction, default=cuda,
                        help="official widths (default on a GPU); else the tiny CPU widths")  # fmt: skip
    parser.add_argument("--vgg", action=argparse.BooleanOptionalAction, default=cuda,
                        help="the masked VGG19 term (random weights; default on a GPU)")  # fmt: skip
    parser.add_argument("--iters", type=int, default=20 if cuda else 8)
    parser.add_argument("--warmup", type=int, default=4 if cuda else 2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.flops = pair_flops(args) if cuda else None
    what = (
        f"G + D + D2 iterations, {args.size}², batch {args.batch}, {'official' if args.official else 'tiny'} widths, "
        f"VGG {'on' if args.vgg else 'off'}, {args.device}, {torch.get_num_threads()} threads"
    )
    print(f"bench-mask-guided: {what}" + (f" ({torch.cuda.get_device_name()})" if cuda else ""))
    base = time_path("eager fp32 (default)", args, optimized=False)
    fast = time_path("batch_paths + bf16" if cuda else "channels_last", args, optimized=True)
    width = max(len(base.path), len(fast.path))
    print(f"  {'':<{width}} {'ms / iteration pair':>20} {'CPU ms / pair':>14} {'img/s':>8}   per iteration (ms):")
    for r in (base, fast):
        mfu = f"  MFU {100 * r.mfu:.1f}%" if r.mfu is not None else ""
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r.phases_ms.items())
        print(f"  {r.path:<{width}} {r.pair_ms:20.1f} {r.pair_cpu_ms:14.1f} {r.images_per_s:8.2f}   {phases}{mfu}")
    cpu_ratio = base.pair_cpu_ms / fast.pair_cpu_ms
    print(f"  speed-up: {fast.images_per_s / base.images_per_s:.2f}x (wall), {cpu_ratio:.2f}x (CPU time)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setting": what, "results": [asdict(base), asdict(fast)]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
