"""Gu et al. (mask-guided portrait editing): mask editing, component transfer, face swap+.

Usage::

    python -m experiments.edit mask-guided --checkpoint C --image I --image-mask M --mask M_edited --out O.png
    python -m experiments.edit mask-guided --checkpoint C --image I --image-mask M \\
        --transfer hair,mouth --from other.jpg --from-mask other.png --out O.png
    python -m experiments.edit mask-guided --checkpoint C --image I --image-mask M \\
        --swap-into target.jpg --swap-into-mask target.png --out O.png

Masks are Helen label PNGs (values 0..10) or colour PNGs in the project palette. ``--mask`` re-renders the
face under an edited mask; ``--transfer`` replaces the listed components (left_eye, right_eye, skin, hair,
mouth) by those of ``--from``; ``--swap-into`` puts every component of the face, hair included, into another
face's mask and background (face swap+). The checkpoint is a ``MaskGuidedSystem`` ``.ckpt`` or the official
``checkpoints/pretrained`` folder (converted on the fly).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

HELP = "Gu et al.: mask editing, component transfer (--transfer hair,mouth --from ...), face swap+"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a MaskGuidedSystem .ckpt or the official folder")
    parser.add_argument("--image", required=True, help="the face to edit")
    parser.add_argument("--image-mask", required=True, help="the face's own Helen mask")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--mask", help="edited mask to render the face under (mask editing)")
    group.add_argument("--transfer", help="comma-separated components to take from --from (component transfer)")
    group.add_argument("--swap-into", help="put the face into this image's mask and background (face swap+)")
    parser.add_argument("--from", dest="donor", help="donor image of --transfer")
    parser.add_argument("--from-mask", help="the donor's mask")
    parser.add_argument("--swap-into-mask", help="the --swap-into image's mask")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> Path:
    from portrait_models.mask_guided.editing import (
        component_transfer,
        face_swap,
        load_system,
        mask_edit,
        read_image,
        read_label,
        save_image,
    )

    system = load_system(args.checkpoint, args.device)
    size = system.hparams.image_size
    image, label = read_image(args.image, size), read_label(args.image_mask, size)
    if args.mask is not None:
        out = mask_edit(system, image, label, read_label(args.mask, size))
    elif args.transfer is not None:
        if not args.donor or not args.from_mask:
            raise ValueError("--transfer needs --from (the donor image) and --from-mask (its mask)")
        donor, donor_label = read_image(args.donor, size), read_label(args.from_mask, size)
        out = component_transfer(system, image, label, donor, donor_label, args.transfer.split(","))
    else:
        if not args.swap_into_mask:
            raise ValueError("--swap-into needs --swap-into-mask (the target image's mask)")
        target, target_label = read_image(args.swap_into, size), read_label(args.swap_into_mask, size)
        out = face_swap(system, image, label, target, target_label)
    return save_image(out, args.out)
