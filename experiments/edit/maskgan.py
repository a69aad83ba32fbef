"""MaskGAN: mask-driven editing, attribute transfer and style copy.

Usage::

    python -m experiments.edit maskgan --checkpoint C --image I --image-mask M_I --mask M_edited --out O.png
    python -m experiments.edit maskgan --checkpoint C --image I --image-mask M_I --transfer-from M_donor --out O.png
    python -m experiments.edit maskgan --checkpoint C --image I --image-mask M_I --style-image S --style-mask M_S \\
        --out O.png

``--mask`` is the edited mask to render (a label PNG in the official order or a colour PNG in the project
palette); ``--transfer-from`` builds it instead by copying the mouth and lips of a donor mask into M_I (the
paper's attribute transfer; other parts with ``--parts``). The style comes from ``--image`` and its own
mask, or from ``--style-image``/``--style-mask`` (style copy). The checkpoint is a Lightning ``.ckpt`` of
``MaskGAN`` or the official ``latest_net_G.pth`` (converted on the fly, paper settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def load_maskgan(checkpoint: str | Path, device: str = "cpu"):
    """A MaskGAN system from a Lightning checkpoint, or one holding the converted official generator."""
    from portrait_models.checkpoints import load_module
    from portrait_models.maskgan.convert import load_official_generator
    from portrait_models.maskgan.module import MaskGAN

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if checkpoint.suffix == ".ckpt":
        model = load_module(MaskGAN, checkpoint, map_location=device, vgg_pretrained=False)
    else:
        model = MaskGAN(ebst=False, vgg_pretrained=False)
        model.dmn_ema.averaged.load_state_dict(load_official_generator(checkpoint).state_dict())
    return model.to(device).eval()


def edit_maskgan(args: argparse.Namespace) -> Path:
    from portrait_models.maskgan.editing import read_image, read_mask, render, save_image, transfer_parts

    model = load_maskgan(args.checkpoint, args.device)
    size = model.hparams.image_size if args.size is None else args.size
    image = read_image(args.image, size)
    image_mask = read_mask(args.image_mask, size)
    if args.mask is not None:
        target = read_mask(args.mask, size)
    elif args.transfer_from is not None:
        target = transfer_parts(image_mask, read_mask(args.transfer_from, size), tuple(args.parts.split(",")))
    else:
        target = image_mask
    if args.style_image is not None:
        if args.style_mask is None:
            raise ValueError("--style-image needs --style-mask (the style image's own mask)")
        style_image, style_mask = read_image(args.style_image, size), read_mask(args.style_mask, size)
    else:
        style_image, style_mask = image, image_mask
    out = render(model, target, style_image, style_mask)
    save_image(out, args.out)
    return Path(args.out)


HELP = "mask-driven editing and style copy"


def add_arguments(mg: argparse.ArgumentParser) -> None:
    mg.add_argument("--checkpoint", required=True)
    mg.add_argument("--image", required=True, help="the face to edit")
    mg.add_argument("--image-mask", required=True, help="the face's own mask")
    group = mg.add_mutually_exclusive_group()
    group.add_argument("--mask", help="edited mask to render")
    group.add_argument("--transfer-from", help="donor mask whose --parts replace the face's")
    mg.add_argument("--parts", default="mouth,u_lip,l_lip", help="parts copied by --transfer-from")
    mg.add_argument("--style-image", help="copy the style of this image instead")
    mg.add_argument("--style-mask", help="the style image's own mask")
    mg.add_argument("--out", required=True)
    mg.add_argument("--size", type=int, default=None, help="working size (default: the model's image_size)")
    mg.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


run = edit_maskgan
