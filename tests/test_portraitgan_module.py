"""PortraitGAN system: conditioning routing of both directions and the cycle, LSGAN and feature matching on
known numbers, Eq. 10 weights, step hygiene, LR schedule, frozen VGG outside the checkpoint, reload."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from datamodules.synthetic import SyntheticFaceWorld
from portrait_models.portraitgan import PortraitGAN

SIZE = 32
TINY = dict(
    image_size=SIZE, ngf=4, n_downsample=2, n_blocks=1, ndf=4, texture_pretrained=False, texture_layers=2
)  # fmt: skip


def _batch(b: int = 2) -> dict[str, torch.Tensor]:
    world = SyntheticFaceWorld(0)
    faces_a = [world.render(i, 5, i % 4, SIZE) for i in range(b)]
    faces_b = [world.render(i, 7, (i + 1) % 4, SIZE) for i in range(b)]

    def images(faces):
        return torch.stack([torch.from_numpy(f.image).permute(2, 0, 1).float() / 127.5 - 1 for f in faces])

    return {
        "image": images(faces_a),
        "image_b": images(faces_b),
        "landmarks": torch.stack([torch.from_numpy(f.landmarks) for f in faces_a]),
        "landmarks_b": torch.stack([torch.from_numpy(f.landmarks) for f in faces_b]),
        "modality": torch.tensor([f.modality for f in faces_a]),
        "modality_b": torch.tensor([f.modality for f in faces_b]),
    }


class EchoGenerator(nn.Module):
    """Stub G: channel 0 = landmark map, channel 1 = code index, channel 2 = the input image's channel 1
    (so a second pass shows which code made its input)."""

    num_levels = 1

    def forward(self, image, landmark_map, code=None, all_levels=True):
        index = code.argmax(1, keepdim=True).float()
        out = torch.cat([landmark_map, index, image[:, 1:2]], 1)
        return [out] if all_levels else out


def test_defaults_are_the_paper_weights():
    model = PortraitGAN(**TINY)
    assert model.loss_weights == {
        "gan": 1.0, "fm": 10.0, "id": 5.0, "cyc": 2.0, "texture": 10.0, "vgg": 0.0, "moved": 0.0
    }  # fmt: skip
    assert not model.generator.residual
    hp = PortraitGAN.__init__.__defaults__
    assert hp[:8] == (4, 512, 64, 4, 9, 2, 64, 3)


def test_conditioning_routing_of_both_directions_and_the_cycle():
    model = PortraitGAN(**TINY)
    model.generator = EchoGenerator()
    batch = _batch()
    c = model.conditions(batch)
    out = model.translate(c)
    b = 2
    fake_b, fake_a = out["fake"][0][:b], out["fake"][0][b:]
    assert torch.equal(fake_b[:, 0:1], c["M_B"]) and torch.equal(fake_a[:, 0:1], c["M_A"])
    assert torch.equal(fake_b[:, 1, 0, 0], batch["modality_b"].float())
    assert torch.equal(fake_a[:, 1, 0, 0], batch["modality"].float())
    rec_a, rec_b = out["rec"][:b], out["rec"][b:]
    assert torch.equal(rec_a[:, 0:1], c["M_A"]) and torch.equal(rec_a[:, 1, 0, 0], batch["modality"].float())
    assert torch.equal(rec_a[:, 2, 0, 0], batch["modality_b"].float())  # rec_A was made from fake_B
    assert torch.equal(rec_b[:, 0:1], c["M_B"]) and torch.equal(rec_b[:, 2, 0, 0], batch["modality"].float())
    assert torch.equal(out["target"], torch.cat([batch["image_b"], batch["image"]]))
    assert torch.equal(out["source"], torch.cat([batch["image"], batch["image_b"]]))


def test_cycle_backpropagates_through_both_passes():
    model = PortraitGAN(**TINY)
    c = model.conditions(_batch())
    image_a = c["I_A"].clone().requires_grad_(True)
    out = model.translate({**c, "I_A": image_a})
    assert out["rec"].shape == (4, 3, SIZE, SIZE)
    cycle = (out["rec"][:2] - c["I_A"]).abs().mean()  # rec_A = G(G(I_A, M_B, c_B), M_A, c_A)
    grad_input, *grad_params = torch.autograd.grad(cycle, [image_a, *model.generator.trunk.parameters()])
    assert grad_input.abs().sum() > 0  # I_A is reached only through the first pass
    fake_b = model.generator(c["I_A"], c["M_B"], c["C_B"])[0].detach()  # cut the first pass
    cut = (model.generator(fake_b, c["M_A"], c["C_A"], all_levels=False) - c["I_A"]).abs().mean()
    grad_cut = torch.autograd.grad(cut, list(model.generator.trunk.parameters()))
    assert torch.isclose(cut, cycle)
    assert any(not torch.allclose(a, b) for a, b in zip(grad_params, grad_cut, strict=True))


def test_lsgan_and_feature_matching_terms_on_known_numbers():
    model = PortraitGAN(**TINY)

    class ConstD(nn.Module):
        """Per level: 4 feature maps equal to the input's mean + level, prediction = that value."""

        num_levels = 2

        def forward(self, levels):
            return [[x.mean((1, 2, 3), keepdim=True) + k for _ in range(5)] for k, x in enumerate(levels)]

    model.discriminator = ConstD()
    fake = [torch.full((4, 3, 8, 8), 0.5), torch.full((4, 3, 4, 4), 0.5)]
    target = torch.full((4, 3, 8, 8), -0.5)
    out = {"fake": fake, "target": target, "target_map": torch.zeros(4, 1, 8, 8), "rec": None, "source": target}
    model.texture = None
    terms = model.generator_terms(out)
    # G: per direction Σ_k (D_k - 1)^2 = (0.5 - 1)^2 + (1.5 - 1)^2; both directions: x2.
    assert torch.isclose(terms["gan"], torch.tensor(2 * (0.25 + 0.25)))
    # FM: Σ_k Σ_{i<4} |D(fake) - D(real)| = 2 levels x 4 maps x 1.0; x2 directions.
    assert torch.isclose(terms["fm"], torch.tensor(2 * 8.0))
    assert torch.isclose(terms["id"], torch.tensor(2 * 1.0))
    d = model.discriminator_terms(out)
    # real: Σ_k (D_k(real) - 1)^2 = (-0.5 - 1)^2 + (0.5 - 1)^2; fake: 0.5^2 + 1.5^2.
    assert torch.isclose(d["real"], torch.tensor(2.25 + 0.25))
    assert torch.isclose(d["fake"], torch.tensor(0.25 + 2.25))
    assert torch.isclose(d["total"], 0.5 * (d["real"] + d["fake"]))


def test_moved_term_is_the_paired_l1_inside_the_dilated_landmark_change():
    model = PortraitGAN(**TINY, lambda_moved=3.0)  # moved_radius 1/32 of 32 px: a 1-px (3x3) neighbourhood
    assert model.loss_weights["moved"] == 3.0
    source_map = -torch.ones(4, 1, SIZE, SIZE)
    target_map = source_map.clone()
    target_map[0, 0, 5, 7] = 1.0  # one moved pixel inside
    target_map[1, 0, 0, SIZE - 1] = 1.0  # one in a corner: 2x2 of its 3x3 neighbourhood lies inside
    mask = model.moved_mask(source_map, target_map)
    expected = torch.zeros(4, 1, SIZE, SIZE)
    expected[0, 0, 4:7, 6:9] = 1.0
    expected[1, 0, 0:2, SIZE - 2 :] = 1.0
    assert torch.equal(mask, expected)
    fake = [torch.full((4, 3, SIZE, SIZE), 0.5), torch.full((4, 3, SIZE // 2, SIZE // 2), 0.5)]
    target = torch.full((4, 3, SIZE, SIZE), -0.5)
    target[0, :, 5, 7] = 0.0  # |0.5 - 0| = 0.5 at the moved pixel itself
    out = {"fake": fake, "target": target, "target_map": target_map, "source_map": source_map, "rec": None,
           "source": target}  # fmt: skip
    terms = model.generator_terms(out)
    moved_abs = 9 * 3 - 3 * 0.5 + 4 * 3  # Σ mask·|fake - target| over channels: 8 + 1 px in sample 0, 4 in 1
    assert torch.isclose(terms["moved"], torch.tensor(2 * moved_abs / (4 * 3 * SIZE * SIZE)))  # x2 directions
    same = model.generator_terms({**out, "target_map": source_map})
    assert float(same["moved"]) == 0.0
    assert float(PortraitGAN(**TINY).generator_terms(out)["moved"]) == 0.0  # off by default


def test_texture_calibrate_and_g_residual_reach_the_networks():
    from portrait_models.portraitgan.networks import texture_network

    model = PortraitGAN(**TINY, texture_calibrate=True, g_residual=True)
    want = texture_network(False, TINY["texture_layers"], 0, calibrate=True)
    for a, b in zip(model.texture.vgg.parameters(), want.vgg.parameters(), strict=True):
        assert torch.equal(a, b)
    assert model.generator.residual and not PortraitGAN(**TINY).generator.residual


def test_texture_layer_weights_weight_each_layers_gram_term():
    from portrait_models.losses.gram import gram_loss

    plain, weighted = PortraitGAN(**TINY), PortraitGAN(**TINY, texture_layer_weights=[0.25, 3.0])
    assert plain.texture.layer_weights is None  # off by default: the plain sum
    fake, real = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    feats = [plain.texture.vgg(plain.texture.normalize(x)) for x in (fake, real)]
    per_layer = [gram_loss([f], [r], reduction="frobenius") for f, r in zip(*feats, strict=True)]
    assert torch.allclose(plain.texture(fake, real), per_layer[0] + per_layer[1], rtol=1e-5)
    assert torch.allclose(weighted.texture(fake, real), 0.25 * per_layer[0] + 3.0 * per_layer[1], rtol=1e-5)
    with pytest.raises(ValueError, match="texture_layer_weights"):
        PortraitGAN(**TINY, texture_layer_weights=[1.0])


def test_lr_schedule_shape():
    model = PortraitGAN(**TINY)
    assert [model.lr_factor(e) for e in (0, 100, 101, 199)] == pytest.approx([1.0, 1.0, 0.99, 0.01])


def test_training_step_updates_each_network_in_its_own_step_and_logs_every_term(tmp_path):
    model = PortraitGAN(**TINY)
    batch = _batch()
    loader = torch.utils.data.DataLoader([{k: v[i] for k, v in batch.items()} for i in range(2)], batch_size=2)
    before_g = [p.detach().clone() for p in model.generator.parameters()]
    before_d = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, loader)
    assert int(model.batches_seen) == 1
    keys = set(trainer.callback_metrics)
    for term in ("gan", "fm", "id", "cyc", "texture", "total"):
        assert f"train/g/{term}" in keys
    for term in ("real", "fake", "total"):
        assert f"train/d/{term}" in keys
    assert all(torch.isfinite(v) for v in model.last_loss_terms.values()) and "g/texture" in model.last_loss_terms
    assert any(not torch.equal(a, p) for a, p in zip(before_g, model.generator.parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before_d, model.discriminator.parameters(), strict=True))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith("texture.") for k in state)
    reloaded = PortraitGAN.load_from_checkpoint(path)
    for a, b in zip(model.texture.vgg.parameters(), reloaded.texture.vgg.parameters(), strict=True):
        assert torch.equal(a, b)  # the seeded random VGG is rebuilt identically
    model.eval()
    reloaded.eval()
    assert torch.allclose(
        model.generate(batch["image"], batch["landmarks"], batch["modality"]),
        reloaded.generate(batch["image"], batch["landmarks"], batch["modality"]),
    )


def test_d_step_does_not_change_g_and_g_step_does_not_change_d():
    model = PortraitGAN(**TINY)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=0.1)
    out = model.translate(model.conditions(_batch()))
    g_before = [p.detach().clone() for p in model.generator.parameters()]
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    opt_d.zero_grad()
    model.discriminator_terms(out)["total"].backward()
    opt_d.step()
    assert all(torch.equal(a, p) for a, p in zip(g_before, model.generator.parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(d_before, model.discriminator.parameters(), strict=True))


def test_table1_switches_and_base_model():
    wo_multi = PortraitGAN(**{**TINY, "num_levels": 1})
    assert len(wo_multi.generator.aux_heads) == 0 and wo_multi.discriminator.num_levels == 1
    wo_texture = PortraitGAN(**TINY, lambda_texture=0.0)
    assert wo_texture.texture is None
    base = PortraitGAN(**{**TINY, "num_modalities": 0, "num_levels": 1}, bidirectional=False, lambda_cyc=0.0)
    out = base.translate(base.conditions(_batch()))
    assert out["rec"] is None and out["fake"][0].shape[0] == 2 and base.generator.in_channels == 4
    terms = base.generator_terms(out)
    assert float(terms["cyc"]) == 0.0 and base.num_directions == 1
    with pytest.raises(ValueError, match="divisible"):
        PortraitGAN(**{**TINY, "image_size": 30})


def test_batched_d_calls_give_the_same_terms():
    model = PortraitGAN(**TINY)
    out = model.translate(model.conditions(_batch()))
    plain = model.discriminator_terms(out)
    model.hparams.batch_d_calls = True
    batched = model.discriminator_terms(out)
    for key in ("real", "fake", "total"):
        assert torch.allclose(plain[key], batched[key], atol=1e-6)


def test_generator_ema_tracks_g_in_the_training_step_and_serves_inference(tmp_path):
    model = PortraitGAN(**TINY, ema_halflife_kimg=0.001)  # half-life of one image: beta = 0.5 per image
    ema = model.generator_ema
    start = [p.detach().clone() for p in ema.averaged.parameters()]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    ema.update(model.generator, 1)
    for a, s, g in zip(ema.averaged.parameters(), start, model.generator.parameters(), strict=True):
        assert torch.allclose(a, (s + g) / 2) and not a.requires_grad
    optimized = {id(p) for opt in model.configure_optimizers() for group in opt.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in ema.averaged.parameters())
    batch = _batch()
    model.eval()
    maps, codes = model.landmark_map(batch["landmarks"], (SIZE, SIZE)), model.code(batch["modality"], (SIZE, SIZE))
    averaged = ema.averaged(batch["image"], maps, codes, all_levels=False)
    assert torch.equal(model.generate(batch["image"], batch["landmarks"], batch["modality"]), averaged)
    assert not torch.allclose(averaged, model.generator(batch["image"], maps, codes, all_levels=False))
    loader = torch.utils.data.DataLoader([{k: v[i] for k, v in batch.items()} for i in range(2)], batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model.train(), loader)
    assert float(ema.images_seen) == 1 + 4  # the step above, then 2 pairs x 2 directions
