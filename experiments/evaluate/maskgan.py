"""MaskGAN's evaluation protocols (Lee et al. 2020, §5.3–5.4, Tables 2–4) on the CelebAMask-HQ test split::

    python -m experiments.evaluate maskgan --checkpoint C [--data ROOT] [--parser P.ckpt]
        [--attr-classifier A.ckpt] [--arcface r50|r100 | --identity-backend dlib] [--num-pairs 400]
        [--num-style-pairs 1000] [--batch-size 8] [--device cuda] [--out report.md] [--json report.json]

(``make eval-maskgan CKPT=... [DATA=...]``.) Without ``--data`` the test split of the synthetic face world is
used, written in the CelebAMask-HQ layout by the DataModule's synthetic default (the same world, size and seed
that the checkpoint's DataModule stored, when it stored them); the report says so in bold, since such numbers
say nothing about the paper's.

Protocols, on the test split at the model's resolution, images from the EMA Dense Mapping Network:

* **Attribute transfer, Smiling (Table 2).** ``--num-pairs`` (paper: 400) target faces that do not smile each
  get the mouth, upper and lower lip of a face that smiles (``editing.transfer_parts``); the edited mask is
  rendered in the target's own style. Scores: the attribute classifier's Smiling accuracy on the outputs,
  the frozen parser's pixel accuracy on the outputs against the *edited* mask, FID against the real test set.
* **Identity (Table 4).** The edited faces of Table 2 against the unmodified originals: each edited face
  with its own original (same person) and with the original of another target (different person), ArcFace
  embeddings at 112×112, accuracy with the LFW 10-fold best-threshold protocol
  (:class:`metrics.identity.IdentityVerification`). ``--identity-backend dlib`` swaps ArcFace for dlib's
  face-recognition ResNet (real weights in the ``face_recognition_models`` wheel): a real identity measure
  when no ArcFace file is at hand, but *not* the paper's network, and the table says so.
* **Style copy (Table 3).** ``--num-style-pairs`` (paper: 1000) test faces in a seeded random order; each
  target's mask is rendered in the style of the next face of that order (the sources are the targets in a
  different order, as in §5.4). Scores: Male, Heavy_Makeup and No_Beard accuracy against the *source's*
  values, the parser's pixel accuracy against the target mask, FID against the real test set.
* **GT rows.** The classifier and the parser on the real test images against their own labels.

Where the paper is silent or cannot be followed, and what we do instead:

* Pairs for Table 2 were chosen with similar head pose (HopeNet) in the paper; no pose estimator is part of
  this project, so donors are drawn at random (``--seed``). Targets are non-smiling faces: a smiling target
  would count as a success without any edit (the paper does not say).
* The paper's verification pairs are "400 pairs ... each with a modified face (Smiling) and an unmodified
  face"; an accuracy needs negatives too, so every edited face also meets another person's original (one
  negative per positive, alternating, as ``metrics.functional.verification.edit_verification_pairs``).
  CelebAMask-HQ ships no identity labels: each test image counts as its own person.
* FID: the outputs (``--num-pairs`` or ``--num-style-pairs`` of them) against all real test images, both
  quantised by the fixed ``metrics.functional.fid.to_uint8``, with the standard TF-FID Inception from the
  weight cache; the sample count is part of the metric key (``test/attribute_transfer/fid_400``).
* Human evaluation columns are not reproducible and are left out.

A metric whose network is not available prints why in its table cell ("needs --parser", "needs Inception
weights: <file> (sha256 …)", "--attr-classifier has no Smiling output", ...) and never a number. The attribute
classifier judges every image at the resolution it was trained at (stored in its checkpoint), so a 512²
output meets a 128²-trained classifier as a 128² image. Loaders, scoring and the report are shared with the
other papers' protocols (:mod:`experiments.evaluate.common`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from experiments.evaluate.common import (
    MIN_VERIFICATION_FACES,
    VERIFICATION_FOLDS,
    EvaluationConfig,
    IdentityCollector,
    Judges,
    PairedFaces,
    ProtocolScorer,
    ProtocolScores,
    Report,
    Score,
    Unavailable,
    add_judge_arguments,
    add_output_arguments,
    add_run_arguments,
    batches,
    data_fact,
    fid_metric,
    flat_metrics,
    judges_from_args,
    load_test_split,
    paper_table,
    select_attributes,
    split_attributes,
)
from metrics.callbacks import protocol_name
from metrics.fid import FID
from portrait_models.maskgan.editing import render, transfer_parts

HELP = "MaskGAN Tables 2-4 on the CelebAMask-HQ (or synthetic) test split"

TRANSFER_ATTRIBUTES: tuple[str, ...] = ("Smiling",)
STYLE_COPY_ATTRIBUTES: tuple[str, ...] = ("Male", "Heavy_Makeup", "No_Beard")
GT_ATTRIBUTES: tuple[str, ...] = TRANSFER_ATTRIBUTES + STYLE_COPY_ATTRIBUTES
__all__ = ["MIN_VERIFICATION_FACES", "IdentityCollector", "Judges", "Unavailable"]  # re-exported for callers

# The paper's numbers (MaskGAN, CVPR 2020): mask-to-image rows of Tables 2-4. None = "-" in the paper.
PAPER_TABLE2: dict[str, tuple[float | None, float | None, float | None]] = {
    # method: (Smiling cls. accuracy %, segmentation %, FID)
    "Pix2PixHD-m": (78.5, 93.82, 54.68),
    "SPADE*": (73.8, 94.11, 56.21),
    "MaskGAN": (72.3, 93.23, 46.67),
    "MaskGAN†": (77.3, 93.86, 46.84),
    "GT": (92.3, 92.11, None),
}
PAPER_TABLE3: dict[str, tuple[float, float, float, float, float | None]] = {
    # method: (Male %, Heavy_Makeup %, No_Beard %, segmentation %, FID)
    "Pix2PixHD-m": (56.6, 55.1, 78.9, 91.46, 39.65),
    "SPADE*": (54.5, 51.0, 71.9, 94.60, 46.17),
    "MaskGAN": (68.1, 72.1, 88.4, 92.34, 37.55),
    "MaskGAN†": (71.7, 73.3, 89.5, 92.31, 37.14),
    "GT": (96.1, 88.5, 95.1, 92.71, None),
}
PAPER_TABLE4: dict[str, float] = {"Pix2PixHD-m": 58.46, "SPADE*": 70.77, "MaskGAN†": 76.41}


@dataclass(frozen=True)
class MaskGANEvaluation:
    """The numbers behind Tables 2-4, with what they were measured on."""

    model_name: str
    checkpoint: str
    data: str
    synthetic: bool
    image_size: int
    num_test_images: int
    ground_truth: ProtocolScores
    attribute_transfer: ProtocolScores
    style_copy: ProtocolScores
    identity: Score
    identity_backend: str
    identity_label: str
    notes: tuple[str, ...] = ()

    @property
    def identity_is_paper_protocol(self) -> bool:
        return self.identity_backend == "arcface"

    def metrics(self) -> dict[str, float | str]:
        """Flat ``test/<protocol>/<metric>`` keys (sample counts in the FID and verification keys), the number
        or, for a metric that could not be measured, the reason."""
        flat: dict[str, Score] = {}
        for name, scores in (
            ("ground_truth", self.ground_truth),
            ("attribute_transfer", self.attribute_transfer),
            ("style_copy", self.style_copy),
        ):
            for attribute, value in scores.attribute_accuracy.items():
                flat[f"test/{name}/attr_acc/{attribute}"] = value
            flat[f"test/{name}/seg_pixel_acc"] = scores.segmentation
            if scores.fid is not None:
                flat[f"test/{name}/fid_{protocol_name(scores.num_samples)}"] = scores.fid
        faces = protocol_name(self.attribute_transfer.num_samples)
        flat[f"test/identity/{self.identity_backend}_verification_acc_{faces}"] = self.identity
        return flat_metrics(flat)


# ------------------------------------------------------------------------------------ pair selection
def style_copy_targets(source_attributes: Tensor) -> Tensor:
    """Table 3's expected attributes of a style copy: the *source's* Male, Heavy_Makeup and No_Beard."""
    return select_attributes(source_attributes, STYLE_COPY_ATTRIBUTES)


def select_smiling_pairs(attributes: Tensor, num_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Table 2's ``(targets, donors)``: up to ``num_pairs`` faces with Smiling=0 in a seeded random order,
    each with a face whose Smiling=1 (donors in a seeded random order, reused cyclically when fewer)."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    smiling = select_attributes(attributes, ("Smiling",))[:, 0] > 0.5
    target_pool, donor_pool = torch.nonzero(~smiling).flatten(), torch.nonzero(smiling).flatten()
    if len(target_pool) == 0 or len(donor_pool) == 0:
        raise ValueError(
            "the Smiling transfer needs test faces with Smiling=0 (targets) and Smiling=1 (donors); this "
            f"split has {len(target_pool)} and {len(donor_pool)}"
        )
    generator = torch.Generator().manual_seed(seed)
    targets = target_pool[torch.randperm(len(target_pool), generator=generator)][:num_pairs]
    donors = donor_pool[torch.randperm(len(donor_pool), generator=generator)]
    return targets, donors[torch.arange(len(targets)) % len(donors)]


def select_style_pairs(num_images: int, num_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Table 3's ``(targets, sources)``: up to ``num_pairs`` faces in a seeded random order; each one's source
    is the next target of that order (cyclically), so no face copies its own style."""
    if num_pairs < 2 or num_images < 2:
        raise ValueError(f"style copy needs >= 2 pairs and >= 2 test images, got {num_pairs}, {num_images}")
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randperm(num_images, generator=generator)[:num_pairs]
    return targets, targets.roll(-1)


@dataclass(frozen=True)
class MaskGANConfig(EvaluationConfig):
    """How many faces each protocol uses (paper: 400 transfer pairs, 1000 style-copy pairs)."""

    num_pairs: int = 400
    num_style_pairs: int = 1000


# ---------------------------------------------------------------------------------------- protocols
@torch.no_grad()
def score_ground_truth(
    dataset: Dataset, judges: Judges, fid: FID | Unavailable, config: MaskGANConfig
) -> ProtocolScores:
    """GT rows: classifier and parser on the real test images; their features become FID's reference set."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, GT_ATTRIBUTES, fid, num_samples=len(dataset), device=device, real=True)
    if scorer.active:
        for batch in batches(dataset, config, "real test images"):
            targets = select_attributes(batch["attributes"], GT_ATTRIBUTES)
            scorer.update(batch["image"].to(device), batch["label"].to(device), targets)
    return scorer.scores()


@torch.no_grad()
def run_attribute_transfer(
    model: nn.Module,
    dataset: Dataset,
    pairs: tuple[Tensor, Tensor],
    judges: Judges,
    fid: FID | Unavailable,
    config: MaskGANConfig,
) -> tuple[ProtocolScores, Score]:
    """Table 2 and Table 4: the donors' mouths in the targets' masks, rendered in the targets' own style."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, TRANSFER_ATTRIBUTES, fid, num_samples=len(pairs[0]), device=device)
    identity = IdentityCollector(judges.embedder)
    if scorer.active or not isinstance(judges.embedder, Unavailable):
        for batch in batches(PairedFaces(dataset, *pairs), config, "attribute transfer (Smiling)"):
            image, label = batch["target_image"].to(device), batch["target_label"].to(device)
            edited = transfer_parts(label, batch["partner_label"].to(device))
            fake = render(model, edited, image, label)
            scorer.update(fake, edited, torch.ones(len(fake), len(TRANSFER_ATTRIBUTES), device=device))
            identity.update(fake, image, batch["target_index"])
    return scorer.scores(), identity.accuracy()


@torch.no_grad()
def run_style_copy(
    model: nn.Module,
    dataset: Dataset,
    pairs: tuple[Tensor, Tensor],
    judges: Judges,
    fid: FID | Unavailable,
    config: MaskGANConfig,
) -> ProtocolScores:
    """Table 3: each target mask rendered in the style of its source image; attributes judged against the
    source's."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, STYLE_COPY_ATTRIBUTES, fid, num_samples=len(pairs[0]), device=device)
    if scorer.active:
        for batch in batches(PairedFaces(dataset, *pairs), config, "style copy"):
            label = batch["target_label"].to(device)
            fake = render(model, label, batch["partner_image"].to(device), batch["partner_label"].to(device))
            scorer.update(fake, label, style_copy_targets(batch["partner_attributes"]))
    return scorer.scores()


def model_name(model: nn.Module) -> str:
    """The paper's name of the variant a MaskGAN system was built as (and whether EBST was reached)."""
    hparams = getattr(model, "hparams", {})
    if not hparams.get("use_mask_branch", True):
        return "Pix2PixHD-m"
    if hparams.get("fusion", "sft") == "concat":
        return "MaskGAN-concat"
    if not hparams.get("ebst", False):
        return "MaskGAN"
    phase = getattr(model, "phase", "done")
    return "MaskGAN†" if phase in ("ebst", "done") else f"MaskGAN† (EBST not reached: phase {phase})"


def evaluate_maskgan(
    model: nn.Module,
    dataset: Dataset,
    judges: Judges,
    config: MaskGANConfig | None = None,
    *,
    data: str = "",
    synthetic: bool = False,
    checkpoint: str = "",
) -> MaskGANEvaluation:
    """Run the ground-truth pass and the three protocols on a test split; see the module docstring.

    ``model`` renders masks through ``editing.render(model, target_mask, style_image, style_mask)``: a
    :class:`~portrait_models.maskgan.module.MaskGAN`, or anything with its ``render`` and
    ``hparams.num_classes``.
    """
    config = config or MaskGANConfig()
    if len(dataset) < 2:  # type: ignore[arg-type]
        raise ValueError(f"the test split has {len(dataset)} images; the protocols need at least 2")  # type: ignore[arg-type]
    device = torch.device(config.device)
    model = model.to(device).eval()
    judges.to(device)
    fid = fid_metric(judges, device)
    attributes = split_attributes(dataset)
    transfer_pairs = select_smiling_pairs(attributes, config.num_pairs, config.seed)
    style_pairs = select_style_pairs(len(dataset), config.num_style_pairs, config.seed)  # type: ignore[arg-type]

    ground_truth = score_ground_truth(dataset, judges, fid, config)
    transfer, identity = run_attribute_transfer(model, dataset, transfer_pairs, judges, fid, config)
    style = run_style_copy(model, dataset, style_pairs, judges, fid, config)
    notes = []
    transfer_count, style_count = len(transfer_pairs[0]), len(style_pairs[0])
    if transfer_count < config.num_pairs:
        notes.append(f"only {transfer_count} non-smiling test faces for --num-pairs {config.num_pairs}")
    if style_count < config.num_style_pairs:
        notes.append(f"only {style_count} test faces for --num-style-pairs {config.num_style_pairs}")
    return MaskGANEvaluation(
        model_name=model_name(model),
        checkpoint=checkpoint,
        data=data,
        synthetic=synthetic,
        image_size=int(dataset[0]["image"].shape[-1]),
        num_test_images=len(dataset),  # type: ignore[arg-type]
        ground_truth=ground_truth,
        attribute_transfer=transfer,
        style_copy=style,
        identity=identity,
        identity_backend=judges.identity_backend,
        identity_label=judges.identity_label,
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------------------ report
def _ours(result: MaskGANEvaluation, what: str = "") -> str:
    where = "synthetic" if result.synthetic else "CelebAMask-HQ"
    return f"**ours: {what or result.model_name}** ({where}, {result.image_size}²)"


def table2_attribute_transfer(result: MaskGANEvaluation) -> str:
    """Table 2 layout: Smiling classification accuracy, segmentation accuracy, FID."""
    ours, gt = result.attribute_transfer, result.ground_truth
    rows = [
        (_ours(result), (ours.attribute_accuracy["Smiling"], ours.segmentation, ours.fid)),
        (_ours(result, "GT"), (gt.attribute_accuracy["Smiling"], gt.segmentation, None)),
    ]
    header = ["Method", "Attribute cls. accuracy (%)", "Segmentation (%)", f"FID ({ours.num_samples} outputs)"]
    title = f"Table 2: geometry-level attribute transfer, Smiling ({ours.num_samples} pairs)"
    return paper_table(title, header, PAPER_TABLE2, rows, digits=(1, 2, 2))


def table3_style_copy(result: MaskGANEvaluation) -> str:
    """Table 3 layout: Male / Heavy_Makeup / No_Beard accuracy, segmentation accuracy, FID."""
    style, gt = result.style_copy, result.ground_truth
    rows = [
        (label, (*(scores.attribute_accuracy[a] for a in STYLE_COPY_ATTRIBUTES), scores.segmentation, fid))
        for label, scores, fid in ((_ours(result), style, style.fid), (_ours(result, "GT"), gt, None))
    ]
    n = style.num_samples
    header = ["Method", "Male (%)", "Heavy Makeup (%)", "No Beard (%)", "Segmentation (%)", f"FID ({n} outputs)"]
    return paper_table(f"Table 3: geometry-level style copy ({n} pairs)", header, PAPER_TABLE3, rows, (1, 1, 1, 2, 2))


def table4_identity(result: MaskGANEvaluation) -> str:
    """Table 4 layout: face verification accuracy (10-fold, best threshold)."""
    faces = result.attribute_transfer.num_samples
    title = (
        f"Table 4: identity preservation ({faces} edited faces: {faces} same-person + up to {faces} "
        f"different-person pairs, {VERIFICATION_FOLDS}-fold)"
    )
    ours = [(_ours(result, f"{result.model_name}, {result.identity_label}"), (result.identity,))]
    paper = {name: (value,) for name, value in PAPER_TABLE4.items()}
    notes = []
    if not result.identity_is_paper_protocol:
        notes.append("*Not the paper's protocol*: dlib identity embeddings, not ArcFace (not comparable).")
    return paper_table(title, ["Method", "Face verification accuracy (%)"], paper, ours, (2,), notes)


def build_report(result: MaskGANEvaluation) -> Report:
    """The report: what was evaluated on what, Tables 2-4, and the flat metric keys."""
    facts = [
        f"model: {result.model_name}, EMA Dense Mapping Network, `{result.checkpoint}`",
        data_fact(result.data, result.synthetic, "CelebAMask-HQ"),
        f"test split: {result.num_test_images} images at {result.image_size}²; FID against all of them",
        "protocols and deviations from the paper: see `experiments/evaluate/maskgan.py`",
        *(f"note: {note}" for note in result.notes),
    ]
    sections = [table2_attribute_transfer(result), table3_style_copy(result), table4_identity(result)]
    return Report("MaskGAN evaluation (Lee et al. 2020, §5.3-5.4)", facts, sections, result.metrics())


def render_report(result: MaskGANEvaluation) -> str:
    """The whole Markdown report (see :func:`build_report`)."""
    return build_report(result).markdown()


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="MaskGAN .ckpt or the official latest_net_G.pth")
    add_judge_arguments(parser)
    parser.add_argument("--num-pairs", type=int, default=400, help="Smiling transfer pairs = verified faces")
    parser.add_argument("--num-style-pairs", type=int, default=1000, help="style-copy pairs")
    add_run_arguments(parser)
    add_output_arguments(parser)


def evaluate_from_args(args: argparse.Namespace) -> MaskGANEvaluation:
    from datamodules import CelebAMaskHQDataModule
    from experiments.edit.maskgan import load_maskgan

    model = load_maskgan(args.checkpoint, args.device)
    dataset, data, synthetic = load_test_split(
        CelebAMaskHQDataModule, args.data, int(model.hparams.image_size), args.checkpoint, args.synthetic_images,
        dataset_name="CelebAMask-HQ",
    )  # fmt: skip
    config = MaskGANConfig(
        num_pairs=args.num_pairs,
        num_style_pairs=args.num_style_pairs,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    judges = judges_from_args(args)
    return evaluate_maskgan(
        model, dataset, judges, config, data=data, synthetic=synthetic, checkpoint=str(args.checkpoint)
    )


def run(args: argparse.Namespace) -> int:
    build_report(evaluate_from_args(args)).write(args.out, args.json)
    return 0
