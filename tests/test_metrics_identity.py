"""Identity: verification math (LFW protocol, MaskGAN pairs), ArcFace iresnet, dlib's real face network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data

from metrics.functional.verification import (
    best_threshold,
    cosine_similarity,
    edit_verification_pairs,
    kfold_accuracy,
    verification_accuracy,
)
from metrics.identity import IdentityVerification
from portrait_models.classifiers import ArcFaceEmbedder, DlibFaceEmbedder, FaceEmbedder, iresnet
from portrait_models.classifiers.arcface import uint8_to_model_range
from portrait_models.pretrained import WEIGHTS, MissingWeightsError


def _pairs_with_cosines(cosines: torch.Tensor, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (N, dim) embedding pairs whose row-wise cosines are exactly ``cosines``."""
    a = torch.nn.functional.normalize(torch.randn(len(cosines), dim), dim=1)
    other = torch.randn(len(cosines), dim)
    orthogonal = torch.nn.functional.normalize(other - (other * a).sum(1, keepdim=True) * a, dim=1)
    b = cosines[:, None] * a + torch.sqrt(1 - cosines[:, None] ** 2) * orthogonal
    return a * 3.0, b * 0.5  # scale must not matter


def _interleave(positives: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    similarities = torch.stack([positives, negatives], dim=1).flatten()
    same = torch.stack([torch.ones_like(positives, dtype=torch.bool), torch.zeros_like(negatives, dtype=torch.bool)], 1)
    return similarities, same.flatten()


def test_cosine_similarity_matches_torch():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    torch.testing.assert_close(cosine_similarity(a, b), torch.nn.functional.cosine_similarity(a, b))
    with pytest.raises(ValueError, match="one shape"):
        cosine_similarity(a, b[:, :4])


def test_best_threshold_hand_computed():
    similarities = torch.tensor([0.1, 0.4, 0.5, 0.8, 0.9])
    same = torch.tensor([False, True, False, True, True])
    # thresholds 0.25 and 0.65 both misclassify one pair (0.5 resp. 0.4); the lower one is returned.
    threshold, accuracy = best_threshold(similarities, same)
    assert threshold.item() == pytest.approx(0.25) and accuracy.item() == pytest.approx(0.8)
    assert verification_accuracy(similarities, same, 0.45).item() == pytest.approx(0.6)


def test_separable_pairs_give_perfect_accuracy_and_a_threshold_between():
    positives = 0.8 + 0.1 * (torch.rand(200) - 0.5)
    negatives = 0.1 + 0.1 * (torch.rand(200) - 0.5)
    similarities, same = _interleave(positives, negatives)
    accuracy, std, thresholds = kfold_accuracy(similarities, same)
    assert accuracy.item() == 1.0 and std.item() == 0.0
    assert bool(((thresholds > negatives.max()) & (thresholds < positives.min())).all())

    metric = IdentityVerification(threshold=0.45)
    for chunk in torch.arange(400).chunk(3):  # three updates, any split
        a, b = _pairs_with_cosines(similarities[chunk])
        metric.update(a, b, same[chunk])
    result = metric.compute()
    whole = IdentityVerification(threshold=0.45)
    whole.update(*_pairs_with_cosines(similarities), same)
    for key, value in whole.compute().items():  # cat states: any split of the pairs gives the same answer
        torch.testing.assert_close(value, result[key], msg=key)
    assert result["accuracy"].item() == 1.0 and result["accuracy_at_threshold"].item() == 1.0
    assert negatives.max() < result["threshold"] < positives.min()
    torch.testing.assert_close(result["similarity_same"], positives.mean(), atol=1e-5, rtol=0)
    torch.testing.assert_close(result["similarity_different"], negatives.mean(), atol=1e-5, rtol=0)


def test_known_overlap_gives_the_computable_accuracy():
    # Every fold is the same 6 pairs: positives 0.9, 0.8, 0.4 and negatives 0.1, 0.2, 0.5. Any threshold
    # misclassifies at least one of {0.4 positive, 0.5 negative}: the best accuracy is 5/6 on every fold.
    fold_similarities, fold_same = _interleave(torch.tensor([0.9, 0.8, 0.4]), torch.tensor([0.1, 0.2, 0.5]))
    accuracy, std, _ = kfold_accuracy(fold_similarities.repeat(10), fold_same.repeat(10), num_folds=10)
    assert accuracy.item() == pytest.approx(5 / 6) and std.item() == pytest.approx(0.0, abs=1e-7)


def test_gaussian_overlap_matches_the_bayes_accuracy():
    # Positives N(0.5, 0.1²), negatives N(0.3, 0.1²), equal counts: the best threshold is 0.4 and the
    # accuracy there is Φ(1) = 0.8413.
    n = 5000
    similarities, same = _interleave(0.5 + 0.1 * torch.randn(n), 0.3 + 0.1 * torch.randn(n))
    accuracy, _, thresholds = kfold_accuracy(similarities, same)
    bayes = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert accuracy.item() == pytest.approx(bayes, abs=0.015)
    assert thresholds.mean().item() == pytest.approx(0.4, abs=0.03)


def test_edit_pairs_follow_maskgan_protocol():
    edited, original, same = edit_verification_pairs(torch.tensor([7, 7, 3, 5]))
    assert edited.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert original.tolist() == [0, 2, 1, 2, 2, 3, 3, 0]
    assert same.tolist() == [True, False] * 4
    edited, original, same = edit_verification_pairs(torch.tensor([4, 4, 4]))
    assert same.all() and edited.tolist() == original.tolist() == [0, 1, 2]


def test_update_edits_tells_a_keeping_editor_from_one_that_changes_the_person():
    people = torch.nn.functional.normalize(torch.randn(6, 32), dim=1)
    identities = torch.arange(40) % 6
    originals = people[identities] + 0.05 * torch.randn(40, 32)
    keeping, replacing = IdentityVerification(), IdentityVerification()
    keeping.update_edits(originals + 0.05 * torch.randn(40, 32), originals, identities)
    replacing.update_edits(people[(identities + 1) % 6], originals, identities)  # every edit shows another person
    kept, replaced = keeping.compute(), replacing.compute()
    assert kept["accuracy"].item() == 1.0
    assert kept["similarity_same"] > 0.9 > kept["similarity_different"]
    assert replaced["accuracy"].item() <= 0.6 and replaced["similarity_same"] < 0.5


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_verification_errors():
    with pytest.raises(ValueError, match="at least num_folds"):
        kfold_accuracy(torch.rand(5), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="before any update"):
        IdentityVerification().compute()
    with pytest.raises(ValueError, match="same must be"):
        IdentityVerification().update(torch.randn(3, 4), torch.randn(3, 4), torch.ones(2, dtype=torch.bool))


# --------------------------------------------------------------------------------------------- ArcFace
def _iresnet_parameter_count(layers: tuple[int, ...], embedding_dim: int = 512) -> int:
    """insightface iresnet parameters, counted by hand from the architecture."""
    count = 3 * 64 * 9 + 2 * 64 + 64  # stem conv, BN, PReLU
    in_channels = 64
    for width, blocks in zip((64, 128, 256, 512), layers):
        for block in range(blocks):
            count += 2 * in_channels + in_channels * width * 9 + 2 * width + width + width * width * 9 + 2 * width
            if block == 0:
                count += in_channels * width + 2 * width  # downsample 1x1 conv + BN
            in_channels = width
    return count + 2 * 512 + (512 * 7 * 7 + 1) * embedding_dim + 2 * embedding_dim


def test_iresnet50_parameter_count_and_insightface_key_names():
    with torch.device("meta"):
        model = iresnet("iresnet50")
    count = sum(p.numel() for p in model.parameters())
    assert count == _iresnet_parameter_count((3, 4, 14, 3)) == 43_590_848
    keys = set(model.state_dict())
    for key in (
        "conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
        "layer1.0.bn2.bias", "layer1.0.prelu.weight", "layer1.0.conv2.weight", "layer1.0.bn3.running_mean",
        "layer1.0.downsample.0.weight", "layer1.0.downsample.1.num_batches_tracked", "layer3.13.bn3.weight",
        "layer4.2.conv2.weight", "bn2.weight", "fc.weight", "fc.bias", "features.weight",
        "features.running_var",
    ):  # fmt: skip
        assert key in keys, key
    assert "layer1.1.downsample.0.weight" not in keys and not any(k.startswith("dropout") for k in keys)
    assert tuple(model.fc.weight.shape) == (512, 512 * 7 * 7)
    assert not model.features.weight.requires_grad
    with torch.device("meta"):
        assert sum(p.numel() for p in iresnet("iresnet100").parameters()) == _iresnet_parameter_count((3, 13, 30, 3))


def _calibrated(model: ArcFaceEmbedder) -> ArcFaceEmbedder:
    """Set BatchNorm statistics from one batch, so that an untrained deep iresnet gives finite features."""
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.momentum = None  # cumulative average: after one batch, exactly its statistics
    with torch.no_grad():
        model.train()(torch.rand(2, 3, 112, 112) * 2 - 1)
    return model.eval()


def test_arcface_round_trips_an_insightface_state_dict(tmp_path, monkeypatch):
    reference = _calibrated(ArcFaceEmbedder("iresnet50"))
    torch.save(reference.backbone.state_dict(), tmp_path / WEIGHTS["arcface_r50"].filename)
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    loaded = ArcFaceEmbedder.load("arcface_r50")
    assert isinstance(loaded, FaceEmbedder) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.train()  # an enclosing LightningModule's train() must not unfreeze BatchNorm statistics
    assert not loaded.training

    images = torch.rand(2, 3, 128, 128) * 2 - 1  # resized to 112 inside
    embeddings = loaded.embed(images)
    assert embeddings.shape == (2, 512)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2))
    with torch.no_grad():
        torch.testing.assert_close(embeddings, reference(images))

    with pytest.raises(MissingWeightsError, match=WEIGHTS["arcface_r100"].filename):
        ArcFaceEmbedder.load("arcface_r100")
    broken = reference.backbone.state_dict()
    broken["fc.extra"] = broken.pop("fc.bias")
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="broken.pth"):
        ArcFaceEmbedder.load("arcface_r50", path=tmp_path / "broken.pth")


def test_arcface_preprocessing_is_insightface_scaling():
    pixels = torch.tensor([[[0, 127, 255]]], dtype=torch.uint8).expand(112, 112, 3)
    scaled = uint8_to_model_range(pixels.numpy())
    assert scaled.shape == (1, 3, 112, 112)
    torch.testing.assert_close(scaled[0, :, 0, 0], torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))
    assert ArcFaceEmbedder.preprocess(scaled) is scaled  # already 112: no resampling
    with pytest.raises(ValueError, match="uint8"):
        uint8_to_model_range(np.zeros((4, 4, 3), dtype=np.float32))


# ------------------------------------------------------------------------------------------------ dlib
@pytest.fixture(scope="module")
def dlib_embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


def _to_model_range(image: np.ndarray) -> torch.Tensor:
    return uint8_to_model_range(image)


def test_dlib_embeddings_identify_the_astronaut(dlib_embedder):
    astronaut = data.astronaut()
    box, found = dlib_embedder.face_box(astronaut)
    # Eileen Collins' face lies around x 180-265, y 80-165 in the 512x512 photo.
    assert found and 175 <= (box.left() + box.right()) / 2 <= 265 and 76 <= (box.top() + box.bottom()) / 2 <= 166

    shifted = np.clip(np.roll(astronaut, (6, -4), axis=(0, 1)).astype(np.int16) + 25, 0, 255).astype(np.uint8)
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    cat = data.chelsea()
    assert not dlib_embedder.face_box(cat)[1]  # no face: the whole image is used

    reference = dlib_embedder.embed_array(astronaut)
    assert reference.shape == (128,) and np.linalg.norm(reference) == pytest.approx(1.0, abs=1e-5)
    same_photo = float(reference @ dlib_embedder.embed_array(shifted))
    same_person = float(reference @ dlib_embedder.embed_array(mirrored))
    not_a_face = float(reference @ dlib_embedder.embed_array(cat))
    # dlib descriptors are not centred, so unrelated images still have cosines around 0.85-0.9.
    assert same_photo > 0.99 and same_person > 0.98
    assert not_a_face < 0.95 and same_photo - not_a_face > 0.05


def test_dlib_tensor_interface_matches_the_array_path(dlib_embedder):
    astronaut = data.astronaut()[::2, ::2]
    batch = _to_model_range(np.stack([astronaut, np.ascontiguousarray(astronaut[:, ::-1])]))
    embeddings = dlib_embedder.embed(batch)
    assert isinstance(dlib_embedder, FaceEmbedder)
    assert embeddings.shape == (2, 128) and embeddings.dtype == torch.float32
    np.testing.assert_allclose(embeddings[0].numpy(), dlib_embedder.embed_array(astronaut), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        dlib_embedder.embed_array(astronaut.astype(np.float32))
