"""Losses against hand-computed values: adversarial, gradient penalty, feature matching, VGG, Gram, KL."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from portrait_models.losses import (
    GramTextureLoss,
    PerceptualLoss,
    VGG19Features,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    gradient_penalty,
    gram_loss,
    gram_matrix,
    hinge_fake,
    hinge_generator,
    hinge_real,
    kl_normal_standard,
    lsgan_fake,
    lsgan_real,
    vanilla_fake,
    vanilla_real,
    wgan_fake,
    wgan_generator,
    wgan_real,
)
from portrait_models.losses.perceptual import vgg19_feature_layers
from portrait_models.pretrained import MissingWeightsError

PRED = torch.tensor([[0.5, 1.5]])  # one "patch map" with two elements
PRED_HINGE = torch.tensor([[0.5, -2.0]])


# ------------------------------------------------------------------------------------------ adversarial
def test_lsgan_terms():
    assert lsgan_real([PRED]).item() == pytest.approx((0.25 + 0.25) / 2)
    assert lsgan_fake([PRED]).item() == pytest.approx((0.25 + 2.25) / 2)


def test_vanilla_terms_are_bce_on_logits():
    assert vanilla_real([torch.zeros(3, 1)]).item() == pytest.approx(math.log(2))
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-1.5))) / 2
    assert vanilla_real([PRED]).item() == pytest.approx(expected)
    # softplus(x) = softplus(-x) + x
    assert vanilla_fake([PRED]).item() == pytest.approx(expected + (0.5 + 1.5) / 2)


def test_hinge_and_wgan_terms():
    assert hinge_real([PRED_HINGE]).item() == pytest.approx((0.5 + 3.0) / 2)
    assert hinge_fake([PRED_HINGE]).item() == pytest.approx((1.5 + 0.0) / 2)
    assert hinge_generator([PRED_HINGE]).item() == pytest.approx(0.75)
    assert wgan_real([PRED]).item() == pytest.approx(-1.0)
    assert wgan_fake([PRED]).item() == pytest.approx(1.0)
    assert wgan_generator([PRED]).item() == pytest.approx(-1.0)


def test_scales_are_summed_or_averaged_and_feature_lists_use_their_last_entry():
    scale_a = [torch.randn(1, 4, 3, 3), PRED]  # intermediate feature, then prediction
    scale_b = [torch.randn(1, 4, 3, 3), 2 * PRED]
    single = lsgan_real([PRED]) + lsgan_real([2 * PRED])
    torch.testing.assert_close(lsgan_real([scale_a, scale_b]), single)
    torch.testing.assert_close(lsgan_real([scale_a, scale_b], scale_reduction="mean"), single / 2)
    torch.testing.assert_close(lsgan_real(PRED), lsgan_real([PRED]))  # a bare tensor is one scale


def test_kind_selection_matches_named_functions():
    real, fake = [torch.randn(2, 1, 4, 4)], [torch.randn(2, 1, 4, 4)]
    d_real, d_fake = discriminator_loss("hinge", real, fake)
    torch.testing.assert_close(d_real, hinge_real(real))
    torch.testing.assert_close(d_fake, hinge_fake(fake))
    torch.testing.assert_close(generator_loss("vanilla", fake), vanilla_real(fake))
    torch.testing.assert_close(generator_loss("lsgan", fake), lsgan_real(fake))
    with pytest.raises(ValueError, match="unknown GAN loss 'bce'"):
        generator_loss("bce", fake)  # type: ignore[arg-type]


def test_gradient_penalty_on_linear_critic_has_known_value_and_gradient():
    w = torch.tensor([[3.0, 4.0]], requires_grad=True)  # ||w|| = 5: penalty (5 - 1)^2 = 16 for every x_hat

    def critic(x: torch.Tensor) -> list[list[torch.Tensor]]:
        prediction = (x * w).sum(dim=1, keepdim=True)
        return [[x, prediction]]  # multi-scale format: the last entry of a scale is the prediction

    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(16.0)
    (grad_w,) = torch.autograd.grad(penalty, w)  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(grad_w, 2 * 4 * w.detach() / 5)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:2])


# ------------------------------------------------------------------------------------------ feature matching
def _scale(*values: float) -> list[torch.Tensor]:
    return [torch.full((1, 2, 2, 2), v) for v in values]


def test_feature_matching_weighting_pix2pixhd_vs_spade():
    # 2 scales, each 2 intermediate maps + a prediction (ignored). |fake - real| per layer: 1, 2 and 3, 4.
    fake = [_scale(1.0, 2.0, 100.0), _scale(3.0, 4.0, 100.0)]
    real = [_scale(0.0, 0.0, 0.0), _scale(0.0, 0.0, 0.0)]
    total_l1 = 1 + 2 + 3 + 4
    pix2pixhd = feature_matching_loss(fake, real, "pix2pixhd")
    assert pix2pixhd.item() == pytest.approx(total_l1 * (1 / 2) * (4 / 2))  # (1/num_D) * 4/(n_layers+1)
    assert feature_matching_loss(fake, real, "spade").item() == pytest.approx(total_l1 / 2)


def test_feature_matching_detaches_real_features_and_checks_structure():
    fake = [[torch.randn(1, 2, 2, 2, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    real = [[torch.randn(1, 2, 2, 2, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    feature_matching_loss(fake, real).backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None
    with pytest.raises(ValueError, match="same non-zero number of scales"):
        feature_matching_loss(fake, real + real)


# ------------------------------------------------------------------------------------------ VGG / perceptual
def test_vgg19_layers_match_torchvision_indices():
    with torch.device("meta"):
        reference = torchvision.models.vgg19().features[:30]
    ours = vgg19_feature_layers(30)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert [type(m) for m in ours] == [type(m) for m in reference]


def test_vgg19_slices_are_relu1_1_to_relu5_1():
    features = VGG19Features(pretrained=False)(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    assert all(f.min() >= 0 for f in features)  # every slice ends at a ReLU


def test_perceptual_loss_zero_for_identical_and_positive_otherwise():
    loss = PerceptualLoss(pretrained=False)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x.clone()).item() == 0.0
    fake = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    real = x.clone().requires_grad_(True)
    value = loss(fake, real)
    value.backward()
    assert value.item() > 0 and fake.grad is not None and real.grad is None
    normalized = PerceptualLoss(pretrained=False, imagenet_normalize=True)
    normalized.vgg.module.load_state_dict(loss.vgg.module.state_dict())  # same VGG, other input mapping
    assert normalized(x, x.clone()).item() == 0.0
    assert normalized(fake, real).item() != pytest.approx(value.item())


def test_perceptual_loss_vgg_is_frozen_eval_and_not_in_state_dict():
    loss = PerceptualLoss(pretrained=False)
    loss.train()
    assert not loss.vgg.training
    assert not any(p.requires_grad for p in loss.parameters())
    assert loss.state_dict() == {}


def test_vgg_weight_loading_from_torchvision_layout(tmp_path):
    source = vgg19_feature_layers(30)
    state = {f"features.{k}": v for k, v in source.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    features = VGG19Features(pretrained=False)
    features.load_torchvision_weights(path)
    torch.testing.assert_close(features.features[28].weight, source[28].weight)

    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="not a torchvision VGG19 state dict: missing features.0.bias"):
        features.load_torchvision_weights(path)


def test_missing_vgg_weights_name_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        PerceptualLoss(weights_path=tmp_path)


# ------------------------------------------------------------------------------------------ Gram
def test_gram_matrix_hand_example():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # C=2, H=1, W=2
    raw = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]])
    torch.testing.assert_close(gram_matrix(features, normalize=False), raw)
    torch.testing.assert_close(gram_matrix(features), raw / 4)  # C*H*W = 4


def test_gram_loss_value_and_texture_loss():
    a = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    b = torch.tensor([[[[1.0, 2.0]], [[3.0, 5.0]]]])  # raw gram [[5, 13], [13, 34]]
    expected = ((0.0 + 2 * 2.0**2 + 9.0**2) / 4) / 16  # mean over 4 entries, grams divided by 4 (squared: 16)
    assert gram_loss([a], [b]).item() == pytest.approx(expected)
    assert gram_loss([a], [b], layer_weights=[3.0]).item() == pytest.approx(3 * expected)
    texture = GramTextureLoss(pretrained=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert texture(x, x).item() == 0.0
    assert texture(x, x.flip(-1) * 0.5).item() > 0
    assert texture.state_dict() == {}


# ------------------------------------------------------------------------------------------ KL
def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    torch.testing.assert_close(kl_normal_standard(mu, logvar, "none"), reference)
    torch.testing.assert_close(kl_normal_standard(mu, logvar), reference.mean())
    torch.testing.assert_close(kl_normal_standard(mu, logvar, "sum"), reference.sum())
    torch.testing.assert_close(kl_normal_standard(mu, logvar, "mean"), reference.sum() / mu.numel())
    assert kl_normal_standard(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        kl_normal_standard(mu, logvar[:, :2])


def test_losses_accept_module_outputs_from_a_real_discriminator():
    from portrait_models.layers import MultiscaleDiscriminator

    d = MultiscaleDiscriminator(3, ndf=4, n_layers=2, num_d=2)
    real, fake = d(torch.randn(2, 3, 32, 32)), d(torch.randn(2, 3, 32, 32))
    d_real, d_fake = discriminator_loss("lsgan", real, fake)
    fm = feature_matching_loss(fake, real)
    assert torch.isfinite(d_real + d_fake + fm) and fm > 0
