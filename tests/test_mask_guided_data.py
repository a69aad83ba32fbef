"""Gu et al.'s data: Helen aligned to the canonical eye/mouth positions, parser masks as the label source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.helen import CANONICAL_POINTS_256, Helen, alignment_points, similarity_to
from datamodules.soft_masks import quantize, save_soft_mask
from datamodules.synthetic import helen_name, write_helen


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.array([[10.0, 20.0], [40.0, 22.0], [25.0, 50.0]])
    matrix = similarity_to(source, source @ rotation.T + shift)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)


@pytest.fixture(scope="module")
def helen_root(tmp_path_factory):
    return write_helen(tmp_path_factory.mktemp("helen"), num_train=4, num_val=1, num_test=1, image_size=128)


def test_aligned_faces_put_eyes_and_mouth_at_the_canonical_positions(helen_root):
    plain, aligned = Helen(helen_root, "train", 64), Helen(helen_root, "train", 64, align=True)
    target = CANONICAL_POINTS_256 * 64 / 256
    for index in range(len(aligned)):
        error = np.abs(alignment_points(aligned[index]["label"].numpy()) - target).max()
        before = np.abs(alignment_points(plain[index]["label"].numpy()) - target).max()
        assert error <= 2.0 and error < before
        assert aligned[index]["image"].shape == (3, 64, 64)


def test_parser_masks_replace_the_labels(helen_root, tmp_path):
    names = [helen_name(i) for i in range(4)]
    for name in names:
        probs = torch.zeros(11, 32, 32)
        probs[10] = 1.0  # a parser that says "hair" everywhere
        save_soft_mask(tmp_path, name, probs)
    data = Helen(helen_root, "train", 32, mask_source="parser", parser_masks=str(tmp_path))
    assert torch.all(data[0]["label"] == 10)
    with pytest.raises(ValueError, match="parser_masks"):
        Helen(helen_root, "train", 32, mask_source="parser")
    with pytest.raises(FileNotFoundError, match="experiments.parse"):
        Helen(helen_root, "train", 32, mask_source="parser", parser_masks=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="classes='helen'"):
        Helen(helen_root, "train", 32, align=True, classes="celebamask")


# ------------------------------------------------------------------------------------------ extra parsed faces
def _write_photos(folder, first: int, count: int, size: int) -> list[str]:
    """Synthetic faces as plain photos, half of them one folder down (names keep the sub-folder)."""
    import cv2

    from datamodules.synthetic import SyntheticFaceWorld

    world, names = SyntheticFaceWorld(seed=0), []
    for i in range(first, first + count):
        name = f"person{i % 2}/{i:04d}" if i % 2 else f"{i:04d}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{name}.png"), world.face(i, size).image[..., ::-1])
        names.append(name)
    return names


@pytest.fixture(scope="module")
def parsed_folder(tmp_path_factory):
    """24 synthetic photos (some nested) and their cache from `experiments.parse --dataset folder` with a tiny
    (untrained) 11-class parser."""
    from test_parse_cache import save_parser

    from experiments.parse import main

    tmp = tmp_path_factory.mktemp("parsed")
    photos, cache = tmp / "photos", tmp / "parsed"
    names = _write_photos(photos, 500, 24, 64)
    parser = save_parser(tmp / "p11.ckpt", 11).eval()
    assert main(["--checkpoint", str(tmp / "p11.ckpt"), "--dataset", "folder", "--data", str(photos),
                 "--out", str(cache), "--image-size", "64", "--device", "cpu"]) == 0  # fmt: skip
    return photos, cache, names, parser


def test_parser_cache_labels_any_image_folder(parsed_folder, tmp_path):
    """The cached parser output's argmax is each item's mask; a missing cache is one error naming the file and
    the command that builds it; the split is a function of the name."""
    from datamodules.parsed_faces import ParsedImageFolder, folder_split

    photos, cache, names, parser = parsed_folder
    with pytest.raises(FileNotFoundError, match=r"absent/0500\.npz.*--dataset folder --data "):
        ParsedImageFolder(photos, "all", 64, parser_masks=tmp_path / "absent")
    data = ParsedImageFolder(photos, "all", 64, parser_masks=cache)
    assert sorted(data.items) == sorted(names) and "person1/0501" in names
    item = data[data.items.index("person1/0501")]
    with torch.no_grad():
        expected = torch.from_numpy(quantize(parser.parse(item["image"][None])[0])).argmax(0)
    assert torch.equal(item["label"], expected)  # the argmax of the parser's 8-bit soft mask
    train = ParsedImageFolder(photos, "train", 64, parser_masks=cache)
    assert sorted(train.items) == sorted(n for n in names if folder_split(n) == "train")
    assert 0 < len(train) < len(names)
    from datamodules.helen import HelenDataModule

    with pytest.raises(ValueError, match="extra_faces and extra_parser_masks go together"):
        HelenDataModule(extra_faces=str(photos))


@pytest.mark.slow
def test_gu_trains_on_helen_plus_parsed_folder_faces(parsed_folder, tmp_path, monkeypatch):
    """A few Gu et al. iterations on Helen's train split plus the folder's parsed, aligned faces."""
    import lightning.pytorch as pl

    from datamodules.helen import HelenDataModule
    from datamodules.parsed_faces import ParsedImageFolder
    from portrait_models.mask_guided import MaskGuidedSystem

    monkeypatch.setenv("PORTRAIT_GANS_CACHE", str(tmp_path / "cache"))
    photos, cache, _, _ = parsed_folder
    module = HelenDataModule(image_size=64, batch_size=4, augment=False, synthetic_images=12, align=True,
                             extra_faces=str(photos), extra_parser_masks=str(cache))  # fmt: skip
    module.setup("fit")
    extra = len(ParsedImageFolder(photos, "train", 64, parser_masks=cache))
    assert len(module.datasets["train"]) == 10 + extra and len(module.datasets["val"]) == 1
    system = MaskGuidedSystem(image_size=64, ngf=4, ae_width=4, latent_dim=8, fc_hidden=8, feat_channels=4,
                              n_res_blocks=1, ndf=4, vgg_pretrained=False, loss_weights={"vgg": 0.0})  # fmt: skip
    pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               ).fit(system, module)  # fmt: skip
    assert int(system.iterations) == 3 and all(torch.isfinite(v) for v in system.last_loss_terms.values())


def test_parsed_faces_align_by_their_parsed_eyes_and_mouth(tmp_path):
    """A cache holding the exact masks (a parser that is always right): the aligned faces put the parsed eyes
    and mouth at the canonical positions."""
    from datamodules.labels import CELEBAMASK_TO_HELEN
    from datamodules.parsed_faces import ParsedImageFolder
    from datamodules.synthetic import SyntheticFaceWorld

    photos, cache = tmp_path / "photos", tmp_path / "parsed"
    names = _write_photos(photos, 600, 4, 96)
    world = SyntheticFaceWorld(seed=0)
    for i, name in zip(range(600, 604), names, strict=True):
        label = torch.from_numpy(CELEBAMASK_TO_HELEN[world.face(i, 96).label].astype(np.int64))
        save_soft_mask(cache, name, torch.nn.functional.one_hot(label, 11).permute(2, 0, 1).float())
    plain = ParsedImageFolder(photos, "all", 64, parser_masks=cache)
    aligned = ParsedImageFolder(photos, "all", 64, parser_masks=cache, align=True)
    target = CANONICAL_POINTS_256 * 64 / 256
    for index in range(len(aligned)):
        error = np.abs(alignment_points(aligned[index]["label"].numpy()) - target).max()
        before = np.abs(alignment_points(plain[index]["label"].numpy()) - target).max()
        assert error <= 2.0 and error < before, (error, before)
    with pytest.raises(ValueError, match="give parser_masks"):
        ParsedImageFolder(photos, "all", 64, align=True)
