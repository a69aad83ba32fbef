"""Time Gu et al.'s training iteration (G, D and D2 steps), the default against the optimized path, in one process.

``python -m experiments.bench_mask_guided`` (``make bench-mask-guided``). Each path trains the real
:class:`~portrait_models.mask_guided.module.MaskGuidedSystem` under a Lightning Trainer on one fixed random
batch for ``--warmup + --iters`` iterations (an even count, so paired and unpaired iterations of the "(1+1)"
schedule are equally represented) and reports the median time of an iteration pair, images/s and their
ratio; on a GPU also the model FLOP utilisation from a FLOP count of one pair (``torch.utils.flop_counter``).

Paths: **eager fp32** is the default module. **optimized** adds what computes the same update faster:
``adam_fused`` (one fused Adam kernel instead of the per-tensor loop: 0.24 s instead of 1.30 s of CPU time
per generator step over its 228 M parameters at 256²) and ``log_paired_terms_every_step=False`` (unpaired
iterations skip the graph-free reconstruction, D forwards and VGG that the default runs only to log the
weight-0 paired terms); on a GPU also ``batch_paths=True`` (reconstruction and transfer through G_m as one
2B batch on paired iterations) and bf16 autocast; on a CPU ``channels_last=True`` below 256² (``--channels-
last`` to choose; it measured 9% less CPU time per generator step at 64², 0.99× at 256² on 2 idle threads of
an AMD EPYC). ``batch_paths`` is not used on a CPU: it measured 0.59× there (2 Dec, 64², batch 4). Both paths
skip D's step on unpaired iterations (the released code steps D's Adam on a zeroed loss). On a CPU where
oneDNN runs bf16 natively (AVX512-BF16, AMX; ``--cpu-bf16 auto|on|off``) a third path, **optimized + bf16**:
the optimized options with Lightning's ``bf16-mixed`` precision and channels-last. ``--paths 0,2`` times a
subset; ``--rounds N`` repeats the paths round-robin in the process and pools the samples (ratios under a
shared machine's load). Each path's
model is freed before the next is built.

The header names the CPU (model name, AVX-512 / AMX, oneDNN bf16) or the GPU. Besides the wall time of an
iteration pair, each path reports the process CPU time (all threads; under a shared machine's load the wall
time inflates, the CPU time much less), its system CPU time and minor page faults, and the released code's phases per
iteration: **forward** (everything before the generator's backward, plus the D and D2 forwards on the real
and the detached fake image, which the released ``forward`` computes and ours runs inside each D step),
**G backward + step**, **D** and **D2** (backward + Adam step of each), paired and unpaired iterations
apart; with ``--official --size 256`` at batch 1 or 2 also the ratio to the released code's iteration
(4.36 s at batch 1, 8.75 s at batch 2, 2 threads, issue 10). ``--flops`` prints the FLOPs of each module
(forward, weight and input gradients) in one paired and one unpaired iteration, counted by forward hooks on
every convolution and linear layer (the total is checked against ``torch.utils.flop_counter``).

``--parser`` (default with ``--official``) attaches a frozen random parser of the released netP's shape
(``Pix2PixUNet``) as P_F, so the parsing loss on the transfer path costs what netP costs in the released
iteration; without it L_GP is 0 and the parser is not run.

Defaults: on a GPU the paper's settings (256², batch 4, official widths, masked VGG19 to relu5_1); on a CPU a
small setting (64², batch 4, ngf 16, tiny autoencoders, no VGG), about a minute. ``--official`` selects the
official widths at any size (the issue's CPU reference: ``--official --size 256 --batch 1 --vgg``).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from experiments.hardware import cpu_bf16_wanted, cpu_description
from portrait_models.mask_guided.module import MaskGuidedSystem
from portrait_models.mask_guided.networks import Pix2PixUNet

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
TINY = dict(ngf=16, ae_width=16, latent_dim=64, fc_hidden=128, feat_channels=32, n_res_blocks=2, ndf=16)
#: The released code's training iteration on a 2-thread CPU at 256², official widths, random VGG19 (issue 10):
#: seconds per phase at batch 1, and the total at batch 2.
RELEASED_PHASES_S = {"forward": 1.39, "g_backward_step": 2.75, "d": 0.11, "d2": 0.11}
RELEASED_TOTAL_S = {1: 4.36, 2: 8.75}
PHASES = ("forward", "g_backward_step", "d", "d2")
PHASE_TITLES = {"forward": "forward", "g_backward_step": "G backward+step", "d": "D step", "d2": "D2 step"}


@dataclass
class Result:
    path: str
    images_per_s: float
    pair_ms: float
    pair_cpu_ms: float
    #: "paired" / "unpaired" -> phase -> mean ms per iteration, in the released code's layout (see the docstring)
    phases_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    mfu: float | None = None
    #: mean system CPU ms and minor page faults per iteration pair
    pair_sys_ms: float = 0.0
    pair_faults: float = 0.0


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
    """Wall and process CPU time of each iteration, and its system CPU time and minor page faults (getrusage:
    memory the allocator handed back to the OS and takes again costs a zero-filled page fault per 4 KiB)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.times, self.cpu_times, self.sys_times, self.faults = cuda, [], [], [], []
        self._start, self._cpu, self._usage = 0.0, 0.0, resource.getrusage(resource.RUSAGE_SELF)

    def on_train_batch_start(self, *args: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, *args: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)
        self.cpu_times.append(time.process_time() - self._cpu)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.sys_times.append(usage.ru_stime - self._usage.ru_stime)
        self.faults.append(usage.ru_minflt - self._usage.ru_minflt)


class _PhasedSystem(MaskGuidedSystem):
    """The system with timing marks per iteration: ``start``, ``backward`` (entry of each ``manual_backward``:
    the generator's, then one per discriminator step) and each discriminator step's ``d_start``/``d_end``
    (``d2_...``). Timing marks only; the computation is the parent's."""

    def __init__(self, *args: Any, cuda: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cuda, self.phases, self._marks = cuda, [], {}

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self._marks = {"start": self._now(), "paired": self.paired_step, "backward": []}
        super().training_step(batch, batch_idx)
        self.phases.append(self._marks)

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._marks["backward"].append(self._now())
        super().manual_backward(loss, *args, **kwargs)

    def _discriminator_step(self, opt: Any, disc: torch.nn.Module, *args: Any) -> dict:
        name = "d" if disc is self.discriminator else "d2"
        start = self._now()
        out = super()._discriminator_step(opt, disc, *args)
        self._marks[f"{name}_start"], self._marks[f"{name}_end"] = start, self._now()
        return out


def released_layout(marks: dict[str, Any]) -> dict[str, float]:
    """One iteration's seconds per phase as the released code splits them: ``forward`` = ours before the
    generator's backward + each discriminator step's two forwards (before its backward); ``g_backward_step``
    up to the first discriminator step; ``d`` / ``d2`` = backward + step only (0 for D when it did not step)."""
    g_backward, *d_backwards = marks["backward"]
    steps = [name for name in ("d", "d2") if f"{name}_start" in marks]  # the order they ran in
    d_forward = sum(b - marks[f"{n}_start"] for n, b in zip(steps, d_backwards, strict=True))
    out = {
        "forward": g_backward - marks["start"] + d_forward,
        "g_backward_step": min(marks[f"{n}_start"] for n in steps) - g_backward,
        "d": 0.0,
        "d2": 0.0,
    }
    for name, backward in zip(steps, d_backwards, strict=True):
        out[name] = marks[f"{name}_end"] - backward
    return out


def phase_means(marks: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean ms per iteration of each phase (:func:`released_layout`), over paired, unpaired and all iterations."""
    groups = {
        "paired": [m for m in marks if m["paired"]],
        "unpaired": [m for m in marks if not m["paired"]],
        "mean": marks,
    }
    out = {}
    for group, items in groups.items():
        layouts = [released_layout(m) for m in items]
        out[group] = {p: 1000 * statistics.fmean(x[p] for x in layouts) if layouts else float("nan") for p in PHASES}
    return out


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    widths = {} if args.official else TINY
    vgg = {} if args.vgg else {"loss_weights": {"vgg": 0.0}}
    return dict(image_size=args.size, vgg_pretrained=False, **widths, **vgg)


def build(args: argparse.Namespace, cls: type[MaskGuidedSystem] = MaskGuidedSystem, **kwargs: Any) -> MaskGuidedSystem:
    model = cls(**model_kwargs(args), **kwargs)
    if args.parser:
        model.attach_parser(Pix2PixUNet(ngf=64 if args.official else 16))
    return model


def pair_flops(args: argparse.Namespace) -> float:
    """FLOPs of one paired + one unpaired iteration (forward and backward), counted on the CPU at batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(args)
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


# ------------------------------------------------------------------------------------------ FLOPs per module
def module_group(name: str) -> str:
    """Table row of a layer: each component autoencoder's encoder / feature / image decoder, E_m, G_m, E_b,
    G_b, D, D2, VGG, the parser."""
    parts = name.split(".")
    if parts[:2] == ["generator", "autoencoders"]:
        return ".".join(parts[2:4])
    if parts[0] == "generator":
        trunk = {"mask_encoder": "E_m", "bg_encoder": "E_b", "bg_decoder": "G_b", "rgb_head": "G_m RGB head"}
        return trunk.get(parts[1], "G_m")
    return {"discriminator": "D", "discriminator2": "D2", "vgg": "VGG19", "parser": "parser"}.get(parts[0], parts[0])


class LayerFlops:
    """Forward hooks on every Conv2d / ConvTranspose2d / Linear of ``model``: per :func:`module_group` the
    forward FLOPs (2·MACs) and the backward FLOPs the call implies (weight gradient when the weight requires
    grad, input gradient when the input does, each the forward's count) of every call under grad mode."""

    def __init__(self, model: nn.Module) -> None:
        self.flops: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "weight": 0.0, "input": 0.0})
        self._handles = [
            module.register_forward_hook(self._hook(module_group(name)))
            for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
        ]

    def _hook(self, group: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(module, nn.Linear):
                macs = x.numel() * module.out_features
            else:  # each input (transposed) or output (conv) value meets the kernel of the other side's channels
                taps = module.kernel_size[0] * module.kernel_size[1] // module.groups
                transposed = isinstance(module, nn.ConvTranspose2d)
                macs = (
                    x.numel() * module.out_channels * taps if transposed else output.numel() * module.in_channels * taps
                )
            row = self.flops[group]
            row["forward"] += 2 * macs
            if torch.is_grad_enabled():
                row["weight"] += 2 * macs if module.weight.requires_grad else 0
                row["input"] += 2 * macs if x.requires_grad else 0

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def total(self) -> float:
        return sum(sum(row.values()) for row in self.flops.values())


def iteration_flops(model: MaskGuidedSystem, paired: bool, batch: int = 1) -> tuple[dict[str, dict[str, float]], float]:
    """Per-module FLOPs (:class:`LayerFlops`) of one training iteration at ``batch``: the generator step (D and D2
    frozen, as the optimizer toggle leaves them), then D's step (paired only) and D2's step (their forwards on
    the real and the detached fake image, and the backward); and the total of ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    from portrait_models.losses import vanilla_fake, vanilla_real

    size = model.hparams.image_size
    data = _SameBatch(size, batch, 1)
    image, label = data.images, data.label[None].expand(batch, -1, -1)
    layers, counter = LayerFlops(model), FlopCounterMode(display=False)
    discs = (model.discriminator, model.discriminator2)
    try:
        with counter:
            for d in discs:
                d.requires_grad_(False)
            prepared = model.prepare(image, label)
            codes = model.encode(prepared, sample=True)
            out = model.forward_paths(image, prepared, codes, torch.arange(batch), paired)
            terms = model.generator_terms(image, prepared, codes, out, paired)
            model.total_generator_loss(terms, paired).backward()
            model.generator.requires_grad_(False)
            for d, fake in zip(discs, (out.get("recon"), out["transfer"]), strict=True):
                if d is model.discriminator and not paired:
                    continue
                d.requires_grad_(True)
                onehot = prepared["onehot"]
                (vanilla_real(d(onehot, image)) + vanilla_fake(d(onehot, fake.detach()))).backward()
    finally:
        layers.remove()
        model.generator.requires_grad_(True)
        for d in discs:
            d.requires_grad_(True)
        model.zero_grad(set_to_none=True)
    return dict(layers.flops), float(counter.get_total_flops())


def print_module_flops(args: argparse.Namespace) -> None:
    """GFLOP per module of a paired iteration (forward, weight and input gradients) and the totals of an unpaired
    one, by default and with ``log_paired_terms_every_step=False``, at batch 1."""
    tables, totals = {}, {}
    for log_every_step in (True, False):
        model = build(args, log_paired_terms_every_step=log_every_step)
        for paired in (True, False):
            tables[log_every_step, paired], totals[log_every_step, paired] = iteration_flops(model, paired)
    columns = {"paired": (True, True), "unpaired": (True, False), "unpaired lean": (False, False)}
    print(f"  GFLOP per iteration, batch 1, {'official' if args.official else 'tiny'} widths, {args.size}² "
          "(lean: log_paired_terms_every_step=False)")  # fmt: skip
    print(f"  {'module':<26} {'paired fwd':>10} {'w-grad':>8} {'in-grad':>8} {'sum':>8} {'unpaired':>9} {'lean':>8}")
    rows = sorted(set().union(*(t.keys() for t in tables.values())))
    zero = {"forward": 0.0, "weight": 0.0, "input": 0.0}
    for row in rows:
        p = tables[columns["paired"]].get(row, zero)
        sums = [sum(tables[key].get(row, zero).values()) for key in columns.values()]
        cells = [p["forward"], p["weight"], p["input"], *sums]
        print(f"  {row:<26} " + " ".join(f"{v / 1e9:{w}.1f}" for v, w in zip(cells, (10, 8, 8, 8, 9, 8), strict=True)))
    hooks = [sum(sum(r.values()) for r in tables[key].values()) for key in columns.values()]
    counted = [totals[key] for key in columns.values()]
    print(
        f"  {'total (layer hooks)':<26} {'':>10} {'':>8} {'':>8} "
        + " ".join(f"{v / 1e9:{w}.1f}" for v, w in zip(hooks, (8, 9, 8), strict=True))
    )
    print(
        f"  {'total (flop_counter)':<26} {'':>10} {'':>8} {'':>8} "
        + " ".join(f"{v / 1e9:{w}.1f}" for v, w in zip(counted, (8, 9, 8), strict=True))
    )


# ------------------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class Path:
    """One timed configuration: the module options and the Trainer precision."""

    name: str
    options: dict[str, Any]
    precision: str = "32-true"


def optimized_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"adam_fused": args.adam_fused, "log_paired_terms_every_step": False}
    if args.device == "cuda":
        options["batch_paths"] = True
    elif args.channels_last:
        options["channels_last"] = True
    return options


def timed_paths(args: argparse.Namespace) -> list[Path]:
    """eager fp32 (the default module), optimized (fp32 on a CPU, bf16 on a GPU) and, on a CPU with native bf16
    (or ``--cpu-bf16 on``), optimized + bf16: Lightning's ``bf16-mixed`` (autocast) with channels-last tensors."""
    cuda = args.device == "cuda"
    options = optimized_options(args)
    paths = [Path("eager fp32 (default)", {}), Path("optimized", options, "bf16-mixed" if cuda else "32-true")]
    if not cuda and cpu_bf16_wanted(args.cpu_bf16):
        paths.append(Path("optimized + bf16", {**options, "channels_last": True}, "bf16-mixed"))
    return [p for i, p in enumerate(paths) if args.paths is None or i in args.paths]


@dataclass
class Samples:
    """Raw per-iteration samples of one path (after the warm-up), accumulated over rounds."""

    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    sys_times: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)


def time_path(path: Path, args: argparse.Namespace, samples: Samples) -> None:
    """Train ``path`` for ``warmup + iters`` iterations (rounded up to whole pairs); append the samples."""
    cuda = args.device == "cuda"
    pl.seed_everything(0, verbose=False)
    iterations = 2 * ((args.warmup + args.iters + 1) // 2)
    model = build(args, _PhasedSystem, **path.options, cuda=cuda)
    timer = _Timer(cuda)
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=path.precision,
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, DataLoader(_SameBatch(args.size, args.batch, iterations), batch_size=args.batch))
    skip = 2 * (args.warmup // 2)
    samples.times += timer.times[skip:]
    samples.cpu_times += timer.cpu_times[skip:]
    samples.sys_times += timer.sys_times[skip:]
    samples.faults += timer.faults[skip:]
    samples.marks += model.phases[skip:]
    del trainer, model, timer
    gc.collect()  # the Trainer and the module reference each other: free this path's ~4 GB (256²) before the next


def summarize(path: Path, samples: Samples, args: argparse.Namespace) -> Result:
    times, cpu_times = samples.times, samples.cpu_times
    pairs = [a + b for a, b in zip(times[::2], times[1::2], strict=False)]
    cpu_pairs = [a + b for a, b in zip(cpu_times[::2], cpu_times[1::2], strict=False)]
    seconds = statistics.median(pairs)
    images_per_s = 2 * args.batch / seconds
    cuda = args.device == "cuda"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in torch.cuda.get_device_name()), None) if cuda else None
    mfu = args.flops / seconds / (peak * 1e12) if peak and args.flops else None
    phases = phase_means(samples.marks)
    pairs_count = len(times) / 2
    sys_ms, faults = 1000 * sum(samples.sys_times) / pairs_count, sum(samples.faults) / pairs_count
    cpu_ms = 1000 * statistics.median(cpu_pairs)
    return Result(path.name, images_per_s, 1000 * seconds, cpu_ms, phases, mfu, sys_ms, faults)


def released_reference(args: argparse.Namespace) -> float | None:
    """The released code's seconds per iteration at this setting, where the issue measured it."""
    if args.device == "cpu" and args.official and args.vgg and args.size == 256:
        return RELEASED_TOTAL_S.get(args.batch)
    return None


def print_released_layout(results: list[Result], reference: float | None, batch: int) -> None:
    """Seconds per iteration in the released code's phases, paired / unpaired / mean, and the ratio."""
    width = max(len(r.path) for r in results) + 10
    titles = " ".join(f"{PHASE_TITLES[p]:>15}" for p in PHASES)
    print(f"  {'seconds per iteration':<{width}} {titles} {'total':>15}")
    if reference is not None:
        cells = " ".join(f"{RELEASED_PHASES_S[p]:15.2f}" if batch == 1 else f"{'-':>15}" for p in PHASES)
        print(f"  {'released code (issue 10)':<{width}} {cells} {reference:15.2f}")
    for r in results:
        for group in ("paired", "unpaired", "mean"):
            phases = r.phases_ms[group]
            total = sum(phases.values()) / 1000
            cells = " ".join(f"{phases[p] / 1000:15.2f}" for p in PHASES)
            ratio = ""
            if reference is not None and group == "mean":
                ratio = f"   released / ours {reference / total:.2f}x ({'faster' if total < reference else 'slower'})"
            print(f"  {f'{r.path} {group}':<{width}} {cells} {total:15.2f}{ratio}")


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256 if cuda else 64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--official", action=argparse.BooleanOptionalAction, default=cuda,
                        help="official widths (default on a GPU); else the tiny CPU widths")  # fmt: skip
    parser.add_argument("--vgg", action=argparse.BooleanOptionalAction, default=cuda,
                        help="the masked VGG19 term (random weights; default on a GPU)")  # fmt: skip
    parser.add_argument("--parser", action=argparse.BooleanOptionalAction, default=None,
                        help="a frozen random netP-shaped parser for L_GP (default: with --official)")  # fmt: skip
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last in the CPU optimized fp32 path (default: below 256²)")  # fmt: skip
    parser.add_argument("--adam-fused", action=argparse.BooleanOptionalAction, default=True,
                        help="fused Adam in the optimized paths")  # fmt: skip
    parser.add_argument("--cpu-bf16", choices=("auto", "on", "off"), default="auto",
                        help="CPU: the third path, optimized + bf16 (auto: where oneDNN has native bf16)")  # fmt: skip
    parser.add_argument("--paths", type=lambda v: {int(i) for i in v.split(",")}, default=None,
                        help="time only these paths (0 eager, 1 optimized, 2 optimized + bf16), e.g. 0,2")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the paths round-robin in one process (ratios under load)")  # fmt: skip
    parser.add_argument("--flops", action="store_true", dest="module_flops", help="print each module's FLOPs")
    parser.add_argument("--iters", type=int, default=20 if cuda else 8)
    parser.add_argument("--warmup", type=int, default=4 if cuda else 2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.device = "cuda" if cuda else "cpu"
    args.parser = args.official if args.parser is None else args.parser
    args.channels_last = args.size < 256 if args.channels_last is None else args.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.flops = pair_flops(args) if cuda else None
    what = (
        f"G + D + D2 iterations, {args.size}², batch {args.batch}, {'official' if args.official else 'tiny'} widths, "
        f"VGG {'on' if args.vgg else 'off'}, parser {'on' if args.parser else 'off'}, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    device = torch.cuda.get_device_name() if cuda else cpu_description()
    print(f"bench-mask-guided: {what}\n  device: {device}")
    if args.module_flops:
        print_module_flops(args)
    paths = timed_paths(args)
    for path in paths[1:]:
        options = ", ".join(f"{k}={v}" for k, v in path.options.items())
        print(f"  {path.name}: {options}, precision {path.precision}")
    samples = {path.name: Samples() for path in paths}
    for _ in range(args.rounds):
        for path in paths:
            time_path(path, args, samples[path.name])
    results = [summarize(path, samples[path.name], args) for path in paths]
    width = max(len(r.path) for r in results)
    print(f"  {'':<{width}} {'ms / iteration pair':>20} {'CPU ms / pair':>14} {'of it system':>13} "
          f"{'page faults':>12} {'img/s':>8}")  # fmt: skip
    for r in results:
        mfu = f"  MFU {100 * r.mfu:.1f}%" if r.mfu is not None else ""
        print(f"  {r.path:<{width}} {r.pair_ms:20.1f} {r.pair_cpu_ms:14.1f} {r.pair_sys_ms:13.1f} "
              f"{r.pair_faults:12.0f} {r.images_per_s:8.2f}{mfu}")  # fmt: skip
    base = results[0]
    for r in results[1:]:
        cpu_ratio = base.pair_cpu_ms / r.pair_cpu_ms
        print(f"  speed-up of {r.path} over {base.path}: {r.images_per_s / base.images_per_s:.2f}x (wall), "
              f"{cpu_ratio:.2f}x (CPU time)")  # fmt: skip
    print_released_layout(results, released_reference(args), args.batch)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setting": what, "device": device, "results": [asdict(r) for r in results]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
