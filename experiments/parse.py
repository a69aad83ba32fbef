"""Run a trained face parser over a dataset and cache its soft masks (what MagGAN's data reads).

    python -m experiments.parse --checkpoint runs/.../best.ckpt --dataset celeba --data /data/celeba \\
        --out /data/celeba/soft_masks_19 [--split all] [--image-size 256] [--batch-size 32]
    python -m experiments.parse --bisenet 79999_iter.pth --dataset celeba --data ... --out ...

``--checkpoint`` is a ``FaceParser`` Lightning checkpoint; ``--bisenet`` the widely used zllrunning
checkpoint, whose outputs are reordered into the official class order. One ``<name>.npz`` per image
(``datamodules.soft_masks``). Datasets with labels (CelebAMask-HQ: 19 classes, Helen: 11) must match the
parser's class count; CelebA has no labels and gets the parser's classes (MagGAN wants 19). ``--dataset
folder`` parses every image below ``--data`` (whole frame, nested names kept), the extra faces Gu et al. train
on with an 11-class parser (``datamodules.parsed_faces``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datamodules.soft_masks import save_soft_mask

DATASET_CLASSES = {"celebamaskhq": 19, "helen": 11, "celeba": None, "folder": None}


def load_parser(checkpoint: str | None, bisenet: str | None, device: str) -> torch.nn.Module:
    from portrait_models.checkpoints import load_module
    from portrait_models.parsing import FaceParser

    if bool(checkpoint) == bool(bisenet):
        raise ValueError("give exactly one of --checkpoint (a FaceParser .ckpt) or --bisenet (79999_iter.pth)")
    if bisenet:
        parser = FaceParser.from_bisenet_checkpoint(bisenet)
    else:
        parser = load_module(FaceParser, checkpoint, map_location=device)  # CheckpointError: a ValueError
    return parser.to(device).eval()


def make_dataset(name: str, root: str, split: str, image_size: int):
    import datamodules

    if name == "celeba":  # parse exactly the crop MagGAN trains on (STGAN's box, bicubic resize)
        return datamodules.CelebA(root, split=split, image_size=image_size, crop="stgan")
    if name == "folder":  # any photos, whole frame (Gu et al.'s extra faces: datamodules.parsed_faces)
        from datamodules.parsed_faces import ParsedImageFolder

        return ParsedImageFolder(root, split=split, image_size=image_size)
    cls = {"celebamaskhq": datamodules.CelebAMaskHQ, "helen": datamodules.Helen}
    return cls[name](root, split=split, image_size=image_size)


def check_classes(parser_classes: int, dataset: str) -> None:
    expected = DATASET_CLASSES[dataset]
    if expected is not None and parser_classes != expected:
        raise ValueError(
            f"the parser predicts {parser_classes} classes but {dataset} is labelled with {expected}; use a parser"
            f" trained on {dataset}'s classes (or on CelebAMask-HQ's 19 for MagGAN's soft masks)"
        )


@torch.no_grad()
def cache_soft_masks(parser, dataset, out: Path, batch_size: int, device: str, num_workers: int = 0) -> int:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    written = 0
    for batch in tqdm(loader, desc=f"parsing -> {out}", unit="batch"):
        probs = parser.parse(batch["image"].to(device))
        for name, p in zip(batch["name"], probs, strict=True):
            save_soft_mask(out, name, p)
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--bisenet")
    ap.add_argument("--dataset", choices=sorted(DATASET_CLASSES), required=True)
    ap.add_argument("--data", required=True, help="dataset root as the release unpacks")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--split", default="all")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    try:
        parser = load_parser(args.checkpoint, args.bisenet, args.device)
        check_classes(parser.hparams.num_classes, args.dataset)
        dataset = make_dataset(args.dataset, args.data, args.split, args.image_size)
        written = cache_soft_masks(parser, dataset, args.out, args.batch_size, args.device, args.num_workers)
    except (FileNotFoundError, ValueError) as err:
        print(f"parse: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written} soft masks ({parser.hparams.num_classes} classes) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
