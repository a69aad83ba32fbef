"""What every paper's evaluation protocol shares: judges, the test split, scoring, and the report.

A protocol is one module ``experiments/evaluate/<paper>.py`` registered by one line in
``experiments/evaluate/__init__.py`` (``PROTOCOLS``). It exposes ``HELP`` (one line for ``--help``),
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status), and is written from these pieces:

* **Missing networks are cells, not crashes.** Every loader returns the network or an :class:`Unavailable`
  whose ``reason`` is what the table cell shows: ``needs --parser (...)``, ``needs Inception weights:
  pt_inception-2015-12-05-6726825d.pth (sha256 …)`` (:func:`missing_weights_reason`), ``--attr-classifier has no
  Smiling output`` (:func:`missing_attribute`). A score is a float or an ``Unavailable`` (:data:`Score`).
* **Judges.** :func:`load_parser` (a frozen :class:`~portrait_models.parsing.FaceParser`),
  :func:`load_attribute_classifier` (a frozen :class:`~portrait_models.classifiers.attributes.AttributeClassifier`;
  it resizes every input to the resolution it was trained at, which its checkpoint stores),
  :func:`load_embedder` (ArcFace, the papers' identity network, or dlib's, named as not the paper's),
  :func:`load_fid_extractor` (the standard TF-FID Inception). :func:`add_judge_arguments` adds their options
  and :func:`judges_from_args` builds a :class:`Judges` from them.
* **Data.** :func:`load_test_split` gives the test split of any :class:`~datamodules.base.FaceDataModule`
  family: the real release under ``--data``, else the synthetic world in the same layout, at the size and
  seed the checkpoint's DataModule stored. :func:`split_attributes` / :func:`select_attributes` read the
  (N, 40) CelebA attribute table; :class:`PairedFaces` serves (target, partner) pairs.
* **Scoring.** :class:`ProtocolScorer` scores a stream of generated images with whichever judges exist
  (attribute accuracy against given targets, parser pixel accuracy against the masks the images should
  follow, FID against the real test images); :class:`IdentityCollector` gives face-verification accuracy of
  edited faces against their originals (10-fold, best threshold).
* **Report.** :class:`Report` holds the title, the facts of the run (what data, which checkpoint) and
  Markdown sections; :func:`paper_table` lays the paper's rows and ours in one table (:func:`format_score`,
  :func:`markdown_table`); :meth:`Report.write` prints the Markdown and writes it and the flat
  ``test/<protocol>/<metric>`` keys as JSON (``--out``, ``--json``; :func:`add_output_arguments`), atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
from metrics.fid import FID
from metrics.identity import IdentityVerification
from metrics.parsing import ParsingAccuracy
from portrait_models.classifiers import FaceEmbedder
from portrait_models.pretrained import WEIGHTS, MissingWeightsError

VERIFICATION_FOLDS = 10
MIN_VERIFICATION_FACES = VERIFICATION_FOLDS // 2  # one positive + one negative pair per edited face


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


def missing_weights_reason(what: str, name: str, hint: str = "") -> str:
    """``needs <what> weights: <file> (sha256 …)`` for the weight-table entry ``name``, for a table cell."""
    entry = WEIGHTS[name]
    digest = f"sha256 {entry.sha256}…" if entry.sha256 else "sha256 not published"
    return f"needs {what} weights: {entry.filename} ({digest}){hint}"


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a FileNotFoundError naming ``what`` it should have been."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


# ------------------------------------------------------------------------------------------- judges
class AttributeJudge(Protocol):
    """An attribute classifier: images in [-1, 1] → (B, len(attributes)) logits."""

    attributes: tuple[str, ...]

    def __call__(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] → (B, len(attributes)) logits."""


@dataclass
class Judges:
    """The frozen networks that score generated faces; each one, or why it is missing.

    ``parser``: images in [-1, 1] → (B, 19, H, W) logits in the CelebAMask-HQ order. ``classifier``: an
    :class:`AttributeJudge`. ``fid_extractor``: ``uint8`` images → (B, D) features (the standard Inception,
    or any extractor for tests and smoke runs). ``identity_backend`` (``"arcface"``, the papers', or
    ``"dlib"``) names the identity metric's key; ``identity_label`` describes the embedder in the tables.
    """

    fid_extractor: nn.Module | Unavailable
    parser: nn.Module | Unavailable
    classifier: AttributeJudge | Unavailable
    embedder: FaceEmbedder | Unavailable
    identity_backend: str = "arcface"
    identity_label: str = "ArcFace"

    def to(self, device: str | torch.device) -> Judges:
        """Move the network judges to ``device`` in eval mode (in place); returns self."""
        for judge in (self.parser, self.classifier, self.embedder, self.fid_extractor):
            if isinstance(judge, nn.Module):
                judge.to(device).eval()
        return self


def missing_attribute(classifier: AttributeJudge | Unavailable, name: str) -> Unavailable | None:
    """Why ``classifier`` cannot judge attribute ``name`` (None when it can): absent, or no such output."""
    if isinstance(classifier, Unavailable):
        return classifier
    if name not in classifier.attributes:
        return Unavailable(f"--attr-classifier has no {name} output")
    return None


def load_fid_extractor(weights_path: str | Path | None = None) -> nn.Module | Unavailable:
    """The standard FID Inception from the weight cache (or ``weights_path``), or why it cannot be had."""
    from metrics.inception import build_fid_inception

    try:
        return build_fid_inception(weights_path)
    except MissingWeightsError:
        return Unavailable(missing_weights_reason("Inception", "inception_fid"))


def load_parser(
    path: str | Path | None, device: str | torch.device, num_classes: int = NUM_CELEBAMASK_CLASSES
) -> nn.Module | Unavailable:
    """A frozen :class:`FaceParser` with ``num_classes`` outputs from a Lightning checkpoint (``--parser``)."""
    if path is None:
        return Unavailable(f"needs --parser (a {num_classes}-class FaceParser .ckpt)")
    from portrait_models.checkpoints import load_module
    from portrait_models.parsing import FaceParser

    path = existing_file(path, "parser checkpoint")
    parser = load_module(FaceParser, path, map_location=device)  # CheckpointError names a foreign file
    if parser.hparams.num_classes != num_classes:
        raise ValueError(
            f"{path}: the parser predicts {parser.hparams.num_classes} classes; this protocol's segmentation "
            f"accuracy needs {num_classes}"
        )
    return parser.to(device).eval().requires_grad_(False)


def load_attribute_classifier(path: str | Path | None, device: str | torch.device) -> AttributeJudge | Unavailable:
    """A frozen :class:`AttributeClassifier` from a Lightning checkpoint (``--attr-classifier``).

    It classifies at the resolution it was trained at (stored in the checkpoint) whatever the size of the
    images it is given; a checkpoint that never saw a training batch stores none and is refused.
    """
    if path is None:
        return Unavailable("needs --attr-classifier")
    from portrait_models.checkpoints import load_module
    from portrait_models.classifiers.attributes import AttributeClassifier

    path = existing_file(path, "attribute classifier checkpoint")
    # The checkpoint restores every weight: no ImageNet file is needed to rebuild the trunk.
    model = load_module(AttributeClassifier, path, map_location=device, pretrained_backbone=False)
    if model.image_size is None:
        raise ValueError(
            f"{path}: the attribute classifier was never trained (its checkpoint records no training "
            "resolution); train one with `make train-attr-classifier`"
        )
    return model.to(device).eval().requires_grad_(False)


def load_embedder(
    backend: str, arcface: str = "r50", device: str | torch.device = "cpu", weights_path: str | None = None
) -> tuple[FaceEmbedder | Unavailable, str]:
    """The identity network and its label for the table: ArcFace (the papers') or dlib (not the papers')."""
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


def add_judge_arguments(parser: argparse.ArgumentParser, *, identity: bool = True) -> None:
    """``--parser``, ``--attr-classifier``, ``--inception-weights`` and (``identity``) the identity options."""
    parser.add_argument("--parser", default=None, help="19-class FaceParser .ckpt (segmentation accuracy)")
    parser.add_argument("--attr-classifier", default=None, help="AttributeClassifier .ckpt (attribute accuracy)")
    parser.add_argument("--inception-weights", default=None, help="explicit FID Inception file (default: cache)")
    if identity:
        parser.add_argument("--identity-backend", choices=("arcface", "dlib"), default="arcface")
        parser.add_argument("--arcface", choices=("r50", "r100"), default="r50", help="ArcFace backbone (cached)")
        parser.add_argument("--arcface-weights", default=None, help="explicit ArcFace backbone.pth (default: cache)")


def judges_from_args(args: argparse.Namespace) -> Judges:
    """The :class:`Judges` the options of :func:`add_judge_arguments` name (missing ones as Unavailable)."""
    backend = getattr(args, "identity_backend", None)
    if backend is None:
        embedder: FaceEmbedder | Unavailable = Unavailable("this protocol measures no identity")
        backend, label = "none", "none"
    else:
        embedder, label = load_embedder(backend, args.arcface, args.device, args.arcface_weights)
    return Judges(
        fid_extractor=load_fid_extractor(args.inception_weights),
        parser=load_parser(args.parser, args.device),
        classifier=load_attribute_classifier(args.attr_classifier, args.device),
        embedder=embedder,
        identity_backend=backend,
        identity_label=label,
    )


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class EvaluationConfig:
    """Batching, seed and device of an evaluation run (a protocol subclasses it for its sample counts)."""

    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--synthetic-images``, ``--batch-size``, ``--num-workers``, ``--seed``, ``--device``,
    ``--no-progress`` (fields of :class:`EvaluationConfig` and :func:`load_test_split`)."""
    parser.add_argument("--data", default=None, help="the unpacked dataset release (default: synthetic world)")
    parser.add_argument("--synthetic-images", type=int, help="synthetic faces (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=0, help="pair selection seed")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def batches(dataset: Dataset, config: EvaluationConfig, desc: str) -> Iterator[dict[str, Any]]:
    """The dataset in order, in batches of ``config.batch_size``, with a progress bar unless disabled."""
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
    yield from tqdm(loader, desc=desc, disable=not config.progress, leave=False, dynamic_ncols=True)


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
    datamodule_class: type,
    data: str | None,
    image_size: int,
    checkpoint: str | Path,
    synthetic_images: int | None = None,
    dataset_name: str = "",
    **datamodule_kwargs: Any,
) -> tuple[Dataset, str, bool]:
    """``(test split, description, synthetic?)`` of a :class:`~datamodules.base.FaceDataModule` family.

    With ``data`` the real release's test split under it; else the synthetic world in the same layout,
    with the face count and seed the checkpoint's DataModule was trained with (if stored; default 200
    faces, seed 0). ``datamodule_kwargs`` go to the DataModule (e.g. attributes or a class count).
    """
    name = dataset_name or datamodule_class.__name__.removesuffix("DataModule")
    if data is not None:
        module = datamodule_class(root=data, image_size=image_size, augment=False, **datamodule_kwargs)
        module.setup("test")
        return module.datasets["test"], f"{name} test split ({data})", False
    trained = training_data_settings(checkpoint)
    count = synthetic_images or trained.get("synthetic_images") or 200
    seed = int(trained.get("seed", 0))
    settings = {"image_size": image_size, "synthetic_images": count, "seed": seed}
    module = datamodule_class(root=None, augment=False, **settings, **datamodule_kwargs)
    module.setup("test")
    description = f"{count} faces, seed {seed}, {name} layout at {module.synthetic_dir}; test split"
    if trained.get("root"):
        description += f"; the model was trained on {trained['root']}"
    return module.datasets["test"], description, True


def select_attributes(attributes: Tensor, names: Sequence[str]) -> Tensor:
    """The columns ``names`` of (B, 40) CelebA attributes, as (B, len(names)) floats in {0, 1}."""
    if attributes.ndim != 2 or attributes.shape[1] != NUM_CELEBA_ATTRIBUTES:
        raise ValueError(f"expected (B, {NUM_CELEBA_ATTRIBUTES}) attributes, got {tuple(attributes.shape)}")
    unknown = [name for name in names if name not in ATTRIBUTE_INDEX]
    if unknown:
        raise KeyError(f"unknown CelebA attributes {unknown}")
    columns = torch.tensor([ATTRIBUTE_INDEX[name] for name in names], device=attributes.device)
    return attributes.index_select(1, columns).float()


def split_attributes(dataset: Dataset) -> Tensor:
    """The (N, 40) attribute table of a test split (``dataset.attributes``), checked."""
    table = getattr(dataset, "attributes", None)
    if table is None:
        raise TypeError(
            f"{type(dataset).__name__} has no `attributes` table; pair selection needs the (N, 40) CelebA "
            "attributes of every test face (datamodules.CelebAMaskHQ and CelebA provide it)"
        )
    attributes = torch.as_tensor(np.asarray(table), dtype=torch.float32)
    if attributes.shape != (len(dataset), NUM_CELEBA_ATTRIBUTES):  # type: ignore[arg-type]
        raise ValueError(
            f"{type(dataset).__name__}.attributes is {tuple(attributes.shape)}, expected "
            f"({len(dataset)}, {NUM_CELEBA_ATTRIBUTES})"  # type: ignore[arg-type]
        )
    return attributes


class PairedFaces(Dataset):
    """Items ``(first[k], second[k])`` of a face dataset as one dict: ``target_*`` and ``partner_*`` keys
    (every key of the items, prefixed), plus ``target_index``."""

    def __init__(self, faces: Dataset, first: Tensor, second: Tensor) -> None:
        if first.shape != second.shape:
            raise ValueError(f"pair indices differ in shape: {tuple(first.shape)} vs {tuple(second.shape)}")
        self.faces, self.first, self.second = faces, first.tolist(), second.tolist()

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, k: int) -> dict[str, Any]:
        target, partner = self.faces[self.first[k]], self.faces[self.second[k]]
        item: dict[str, Any] = {"target_index": self.first[k]}
        item.update({f"target_{key}": value for key, value in target.items() if isinstance(value, Tensor)})
        item.update({f"partner_{key}": value for key, value in partner.items() if isinstance(value, Tensor)})
        return item


# ------------------------------------------------------------------------------------------ scoring
class ProtocolScorer:
    """Scores one protocol's images with whichever judges are available: attribute accuracy of the
    classifier, parsing pixel accuracy against the masks the images should follow, and FID.

    Args:
        judges: the frozen networks.
        attributes: the attribute names scored (their targets are passed to :meth:`update` in this order); an
            attribute the classifier lacks is reported as such in its cell.
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
        for name in self.attributes:
            why = missing_attribute(judges.classifier, name)
            if why is not None:
                self.unscored[name] = why
        self.scored = [name for name in self.attributes if name not in self.unscored]
        classifier_attributes = getattr(judges.classifier, "attributes", ())
        self.classifier_columns = [tuple(classifier_attributes).index(name) for name in self.scored]
        self.attribute_accuracy = (
            AttributeEditAccuracy(self.scored, per_attribute=True).to(device) if self.scored else None
        )
        has_parser = not isinstance(judges.parser, Unavailable)
        self.parsing = ParsingAccuracy(NUM_CELEBAMASK_CLASSES).to(device) if has_parser else None

    @property
    def active(self) -> bool:
        """Whether any judge will score these images (otherwise they need not be made)."""
        return bool(self.scored) or self.parsing is not None or isinstance(self.fid, FID)

    def update(self, images: Tensor, masks: Tensor | None, attribute_targets: Tensor | None) -> None:
        """Score a batch: ``images`` (B, 3, H, W) in [-1, 1], the ``masks`` (B, H, W) they should follow and
        the (B, len(attributes)) attribute values they should show (None: that judge is not asked)."""
        self.seen += images.shape[0]
        if self.attribute_accuracy is not None and attribute_targets is not None:
            logits = self.judges.classifier(images)[:, self.classifier_columns]  # type: ignore[operator]
            keep = [self.attributes.index(name) for name in self.scored]
            self.attribute_accuracy.update(logits.float(), attribute_targets[:, keep].to(logits.device))
        if self.parsing is not None and masks is not None:
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


def fid_metric(judges: Judges, device: str | torch.device) -> FID | Unavailable:
    """One :class:`FID` over the judges' extractor (share it across a run's protocols), or why none."""
    if isinstance(judges.fid_extractor, Unavailable):
        return judges.fid_extractor
    return FID(feature_extractor=judges.fid_extractor).to(device)


class IdentityCollector:
    """Embeddings of edited faces and their originals, then face-verification accuracy (percent): each
    edited face against its own original (same person) and another's (different person), 10 folds."""

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
        self.identities.append(torch.as_tensor(identities).cpu())

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


# ------------------------------------------------------------------------------------------ report
def format_score(value: Score | None, digits: int) -> str:
    """A table cell: the number, the reason it is missing, or "-" where the protocol has no such metric."""
    if value is None:
        return "-"
    if isinstance(value, Unavailable):
        return value.reason
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (a ``|`` inside a cell becomes ``/``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def paper_table(
    title: str,
    header: Sequence[str],
    paper: Mapping[str, Sequence[float | None]],
    ours: Sequence[tuple[str, Sequence[Score | None]]],
    digits: Sequence[int],
    notes: Sequence[str] = (),
) -> str:
    """A ``### title`` section: the paper's rows (``"<method> (paper)"``, None = "-") then ours, one
    ``digits`` entry per value column, then ``notes`` as paragraphs."""
    rows = [[f"{name} (paper)", *map(format_score, values, digits)] for name, values in paper.items()]
    rows += [[label, *map(format_score, values, digits)] for label, values in ours]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table {title!r}: row {row[0]!r} has {len(row)} cells for {len(header)} columns")
    lines = [f"### {title}", "", markdown_table(header, rows)]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines)


def flat_metrics(values: Mapping[str, Score]) -> dict[str, float | str]:
    """``{key: number or the reason it is missing}`` for the JSON report."""
    return {key: value.reason if isinstance(value, Unavailable) else value for key, value in values.items()}


def _atomic_write(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class Report:
    """One evaluation's report: a title, bullet facts (model, data, split), Markdown sections (tables) and
    the flat ``test/<protocol>/<metric>`` keys (a number, or the reason it is missing)."""

    title: str
    facts: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    metrics: dict[str, float | str] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", *(f"- {fact}" for fact in self.facts)]
        for section in self.sections:
            lines += ["", section]
        lines += ["", "### Metric keys", ""]
        lines += [f"- `{k}`: {v if isinstance(v, str) else f'{v:.4f}'}" for k, v in self.metrics.items()]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path | None = None, json_path: str | Path | None = None) -> str:
        """Print the Markdown; write it to ``out`` and the metric keys to ``json_path`` (each if given)."""
        text = self.markdown()
        print(text, end="")
        if out is not None:
            _atomic_write(out, text)
        if json_path is not None:
            _atomic_write(json_path, json.dumps(self.metrics, indent=2) + "\n")
        return text


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` (Markdown report) and ``--json`` (flat metric keys)."""
    parser.add_argument("--out", default=None, help="write the Markdown report here")
    parser.add_argument("--json", default=None, help="write the flat metric keys here as JSON")


def data_fact(description: str, synthetic: bool, real_name: str) -> str:
    """The report's ``data:`` line; a synthetic split says in bold that it is not comparable with the paper."""
    if synthetic:
        return f"data: **synthetic face world** ({description}); not {real_name}: not comparable with the paper"
    return f"data: {description}"
