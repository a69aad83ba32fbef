"""Time MagGAN's critic step and generator step, eager fp32 against the optimized path, in one process.

``python -m experiments.bench_maggan`` (``make bench-maggan``). Both paths run the real
:class:`~portrait_models.maggan.module.MagGAN` loss code on one fixed random batch with Adam:

* **critic step**: G(x, att_diff) without grad, the critic on real and fake, the gradient penalty (fp32,
  autocast off: double backward), backward, Adam;
* **G step**: G(x, att_diff) and G(x, 0), the critic on the edit, eq. (11), backward, Adam.

Paths: **eager fp32** (contiguous tensors, no autocast); on a CPU **channels_last fp32** (channels_last weights
and inputs, no autocast: the same precision as eager, so its ratio is a pure layout gain) and **channels_last +
bf16** (bf16 autocast as well, where oneDNN has native bf16: AVX512-BF16 / AMX; ``--cpu-bf16 on`` forces it,
``off`` drops the path); on a GPU **optimized** (channels_last, bf16 autocast, cuDNN autotuning). The gradient
penalty stays in fp32 in every path, as in training (``--compile`` also compiles the generator of the
non-eager paths; the critic is not compiled because of the double backward). ``--paths`` picks a subset.
Output: the CPU's model name and units (or the GPU's name), median ms per step over ``--iters`` after ``--warmup``,
images/s of each step and of a full ``n_critic``:1 cycle (``n_critic`` batches read), each path's ratio to eager
fp32 (and with ``--stgan-port`` to the port's figures, naming the precision), and on a
GPU the model FLOP utilisation (MFU) from an analytic count of the convolution / linear multiply-adds of
these very networks (forward hooks on the layer shapes; a training pass is taken as 3× forward, the penalty
as 5× a critic forward).

Defaults: on a GPU the paper's 256² setting (batch 32, the full STGAN-size G and D); on a CPU a small setting
(64², batch 8, base width 16) that runs in about a minute.

The paths are built side by side and timed interleaved (every path's critic step, then every path's G step, per
iteration), so a change in machine load hits all alike.

``--stgan-port``: our networks in the configuration of the most used PyTorch STGAN port (bluestyle97/
STGAN-pytorch: 10 attributes, 3 shortcut STUs with BatchNorm gates, the attribute only at the decoder's first
layer, one more conv; ``networks.stgan_port_networks``, the port's exact parameter counts), Table 3 row (i)
losses (STGAN: no L_mre), at 128², batch 32, printed beside the port's own times on this kind of CPU with 2
threads (critic step 3.2 s, G step 9.2 s, about 6.2 img/s over a 5:1 loop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from experiments.bench_common import cpu_bf16_wanted, cpu_description
from portrait_models.maggan.module import MagGAN
from portrait_models.maggan.networks import stgan_port_networks

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
# bluestyle97/STGAN-pytorch in its own config, 128², batch 32, this kind of CPU, 2 threads (the figures)
STGAN_PORT_SECONDS = {"critic": 3.2, "generator": 9.2, "cycle_img_s": 6.2}


@dataclass
class Result:
    path: str
    critic_ms: float
    generator_ms: float
    critic_img_s: float
    generator_img_s: float
    cycle_img_s: float
    mfu: float | None = None


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of every Conv2d / ConvTranspose2d / Linear in one forward (meta tensors are fine)."""
    total = 0

    def hook(layer: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features
        elif isinstance(layer, nn.Conv2d):
            total += output.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1] // layer.groups
        elif isinstance(layer, nn.ConvTranspose2d):  # every input pixel meets the whole kernel once
            x = args[0]
            total += x.numel() * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1] // layer.groups

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        module(*inputs)
    for h in handles:
        h.remove()
    return total


def step_flops(model: MagGAN, batch: int, size: int) -> tuple[float, float]:
    """Analytic FLOPs of one critic step and one G step for ``batch`` images."""
    x = torch.zeros(batch, 3, size, size)
    c = model.generator.num_attributes
    g = count_macs(model.generator, x, torch.zeros(batch, c), torch.zeros(batch, 19, size, size) + 1 / 19)
    d = count_macs(model.discriminator, x)
    critic = g + 3 * 2 * d + 5 * d  # G forward, D on real + fake with backward, GP
    generator = 3 * 2 * g + 3 * d  # two G passes with backward, D on the edit with backward
    return 2.0 * critic, 2.0 * generator


def build(args: argparse.Namespace) -> MagGAN:
    """STGAN's layout at ``--size``: ``--layers`` encoder/decoder levels of base width ``--width``, an STU on every
    non-bottleneck level (the paper's 256² network with the defaults on a GPU), one critic of the same depth.
    ``--stgan-port``: the PyTorch port's G and D (``networks.stgan_port_networks``) with row (i)'s losses."""
    if args.stgan_port:
        model = MagGAN(image_size=args.size, d_level_size=args.size, table3_row="i", n_critic=args.n_critic)
        model.generator, model.discriminator = stgan_port_networks(args.size)
        return model
    return MagGAN(
        image_size=args.size, enc_dim=args.width, dec_dim=args.width, num_layers=args.layers,
        shortcut_layers=args.layers - 1, inject_layers=args.layers - 1, d_level_size=args.size,
        dis_dim=args.width, dis_layers=args.layers, n_critic=args.n_critic,
    )  # fmt: skip


@dataclass(frozen=True)
class BenchPath:
    """One way of running the same steps: memory layout and autocast dtype (None: fp32)."""

    name: str
    channels_last: bool
    bf16: bool


def bench_paths(args: argparse.Namespace) -> list[BenchPath]:
    """Eager fp32 first (the baseline every ratio divides by), then the faster paths of this device."""
    if torch.device(args.device).type == "cuda":
        paths = [BenchPath("eager fp32", False, False), BenchPath("optimized", True, True)]
    else:
        paths = [BenchPath("eager fp32", False, False), BenchPath("cl fp32", True, False)]
        if cpu_bf16_wanted(args.cpu_bf16):
            paths.append(BenchPath("cl bf16", True, True))
    if args.paths:
        wanted = [name.strip() for name in args.paths.split(",")]
        unknown = [name for name in wanted if name not in {p.name for p in paths}]
        if unknown:
            raise SystemExit(f"--paths: unknown or unavailable {unknown}; here: {', '.join(p.name for p in paths)}")
        paths = [p for p in paths if p.name in wanted or p.name == "eager fp32"]
    return paths


def make_steps(args: argparse.Namespace, path: BenchPath) -> dict[str, Callable[[], None]]:
    """The critic step and the G step of one path, on its own model, optimisers and fixed random batch."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(args).to(device)
    fmt = torch.channels_last if path.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt_g, opt_d = model.configure_optimizers()
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1).to(device, memory_format=fmt)
    att = (torch.rand(args.batch, model.generator.num_attributes, generator=g) > 0.5).float().to(device)
    masks = torch.rand(args.batch, 19, args.size, args.size, generator=g).softmax(1).to(device)
    target = att.roll(1, 0)
    diff = target - att
    if path.name != "eager fp32" and args.compile:
        model.generator = torch.compile(model.generator)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if path.bf16 else contextlib.nullcontext()

    def critic_step() -> None:
        with autocast():
            with torch.no_grad():
                fake = model.generator(image, diff, masks)
            loss = model.discriminator_loss(image, fake, att)["total"]
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()

    def generator_step() -> None:
        with autocast():
            loss = model.generator_loss(image, att, target, diff, masks)["total"]
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    return {"critic": critic_step, "generator": generator_step}


def time_paths(args: argparse.Namespace) -> list[Result]:
    """Every path, interleaved step by step; median seconds per step after the warm-up (eager fp32 first)."""
    cuda = torch.device(args.device).type == "cuda"
    paths = {path.name: make_steps(args, path) for path in bench_paths(args)}
    times = {(name, part): [] for name in paths for part in ("critic", "generator")}
    for i in range(args.warmup + args.iters):
        for part in ("critic", "generator"):
            for name, steps in paths.items():
                torch.backends.cudnn.benchmark = cuda and name != "eager fp32"
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                steps[part]()
                if cuda:
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[(name, part)].append(time.perf_counter() - start)
    peak = None
    if cuda:
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
    flops = step_flops(build(args), args.batch, args.size) if peak else None
    results = []
    for name in paths:
        critic, generator = (statistics.median(times[(name, p)]) for p in ("critic", "generator"))
        cycle = args.n_critic * critic + generator
        mfu = (args.n_critic * flops[0] + flops[1]) / cycle / (peak * 1e12) if flops and peak else None
        # a cycle reads n_critic batches (the G step reuses the last one, as the module does)
        cycle_img_s = args.n_critic * args.batch / cycle
        results.append(
            Result(name, 1000 * critic, 1000 * generator, args.batch / critic, args.batch / generator, cycle_img_s, mfu)
        )
    return results


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--size", type=int, default=256 if cuda else 64)
    parser.add_argument("--batch", type=int, default=32 if cuda else 8)
    parser.add_argument("--width", type=int, default=64 if cuda else 16, help="base width of G and D")
    parser.add_argument("--layers", type=int, default=5 if cuda else 4, help="encoder / critic layers")
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3 if cuda else 1)
    parser.add_argument("--iters", type=int, default=20 if cuda else 4)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the generator (non-eager paths)")
    parser.add_argument(
        "--stgan-port", action="store_true",
        help="the PyTorch STGAN port's G and D at 128², batch 32 (overrides --size/--batch/--width/--layers), "
        "beside the port's own CPU times",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-bf16", choices=("auto", "on", "off"), default="auto",
        help="the 'cl bf16' path on a CPU (auto: where oneDNN has native bf16; off: no bf16 path)",
    )  # fmt: skip
    parser.add_argument(
        "--paths", default=None,
        help="comma-separated subset of the paths besides eager fp32 (CPU: 'cl fp32', 'cl bf16'; GPU: optimized)",
    )  # fmt: skip
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.stgan_port:
        args.size, args.batch, args.width, args.layers, args.n_critic = 128, 32, 64, 5, 5
    results = time_paths(args)
    setting = f"{args.size}², batch {args.batch}, width {args.width}, n_critic {args.n_critic}, {args.device}"
    if args.stgan_port:
        setting = f"STGAN-pytorch port's G and D, row (i) losses, {setting}"
    setting += f", {torch.get_num_threads()} thread(s)"
    hardware = torch.cuda.get_device_name() if cuda else cpu_description()
    print(f"device: {hardware}")
    print(f"MagGAN training steps ({setting}; median of {args.iters} after {args.warmup} warm-up; cl = channels_last)")
    header = ("path", "critic ms", "G ms", "critic img/s", "G img/s", "cycle img/s", "MFU")
    print(f"{header[0]:<12}" + "".join(f" {h:>12}" for h in header[1:]))
    for r in results:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "-"
        values = (r.critic_ms, r.generator_ms, r.critic_img_s, r.generator_img_s, r.cycle_img_s)
        print(f"{r.path:<12}" + "".join(f" {v:12.1f}" for v in values) + f" {mfu:>12}")
    eager = results[0]
    for fast in results[1:]:
        print(
            f"{fast.path} / eager fp32: critic {fast.critic_img_s / eager.critic_img_s:.2f}x, "
            f"G {fast.generator_img_s / eager.generator_img_s:.2f}x, cycle {fast.cycle_img_s / eager.cycle_img_s:.2f}x"
        )
    port = None
    if args.stgan_port:
        port = STGAN_PORT_SECONDS
        print(
            f"{'port (2 thr)':<12} {1000 * port['critic']:12.1f} {1000 * port['generator']:12.1f} "
            f"{args.batch / port['critic']:12.1f} {args.batch / port['generator']:12.1f} {port['cycle_img_s']:12.1f}"
        )
        for r in results:
            print(
                f"{r.path} / port (fp32): critic {1000 * port['critic'] / r.critic_ms:.2f}x, "
                f"G {1000 * port['generator'] / r.generator_ms:.2f}x, cycle {r.cycle_img_s / port['cycle_img_s']:.2f}x "
                "(> 1: faster than the port; its figures: fp32, 2 threads, the issue's CPU)"
            )
    if args.json:
        with open(args.json, "w") as handle:
            record = {
                "setting": setting, "device": hardware, "results": [asdict(r) for r in results], "stgan_port": port,
            }  # fmt: skip
            json.dump(record, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
