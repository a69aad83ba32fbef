"""The synthetic world's ``visible_bald`` option (what MagGAN's synthetic config uses): off is today's world bit
for bit; on, no bald person wears a hat, about half the older men are bald, and nobody else changes."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from datamodules import CelebADataModule
from datamodules.synthetic import SyntheticFaceWorld

# sha256 of image + label bytes at 64², seed 0, recorded from the world before the option existed. 17 is bald
# under a brimmed hat; 19 and 41 wear hats and become bald (hatless) with the option.
DEFAULT_FACE_HASHES = {
    0: "b8d3ab4cbac281b26f49",
    17: "c61a165651e989af12e2",
    19: "d2dec5826092a087b984",
    41: "ca2a4ebd73316edd026e",
}


def face_hash(world: SyntheticFaceWorld, index: int) -> str:
    face = world.face(index, 64)
    return hashlib.sha256(face.image.tobytes() + face.label.tobytes()).hexdigest()[:20]


def test_default_world_is_unchanged_pixel_for_pixel():
    default, explicit = SyntheticFaceWorld(0), SyntheticFaceWorld(0, visible_bald=False)
    for index, expected in DEFAULT_FACE_HASHES.items():
        assert face_hash(default, index) == expected
        assert face_hash(explicit, index) == expected


def test_visible_bald_changes_only_older_men_and_hatted_bald_heads():
    for seed in (0, 1):
        default, visible = SyntheticFaceWorld(seed), SyntheticFaceWorld(seed, visible_bald=True)
        for i in range(100):
            a, b = default.identity_traits(i), visible.identity_traits(i)
            if a != b:  # only an older man's style draw, or a bald person's hat, may differ
                assert (a.male and not a.young) or (a.bald and a.hat != "none"), (seed, i)
                if not (a.male and not a.young):  # a bald woman or young man: only the hat goes
                    assert dataclasses.replace(a, hat="none") == b, (seed, i)
    visible0 = SyntheticFaceWorld(0, visible_bald=True)
    default0 = SyntheticFaceWorld(0)
    assert face_hash(visible0, 0) == DEFAULT_FACE_HASHES[0]  # a young man with hair: the same pixels
    assert face_hash(visible0, 19) != DEFAULT_FACE_HASHES[19]
    people = [visible0.identity_traits(i) for i in range(100)]
    # seed 0: 7 bald people, 4 of them hatless -> 13 bald, all hatless
    assert sum(t.bald for t in (default0.identity_traits(i) for i in range(100))) == 7
    assert sum(t.bald for t in people) == 13 and all(t.hat == "none" for t in people if t.bald)


def test_visible_bald_share_among_older_men():
    """Weights 0.9 against 0.94 for the other styles: 0.9 / 1.84 = 48.9 % bald (default 0.3 / 1.24 = 24.2 %)."""
    shares = {}
    for option in (False, True):
        world = SyntheticFaceWorld(5, 1500, visible_bald=option)
        people = [world.identity_traits(i) for i in range(1500)]
        older_men = [t for t in people if t.male and not t.young]
        shares[option] = sum(t.bald for t in older_men) / len(older_men)
        assert len(older_men) > 180
        if option:
            assert not any(t.bald and t.hat != "none" for t in people)
    assert shares[False] == pytest.approx(0.242, abs=0.06)
    assert shares[True] == pytest.approx(0.489, abs=0.06)


def test_datamodule_option_has_its_own_cache_and_rejects_real_data(tmp_path):
    plain, bald = CelebADataModule(soft_masks="labels"), CelebADataModule(soft_masks="labels", visible_bald=True)
    assert bald.synthetic_dir.name == plain.synthetic_dir.name + "-visible-bald"
    assert str(bald.soft_mask_dir).startswith(str(bald.synthetic_dir))
    with pytest.raises(ValueError, match="visible_bald"):
        CelebADataModule(root=str(tmp_path), visible_bald=True)
