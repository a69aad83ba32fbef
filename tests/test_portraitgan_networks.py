"""PortraitGAN networks: paper-size parameter counts (meta device), level outputs, per-level PatchGANs, the
Gram texture loss against direct formulas, the frozen VGG outside state dicts."""

from __future__ import annotations

import pytest
import torch

from portrait_models.losses import feature_matching_loss, gram_loss, gram_matrix
from portrait_models.losses.perceptual import ImageNetNormalize
from portrait_models.portraitgan.networks import (
    CALIBRATION_SHAPE,
    PortraitDiscriminator,
    PortraitGenerator,
    calibrate_random_vgg,
    image_pyramid,
    texture_network,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_at_paper_settings_on_meta_device():
    with torch.device("meta"):
        g = PortraitGenerator(num_modalities=4, ngf=64, n_downsample=4, n_blocks=9, num_levels=2)
        d = PortraitDiscriminator(3, ndf=64, n_layers=3, num_levels=2)
    assert g.in_channels == 8
    assert _count(g.trunk) == 182_458_947
    assert _count(g.aux_heads) == 387
    assert [_count(x) for x in d.discriminators] == [2_764_737, 2_764_737]


def test_generator_levels_shapes_range_and_errors():
    g = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=3, n_blocks=1, num_levels=3)
    image, lm, code = torch.rand(2, 3, 32, 32) * 2 - 1, torch.ones(2, 1, 32, 32), torch.zeros(2, 4, 32, 32)
    levels = g(image, lm, code)
    assert [tuple(x.shape) for x in levels] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    assert all(x.abs().max() < 1 for x in levels)
    assert torch.equal(g(image, lm, code, all_levels=False), levels[0])
    single = PortraitGenerator(num_modalities=0, ngf=4, n_downsample=2, n_blocks=1, num_levels=1)
    assert len(single(image, lm)) == 1 and single.in_channels == 4
    with pytest.raises(ValueError, match="divisible"):
        g(torch.zeros(1, 3, 36, 36), torch.zeros(1, 1, 36, 36), torch.zeros(1, 4, 36, 36))
    with pytest.raises(ValueError, match="4 modality code planes"):
        g(image, lm, torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="num_levels"):
        PortraitGenerator(num_levels=5, n_downsample=4)


def test_additive_skips_add_each_encoder_output_to_the_up_block_of_its_resolution():
    torch.manual_seed(0)
    plain = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=2, n_blocks=1, num_levels=2)
    skips = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=2, n_blocks=1, num_levels=2, skips=True)
    skips.load_state_dict(plain.state_dict())  # same parameters: the option adds none
    assert _count(skips) == _count(plain)
    image, lm, code = torch.rand(2, 3, 16, 16) * 2 - 1, torch.ones(2, 1, 16, 16), torch.zeros(2, 4, 16, 16)
    t = plain.trunk
    e0 = t.head(torch.cat([image, lm, code], 1))
    e1 = t.down[0](e0)
    h1 = t.up[0](t.blocks(t.down[1](e1))) + e1  # 8 ch at 8², the level-2 tap
    h0 = t.up[1](h1) + e0
    levels = skips(image, lm, code)
    torch.testing.assert_close(levels[0], t.tail(h0))
    torch.testing.assert_close(levels[1], plain.aux_heads[0](h1))
    assert not torch.allclose(levels[0], plain(image, lm, code)[0])


def test_residual_output_is_tanh_of_atanh_input_plus_the_tail_and_adds_no_parameters():
    torch.manual_seed(0)
    plain = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=2, n_blocks=1, num_levels=2)
    residual = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=2, n_blocks=1, num_levels=2, residual=True)
    residual.load_state_dict(plain.state_dict())
    assert _count(residual) == _count(plain)
    image, lm, code = torch.rand(2, 3, 16, 16) * 2 - 1, torch.ones(2, 1, 16, 16), torch.zeros(2, 4, 16, 16)
    image[0, 0, 0, 0] = 1.0  # clamped to 1 - 1e-3 before atanh
    tail_conv = residual.trunk.tail.conv
    with torch.no_grad():
        tail_conv.weight.zero_()
        tail_conv.bias.zero_()
    torch.testing.assert_close(residual(image, lm, code, all_levels=False), image.clamp(-0.999, 0.999))
    with torch.no_grad():
        tail_conv.bias.copy_(torch.tensor([0.5, -0.25, 0.0]))
    expected = torch.tanh(torch.atanh(image.clamp(-0.999, 0.999)) + tail_conv.bias.view(1, 3, 1, 1))
    levels = residual(image, lm, code)
    torch.testing.assert_close(levels[0], expected)
    torch.testing.assert_close(levels[1], plain(image, lm, code)[1])  # the aux head is unchanged


def test_transposed_convs_get_the_pix2pixhd_init():
    g = PortraitGenerator(num_modalities=4, ngf=8, n_downsample=2, n_blocks=1)
    for block in g.trunk.up:
        assert abs(float(block.conv.weight.detach().std()) - 0.02) < 0.004


def test_level_discriminators_shapes_no_downsampling_and_receptive_field():
    d = PortraitDiscriminator(3, ndf=8, n_layers=3, num_levels=2)
    out = d([torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 32)])
    assert len(out) == 2 and all(len(f) == 5 for f in out)
    assert out[0][-1].shape[-2:] == (11, 11) and out[1][-1].shape[-2:] == (7, 7)  # each judged at its own size
    # Receptive field of the conv geometry (instance norm couples every position, so it is left out here).
    geometry = PortraitDiscriminator(3, ndf=8, n_layers=3, num_levels=1, norm="none").discriminators[0]
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    pred = geometry(x)[-1]
    pred[0, 0, pred.shape[2] // 2, pred.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1, 3)))
    assert int(rows.max() - rows.min() + 1) == 70
    with pytest.raises(ValueError, match="2 images"):
        d(torch.zeros(1, 3, 64, 64))


def test_real_pyramid_matches_aux_output_shape():
    image = torch.rand(2, 3, 64, 64)
    pyramid = image_pyramid(image, 2)
    assert pyramid[1].shape == (2, 3, 32, 32)
    assert torch.allclose(pyramid[1], torch.nn.functional.avg_pool2d(image, 3, 2, 1, count_include_pad=False))


# -------------------------------------------------------------------------------------------- Gram / texture
def test_gram_matrix_direct_formula_symmetry_psd_permutation_and_size_invariance():
    f = torch.randn(2, 5, 6, 7)
    flat = f.reshape(2, 5, 42)
    want = torch.einsum("bki,bli->bkl", flat, flat)
    assert torch.allclose(gram_matrix(f, normalize=False), want, atol=1e-5)
    g = gram_matrix(f)
    assert torch.allclose(g, want / (5 * 42), atol=1e-6)
    assert torch.allclose(g, g.transpose(1, 2))
    assert torch.linalg.eigvalsh(g).min() > -1e-6
    perm = torch.randperm(42)
    assert torch.allclose(gram_matrix(flat[:, :, perm].reshape(2, 5, 6, 7)), g, atol=1e-6)
    assert torch.allclose(gram_matrix(f.repeat(1, 1, 2, 2)), g, atol=1e-6)


def test_texture_loss_equals_the_hand_sum_of_squared_frobenius_distances():
    loss = texture_network(pretrained=False, num_layers=3, seed=0)
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(loss(real, real)) == 0.0
    value = loss(fake, real)
    vgg = loss.vgg.module
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats_f, feats_r = vgg(((fake + 1) / 2 - mean) / std), vgg(((real + 1) / 2 - mean) / std)
    hand = 0.0
    for a, b in zip(feats_f, feats_r, strict=True):
        bsz, c, h, w = a.shape
        ga = torch.einsum("bki,bli->bkl", a.reshape(bsz, c, -1), a.reshape(bsz, c, -1)) / (c * h * w)
        gb = torch.einsum("bki,bli->bkl", b.reshape(bsz, c, -1), b.reshape(bsz, c, -1)) / (c * h * w)
        hand = hand + ((ga - gb) ** 2).sum((1, 2)).mean()
    assert value > 0 and torch.allclose(value, hand, rtol=1e-4)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.vgg.parameters())
    # Eq. 8 sees features only through Gram matrices: shuffling the fake's feature positions leaves it unchanged.
    shuffled = []
    for a in feats_f:
        flat = a.detach().flatten(2)
        shuffled.append(flat[:, :, torch.randperm(flat.shape[2])].reshape(a.shape))
    detached = [a.detach() for a in feats_f]
    same = gram_loss(shuffled, feats_r, reduction="frobenius")
    assert torch.allclose(same, gram_loss(detached, feats_r, reduction="frobenius"), rtol=1e-5)
    assert torch.allclose(same, hand.detach(), rtol=1e-4)


def test_texture_vgg_is_seeded_frozen_and_outside_the_state_dict():
    a, b = texture_network(False, 3, seed=7), texture_network(False, 3, seed=7)
    for pa, pb in zip(a.vgg.parameters(), b.vgg.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(texture_network(False, 3, seed=8).vgg.parameters()), next(a.vgg.parameters()))
    holder = torch.nn.Module()
    holder.texture = a
    assert not any("vgg" in k for k in holder.state_dict())
    a.train()
    assert not a.vgg.module.training


def test_feature_matching_sum_weighting_uses_the_four_intermediate_maps_with_weight_one():
    fake = [[torch.full((1, 1, 2, 2), float(i + 1)) for i in range(5)] for _ in range(2)]
    real = [[torch.zeros(1, 1, 2, 2) for _ in range(5)] for _ in range(2)]
    assert float(feature_matching_loss(fake, real, weighting="sum")) == 2 * (1 + 2 + 3 + 4)
    assert float(feature_matching_loss(real, real, weighting="sum")) == 0.0


def test_the_modality_code_reaches_g_only_without_the_head_instance_norm():
    image, lm = torch.rand(1, 3, 32, 32) * 2 - 1, (torch.rand(1, 1, 32, 32) > 0.9).float() * 2 - 1
    codes = torch.eye(4)[:, :, None, None].expand(-1, -1, 32, 32)
    for head_norm, changes in ((False, True), (True, False)):
        torch.manual_seed(0)
        g = PortraitGenerator(num_modalities=4, ngf=4, n_downsample=2, n_blocks=1, head_norm=head_norm).eval()
        outs = [g(image, lm, codes[m : m + 1], all_levels=False) for m in range(4)]
        gap = max(float((outs[0] - o).abs().max()) for o in outs[1:])
        # a constant plane through a reflect-padded conv is a constant per channel, which IN subtracts exactly
        assert (gap > 1e-3) if changes else (gap < 1e-4), (head_norm, gap)


def test_calibrated_random_vgg_has_unit_variance_conv_outputs_and_is_rebuilt_identically():
    plain, calibrated = texture_network(False, 3, seed=0), texture_network(False, 3, seed=0, calibrate=True)
    x = ImageNetNormalize()(torch.rand(CALIBRATION_SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    stds, plain_stds = [], []
    y, z = x, x
    for layer, plain_layer in zip(calibrated.vgg.module.features, plain.vgg.module.features, strict=True):
        y, z = layer(y), plain_layer(z)
        if isinstance(layer, torch.nn.Conv2d):
            stds.append(float(y.std()))
            plain_stds.append(float(z.std()))
            ratio = plain_layer.weight / layer.weight  # only rescaled, weight and bias by the same factor
            assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-5)
            assert torch.allclose(plain_layer.bias, layer.bias * ratio.flatten()[0], rtol=1e-5, atol=1e-8)
    assert len(stds) == 5 and stds == pytest.approx([1.0] * 5, abs=1e-4)  # relu3_1 ends after the 5th conv
    assert plain_stds[-1] < 0.1 * plain_stds[0]  # the default init: 0.76 at conv1_1, 0.05 at conv3_1
    again = texture_network(False, 3, seed=0, calibrate=True)
    for a, b in zip(again.vgg.parameters(), calibrated.vgg.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(not p.requires_grad for p in calibrated.vgg.parameters())
    assert calibrate_random_vgg(again.vgg.module, seed=0) == pytest.approx([1.0] * 5, abs=1e-4)  # idempotent
