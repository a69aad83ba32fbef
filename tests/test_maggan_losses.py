"""MagGAN's losses (eqs. 3, 7, 9–11, 14) on hand-made tensors, the system's step, and the data it reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datamodules.base import MissingDataError
from datamodules.celeba import synthetic_label_mask
from datamodules.labels import CLASS_INDEX, EDIT_ATTRIBUTES, label_to_onehot
from datamodules.soft_masks import require_soft_mask_cache, save_soft_mask
from portrait_models.maggan import MagGAN
from portrait_models.maggan.losses import (
    attribute_bce,
    critic_terms,
    mask_guided_reconstruction_loss,
    multilevel_gradient_penalty,
    reconstruction_loss,
)
from portrait_models.maggan.networks import AttributeCondition, DiscriminatorOutput

C = len(EDIT_ATTRIBUTES)
HAIR, SKIN = CLASS_INDEX["hair"], CLASS_INDEX["skin"]
BLOND = EDIT_ATTRIBUTES.index("Blond_Hair")


def tiny_system(**kwargs) -> MagGAN:
    settings = dict(
        image_size=32, enc_dim=4, dec_dim=4, num_layers=3, max_dim=16, shortcut_layers=2, inject_layers=2,
        spade_hidden=4, d_level_size=32, dis_dim=4, dis_layers=3, dis_max_dim=16, dis_fc_dim=8, n_critic=1,
    )  # fmt: skip
    return MagGAN(**{**settings, **kwargs})


# ------------------------------------------------------------------------------------------- eq. 3
def test_mask_guided_reconstruction_hand_value_2x2():
    cond = AttributeCondition("mask")
    label = torch.tensor([[[HAIR, SKIN], [SKIN, HAIR]]])
    masks = label_to_onehot(label, 19).float()
    masks[0, :, 0, 1] = 0
    masks[0, HAIR, 0, 1], masks[0, SKIN, 0, 1] = 0.25, 0.75  # soft pixel: preserved with weight 0.75 under Blond⁺
    x = torch.zeros(1, 3, 2, 2)
    edited = torch.zeros(1, 3, 2, 2)
    edited[0, :, 0, 0] = 1.0  # hair pixel: free
    edited[0, :, 0, 1] = 0.4  # soft pixel: 0.75 · 0.4
    edited[0, 0, 1, 0] = -0.8  # skin pixel, one channel: 0.8
    att = torch.zeros(1, C)
    att[0, BLOND] = 1.0
    expected = (3 * 0.75 * 0.4 + 0.8) / 12
    torch.testing.assert_close(mask_guided_reconstruction_loss(edited, x, masks, att, cond), torch.tensor(expected))
    # zero when the change lies inside the influence region
    only_hair = torch.zeros(1, 3, 2, 2)
    only_hair[0, :, 0, 0] = only_hair[0, :, 1, 1] = 0.9
    assert mask_guided_reconstruction_loss(only_hair, x, masks, att, cond).item() == 0.0
    # equals L_rec at att_diff = 0
    torch.testing.assert_close(
        mask_guided_reconstruction_loss(edited, x, masks, torch.zeros(1, C), cond), reconstruction_loss(edited, x)
    )


# ------------------------------------------------------------------------------------------- eq. 7 / 14
def test_gradient_penalty_of_linear_critics_is_exact():
    w1, w2 = torch.randn(3, 4, 4), torch.randn(3, 8, 8)
    real1, fake1 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    real2, fake2 = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    critics = [lambda x: (x * w1).sum((1, 2, 3)), lambda x: (x * w2).sum((1, 2, 3))]
    gp = multilevel_gradient_penalty(critics, [real1, real2], [fake1, fake2])
    expected = ((w1.norm() - 1) ** 2 + (w2.norm() - 1) ** 2) / 2
    torch.testing.assert_close(gp, expected)


def test_critic_terms_average_levels_and_have_the_wgan_sign():
    att = torch.tensor([[1.0, 0.0]])
    real = [DiscriminatorOutput(torch.tensor([2.0]), torch.tensor([[0.0, 0.0]])),
            DiscriminatorOutput(torch.tensor([4.0]), torch.tensor([[1.0, -1.0]]))]  # fmt: skip
    fake = [
        DiscriminatorOutput(torch.tensor([1.0]), torch.zeros(1, 2)),
        DiscriminatorOutput(torch.tensor([-3.0]), torch.zeros(1, 2)),
    ]
    terms = critic_terms(real, fake, att)
    torch.testing.assert_close(terms["adv_real"] + terms["adv_fake"], torch.tensor(((1 - 2) + (-3 - 4)) / 2))
    bce0 = math.log(2)  # logits 0
    bce1 = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-1))) / 2  # att 1 at logit 1, att 0 at logit −1
    torch.testing.assert_close(terms["cls"], torch.tensor((bce0 + bce1) / 2))


# ------------------------------------------------------------------------------------------- eqs. 9/10
def test_attribute_bce_hand_value_and_the_generator_sign():
    torch.testing.assert_close(
        attribute_bce(torch.tensor([[2.0]]), torch.tensor([[1.0]])), torch.tensor(math.log(1 + math.exp(-2)))
    )
    torch.manual_seed(0)
    classifier = torch.nn.Linear(8, 1)
    image = torch.randn(4, 8, requires_grad=True)
    target = torch.ones(4, 1)
    before = torch.sigmoid(classifier(image)).mean()
    attribute_bce(classifier(image), target).backward()
    with torch.no_grad():
        image -= 0.5 * image.grad
    assert torch.sigmoid(classifier(image)).mean() > before  # minimising +BCE moves towards att_t


# ------------------------------------------------------------------------------------------- eq. 11 / system
def _batch(batch: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "image": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
        "attributes": (torch.rand(batch, C, generator=g) > 0.5).float(),
        "soft_masks": torch.rand(batch, 19, size // 2, size // 2, generator=g).softmax(1),
    }


@pytest.mark.parametrize("reconstruction", ["rec", "cycle"])
def test_generator_total_is_the_weighted_sum_of_its_terms(reconstruction):
    torch.manual_seed(1)
    system = tiny_system(reconstruction=reconstruction, lambda_mre=50.0)
    image, att, masks = system.inputs(_batch())
    target = att.roll(1, 0)
    terms = system.generator_loss(image, att, target, target - att, masks)
    expected = terms["gan"] + 100 * terms["rec"] + 10 * terms["cls"] + 50 * terms["mre"]
    torch.testing.assert_close(terms["total"], expected)


def test_lambda_mre_zero_gives_stgans_generator_gradients():
    torch.manual_seed(2)
    system = tiny_system(lambda_mre=0.0, conditioning="replicated", decoder="bn_concat")
    image, att, masks = system.inputs(_batch())
    target = att.roll(1, 0)
    torch.manual_seed(9)
    terms = system.generator_loss(image, att, target, target - att, masks)
    grads = torch.autograd.grad(terms["total"], list(system.generator.parameters()))
    torch.manual_seed(9)
    terms = system.generator_loss(image, att, target, target - att, masks)
    stgan = terms["gan"] + 100 * terms["rec"] + 10 * terms["cls"]
    for a, b in zip(grads, torch.autograd.grad(stgan, list(system.generator.parameters())), strict=True):
        torch.testing.assert_close(a, b)


def test_discriminator_total_is_eq14():
    torch.manual_seed(3)
    system = tiny_system()
    image, att, masks = system.inputs(_batch())
    fake = system.generator(image, att.roll(1, 0) - att, masks)
    terms = system.discriminator_loss(image, fake, att)
    torch.testing.assert_close(terms["total"], terms["adv_real"] + terms["adv_fake"] + 10 * terms["gp"] + terms["cls"])
    assert terms["gp"] > 0


def test_training_steps_log_every_term_and_count_generator_steps(tmp_path):
    import lightning.pytorch as pl

    torch.manual_seed(4)
    system = tiny_system(n_critic=2, max_g_steps=2)
    data = [_batch(2) for _ in range(8)]
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(system, loader)
    assert int(system.g_steps) == 2 and int(system.batches_seen) == 4  # stopped itself after 2 G steps
    for key in ("d/adv_real", "d/adv_fake", "d/gp", "d/cls", "d/total", "g/gan", "g/rec", "g/cls", "g/mre", "g/total"):
        assert key in system.last_loss_terms and torch.isfinite(system.last_loss_terms[key])
        assert f"train/{key}" in trainer.callback_metrics


def test_learning_rate_drops_tenfold_per_decay_period():
    system = tiny_system(lr=2e-4, lr_decay_every=10)
    system.g_steps.fill_(9)
    assert system._learning_rate() == pytest.approx(2e-4)
    system.g_steps.fill_(25)
    assert system._learning_rate() == pytest.approx(2e-6)


def test_missing_batch_keys_are_named():
    batch = _batch()
    del batch["soft_masks"]
    with pytest.raises(KeyError, match="soft_masks"):
        tiny_system().inputs(batch)


def test_hard_masks_are_one_hot():
    system = tiny_system(hard_masks=True)
    _, _, masks = system.inputs(_batch())
    assert set(masks.unique().tolist()) == {0.0, 1.0} and torch.equal(masks.sum(1), torch.ones_like(masks[:, 0]))


# ------------------------------------------------------------------------------------------- data
def test_incomplete_soft_mask_cache_names_the_file_and_the_command(tmp_path):
    save_soft_mask(tmp_path / "cache", "000001", torch.ones(19, 4, 4) / 19)
    with pytest.raises(MissingDataError, match=r"000002\.npz.*python -m experiments\.parse"):
        require_soft_mask_cache(tmp_path / "cache", ["000001", "000002", "000003"], tmp_path)
    with pytest.raises(MissingDataError, match="missing"):
        require_soft_mask_cache(tmp_path / "nowhere", ["000001"], tmp_path)


def test_synthetic_label_masks_follow_the_image_crop():
    label = np.zeros((218, 178), np.int64)
    label[26 : 26 + 85, 3 : 3 + 170] = HAIR  # the top half of STGAN's 170² box at (26, 3)
    mask = synthetic_label_mask(label, image_size=64 * 2, mask_size=16)  # 128 px uses the 170 box
    assert mask.shape == (19, 16, 16) and torch.equal(mask.sum(0), torch.ones(16, 16))
    assert mask[HAIR, :8].min() == 1 and mask[HAIR, 8:].max() == 0
