"""MagGAN's editing CLI and helpers, checkpoint loading, Table 3 switches and the sweep files."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from datamodules.labels import CLASS_INDEX, EDIT_ATTRIBUTES
from datamodules.soft_masks import save_soft_mask
from experiments.config import compose
from experiments.edit import main as edit_main
from experiments.sweep import load_sweep, sweep_experiment
from portrait_models.maggan import MagGAN
from portrait_models.maggan.attributes import single_flip_changes
from portrait_models.maggan.editing import (
    attribute_change,
    conflict_free_flip,
    load_maggan,
    parse_assignments,
    read_face,
    read_soft_masks,
    source_attributes,
)
from portrait_models.maggan.module import TABLE3_ROWS

C = len(EDIT_ATTRIBUTES)
TINY = dict(
    image_size=32, enc_dim=4, dec_dim=4, num_layers=3, max_dim=16, shortcut_layers=2, inject_layers=2, spade_hidden=4,
    d_level_size=32, dis_dim=4, dis_layers=3, dis_max_dim=16, dis_fc_dim=8, n_critic=1, max_g_steps=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("maggan_ckpt")
    torch.manual_seed(0)
    model = MagGAN(**TINY)
    g = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
        "attributes": (torch.rand(2, C, generator=g) > 0.5).float(),
        "soft_masks": torch.rand(2, 19, 32, 32, generator=g).softmax(1),
    }
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=root)  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader([batch] * 2, batch_size=None))
    path = root / "maggan.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    root = tmp_path_factory.mktemp("maggan_face")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "face.png")
    label = np.full((32, 32), CLASS_INDEX["skin"], np.uint8)
    label[:10] = CLASS_INDEX["hair"]
    Image.fromarray(label).save(root / "face_label.png")
    save_soft_mask(root, "face_soft", torch.rand(19, 32, 32).softmax(0))
    return root


def test_checkpoint_loads_with_weights_only(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    assert any(k.startswith("generator.") for k in state["state_dict"])
    assert not any("ar_plus" in k for k in state["state_dict"])  # the attribute table is code, not weights
    model = load_maggan(checkpoint)
    assert not model.training and int(model.g_steps) == 1


def test_edit_cli_writes_the_edit_and_intensity_zero_is_the_reconstruction(checkpoint, face, tmp_path):
    out = tmp_path / "edit.png"
    args = ["maggan", "--checkpoint", str(checkpoint), "--image", str(face / "face.png"), "--mask"]
    assert edit_main([*args, str(face / "face_soft.npz"), "--set", "Blond_Hair=1", "--out", str(out)]) == 0
    assert Image.open(out).size == (32, 32)
    assert edit_main([*args, str(face / "face_label.png"), "--set", "Bald=1", "Eyeglasses=0",
                      "--slide", "0,1", "--out", str(tmp_path / "s.png")]) == 0  # fmt: skip
    model = load_maggan(checkpoint)
    image = read_face(face / "face.png", 32)
    recon = model.edit(image, torch.zeros(1, C), read_soft_masks(face / "face_label.png"))
    written = torch.from_numpy(np.array(Image.open(tmp_path / "s_0.png"))).permute(2, 0, 1).float()
    expected = ((recon[0].clamp(-1, 1) + 1) * 127.5).round()
    assert torch.equal(written, expected)


def test_edit_cli_errors_are_one_line(checkpoint, face, tmp_path, capsys):
    base = [
        "maggan",
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(face / "face.png"),
        "--out",
        str(tmp_path / "o.png"),
    ]
    assert edit_main([*base, "--set", "Blond_Hair=1"]) == 2
    assert "--mask" in capsys.readouterr().err
    assert edit_main([*base, "--mask", str(face / "face_soft.npz"), "--set", "Blonde=1"]) == 2
    assert "Blond_Hair" in capsys.readouterr().err
    assert edit_main([*base, "--checkpoint", str(tmp_path / "none.ckpt"), "--set", "Bald=1"]) == 2


def _att(*names: str) -> torch.Tensor:
    row = torch.zeros(C)
    row[[EDIT_ATTRIBUTES.index(n) for n in names]] = 1.0
    return row


def test_attribute_change_scales_the_set_attributes_and_turns_conflicting_ones_off():
    source = _att("Eyeglasses", "Black_Hair", "Bangs")[None]
    targets = parse_assignments(["Blond_Hair=1", "Eyeglasses=0", "Male=0"])
    plain = attribute_change(source, targets, 0.5, rule="plain")
    assert torch.equal(plain[0], 0.5 * (_att("Blond_Hair") - _att("Eyeglasses")))  # Male is already 0
    # conflict-free (the default): Blond on turns Black_Hair off, unscaled (STGAN scales the edited one only)
    assert torch.equal(attribute_change(source, targets, 0.5)[0], plain[0] - _att("Black_Hair"))
    # a partner the user sets keeps the user's value; Bald on turns Bangs off
    kept = attribute_change(source, {"Blond_Hair": 1.0, "Black_Hair": 1.0, "Bald": 1.0}, 2.0)
    assert torch.equal(kept[0], 2 * (_att("Blond_Hair") + _att("Bald")) - _att("Bangs"))
    # turning an attribute off asks nothing of its partners
    assert torch.equal(attribute_change(source, {"Bangs": 0.0})[0], -_att("Bangs"))
    with pytest.raises(ValueError, match="conflict_free, plain"):
        attribute_change(source, targets, rule="stgan")


def test_test_int_is_stgan_scaled_target_minus_source():
    """STGAN: ``_b = (2b − 1)·0.5``, the edited attribute times ``test_int``, minus ``_a = (2a − 1)·0.5``."""
    source = torch.stack([_att("Bald"), _att("Black_Hair")])
    bald, blond = EDIT_ATTRIBUTES.index("Bald"), EDIT_ATTRIBUTES.index("Blond_Hair")
    for test_int in (1.0, 2.0, -0.5):
        diff = attribute_change(source, {"Blond_Hair": 1.0, "Bald": 0.0}, test_int=test_int)
        expected = torch.zeros(2, C)
        expected[:, blond] = 0.5 * test_int - (-0.5)  # 0 → 1 on both faces
        expected[0, bald] = -0.5 * test_int - 0.5  # 1 → 0 on the bald face
        expected[1, bald] = -0.5 * test_int - (-0.5)  # 0 → 0: STGAN moves it unless test_int is 1
        expected[1, EDIT_ATTRIBUTES.index("Black_Hair")] = -1.0  # the conflict rule, not scaled
        assert torch.equal(diff, expected), test_int
    one = attribute_change(source, {"Blond_Hair": 1.0}, test_int=1.0)
    assert torch.equal(one, attribute_change(source, {"Blond_Hair": 1.0}))  # test_int 1 = intensity 1
    assert torch.equal(attribute_change(source, {"Blond_Hair": 1.0}, test_int=2.0)[:, blond], torch.full((2,), 1.5))


def test_conflict_free_flip_turns_the_other_hair_colours_off_only_where_blond_turns_on():
    brown, blond, bald = _att("Brown_Hair", "Male"), _att("Blond_Hair"), _att("Bald", "Male")
    diff = conflict_free_flip(torch.stack([brown, blond, bald]), "Blond_Hair")
    expected = torch.stack([_att("Blond_Hair") - _att("Brown_Hair"), -_att("Blond_Hair"), _att("Blond_Hair")])
    assert torch.equal(diff, expected)
    with_bangs = conflict_free_flip(_att("Bangs", "Black_Hair")[None], "Bald")
    assert torch.equal(with_bangs[0], _att("Bald") - _att("Bangs"))
    assert torch.equal(conflict_free_flip(brown[None], "Eyeglasses")[0], _att("Eyeglasses"))  # no rule: plain


def test_single_flip_changes_under_both_rules():
    source = torch.stack([_att("Brown_Hair", "Bangs"), _att()])
    plain = single_flip_changes(source, "plain")
    assert torch.equal(plain, torch.diag_embed(1 - 2 * source))
    free = single_flip_changes(source)
    for i, name in enumerate(EDIT_ATTRIBUTES):
        assert torch.equal(free[:, i], conflict_free_flip(source, name))
    differs = [n for i, n in enumerate(EDIT_ATTRIBUTES) if not torch.equal(free[:, i], plain[:, i])]
    assert differs == ["Bald", "Black_Hair", "Blond_Hair"]  # Bangs off; Brown off (twice); Brown itself turns off


def test_sample_grid_rows_are_conflict_free_flips_and_validation_mre_uses_the_plain_flip():
    torch.manual_seed(0)
    model = MagGAN(**TINY).eval()
    source = torch.stack([_att("Brown_Hair", "Bangs"), _att("Black_Hair")])
    batch = {"image": torch.rand(2, 3, 32, 32) * 2 - 1, "attributes": source,
             "soft_masks": torch.rand(2, 19, 32, 32).softmax(1)}  # fmt: skip
    grid = model.sample_grid(batch)
    blond = EDIT_ATTRIBUTES.index("Blond_Hair")
    expected = model.edit(batch["image"], conflict_free_flip(source, "Blond_Hair"), batch["soft_masks"])
    row = (2 + blond) * 33 + 1  # rows: input, reconstruction, then one per attribute; 1-px padding
    for k in range(2):
        tile = grid[:, row : row + 32, 1 + 33 * k : 33 + 33 * k]
        assert torch.allclose(tile, ((expected[k] + 1) / 2).clamp(0, 1), atol=1e-6)
    plain = model.single_flips(batch["image"], source, batch["soft_masks"])
    assert torch.equal(plain[:, blond], model.edit(batch["image"], torch.diag_embed(1 - 2 * source)[:, blond],
                                                    batch["soft_masks"]))  # fmt: skip


def test_edit_cli_applies_the_conflict_rules_test_int_and_the_plain_flip(checkpoint, face, tmp_path):
    base = ["maggan", "--checkpoint", str(checkpoint), "--image", str(face / "face.png"), "--mask",
            str(face / "face_label.png"), "--source", "Brown_Hair=1", "Blond_Hair=0",
            "--set", "Blond_Hair=1"]  # fmt: skip
    model = load_maggan(checkpoint)
    image, masks = read_face(face / "face.png", 32), read_soft_masks(face / "face_label.png")
    source = source_attributes(model, image, {"Brown_Hair": 1.0, "Blond_Hair": 0.0})

    def written(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(Image.open(tmp_path / name))).permute(2, 0, 1).float()

    def expected(att_diff: torch.Tensor) -> torch.Tensor:
        return ((model.edit(image, att_diff, masks)[0].clamp(-1, 1) + 1) * 127.5).round()

    blond, black, brown = (_att(n)[None] for n in ("Blond_Hair", "Black_Hair", "Brown_Hair"))
    partners = -brown - black * source[:, EDIT_ATTRIBUTES.index("Black_Hair")]
    assert edit_main([*base, "--out", str(tmp_path / "free.png")]) == 0
    assert torch.equal(written("free.png"), expected(blond + partners))
    assert edit_main([*base, "--plain-flip", "--out", str(tmp_path / "plain.png")]) == 0
    assert torch.equal(written("plain.png"), expected(blond))
    assert edit_main([*base, "--test-int", "2", "--out", str(tmp_path / "t2.png")]) == 0
    assert torch.equal(written("t2.png"), expected(1.5 * blond + partners))  # a flip: T = 2 is intensity (T + 1) / 2


@pytest.mark.parametrize("row", sorted(TABLE3_ROWS))
def test_table3_rows_set_their_switches(row):
    model = MagGAN(**TINY, table3_row=row)
    spec = TABLE3_ROWS[row]
    hp = model.hparams
    assert (hp.conditioning, hp.decoder, hp.reconstruction) == (
        spec["conditioning"],
        spec["decoder"],
        spec["reconstruction"],
    )
    assert (hp.lambda_mre > 0) == spec["mre"]
    assert (model.generator.seg is not None) == spec.get("seg_branch", False)
    assert model.generator.condition.conditioning == spec["conditioning"]


@pytest.mark.parametrize("name", ["maggan_table3", "maggan_lambda_mre"])
def test_sweep_values_are_valid_overrides(name):
    sweep = load_sweep(name)
    experiment = sweep_experiment(sweep)
    fixed = [f"{k}={v['value']}" for k, v in sweep["parameters"].items() if "value" in v]
    for key, spec in sweep["parameters"].items():
        for value in spec.get("values", []):
            cfg = compose(experiment, [*fixed, f"{key}={value}"])
            assert str(OmegaConf.select(cfg, key)) == str(value)
