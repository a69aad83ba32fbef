"""MagGAN's evaluation protocols (Wei et al. 2020, §3.1 and §4, Tables 1 and 3, Fig. 7) on the CelebA test split::

    python -m experiments.evaluate maggan --checkpoint C [--data ROOT --masks CACHE] [--attr-classifier A.ckpt]
        [--inception-weights F] [--max-images N] [--batch-size 8] [--device cuda] [--out report.md] [--json r.json]

(``make eval-maggan CKPT=... [DATA=... MASKS=...]``.) Without ``--data`` the synthetic world's test split is
used (CelebA layout, the exact label maps as masks, the face count and seed the checkpoint's DataModule stored);
the report says so in bold. With ``--data`` the STGAN split (test = lines 182,637–202,599) and STGAN's crop,
with the 19-class soft masks of ``--masks`` (``experiments.parse``), resized to the model's resolution.

Protocols, every test face, the generator in eval mode (BatchNorm running statistics):

* **MRE (eq. 2)**: each of the 13 attributes flipped alone (``att_diff = 1 − 2·att_s``, ±1), the error in the
  region eq. (5) preserves, averaged over attributes and images. Reported twice: ``mre`` as the project's
  metric computes it ([-1, 1] images, ℓ1 summed over colour channels) and ``mre_paper_scale`` ([0, 1] images,
  colour mean), which is exactly ``mre / 6`` and the scale the paper's numbers fit (spec A3). Compare only
  orderings with the paper: its parser, its crop of in-the-wild images and its supplement's AR tables differ.
* **Editing accuracy**: on the 13 single-flip edits, the attribute classifier (``--attr-classifier``, at the
  resolution it was trained at; the paper resizes to 128 for STGAN's classifier) must predict the flipped value;
  the flips follow STGAN's test-time conflict rules (``--flip conflict-free``, the default: a hair colour turned
  on turns the other two off, Bald and Bangs exclude each other, as STGAN's test does, whose classifier the
  paper uses; a plain flip asks for targets like "blond and brown" that training never shows) or ``--flip plain``;
  per attribute and "Avg Acc" = mean of the 13 rates, also on the hat / no-hat subsets (hat ⇔ mean soft hat
  probability > 0.1, Fig. 7).
* **FID** (``fid_13edits``): all 13 single-flip edits (the accuracy's rule) against the test originals, standard
  TF-FID Inception (the authors' CelebA-finetuned Inception is not available: not comparable, spec A15).
* **PSNR / SSIM** of the reconstruction ``G(x, 0)`` against ``x``: [0, 1], per image (SSIM Gaussian 11 / 1.5).

Layout: Table 1 (our model beside the paper's rows) and Table 3 (the paper's ablation rows, ours marked by its
``table3_row`` or by its switches), then the per-attribute accuracies with the hat split. A metric whose network
is missing prints why ("needs --attr-classifier", "needs Inception weights: …") instead of a number.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from datamodules.labels import CLASS_INDEX, EDIT_ATTRIBUTES
from experiments.evaluate.common import (
    EvaluationConfig,
    Judges,
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
    markdown_table,
    missing_attribute,
    paper_table,
    training_data_settings,
)
from metrics.functional.image import psnr_per_image, ssim_per_image, to_unit_range
from metrics.functional.mre import attribute_change_vector, mre_per_attribute
from portrait_models.maggan.attributes import single_flip_changes

HELP = "MagGAN Tables 1 and 3 (MRE, edit accuracy, FID, PSNR/SSIM, hat split) on the CelebA (or synthetic) test split"
HAT_THRESHOLD = 0.1
PAPER_SCALE = 6.0  # [-1, 1] → [0, 1] halves |Δ|; the colour sum → mean divides by 3
COLUMNS = ("MRE ↓", "FID ↓", "Avg Acc", "PSNR", "SSIM")
TABLE1 = {
    "AttGAN(128)": (0.0713, 10.23, 64.9, 24.07, 0.841),
    "STGAN(128)": (0.0627, 7.75, 85.8, 31.67, 0.948),
    "STGAN(256)": (0.0530, 1.21, 90.4, 37.61, 0.959),
    "MagGAN(256)": (0.0163, 1.10, 90.0, 40.25, 0.984),
    "MagGAN(512)": (0.0141, 1.20, 89.1, 41.42, 0.987),
    "MagGAN(1024)": (0.0130, 1.31, 91.0, 42.94, 0.994),
}
TABLE3 = {
    "(i) STGAN": (0.0530, 1.21, 90.4, 37.61, 0.959),
    "(ii) STGAN+cycle": (0.0530, 1.31, 87.3, 36.14, 0.970),
    "(iii) STGAN w/ L_mre": (0.0289, 1.33, 95.6, 38.48, 0.984),
    "(iv) MagGAN w/o L_mre": (0.0397, 1.22, 89.6, 39.35, 0.980),
    "(v) MagGAN w/o SP": (0.0161, 1.23, 89.9, 40.40, 0.982),
    "(vi) MagGAN": (0.0163, 1.10, 90.0, 40.25, 0.984),
    "(vii) MagGAN+Seg": (0.0612, 2.39, 90.3, 40.10, 0.983),
}


@dataclass(frozen=True)
class MagGANConfig(EvaluationConfig):
    max_images: int | None = None  # evaluate only the first N test faces (None: all)
    flip_rule: str = "conflict_free"  # the edits judged by accuracy and FID: "conflict_free" (STGAN) or "plain"


@dataclass
class MagGANEvaluation:
    """What the protocols measured (accuracies in percent; ``None`` subsets had no image)."""

    num_images: int
    mre: float
    mre_per_attribute: dict[str, float]
    psnr: float
    ssim: float
    fid: Score
    accuracy: dict[str, dict[str, Score]]  # subset ("all", "hat", "no_hat") -> attribute -> rate
    subset_sizes: dict[str, int]
    facts: list[str] = field(default_factory=list)
    row: str = ""
    flip_rule: str = "conflict_free"

    @property
    def mre_paper_scale(self) -> float:
        return self.mre / PAPER_SCALE

    def average_accuracy(self, subset: str = "all") -> Score:
        rates = self.accuracy[subset]
        missing = next((v for v in rates.values() if isinstance(v, Unavailable)), None)
        return missing if missing is not None else sum(rates.values()) / len(rates)  # type: ignore[arg-type]


def table3_label(hparams) -> str:
    """Our model's row in Table 3: its ``table3_row``, or the row its switches match, or "custom"."""
    from portrait_models.maggan.module import TABLE3_ROWS

    if hparams.get("table3_row"):
        return hparams["table3_row"]
    for name, row in TABLE3_ROWS.items():
        if (
            hparams["conditioning"] == row["conditioning"] and hparams["decoder"] == row["decoder"]
            and hparams["reconstruction"] == row["reconstruction"] and (hparams["lambda_mre"] > 0) == row["mre"]
            and bool(hparams.get("seg_branch")) == row.get("seg_branch", False)
        ):  # fmt: skip
            return name
    return "custom"


@torch.no_grad()
def evaluate_maggan(model, dataset, judges: Judges, config: MagGANConfig) -> MagGANEvaluation:
    """Run every protocol over ``dataset`` (items with ``image``, ``attributes`` (13) and ``soft_masks``)."""
    device = torch.device(config.device)
    model = model.to(device).eval()
    judges.to(device)
    fid = fid_metric(judges, device)
    classifier = judges.classifier
    columns: dict[str, int] = {}
    unscored: dict[str, Unavailable] = {}
    for name in EDIT_ATTRIBUTES:
        why = missing_attribute(classifier, name)
        if why is None:
            columns[name] = tuple(classifier.attributes).index(name)  # type: ignore[union-attr]
        else:
            unscored[name] = why
    subsets = ("all", "hat", "no_hat")
    hits = {s: torch.zeros(len(EDIT_ATTRIBUTES)) for s in subsets}
    sizes = dict.fromkeys(subsets, 0)
    mre_sum, psnr_sum, ssim_sum, seen = torch.zeros(len(EDIT_ATTRIBUTES)), 0.0, 0.0, 0
    cond = model.generator.condition
    for batch in batches(dataset, config, "maggan"):
        if config.max_images is not None and seen >= config.max_images:
            break
        image = batch["image"].to(device)
        att = batch["attributes"].to(device).float()
        masks = batch["soft_masks"].to(device).float()
        full = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=False)
        recon = model.edit(image, torch.zeros_like(att), masks)
        psnr_sum += float(psnr_per_image(to_unit_range(recon), to_unit_range(image)).sum())
        ssim_sum += float(ssim_per_image(to_unit_range(recon), to_unit_range(image)).sum())
        flips = attribute_change_vector(att)
        edited = model.single_flips(image, att, masks)  # eq. (2)'s literal single flips: the MRE's edits
        mre_sum += mre_per_attribute(image, edited, full, flips, cond.ar_plus, cond.ar_minus).sum(0).cpu()
        judged = edited
        if config.flip_rule != "plain":  # re-render only the edits the conflict rules change on some face
            changes, plain = single_flip_changes(att, config.flip_rule), single_flip_changes(att, "plain")
            judged = edited.clone()
            for i in range(len(EDIT_ATTRIBUTES)):
                if not torch.equal(changes[:, i], plain[:, i]):
                    judged[:, i] = model.edit(image, changes[:, i], masks)
        hat = (masks[:, CLASS_INDEX["hat"]].flatten(1).mean(1) > HAT_THRESHOLD).cpu()
        groups = {"all": torch.ones_like(hat), "hat": hat, "no_hat": ~hat}
        for subset, member in groups.items():
            sizes[subset] += int(member.sum())
        for i, name in enumerate(EDIT_ATTRIBUTES):
            if not isinstance(fid, Unavailable):
                fid.update(judged[:, i])
            if name in columns:
                logits = classifier(judged[:, i])[:, columns[name]]  # type: ignore[operator]
                success = ((logits > 0).float() == 1 - att[:, i]).cpu()
                for subset, member in groups.items():
                    hits[subset][i] += float(success[member].sum())
        if not isinstance(fid, Unavailable):
            fid.update(image, real=True)
        seen += image.shape[0]
    if seen == 0:
        raise ValueError("the test split is empty; nothing to evaluate")
    accuracy: dict[str, dict[str, Score]] = {}
    for subset in subsets:
        accuracy[subset] = {}
        for i, name in enumerate(EDIT_ATTRIBUTES):
            if name in unscored:
                accuracy[subset][name] = unscored[name]
            elif sizes[subset] == 0:
                accuracy[subset][name] = Unavailable(f"no {subset.replace('_', '-')} faces")
            else:
                accuracy[subset][name] = 100.0 * float(hits[subset][i]) / sizes[subset]
    fid_score: Score = fid if isinstance(fid, Unavailable) else float(fid.compute())
    per_attribute = {name: float(mre_sum[i]) / seen for i, name in enumerate(EDIT_ATTRIBUTES)}
    return MagGANEvaluation(
        num_images=seen, mre=float(mre_sum.mean()) / seen, mre_per_attribute=per_attribute, psnr=psnr_sum / seen,
        ssim=ssim_sum / seen, fid=fid_score, accuracy=accuracy, subset_sizes=sizes, row=table3_label(model.hparams),
        flip_rule=config.flip_rule,
    )  # fmt: skip


def build_report(result: MagGANEvaluation) -> Report:
    ours = (result.mre_paper_scale, result.fid, result.average_accuracy(), result.psnr, result.ssim)
    digits = (4, 2, 1, 2, 3)
    scale_note = (
        f"MRE here is on the paper's scale ([0, 1] images, colour mean) = the project metric / 6; project scale "
        f"([-1, 1], colour sum): {result.mre:.4f}. FID uses the standard Inception on all 13 single-flip edits "
        "(`fid_13edits`), not the authors' CelebA Inception: its values are not comparable with the paper's."
    )
    sections = [
        paper_table("Table 1: comparison with the state of the art", ("Methods", *COLUMNS), TABLE1,
                    [(f"ours, row ({result.row})", ours)], digits, [scale_note]),
        paper_table("Table 3: variants of MagGAN (256²)", ("Methods", *COLUMNS), TABLE3,
                    [(f"ours, row ({result.row})", ours)], digits),
    ]  # fmt: skip
    header = ("Attribute", f"all ({result.subset_sizes['all']})", f"hat ({result.subset_sizes['hat']})",
              f"no hat ({result.subset_sizes['no_hat']})", "MRE (project scale)")  # fmt: skip
    rows = [
        [name, *(_cell(result.accuracy[s][name], 1) for s in ("all", "hat", "no_hat")),
         f"{result.mre_per_attribute[name]:.4f}"]
        for name in EDIT_ATTRIBUTES
    ]  # fmt: skip
    rows.append(
        ["Avg Acc", *(_cell(result.average_accuracy(s), 1) for s in ("all", "hat", "no_hat")), f"{result.mre:.4f}"]
    )
    sections.append(
        "### Editing accuracy per attribute, hat split (Fig. 7; hat ⇔ mean hat probability > 0.1)\n\n"
        + markdown_table(header, rows)
    )
    metrics: dict[str, Score] = {
        "test/mre": result.mre, "test/mre_paper_scale": result.mre_paper_scale, "test/fid_13edits": result.fid,
        "test/psnr": result.psnr, "test/ssim": result.ssim, "test/avg_acc": result.average_accuracy(),
        "test/avg_acc_hat": result.average_accuracy("hat"), "test/avg_acc_no_hat": result.average_accuracy("no_hat"),
    }  # fmt: skip
    metrics.update({f"test/acc/{k}": v for k, v in result.accuracy["all"].items()})
    return Report("MagGAN evaluation", [*result.facts, flip_fact(result.flip_rule)], sections, flat_metrics(metrics))


def flip_fact(rule: str) -> str:
    """The report line that says which edits were judged."""
    if rule == "plain":
        return "edits (accuracy, FID, MRE): plain single flips `att_diff = (1 − 2·att_s)·e_i` (`--flip plain`)"
    return (
        "edits for accuracy and FID: single flips with STGAN's test-time conflict rules (a hair colour turned on "
        "turns the other two off; Bald and Bangs exclude each other; `--flip plain` for the plain flip); MRE: "
        "eq. 2's plain single flips"
    )


def _cell(value: Score, digits: int) -> str:
    return value.reason if isinstance(value, Unavailable) else f"{value:.{digits}f}"


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="MagGAN Lightning checkpoint (.ckpt)")
    parser.add_argument("--masks", default=None, help="soft-mask cache of the CelebA root (experiments.parse)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N test faces")
    parser.add_argument(
        "--flip", choices=("conflict-free", "plain"), default="conflict-free",
        help="edits judged by accuracy and FID: STGAN's test targets (a hair colour turned on turns the others "
        "off, Bald and Bangs exclude each other; default) or the plain single flip (MRE: always eq. 2's plain flip)",
    )  # fmt: skip
    add_judge_arguments(parser, identity=False)
    add_run_arguments(parser)
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from datamodules import CelebADataModule
    from portrait_models.maggan.editing import load_maggan

    model = load_maggan(args.checkpoint, args.device)
    if args.data is not None and args.masks is None:
        raise ValueError("--data needs --masks: the soft-mask cache that `python -m experiments.parse` writes")
    kwargs = {"attribute_names": EDIT_ATTRIBUTES, "soft_masks": args.masks if args.data else "labels"}
    if args.data is not None:
        kwargs["split_scheme"] = "stgan"
    elif training_data_settings(args.checkpoint).get("visible_bald"):
        kwargs["visible_bald"] = True  # the world the checkpoint was trained on
    dataset, description, synthetic = load_test_split(
        CelebADataModule, args.data, int(model.hparams.image_size), args.checkpoint, args.synthetic_images,
        dataset_name="CelebA", **kwargs,
    )  # fmt: skip
    config = MagGANConfig(batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed, device=args.device,
                          progress=not args.no_progress, max_images=args.max_images,
                          flip_rule=args.flip.replace("-", "_"))  # fmt: skip
    result = evaluate_maggan(model, dataset, judges_from_args(args), config)
    result.facts = [
        f"model: MagGAN({model.hparams.image_size}) from {args.checkpoint}, Table 3 row ({result.row})",
        data_fact(description, synthetic, "CelebA"),
        f"images: {result.num_images} test faces × 13 single-attribute flips",
    ]
    build_report(result).write(args.out, args.json)
    return 0
