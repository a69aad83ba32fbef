"""MagGAN's ``target_boost`` (default off): extra training requests for one attribute, world-consistent."""

from __future__ import annotations

import pytest
import torch
from test_maggan_losses import tiny_system

from datamodules.labels import EDIT_ATTRIBUTES
from portrait_models.maggan import MagGAN
from portrait_models.maggan.attributes import WORLD_CONFLICTS
from portrait_models.maggan.losses import boosted_targets

IDX = {name: i for i, name in enumerate(EDIT_ATTRIBUTES)}
HAIR_OFF_WITH_BALD = ("Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair")


def hand_batch(rows: int) -> torch.Tensor:
    """Rows cycling through: blond with bangs, black-haired man, bald man (Bald already on), brown, glasses."""
    kinds = torch.zeros(5, len(EDIT_ATTRIBUTES))
    kinds[0, [IDX["Blond_Hair"], IDX["Bangs"], IDX["Young"]]] = 1
    kinds[1, [IDX["Black_Hair"], IDX["Male"], IDX["Mustache"]]] = 1
    kinds[2, [IDX["Bald"], IDX["Male"]]] = 1
    kinds[3, [IDX["Brown_Hair"], IDX["No_Beard"]]] = 1
    kinds[4, [IDX["Eyeglasses"], IDX["Pale_Skin"]]] = 1
    return kinds.repeat(rows // 5, 1)


def test_world_conflicts_say_bald_means_no_hair():
    assert set(WORLD_CONFLICTS["Bald"]) == set(HAIR_OFF_WITH_BALD)
    for colour in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Bangs"):
        assert "Bald" in WORLD_CONFLICTS[colour]


def test_boost_rate_and_consistency_on_a_hand_made_batch():
    att = hand_batch(20_000)
    gen = torch.Generator().manual_seed(3)
    out = boosted_targets(att, {"Bald": 0.4}, gen)
    was_off = att[:, IDX["Bald"]] == 0
    turned = was_off & (out[:, IDX["Bald"]] == 1)
    rate = turned.float().sum() / was_off.float().sum()
    assert abs(float(rate) - 0.4) < 0.015  # 16,000 off rows: σ ≈ 0.004
    # exactly the draw: one uniform per row, from the given generator, on the rows where Bald was off
    u = torch.rand(att.shape[0], generator=torch.Generator().manual_seed(3))
    assert torch.equal(turned, was_off & (u < 0.4))
    # turned rows: hair colours and Bangs off, every other attribute as it was
    keep = [i for name, i in IDX.items() if name not in ("Bald", *HAIR_OFF_WITH_BALD)]
    assert (out[turned][:, [IDX[n] for n in HAIR_OFF_WITH_BALD]] == 0).all()
    assert torch.equal(out[:, keep], att[:, keep])
    assert torch.equal(out[~turned], att[~turned])  # rows not turned (bald already, or not drawn) unchanged
    assert not torch.equal(out, att) and torch.equal(att, hand_batch(20_000))  # the input is not modified


@pytest.mark.parametrize("boost", [{}, {"Bald": 0.0}, {"Bald": 0, "Eyeglasses": 0.0}])
def test_zero_boost_is_bit_identical_and_draws_nothing(boost):
    att = hand_batch(10)
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    out = boosted_targets(att, boost, gen)
    assert torch.equal(out, att) and torch.equal(gen.get_state(), state)


def test_boost_one_turns_every_off_row_on_and_other_attributes_use_their_conflicts():
    att = hand_batch(10)
    out = boosted_targets(att, {"Bald": 1.0}, torch.Generator().manual_seed(0))
    assert (out[:, IDX["Bald"]] == 1).all()
    assert (out[:, [IDX[n] for n in HAIR_OFF_WITH_BALD]] == 0).all()
    out = boosted_targets(att, {"Blond_Hair": 1.0}, torch.Generator().manual_seed(0))
    assert (out[:, IDX["Blond_Hair"]] == 1).all()
    assert (out[:, [IDX["Black_Hair"], IDX["Brown_Hair"], IDX["Bald"]]] == 0).all()


def tiny(**kwargs) -> MagGAN:
    return tiny_system(n_critic=1, **kwargs)


def test_target_boost_is_validated_and_saved_in_the_hparams():
    assert tiny().hparams.target_boost == {}
    assert tiny(target_boost={"Bald": 0.3}).hparams.target_boost == {"Bald": 0.3}
    with pytest.raises(ValueError, match="target_boost"):
        tiny(target_boost={"Gray_Hair": 0.3})
    with pytest.raises(ValueError, match="target_boost"):
        tiny(target_boost={"Bald": 1.5})


def _one_step(system: MagGAN, batch: dict) -> tuple[dict, torch.Tensor]:
    import lightning.pytorch as pl

    torch.manual_seed(11)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(system, torch.utils.data.DataLoader([batch], batch_size=None))
    return system.last_loss_terms, torch.get_rng_state()


def test_training_with_an_empty_boost_is_bit_identical_and_a_boost_changes_the_targets(monkeypatch):
    torch.manual_seed(0)
    batch = {
        "image": torch.rand(4, 3, 32, 32) * 2 - 1,
        "attributes": hand_batch(5)[:4],
        "soft_masks": torch.softmax(torch.randn(4, 19, 32, 32), 1),
    }
    torch.manual_seed(1)
    ref = tiny()
    torch.manual_seed(1)
    off = tiny(target_boost={"Bald": 0.0})
    terms_ref, rng_ref = _one_step(ref, batch)
    terms_off, rng_off = _one_step(off, batch)
    assert terms_ref.keys() == terms_off.keys()
    assert all(torch.equal(terms_ref[k], terms_off[k]) for k in terms_ref) and torch.equal(rng_ref, rng_off)

    seen = []
    import portrait_models.maggan.module as module

    def spy(att, boost, generator=None):
        out = boosted_targets(att, boost, generator)
        seen.append((att, out))
        return out

    monkeypatch.setattr(module, "boosted_targets", spy)
    torch.manual_seed(1)
    _one_step(tiny(target_boost={"Bald": 1.0}), batch)
    ((shuffled, boosted),) = seen
    rows = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert rows(shuffled) == rows(batch["attributes"])  # applied to STGAN's shuffled targets
    assert (boosted[:, IDX["Bald"]] == 1).all()


# ------------------------------------------------------------------------------ the "consistent" test-time rule
def test_consistent_rule_clears_the_hair_colours_with_bald_and_bald_with_a_hair_colour():
    from portrait_models.maggan.attributes import attribute_change, conflict_free_flip, single_flip_changes

    att = hand_batch(5)  # blond+bangs, black, bald, brown, glasses (no hair colour)
    bald = conflict_free_flip(att, "Bald", WORLD_CONFLICTS)
    expect = torch.zeros_like(att)
    expect[[0, 1, 3, 4], IDX["Bald"]] = 1
    expect[2, IDX["Bald"]] = -1  # the bald man gets hair: nothing else changes (no colour is turned on)
    expect[0, IDX["Blond_Hair"]] = expect[0, IDX["Bangs"]] = -1
    expect[1, IDX["Black_Hair"]] = -1
    expect[3, IDX["Brown_Hair"]] = -1
    assert torch.equal(bald, expect)
    changes = single_flip_changes(att, "consistent")
    assert torch.equal(changes[:, IDX["Bald"]], expect)
    blond = changes[:, IDX["Blond_Hair"]]
    assert blond[2, IDX["Bald"]] == -1 and blond[2, IDX["Blond_Hair"]] == 1  # bald → blond hair grows
    assert blond[0].abs().sum() == 1  # blond → not blond: only the flip
    # STGAN's rule keeps the hair colours; the other attributes' flips agree under both rules
    stgan = single_flip_changes(att, "conflict_free")
    assert (stgan[:, IDX["Bald"], IDX["Blond_Hair"]] == 0).all()
    same = [IDX[n] for n in EDIT_ATTRIBUTES if n not in WORLD_CONFLICTS]
    assert torch.equal(stgan[:, same], changes[:, same])
    d = attribute_change(att[:1], {"Bald": 1.0}, 0.5, rule="consistent")
    assert d[0, IDX["Bald"]] == 0.5 and d[0, IDX["Blond_Hair"]] == -1 and d[0, IDX["Bangs"]] == -1


def test_flip_rule_is_saved_and_drives_the_sample_grid():
    from portrait_models.maggan.attributes import single_flip_changes

    with pytest.raises(ValueError, match="flip_rule"):
        tiny(flip_rule="plain")
    torch.manual_seed(0)
    model = tiny(flip_rule="consistent").eval()
    assert model.hparams.flip_rule == "consistent"
    batch = {
        "image": torch.rand(2, 3, 32, 32) * 2 - 1,
        "attributes": hand_batch(5)[:2],
        "soft_masks": torch.softmax(torch.randn(2, 19, 32, 32), 1),
    }
    grid = model.sample_grid(batch)
    changes = single_flip_changes(batch["attributes"], "consistent")
    bald = model.edit(batch["image"], changes[:, IDX["Bald"]], batch["soft_masks"])
    # row 2 of the grid (after input and reconstruction) is the Bald flip: 1 px padding, 33 px per cell
    cell = grid[:, 2 * 33 + 1 : 2 * 33 + 33, 1:33]
    assert torch.allclose(cell, ((bald[0].float() + 1) / 2).clamp(0, 1), atol=1e-6)


def test_edit_cli_follows_the_checkpoints_flip_rule(tmp_path):
    import numpy as np
    from PIL import Image

    from datamodules.labels import CLASS_INDEX
    from experiments.edit import main as edit_main
    from portrait_models.maggan.attributes import attribute_change
    from portrait_models.maggan.editing import load_maggan, read_face, read_soft_masks, source_attributes

    torch.manual_seed(0)
    model = tiny(flip_rule="consistent")
    path = tmp_path / "consistent.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.6"}, path)  # fmt: skip
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "f.png")
    label = np.full((32, 32), CLASS_INDEX["skin"], np.uint8)
    label[:10] = CLASS_INDEX["hair"]
    Image.fromarray(label).save(tmp_path / "m.png")
    args = ["maggan", "--checkpoint", str(path), "--image", str(tmp_path / "f.png"), "--mask", str(tmp_path / "m.png"),
            "--source", "Brown_Hair=1", "Bald=0", "--set", "Bald=1"]  # fmt: skip
    loaded = load_maggan(path)
    assert loaded.hparams.flip_rule == "consistent"
    image, masks = read_face(tmp_path / "f.png", 32), read_soft_masks(tmp_path / "m.png")
    source = source_attributes(loaded, image, {"Brown_Hair": 1.0, "Bald": 0.0})

    def expected(rule: str) -> torch.Tensor:
        diff = attribute_change(source, {"Bald": 1.0}, rule=rule)
        return ((loaded.edit(image, diff, masks)[0].clamp(-1, 1) + 1) * 127.5).round()

    assert attribute_change(source, {"Bald": 1.0}, rule="consistent")[0, IDX["Brown_Hair"]] == -1
    assert edit_main([*args, "--out", str(tmp_path / "o.png")]) == 0
    written = torch.from_numpy(np.array(Image.open(tmp_path / "o.png"))).permute(2, 0, 1).float()
    assert torch.equal(written, expected("consistent")) and not torch.equal(written, expected("conflict_free"))
