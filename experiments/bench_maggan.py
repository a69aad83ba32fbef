"""Time MagGAN's critic step and generator step, eager fp32 against the optimized path, in one process.

``python -m experiments.bench_maggan`` (``make bench-maggan``). Both paths run the real
:class:`~portrait_models.maggan.module.MagGAN` loss code on one fixed random batch with Adam:

* **critic step**: G(x, att_diff) without grad, the critic on real and fake, the gradient penalty (fp32,
  autocast off: double backward), backward, Adam;
* **G step**: G(x, att_diff) and G(x, 0), the critic on the edit, eq. (11), backward, Adam.

Paths: **eager fp32** (contiguous tensors, no autocast); **optimized**: channels_last weights and inputs, and on
a GPU bf16 autocast + cuDNN autotuning (``--compile`` also compiles the generator; the critic is not compiled
because of the double backward). Output: median ms per step over ``--iters`` after ``--warmup``, images/s of
each step and of a full ``n_critic``:1 cycle (``n_critic`` batches read), the optimized/eager ratio, and on a
GPU the model FLOP utilisation (MFU) from an analytic count of the convolution / linear multiply-adds of
these very networks (forward hooks on the layer shapes; a training pass is taken as 3× forward, the penalty
as 5× a critic forward).

Defaults: on a GPU the paper's 256² setting (batch 32, the full STGAN-size G and D); on a CPU a small setting
(64², batch 8, base width 16) that runs in about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from portrait_models.maggan.module import MagGAN

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


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
    g = count_macs(model.generator, x, torch.zeros(batch, 13), torch.zeros(batch, 19, size, size) + 1 / 19)
    d = count_macs(model.discriminator, x)
    critic = g + 3 * 2 * d + 5 * d  # G forward, D on real + fake with backward, GP
    generator = 3 * 2 * g + 3 * d  # two G passes with backward, D on the edit with backward
    return 2.0 * critic, 2.0 * generator


def build(args: argparse.Namespace) -> MagGAN:
    """STGAN's layout at ``--size``: ``--layers`` encoder/decoder levels of base width ``--width``, an STU on every
    non-bottleneck level (the paper's 256² network with the defaults on a GPU), one critic of the same depth."""
    return MagGAN(
        image_size=args.size, enc_dim=args.width, dec_dim=args.width, num_layers=args.layers,
        shortcut_layers=args.layers - 1, inject_layers=args.layers - 1, d_level_size=args.size,
        dis_dim=args.width, dis_layers=args.layers, n_critic=args.n_critic,
    )  # fmt: skip


def time_path(name: str, args: argparse.Namespace, *, optimized: bool) -> Result:
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = build(args).to(device)
    fmt = torch.channels_last if optimized else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt_g, opt_d = model.configure_optimizers()
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1).to(device, memory_format=fmt)
    att = (torch.rand(args.batch, 13, generator=g) > 0.5).float().to(device)
    masks = torch.rand(args.batch, 19, args.size, args.size, generator=g).softmax(1).to(device)
    target = att.roll(1, 0)
    diff = target - att
    if optimized and args.compile:
        model.generator = torch.compile(model.generator)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if optimized and cuda else contextlib.nullcontext()
    torch.backends.cudnn.benchmark = optimized and cuda

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def critic_step() -> None:
        with autocast:
            with torch.no_grad():
                fake = model.generator(image, diff, masks)
            loss = model.discriminator_loss(image, fake, att)["total"]
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()

    def generator_step() -> None:
        with autocast:
            loss = model.generator_loss(image, att, target, diff, masks)["total"]
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    times: dict[str, list[float]] = {"critic": [], "generator": []}
    for i in range(args.warmup + args.iters):
        for part, step in (("critic", critic_step), ("generator", generator_step)):
            sync()
            start = time.perf_counter()
            step()
            sync()
            if i >= args.warmup:
                times[part].append(time.perf_counter() - start)
    critic, generator = (statistics.median(times[p]) for p in ("critic", "generator"))
    cycle = args.n_critic * critic + generator
    mfu = None
    if cuda:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak:
            critic_flops, generator_flops = step_flops(build(args), args.batch, args.size)
            mfu = (args.n_critic * critic_flops + generator_flops) / cycle / (peak * 1e12)
    # a cycle reads n_critic batches (the G step reuses the last one, as the module does)
    cycle_img_s = args.n_critic * args.batch / cycle
    return Result(name, 1000 * critic, 1000 * generator, args.batch / critic, args.batch / generator, cycle_img_s, mfu)


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
    parser.add_argument("--compile", action="store_true", help="also torch.compile the generator (optimized path)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = [time_path("eager fp32", args, optimized=False), time_path("optimized", args, optimized=True)]
    setting = f"{args.size}², batch {args.batch}, width {args.width}, n_critic {args.n_critic}, {args.device}"
    print(f"MagGAN training steps ({setting}; median of {args.iters} after {args.warmup} warm-up)")
    header = ("path", "critic ms", "G ms", "critic img/s", "G img/s", "cycle img/s", "MFU")
    print(f"{header[0]:<12}" + "".join(f" {h:>12}" for h in header[1:]))
    for r in results:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "-"
        values = (r.critic_ms, r.generator_ms, r.critic_img_s, r.generator_img_s, r.cycle_img_s)
        print(f"{r.path:<12}" + "".join(f" {v:12.1f}" for v in values) + f" {mfu:>12}")
    eager, fast = results
    ratios = {
        "critic": fast.critic_img_s / eager.critic_img_s,
        "G": fast.generator_img_s / eager.generator_img_s,
        "cycle": fast.cycle_img_s / eager.cycle_img_s,
    }
    print("optimized / eager: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"setting": setting, "results": [asdict(r) for r in results]}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
