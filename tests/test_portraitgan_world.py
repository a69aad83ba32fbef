"""The synthetic world's ``open_mouths`` option (PortraitGAN's ``data.synthetic_open_mouths``): off is the standard
world; on, only the lips and opening of the mouth-opening expressions change, and the open mouths are large
enough to see at 64²."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import EmotionLandmarksDataModule
from datamodules.emotion import read_pts
from datamodules.labels import EMOTION_INDEX
from datamodules.synthetic import RAFD_EMOTIONS, SyntheticFaceWorld, write_rafd

OPENING = ("surprised", "fearful", "happy")  # happy only for identities with an open smile


def test_open_mouths_off_is_the_standard_world():
    default, explicit = SyntheticFaceWorld(0), SyntheticFaceWorld(0, open_mouths=False)
    for emotion in ("surprised", "fearful", "happy"):
        a, b = default.render(1, emotion, 0, 64), explicit.render(1, emotion, 0, 64)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_open_mouths_changes_only_the_mouths_of_opening_expressions():
    plain, wide = SyntheticFaceWorld(0), SyntheticFaceWorld(0, open_mouths=True)
    for identity in range(3):  # identity 1 has an open smile, 0 and 2 do not
        smiles = plain.identity_traits(identity).open_smile
        for emotion in RAFD_EMOTIONS:
            for modality in range(3):  # the painting's brush strokes smear a change a few pixels further
                a, b = plain.render(identity, emotion, modality, 64), wide.render(identity, emotion, modality, 64)
                np.testing.assert_array_equal(a.landmarks[:48], b.landmarks[:48])
                changed = np.abs(a.image.astype(int) - b.image.astype(int)).max(-1) > 0
                if emotion not in OPENING or (emotion == "happy" and not smiles):
                    assert not changed.any(), (identity, emotion, modality)
                    continue
                assert changed.any(), (identity, emotion, modality)
                mouth = np.concatenate([a.landmarks[48:68], b.landmarks[48:68]])
                (x0, y0), (x1, y1) = np.floor(mouth.min(0) - 2), np.ceil(mouth.max(0) + 2)
                ys, xs = np.nonzero(changed)
                assert ((x0 <= xs) & (xs <= x1) & (y0 <= ys) & (ys <= y1)).all(), (identity, emotion, modality)


def test_open_mouths_are_visible_at_64():
    plain, wide = SyntheticFaceWorld(0), SyntheticFaceWorld(0, open_mouths=True)
    for identity in range(6):
        for emotion, least in (("surprised", 15), ("fearful", 8)):
            before = int((plain.render(identity, emotion, 0, 64).label == 10).sum())
            after = int((wide.render(identity, emotion, 0, 64).label == 10).sum())
            assert after >= max(least, 2 * before), (identity, emotion, before, after)
        assert (wide.render(identity, "neutral", 0, 64).label == 10).sum() == 0


def test_write_rafd_and_the_datamodule_write_the_open_mouth_world(tmp_path):
    root = write_rafd(tmp_path / "w", 1, seed=0, image_size=64, emotions=("surprised",), open_mouths=True)
    (pts,) = sorted(root.glob("*.pts"))
    expected = SyntheticFaceWorld(0, open_mouths=True).render(0, EMOTION_INDEX["surprised"], 0, 64).landmarks
    np.testing.assert_allclose(read_pts(pts), expected, atol=1e-3)
    plain = EmotionLandmarksDataModule(image_size=64, synthetic_images=16, modalities=["photo", "sketch"])
    wide = EmotionLandmarksDataModule(
        image_size=64, synthetic_images=16, modalities=["photo", "sketch"], synthetic_open_mouths=True
    )
    assert wide.synthetic_dir.name == plain.synthetic_dir.name + "-open-mouths"
    with pytest.raises(ValueError, match="synthetic_open_mouths"):
        EmotionLandmarksDataModule(root=str(tmp_path), synthetic_open_mouths=True)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    return write_rafd(tmp_path_factory.mktemp("pairs"), 4, seed=0, image_size=32)


def test_partner_weights_set_the_share_of_partner_emotions(small_world):
    from datamodules.emotion import EmotionPairs

    kw = dict(split_by="identity", test_fraction=0.5, partner="uniform")
    train = EmotionPairs(small_world, "train", 32, False, partner_weights={"surprised": 7}, **kw)
    torch.manual_seed(0)
    drawn = [train.partners[i][train.draws(i)[0]].emotion for i in range(len(train)) for _ in range(100)]
    share = np.mean(np.asarray(drawn) == EMOTION_INDEX["surprised"])
    assert abs(share - 7 / 14) < 0.05, share  # 7 of the 7 + 7 weight of an identity's 8 photos
    plain = EmotionPairs(small_world, "train", 32, False, **kw)
    torch.manual_seed(0)
    drawn = [plain.partners[i][plain.draws(i)[0]].emotion for i in range(len(plain)) for _ in range(100)]
    assert abs(np.mean(np.asarray(drawn) == EMOTION_INDEX["surprised"]) - 1 / 8) < 0.05
    weighted = EmotionPairs(small_world, "test", 32, False, partner_weights={"surprised": 7}, **kw)
    unweighted = EmotionPairs(small_world, "test", 32, False, **kw)
    assert [weighted.draws(i) for i in range(len(weighted))] == [unweighted.draws(i) for i in range(len(unweighted))]


def test_train_draws_use_one_random_number_per_choice(small_world):
    """Uniform partners: partner, modality A, modality B from three ``torch.randint`` calls in that order (the
    stream every earlier run used). Weighted partners: one ``torch.multinomial`` draw replaces the uniform one,
    so no random number is drawn and thrown away."""
    from datamodules.emotion import EmotionPairs

    kw = dict(split_by="identity", test_fraction=0.5, partner="uniform")
    plain = EmotionPairs(small_world, "train", 32, False, **kw)
    weighted = EmotionPairs(small_world, "train", 32, False, partner_weights={"surprised": 7}, **kw)
    for index in range(len(plain)):
        n = plain.num_modalities
        torch.manual_seed(index)
        expected = (
            int(torch.randint(len(plain.partners[index]), ())),
            int(torch.randint(n, ())),
            int(torch.randint(n, ())),
        )
        torch.manual_seed(index)
        assert plain.draws(index) == expected
        torch.manual_seed(index)
        expected = (
            int(torch.multinomial(weighted.partner_probabilities[index], 1)),
            int(torch.randint(n, ())),
            int(torch.randint(n, ())),
        )
        torch.manual_seed(index)
        assert weighted.draws(index) == expected


@pytest.mark.parametrize("weights", [{"astonished": 2}, {"surprised": 0}, {"happy": -1}, {"sad": float("nan")}])
def test_partner_weights_reject_bad_input(small_world, weights):
    from datamodules.emotion import EmotionPairs

    with pytest.raises(ValueError, match="partner_weights"):
        EmotionPairs(small_world, "train", 32, False, partner="uniform", partner_weights=weights)
    with pytest.raises(ValueError, match="partner_weights"):
        EmotionLandmarksDataModule(paired=True, partner_weights=weights)
