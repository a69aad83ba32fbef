"""Time MaskGAN's DMN training step: the optimized path against plain eager fp32, in one process.

``python -m experiments.bench_maskgan`` (``make bench-maskgan``). One step = what ``MaskGAN._dmn_step`` does:
G forward (style encoder + trunk), D on real and fake (Adam step), D on fake again + D(real) features + VGG19
for G's adversarial, feature-matching and perceptual losses (Adam step). Both paths run the same networks on
the same random batch; the output is images/s for each and their ratio, and on a GPU the model FLOP
utilisation (MFU) from the analytic count of 1.76 TFLOP per image per step at 512² (``shared/tools/gan_flops.py``,
scaled by (size/512)² at other sizes) against the card's dense bf16 peak.

Defaults: on a GPU the paper's settings (512², batch 8, ngf 64) with bf16 autocast + channels_last (+
``--compile``); on a CPU a small setting (64², batch 4, ngf 16) that finishes in about a minute.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from portrait_models.losses import PerceptualLoss, discriminator_loss, feature_matching_loss, generator_loss
from portrait_models.maskgan.networks import DenseMappingNetwork, MaskGANDiscriminator

TFLOP_PER_IMAGE_512 = 1.76
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass
class Result:
    path: str
    images_per_s: float
    step_ms: float
    mfu: float | None


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def make_step(size: int, batch: int, ngf: int, device: str, *, optimized: bool, compile_: bool):
    torch.manual_seed(0)
    g = DenseMappingNetwork(ngf=ngf).to(device)
    d = MaskGANDiscriminator(ndf=min(64, 4 * ngf)).to(device)
    vgg = PerceptualLoss(pretrained=False).to(device)
    fmt = torch.channels_last if optimized else torch.contiguous_format
    g, d, vgg = (m.to(memory_format=fmt) for m in (g, d, vgg))
    fused = optimized and device == "cuda"
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999), fused=fused)
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999), fused=fused)
    label = torch.randint(0, 19, (batch, size, size), device=device)
    onehot = F.one_hot(label, 19).permute(0, 3, 1, 2).float().contiguous(memory_format=fmt)
    image = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    g_fwd, d_fwd = (torch.compile(g), torch.compile(d)) if compile_ else (g, d)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=optimized and device == "cuda")

    def step() -> None:
        with autocast:
            fake = g_fwd(onehot, onehot, image)
            real_t, fake_t = discriminator_loss("vanilla", d_fwd(onehot, image), d_fwd(onehot, fake.detach()))
            loss_d = 0.5 * (real_t + fake_t)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with autocast:
            fake_feats = d_fwd(onehot, fake)
            with torch.no_grad():
                real_feats = d_fwd(onehot, image)
            loss_g = (
                generator_loss("vanilla", fake_feats)
                + 10 * feature_matching_loss(fake_feats, real_feats)
                + 10 * vgg(fake, image)
            )
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def time_path(name: str, step, batch: int, size: int, warmup: int, iters: int, device: str) -> Result:
    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / iters
    images_per_s = batch / seconds
    peak = peak_tflops()
    flops = TFLOP_PER_IMAGE_512 * (size / 512) ** 2
    mfu = images_per_s * flops / peak if peak else None
    return Result(name, images_per_s, seconds * 1000, mfu)


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512 if cuda else 64)
    parser.add_argument("--batch", type=int, default=8 if cuda else 4)
    parser.add_argument("--ngf", type=int, default=64 if cuda else 16)
    parser.add_argument("--iters", type=int, default=20 if cuda else 5)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 1)
    parser.add_argument("--compile", action="store_true", help="torch.compile G and D on the optimized path")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    what = f"DMN step, {args.size}², batch {args.batch}, ngf {args.ngf}, {device}"
    print(f"bench-maskgan: {what}" + (f" ({torch.cuda.get_device_name()})" if cuda else ""))
    base = time_path(
        "eager fp32",
        make_step(args.size, args.batch, args.ngf, device, optimized=False, compile_=False),
        args.batch, args.size, args.warmup, args.iters, device,
    )  # fmt: skip
    label = "bf16 + channels_last" if cuda else "channels_last"
    label += " + compile" if args.compile else ""
    fast = time_path(
        label,
        make_step(args.size, args.batch, args.ngf, device, optimized=True, compile_=args.compile),
        args.batch, args.size, args.warmup, args.iters, device,
    )  # fmt: skip
    for r in (base, fast):
        mfu = f"  MFU {100 * r.mfu:.1f}%" if r.mfu is not None else ""
        print(f"  {r.path:<32} {r.images_per_s:8.2f} img/s  {r.step_ms:9.1f} ms/step{mfu}")
    print(f"  ratio optimized / eager fp32: {fast.images_per_s / base.images_per_s:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"setting": what, "results": [asdict(base), asdict(fast)]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
