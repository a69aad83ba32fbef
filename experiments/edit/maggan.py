"""MagGAN: mask-guided attribute editing with continuous intensities (STGAN's slide test).

Usage::

    python -m experiments.edit maggan --checkpoint C --image I [--mask M | --parser P] \\
        --set Blond_Hair=1 Eyeglasses=0 [--intensity 0.5 | --test-int 2] [--plain-flip] [--source Male=1 ...] \\
        --out O.png
    python -m experiments.edit maggan --checkpoint C --image I --mask M --set Bald=1 --slide 0,0.5,1,1.5 --out O.png

``--mask`` is the image's 19-class parse: a soft-mask ``.npz`` from ``experiments.parse`` (the training
format) or a label / palette-colour PNG (one-hot); without it, ``--parser`` (a FaceParser checkpoint) parses
the image. A model trained with replicated conditioning (Table 3 i–iii) needs no mask. The source attributes
come from the critic's own attribute classifier unless ``--source`` gives them.

The change of each ``--set`` attribute is ``(target − source)·intensity``; ``--slide`` writes one image per
intensity, ``O_<intensity>.png``. ``--test-int T`` is STGAN's test intensity instead (its target ``(2·target −
1)·0.5`` times ``T``, minus the source ``(2·source − 1)·0.5``: a flip changes by ``±(T + 1)/2``, so ``--test-int
1`` is ``--intensity 1`` and STGAN's paper setting ``--test-int 2`` is ``--intensity 1.5`` on a flip). By default
STGAN's test-time conflict rules complete the target: a hair colour set on turns the other two off, Bald on turns
Bangs off and Bangs on turns Bald off, unless ``--set`` names them; those partners change by ``0 − source`` at any
intensity (STGAN scales only the edited attribute). A checkpoint trained with ``model.flip_rule=consistent`` uses
the world's rules instead (Bald on also turns the hair colours off). ``--plain-flip`` changes only the attributes
set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "MagGAN attribute editing (--set Blond_Hair=1 ..., continuous --intensity)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="MagGAN Lightning checkpoint (.ckpt)")
    parser.add_argument("--image", required=True, help="the face to edit (any RGB image file)")
    parser.add_argument("--mask", help="its 19-class masks: .npz soft mask, or a label / palette PNG")
    parser.add_argument("--parser", help="FaceParser checkpoint that parses --image when --mask is not given")
    parser.add_argument("--set", nargs="+", required=True, metavar="NAME=VALUE", help="target attribute values")
    parser.add_argument("--source", nargs="*", default=[], metavar="NAME=VALUE", help="known source attributes")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--intensity", type=float, default=1.0, help="scale of the set attributes' change (1: as set)")
    scale.add_argument("--test-int", type=float, help="STGAN's test_int instead: a flip changes by ±(T+1)/2")
    scale.add_argument("--slide", help="comma-separated intensities; writes one file per value")
    parser.add_argument(
        "--plain-flip", action="store_true", help="change only the set attributes (no STGAN conflict rules)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output image path")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> Path | list[Path]:
    from portrait_models.maggan.editing import (
        attribute_change,
        edit_face,
        load_maggan,
        parse_assignments,
        parser_soft_masks,
        read_face,
        read_soft_masks,
        save_face,
        source_attributes,
    )

    targets = parse_assignments(args.set)
    given = parse_assignments(args.source)
    model = load_maggan(args.checkpoint, args.device)
    image = read_face(args.image, model.hparams.image_size).to(args.device)
    if args.mask is not None:
        masks = read_soft_masks(args.mask)
    elif args.parser is not None:
        masks = parser_soft_masks(args.parser, image)
    elif model.hparams.conditioning == "mask" and not model.hparams.seg_branch:
        raise ValueError("this model uses mask-guided conditioning: give --mask (or --parser to parse the image)")
    else:
        masks = None
    att_source = source_attributes(model, image, given)
    intensities = [args.intensity] if args.slide is None else [float(v) for v in args.slide.split(",")]
    rule = "plain" if args.plain_flip else model.flip_rule
    written = []
    for intensity in intensities:
        att_diff = attribute_change(att_source, targets, intensity, rule=rule, test_int=args.test_int)
        out = edit_face(model, image, att_diff, masks)
        path = args.out if args.slide is None else args.out.with_name(f"{args.out.stem}_{intensity:g}{args.out.suffix}")
        written.append(save_face(out, path))
    return written[0] if args.slide is None else written
