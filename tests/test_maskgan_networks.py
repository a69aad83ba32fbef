"""MaskGAN networks: exact official parameter counts, tiny forward/backward, variants, MaskVAE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datamodules.labels import label_to_onehot
from portrait_models.layers import SFTLayer
from portrait_models.losses import kl_normal_standard
from portrait_models.maskgan.networks import (
    AlphaBlender,
    ConcatFusion,
    DenseMappingNetwork,
    MaskGANDiscriminator,
    MaskVAE,
    maskvae_loss,
    simulate_edit_latents,
)

TINY = dict(ngf=4, n_downsample=3, n_blocks=2, style_channels=4)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _random_masks(batch: int, size: int, classes: int = 19) -> torch.Tensor:
    coarse = torch.randint(0, classes, (batch, size // 4, size // 4))
    return label_to_onehot(coarse.repeat_interleave(4, 1).repeat_interleave(4, 2), classes)


# ------------------------------------------------------------------------------------------ paper-size counts
def test_parameter_counts_equal_the_official_networks_on_meta_device():
    with torch.device("meta"):
        dmn, disc, blender, vae = DenseMappingNetwork(), MaskGANDiscriminator(), AlphaBlender(), MaskVAE()
    style = dmn.style_encoder
    assert _count(dmn) == 89_702_595
    assert _count(style.mask_branch) == 252_768
    assert _count(style) - _count(style.mask_branch) == 1_338_464
    assert _count(dmn) - _count(style) == 88_111_363
    assert (
        sum(2 * (f.scale_conv1.weight.numel() + f.scale_conv1.bias.numel()) * 2 for f in (style.fuse1, style.fuse2))
        == 33_280
    )
    assert dmn.num_adain_params == 16_384
    assert _count(disc) == 5_568_386
    assert _count(blender) == 4_329_443
    assert _count(vae) == 170_619_571


# ------------------------------------------------------------------------------------------ DMN
def test_style_init_redraws_only_the_style_encoder_and_lets_the_style_through():
    """pix2pixHD's N(0, 0.02) on the normalisation-free style encoder shrinks its signal layer by layer, so
    two different faces get almost the same AdaIN parameters; ``style_init="pytorch"`` redraws only it."""
    kw = dict(ngf=4, n_downsample=1, n_blocks=2, style_channels=8, style_downsample=3)
    torch.manual_seed(0)
    released = DenseMappingNetwork(**kw)
    torch.manual_seed(0)
    redrawn = DenseMappingNetwork(**kw, style_init="pytorch")
    for (name, a), (_, b) in zip(released.named_parameters(), redrawn.named_parameters(), strict=True):
        assert torch.equal(a, b) != name.startswith("style_encoder."), name
    masks = _random_masks(2, 32)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    spread = {}
    for label, dmn in (("released", released), ("pytorch", redrawn)):
        with torch.no_grad():
            style = dmn.encode_style(images, masks)
        spread[label] = ((style[0] - style[1]).norm() / style.norm(dim=1).mean()).item()
    assert spread["pytorch"] > 10 * spread["released"], spread
    with pytest.raises(ValueError, match="style_init"):
        DenseMappingNetwork(**kw, style_init="xavier")  # type: ignore[arg-type]


def test_dmn_forward_backward_reaches_every_parameter():
    dmn = DenseMappingNetwork(**TINY)
    target, source = _random_masks(2, 32), _random_masks(2, 32)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    out = dmn(target, source, image)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dmn.parameters())


def test_dmn_style_depends_on_source_mask_and_image_and_split_api_matches_forward():
    dmn = DenseMappingNetwork(**TINY)
    target, source = _random_masks(1, 32), _random_masks(1, 32)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    out = dmn(target, source, image)
    style = dmn.encode_style(image, source)
    assert style.shape == (1, 2 * 2 * 2 * 32)  # n_blocks x 2 AdaIN layers x (beta, gamma) x 32 channels
    torch.testing.assert_close(dmn.generate(target, style), out)
    assert not torch.allclose(dmn(target, _random_masks(1, 32), image), out)
    assert not torch.allclose(dmn(target, source, image.flip(-1)), out)


def test_dmn_fusion_and_mask_branch_variants():
    concat = DenseMappingNetwork(**TINY, fusion="concat")
    assert isinstance(concat.style_encoder.fuse1, ConcatFusion)
    assert isinstance(DenseMappingNetwork(**TINY).style_encoder.fuse2, SFTLayer)
    masks, image = _random_masks(2, 32), torch.randn(2, 3, 32, 32)
    assert concat(masks, masks, image).shape == (2, 3, 32, 32)

    no_mask = DenseMappingNetwork(**TINY, use_mask_branch=False)  # the paper's Pix2PixHD-m baseline
    assert no_mask.style_encoder.mask_branch is None
    assert not any("mask_branch" in name or "fuse" in name for name, _ in no_mask.named_parameters())
    torch.testing.assert_close(no_mask(masks, None, image), no_mask(masks, _random_masks(2, 32), image))
    with pytest.raises(ValueError, match="unknown fusion 'add'"):
        DenseMappingNetwork(**TINY, fusion="add")  # type: ignore[arg-type]


def test_dmn_input_errors():
    dmn = DenseMappingNetwork(**TINY)
    masks, image = _random_masks(1, 32), torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"target mask must be \(B, 19, H, W\)"):
        dmn(masks[:, :11], masks, image)
    with pytest.raises(ValueError, match="divisible by 8"):
        dmn(masks[..., :28, :28], masks, image)
    with pytest.raises(ValueError, match="pass the source mask"):
        dmn(masks, None, image)
    with pytest.raises(ValueError, match="same spatial size"):
        dmn(masks, _random_masks(1, 16), image)
    with pytest.raises(ValueError, match="H, W >= 32"):
        dmn(masks, masks[..., :16, :16], image[..., :16, :16])


def test_dmn_channels_last_matches_contiguous():
    dmn = DenseMappingNetwork(**TINY)
    target, source, image = _random_masks(2, 32), _random_masks(2, 32), torch.randn(2, 3, 32, 32)
    expected = dmn(target, source, image)
    cl = torch.channels_last
    dmn_cl = dmn.to(memory_format=cl)
    out = dmn_cl(target.to(memory_format=cl), source.to(memory_format=cl), image.to(memory_format=cl))
    assert out.is_contiguous(memory_format=cl)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_dmn_learns_to_render_a_mask():
    # Known truth: a fixed image per mask. A few Adam steps must cut the L1 error substantially.
    torch.manual_seed(3)
    dmn = DenseMappingNetwork(ngf=8, n_downsample=2, n_blocks=1, style_channels=4, style_downsample=4)
    masks = _random_masks(2, 16, classes=19)
    palette = torch.rand(19, 3) * 2 - 1
    images = torch.einsum("bchw,cd->bdhw", masks, palette)
    optimizer = torch.optim.Adam(dmn.parameters(), lr=2e-3)
    initial = F.l1_loss(dmn(masks, masks, images), images).item()
    for _ in range(25):
        optimizer.zero_grad()
        loss = F.l1_loss(dmn(masks, masks, images), images)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * initial


# ------------------------------------------------------------------------------------------ blender, D
def test_alpha_blender_blends_with_a_three_channel_alpha():
    blender = AlphaBlender(ngf=4)
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    blended, alpha = blender(a, b)
    assert alpha.shape == (2, 3, 16, 16) and 0 < alpha.min() and alpha.max() < 1
    torch.testing.assert_close(blended, alpha * a + (1 - alpha) * b)
    torch.testing.assert_close(blender(a, a)[0], a)
    assert AlphaBlender(ngf=4, alpha_channels=1)(a, b)[1].shape == (2, 1, 16, 16)


def test_discriminator_is_conditioned_on_mask_and_image():
    disc = MaskGANDiscriminator(ndf=4)
    assert disc.multiscale.discriminators[0].layers[0].conv.in_channels == 22
    masks, image = _random_masks(2, 32), torch.randn(2, 3, 32, 32)
    outputs = disc(masks, image)
    assert len(outputs) == 2 and all(len(scale) == 5 for scale in outputs)
    assert not torch.allclose(disc(_random_masks(2, 32), image)[0][-1], outputs[0][-1])
    with pytest.raises(ValueError, match="must be"):
        disc(masks[..., :16, :16], image)


# ------------------------------------------------------------------------------------------ MaskVAE
VAE_TINY = dict(image_size=32, base_channels=4, latent_dim=8, num_levels=3)


def test_maskvae_shapes_and_modes():
    vae = MaskVAE(**VAE_TINY)
    masks = _random_masks(3, 32)
    logits, mu, logvar = vae(masks)
    assert logits.shape == (3, 19, 32, 32) and mu.shape == logvar.shape == (3, 8)
    vae.eval()
    torch.testing.assert_close(vae(masks)[0], vae.decode(vae.encode(masks)[0]))  # eval decodes the mean
    with pytest.raises(ValueError, match=r"MaskVAE input must be \(B, 19, 32, 32\)"):
        vae(_random_masks(1, 16))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_levels = 8"):
        MaskVAE(image_size=36, num_levels=3)


def test_reparameterize_statistics():
    z = MaskVAE.reparameterize(torch.ones(20000, 2), torch.full((20000, 2), 2 * torch.log(torch.tensor(2.0))))
    assert abs(z.mean().item() - 1) < 0.05 and abs(z.std().item() - 2) < 0.05


def test_maskvae_loss_is_cross_entropy_plus_weighted_kl():
    logits, label = torch.randn(2, 19, 8, 8), torch.randint(0, 19, (2, 8, 8))
    mu, logvar = torch.randn(2, 5), torch.randn(2, 5)
    loss = maskvae_loss(logits, label, mu, logvar, kl_weight=1e-5)
    torch.testing.assert_close(loss.reconstruction, F.cross_entropy(logits, label))
    torch.testing.assert_close(loss.kl, kl_normal_standard(mu, logvar))
    torch.testing.assert_close(loss.total, loss.reconstruction + 1e-5 * loss.kl)


def test_maskvae_learns_to_reconstruct_masks():
    torch.manual_seed(0)
    vae = MaskVAE(image_size=16, base_channels=8, latent_dim=16, num_levels=2)
    label = torch.zeros(4, 16, 16, dtype=torch.long)
    for i in range(4):  # four masks with a face-like blob and a band at different places
        label[i, 4 + i : 10 + i, 3:12] = 1
        label[i, :, 14 - i :] = 13
    masks = label_to_onehot(label)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        logits, mu, logvar = vae(masks)
        maskvae_loss(logits, label, mu, logvar).total.backward()
        optimizer.step()
    vae.eval()
    accuracy = (vae(masks)[0].argmax(1) == label).float().mean().item()
    assert accuracy > 0.95


def test_simulated_edit_latents_are_symmetric_steps_towards_the_reference():
    z_t, z_ref = torch.randn(2, 4), torch.randn(2, 4)
    inter, outer = simulate_edit_latents(z_t, z_ref, lambda_inter=2.5)
    torch.testing.assert_close(inter - z_t, (z_ref - z_t) / 2.5)
    torch.testing.assert_close(inter + outer, 2 * z_t)
