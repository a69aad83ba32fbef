"""``experiments.evaluate``: MaskGAN's Tables 2-4 protocols, checked on faces whose right answers are known.

* Pair selection and the style-copy targets on hand-made attribute vectors.
* An oracle world: faces whose pixels spell out their own labels, a renderer that copies the style image
  and paints the target mask into it, and judges that read those codes back. Every protocol's number is
  then known exactly (100 % segmentation, 0 % Smiling because this renderer ignores the mouth's meaning,
  100 % style-copy attributes, 100 % verification), so a wrong mask, pairing or target shows up.
* The command line end to end on the synthetic CelebAMask-HQ test split with tiny real checkpoints: three
  tables with the paper's numbers, ours in range, and a "needs …" text naming the file for missing weights.
"""

from __future__ import annotations

import json
import math
import re

import lightning
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from torch import Tensor, nn
from torch.utils.data import Dataset

from datamodules.labels import ATTRIBUTE_INDEX, CLASS_INDEX, NUM_CELEBA_ATTRIBUTES
from experiments import evaluate
from experiments.evaluate import common
from experiments.evaluate.common import IdentityCollector, Judges, Unavailable, load_embedder, select_attributes
from experiments.evaluate.maskgan import (
    MaskGANConfig,
    evaluate_maskgan,
    model_name,
    render_report,
    select_smiling_pairs,
    select_style_pairs,
    style_copy_targets,
)
from metrics.inception import RandomConvFeatureExtractor
from portrait_models.pretrained import WEIGHTS

SMILING = ATTRIBUTE_INDEX["Smiling"]
JUDGED = ("Smiling", "Male", "Heavy_Makeup", "No_Beard")
TINY_MASKGAN = dict(
    image_size=64, ngf=8, ndf=8, n_blocks=2, style_channels=8, blender_ngf=4, vae_base_channels=8,
    vae_latent_dim=32, vae_levels=4, vgg_pretrained=False,
)  # fmt: skip


# ------------------------------------------------------------------------------------ pair selection
def _attributes(smiling_rows: list[int], count: int) -> Tensor:
    attributes = torch.zeros(count, NUM_CELEBA_ATTRIBUTES)
    attributes[smiling_rows, SMILING] = 1
    return attributes


def test_smiling_pairs_take_non_smiling_targets_and_smiling_donors():
    attributes = _attributes([1, 4], 7)
    targets, donors = select_smiling_pairs(attributes, num_pairs=400, seed=3)
    assert sorted(targets.tolist()) == [0, 2, 3, 5, 6]  # every non-smiling face, once
    assert set(donors.tolist()) == {1, 4}
    assert donors[0] != donors[1]  # both donors are used before one repeats
    again = select_smiling_pairs(attributes, num_pairs=400, seed=3)
    assert torch.equal(again[0], targets) and torch.equal(again[1], donors)

    few_targets, few_donors = select_smiling_pairs(attributes, num_pairs=2, seed=3)
    assert len(few_targets) == len(few_donors) == 2 and len(set(few_targets.tolist())) == 2

    with pytest.raises(ValueError, match=r"Smiling=1 \(donors\); this split has 7 and 0"):
        select_smiling_pairs(_attributes([], 7), num_pairs=4)
    with pytest.raises(ValueError, match="num_pairs must be >= 1"):
        select_smiling_pairs(attributes, num_pairs=0)


def test_style_copy_pairs_are_a_derangement_and_targets_are_the_sources_attributes():
    targets, sources = select_style_pairs(num_images=6, num_pairs=1000, seed=1)
    assert sorted(targets.tolist()) == list(range(6))
    assert sorted(sources.tolist()) == list(range(6))  # the targets, in another order
    assert not torch.any(targets == sources)  # nobody copies their own style
    assert torch.equal(sources, targets.roll(-1))
    assert len(select_style_pairs(num_images=6, num_pairs=3)[0]) == 3
    with pytest.raises(ValueError, match="style copy needs >= 2 pairs"):
        select_style_pairs(num_images=1, num_pairs=5)

    source = torch.zeros(3, NUM_CELEBA_ATTRIBUTES)
    for row, values in enumerate([(1, 0, 1), (0, 1, 1), (1, 1, 0)]):
        for name, value in zip(("Male", "Heavy_Makeup", "No_Beard"), values):
            source[row, ATTRIBUTE_INDEX[name]] = value
    source[:, SMILING] = 1  # other columns do not leak in
    assert style_copy_targets(source).tolist() == [[1, 0, 1], [0, 1, 1], [1, 1, 0]]
    with pytest.raises(KeyError, match="Smile"):
        select_attributes(source, ["Smile"])
    with pytest.raises(ValueError, match=r"expected \(B, 40\) attributes"):
        select_attributes(source[:, :10], ["Male"])


# -------------------------------------------------------------------------------------- oracle world
SIZE = 48  # row 0 must hold the 40 attribute bits
MOUTH_PARTS = (CLASS_INDEX["mouth"], CLASS_INDEX["u_lip"], CLASS_INDEX["l_lip"])


def _encode_label(label: Tensor) -> Tensor:
    return label.float() / 18 * 2 - 1


def _decode_label(channel: Tensor) -> Tensor:
    return ((channel + 1) / 2 * 18).round().clamp(0, 18).long()


class CodedFaces(Dataset):
    """Faces whose pixels spell out their labels: channel 0 row 0 holds the 40 attribute bits, channel 1
    the label map, channel 2 a random pattern of the face's own (its identity). Each face has its mouth
    (mouth + both lips) at its own height, so a donor's mouth differs from the target's."""

    def __init__(self, attributes: Tensor, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self._attributes = attributes
        self.labels = torch.zeros(len(attributes), SIZE, SIZE, dtype=torch.long)
        self.labels[:, 8:44, 8:40] = CLASS_INDEX["skin"]
        for index in range(len(attributes)):
            top = 20 + 2 * index
            for offset, part in enumerate(MOUTH_PARTS):
                self.labels[index, top + offset, 16:32] = part
        self.images = torch.full((len(attributes), 3, SIZE, SIZE), -1.0)
        self.images[:, 0, 0, :NUM_CELEBA_ATTRIBUTES] = attributes * 2 - 1
        self.images[:, 1] = _encode_label(self.labels)
        self.images[:, 2] = torch.rand(len(attributes), SIZE, SIZE, generator=generator) * 2 - 1

    @property
    def attributes(self) -> Tensor:
        return self._attributes

    def __len__(self) -> int:
        return len(self._attributes)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image, label, attributes = self.images[index], self.labels[index], self._attributes[index]
        return {"image": image, "label": label, "attributes": attributes}


class CopyStyleRenderer(nn.Module):
    """A "MaskGAN" that returns the style image with the target mask painted into channel 1."""

    def __init__(self) -> None:
        super().__init__()
        self.hparams = AttributeDict(num_classes=19)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the renderer a device
        self.masks_seen: list[Tensor] = []

    def render(self, target_onehot: Tensor, source_onehot: Tensor, source_image: Tensor) -> Tensor:
        mask = target_onehot.argmax(1)
        self.masks_seen.append(mask.cpu())
        out = source_image.clone()
        out[:, 1] = _encode_label(mask)
        return out


class OracleParser(nn.Module):
    def forward(self, images: Tensor) -> Tensor:
        return F.one_hot(_decode_label(images[:, 1]), 19).permute(0, 3, 1, 2).float() * 10


class OracleClassifier(nn.Module):
    attributes = JUDGED

    def forward(self, images: Tensor) -> Tensor:
        bits = images[:, 0, 0, :NUM_CELEBA_ATTRIBUTES] > 0
        columns = [ATTRIBUTE_INDEX[name] for name in self.attributes]
        return torch.where(bits[:, columns], 10.0, -10.0)


class PatternEmbedder:
    """Identity = the face's private random pattern (channel 2)."""

    def embed(self, images: Tensor) -> Tensor:
        return F.normalize(images[:, 2].flatten(1), dim=1)


def _oracle_attributes() -> Tensor:
    generator = torch.Generator().manual_seed(7)
    attributes = (torch.rand(12, NUM_CELEBA_ATTRIBUTES, generator=generator) > 0.5).float()
    attributes[:, SMILING] = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]).float()
    return attributes


def test_oracle_judges_give_the_known_numbers():
    attributes = _oracle_attributes()
    faces = CodedFaces(attributes)
    renderer = CopyStyleRenderer()
    judges = Judges(
        fid_extractor=RandomConvFeatureExtractor(num_features=8, seed=1),
        parser=OracleParser(),
        classifier=OracleClassifier(),
        embedder=PatternEmbedder(),
        identity_label="pattern oracle",
    )
    config = MaskGANConfig(num_pairs=400, num_style_pairs=10, batch_size=4, progress=False)
    result = evaluate_maskgan(renderer, faces, judges, config, data="oracle", synthetic=True)

    gt, transfer, style = result.ground_truth, result.attribute_transfer, result.style_copy
    assert (gt.num_samples, transfer.num_samples, style.num_samples) == (12, 9, 10)
    assert gt.segmentation == transfer.segmentation == style.segmentation == 100.0
    assert gt.attribute_accuracy == dict.fromkeys(JUDGED, 100.0)
    # The renderer keeps the target's own (non-smiling) attribute code: the transfer never "smiles" ...
    assert transfer.attribute_accuracy == {"Smiling": 0.0}
    # ... while the style copy carries the source's attributes, judged against the source's values.
    assert style.attribute_accuracy == {"Male": 100.0, "Heavy_Makeup": 100.0, "No_Beard": 100.0}
    assert result.identity == 100.0  # edited faces keep their pattern; other people's differ

    # The transfer rendered edited masks: the target's mouth moved to its donor's height.
    targets, donors = select_smiling_pairs(attributes, 400, seed=0)
    edited = torch.cat(renderer.masks_seen[: math.ceil(len(targets) / 4)])
    mouth_rows = torch.isin(edited, torch.tensor(MOUTH_PARTS)).any(dim=2).float().argmax(dim=1)
    assert mouth_rows.tolist() == (20 + 2 * donors).tolist()

    assert transfer.fid >= 0 and style.fid >= 0 and gt.fid is None
    metrics = result.metrics()
    assert metrics["test/attribute_transfer/fid_9"] == transfer.fid
    assert metrics["test/style_copy/fid_10"] == style.fid
    assert metrics["test/identity/arcface_verification_acc_9"] == 100.0
    assert metrics["test/style_copy/attr_acc/Male"] == 100.0


def test_missing_judges_are_reported_not_guessed():
    faces = CodedFaces(_oracle_attributes())
    judges = Judges(
        fid_extractor=Unavailable("needs Inception weights: x.pth"),
        parser=Unavailable("needs --parser"),
        classifier=OracleClassifier(),
        embedder=Unavailable("needs ArcFace weights: y.pth"),
    )
    judges.classifier.attributes = ("Male",)  # a classifier without Smiling, Heavy_Makeup, No_Beard
    config = MaskGANConfig(num_pairs=4, num_style_pairs=4, batch_size=4, progress=False)
    result = evaluate_maskgan(CopyStyleRenderer(), faces, judges, config)
    assert result.attribute_transfer.attribute_accuracy["Smiling"] == Unavailable(
        "--attr-classifier has no Smiling output"
    )
    assert result.style_copy.attribute_accuracy["Male"] == 100.0
    assert result.style_copy.segmentation == Unavailable("needs --parser")
    assert result.identity == Unavailable("needs ArcFace weights: y.pth")
    report = render_report(result)
    assert "| needs --parser | needs Inception weights: x.pth |" in report


def test_identity_backends_dlib_is_real_and_arcface_names_its_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    arcface, label = load_embedder("arcface", "r100")
    assert isinstance(arcface, Unavailable) and label.startswith("ArcFace r100")
    assert WEIGHTS["arcface_r100"].filename in arcface.reason and arcface.reason.startswith("needs ArcFace")

    dlib, label = load_embedder("dlib")
    assert "not the paper's ArcFace" in label
    from conftest import synthetic_tensors

    images, _ = synthetic_tensors(0, 6, 64)
    collector = IdentityCollector(dlib)
    collector.update(images, images.clone(), torch.arange(6))  # "edits" identical to their originals
    assert collector.accuracy() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="identity backend must be"):
        load_embedder("facenet")


@pytest.mark.parametrize(
    ("ebst", "mask_branch", "fusion", "phase", "expected"),
    [
        (True, True, "sft", "done", "MaskGAN†"),
        (True, True, "sft", "dmn", "MaskGAN† (EBST not reached: phase dmn)"),
        (False, True, "sft", "done", "MaskGAN"),
        (False, False, "sft", "done", "Pix2PixHD-m"),
        (False, True, "concat", "done", "MaskGAN-concat"),
    ],
)
def test_model_name_follows_the_paper_variants(ebst, mask_branch, fusion, phase, expected):
    model = nn.Module()
    model.hparams = AttributeDict(ebst=ebst, use_mask_branch=mask_branch, fusion=fusion)
    model.phase = phase
    assert model_name(model) == expected


# ---------------------------------------------------------------------------------- command line
def _save_checkpoint(module: lightning.LightningModule, path, **extra) -> str:
    """A checkpoint in the layout ``load_from_checkpoint`` reads (what ``Trainer.save_checkpoint`` writes)."""
    state = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
        **extra,
    }
    torch.save(state, path)
    return str(path)


def _table_row(report: str, title: str, row_start: str) -> list[str]:
    section = report.split(title, 1)[1].split("###", 1)[0]
    line = next(line for line in section.splitlines() if line.startswith(f"| {row_start}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _accuracy(logits: Tensor, targets: Tensor) -> list[float]:
    """Per-column percentage of (sigmoid > 0.5) == target: the reference for an attribute cell."""
    return (100.0 * ((logits.sigmoid() > 0.5) == targets.bool()).float().mean(0)).tolist()


def test_command_line_on_the_synthetic_test_split(tmp_path, monkeypatch, capsys):
    from datamodules import CelebAMaskHQDataModule
    from portrait_models.classifiers.attributes import IMAGENET_MEAN, IMAGENET_STD, AttributeClassifier
    from portrait_models.maskgan.editing import render
    from portrait_models.maskgan.module import MaskGAN
    from portrait_models.parsing import FaceParser

    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path / "no-weights"))
    data = {"root": None, "image_size": 64, "synthetic_images": 80, "seed": 0}  # 8 test faces, 2 smile
    maskgan = MaskGAN(**TINY_MASKGAN)
    checkpoint = _save_checkpoint(maskgan, tmp_path / "maskgan.ckpt", datamodule_hyper_parameters=data)
    face_parser = FaceParser(unet_feature_scale=16).eval()
    parser = _save_checkpoint(face_parser, tmp_path / "parser.ckpt")
    judge = AttributeClassifier(JUDGED, width=4, num_layers=1).eval()
    judge.trained_image_size.fill_(32)  # as if trained on 32² faces: it must see the 64² images at 32²
    classifier = _save_checkpoint(judge, tmp_path / "attr.ckpt")
    out, metrics_file = tmp_path / "report" / "maskgan.md", tmp_path / "maskgan.json"
    argv = ["maskgan", "--checkpoint", checkpoint, "--parser", parser, "--attr-classifier", classifier,
            "--num-style-pairs", "6", "--batch-size", "4", "--device", "cpu", "--no-progress",
            "--out", str(out), "--json", str(metrics_file)]  # fmt: skip
    assert evaluate.main(argv) == 0
    report = out.read_text()
    assert capsys.readouterr().out == report

    for title in ("### Table 2", "### Table 3", "### Table 4"):
        assert title in report
    assert "**synthetic face world** (80 faces, seed 0" in report
    paper_rows = [
        "| MaskGAN (paper) | 72.3 | 93.23 | 46.67 |",
        "| MaskGAN† (paper) | 77.3 | 93.86 | 46.84 |",
        "| GT (paper) | 92.3 | 92.11 | - |",
        "| MaskGAN (paper) | 68.1 | 72.1 | 88.4 | 92.34 | 37.55 |",
        "| MaskGAN† (paper) | 71.7 | 73.3 | 89.5 | 92.31 | 37.14 |",
        "| GT (paper) | 96.1 | 88.5 | 95.1 | 92.71 | - |",
        "| MaskGAN† (paper) | 76.41 |",
        "| Pix2PixHD-m (paper) | 58.46 |",
        "| SPADE* (paper) | 70.77 |",
    ]
    for row in paper_rows:
        assert row in report

    inception = WEIGHTS["inception_fid"]
    needs_inception = f"needs Inception weights: {inception.filename} (sha256 {inception.sha256}"
    ours2 = _table_row(report, "### Table 2", "**ours: MaskGAN†")
    ours3 = _table_row(report, "### Table 3", "**ours: MaskGAN†")
    ours4 = _table_row(report, "### Table 4", "**ours: MaskGAN†")
    gt2 = _table_row(report, "### Table 2", "**ours: GT")
    gt3 = _table_row(report, "### Table 3", "**ours: GT")
    assert ours2[3].startswith(needs_inception) and ours3[5].startswith(needs_inception)
    assert ours4[1].startswith(f"needs ArcFace weights: {WEIGHTS['arcface_r50'].filename}")

    # Every number recomputed here, by hand, from the same networks on the same test split: the classifier
    # at its 32² training size (resized with antialiasing), the parser at full size, the model's EMA DMN.
    module = CelebAMaskHQDataModule(root=None, image_size=64, synthetic_images=80, seed=0, augment=False)
    module.setup("test")
    split = module.datasets["test"]
    images = torch.stack([split[i]["image"] for i in range(len(split))])
    labels = torch.stack([split[i]["label"] for i in range(len(split))])
    attributes = torch.stack([split[i]["attributes"] for i in range(len(split))])
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def judge_at(x: Tensor, size: int) -> Tensor:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            return judge.network(((x + 1) / 2 - mean) / std)

    columns = [JUDGED.index(a) for a in ("Smiling", "Male", "Heavy_Makeup", "No_Beard")]
    expected_gt = _accuracy(judge_at(images, 32)[:, columns], select_attributes(attributes, JUDGED)[:, columns])
    with torch.no_grad():
        parsed = face_parser(images).argmax(1)
    expected_seg = 100.0 * (parsed == labels).float().mean().item()
    assert [float(gt2[1]), *map(float, gt3[1:4])] == pytest.approx([round(v, 1) for v in expected_gt], abs=0.051)
    assert float(gt2[2]) == float(gt3[4]) == pytest.approx(expected_seg, abs=0.006)

    targets, sources = select_style_pairs(len(split), 6, seed=0)
    model = MaskGAN.load_from_checkpoint(checkpoint, vgg_pretrained=False).eval()
    with torch.no_grad():
        fakes = render(model, labels[targets], images[sources], labels[sources])
    style_columns = [JUDGED.index(a) for a in ("Male", "Heavy_Makeup", "No_Beard")]
    expected_style = _accuracy(judge_at(fakes, 32)[:, style_columns], style_copy_targets(attributes[sources]))
    assert list(map(float, ours3[1:4])) == pytest.approx([round(v, 1) for v in expected_style], abs=0.051)
    with torch.no_grad():
        expected_style_seg = 100.0 * (face_parser(fakes).argmax(1) == labels[targets]).float().mean().item()
    assert float(ours3[4]) == pytest.approx(expected_style_seg, abs=0.006)

    metrics = json.loads(metrics_file.read_text())
    assert metrics["test/ground_truth/seg_pixel_acc"] == pytest.approx(expected_seg, abs=1e-3)
    for name, value in zip(("Smiling", "Male", "Heavy_Makeup", "No_Beard"), expected_gt):
        assert metrics[f"test/ground_truth/attr_acc/{name}"] == pytest.approx(value, abs=1e-3)
    accuracies = {key for key in metrics if re.search(r"attr_acc|seg_pixel_acc", key)}
    assert len(accuracies) == 4 + 1 + 1 + 1 + 3 + 1  # GT (4 attributes + parsing), transfer, style copy
    assert metrics["test/attribute_transfer/fid_6"].startswith(needs_inception)
    assert metrics["test/style_copy/fid_6"].startswith(needs_inception)
    assert metrics["test/identity/arcface_verification_acc_6"].startswith("needs ArcFace weights")


def test_attribute_classifier_that_lacks_an_attribute_names_it(tmp_path, monkeypatch, capsys):
    from portrait_models.classifiers.attributes import AttributeClassifier

    judge = AttributeClassifier(["Male", "No_Beard"], width=4, num_layers=1)
    judge.trained_image_size.fill_(48)
    loaded = common.load_attribute_classifier(_save_checkpoint(judge, tmp_path / "attr.ckpt"), "cpu")
    assert loaded.image_size == 48
    assert common.missing_attribute(loaded, "Smiling") == Unavailable("--attr-classifier has no Smiling output")
    assert common.missing_attribute(loaded, "Male") is None
    untrained = _save_checkpoint(AttributeClassifier(["Male"], width=4, num_layers=1), tmp_path / "new.ckpt")
    with pytest.raises(ValueError, match=r"new.ckpt: the attribute classifier was never trained"):
        common.load_attribute_classifier(untrained, "cpu")


def test_command_line_rejects_bad_input_with_one_message(tmp_path, capsys):
    assert evaluate.main(["maskgan", "--checkpoint", str(tmp_path / "absent.ckpt"), "--no-progress"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="parser checkpoint not found: .*nope.ckpt"):
        common.load_parser(tmp_path / "nope.ckpt", "cpu")
    assert common.load_parser(None, "cpu") == Unavailable("needs --parser (a 19-class FaceParser .ckpt)")
