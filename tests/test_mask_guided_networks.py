"""Gu et al.'s networks: official parameter counts (meta device), shapes, fused layout, background fusion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from portrait_models.mask_guided import components as C
from portrait_models.mask_guided.networks import (
    ComponentAutoencoder,
    MaskGuidedDiscriminator,
    MaskGuidedGenerator,
    Pix2PixUNet,
)

TINY = dict(ngf=8, ae_width=8, latent_dim=16, fc_hidden=32, feat_channels=8, n_res_blocks=1)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _face_batch(size: int = 64, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    s = size // 64
    label = torch.zeros(batch, size, size, dtype=torch.long)
    label[:, 10 * s : 54 * s, 12 * s : 52 * s] = 1
    label[:, 4 * s : 12 * s, 8 * s : 56 * s] = 10
    label[:, 28 * s : 30 * s, 22 * s : 27 * s] = 4
    label[:, 28 * s : 30 * s, 38 * s : 43 * s] = 5
    label[:, 44 * s : 46 * s, 27 * s : 37 * s] = 7
    label[:, 46 * s : 48 * s, 27 * s : 37 * s] = 9
    label[1] = label[1].roll(2, dims=1)
    return torch.rand(batch, 3, size, size) * 2 - 1, label


# ----------------------------------------------------------------------------------- official parameter counts
def test_parameter_counts_at_paper_settings_equal_the_official_networks():
    with torch.device("meta"):
        g = MaskGuidedGenerator(256)
        d = MaskGuidedDiscriminator()
        parser = Pix2PixUNet()
    expected = {  # encoder, feature decoder, image decoder (mask_guided_official_checkpoint.md)
        "left_eye": (10_101_568, 4_720_128, 4_397_251),
        "right_eye": (10_101_568, 4_720_128, 4_397_251),
        "skin": (20_591_936, 7_345_920, 20_592_643),
        "hair": (20_591_936, 7_345_920, 20_592_643),
        "mouth": (50_996_032, 14_966_784, 14_643_907),
    }
    for name, counts in expected.items():
        ae = g.autoencoders[name]
        assert (_count(ae.encoder), _count(ae.feature_decoder), _count(ae.image_decoder)) == counts, name
    trunk = _count(g) - sum(_count(ae) for ae in g.autoencoders.values())
    assert trunk == 12_111_811  # the official G: E_m + G_m + E_b + G_b
    assert _count(d) == 5_555_586
    assert _count(parser) == 29_260_427


def test_official_shapes_at_256():
    """Spatial shapes at 256 with narrow widths on real tensors (a meta-device forward first imports torch's
    decompositions, ~30 s); the official channel numbers are checked on the paper-size modules' attributes."""
    g = MaskGuidedGenerator(256, ngf=8, ae_width=8, latent_dim=512, fc_hidden=16, feat_channels=256, n_res_blocks=1)
    expected = {
        "left_eye": ((3, 32, 48), (256, 8, 12)),
        "mouth": ((3, 80, 144), (256, 20, 36)),
        "skin": ((3, 256, 256), (256, 64, 64)),
    }
    for name, (crop, feature) in expected.items():
        ae = g.autoencoders[name]
        codes = ae.encode(torch.zeros(2, *crop), sample=False)
        assert codes.mu.shape == codes.logvar.shape == (2, 512)
        assert ae.feature_decoder(codes.z).shape == (2, *feature)
        image = ae.image_decoder(codes.z)
        assert image.shape == (2, *crop) and image.abs().max() <= 1
    assert g.mask_encoder(torch.zeros(1, 11, 256, 256)).shape == (1, 32, 64, 64)
    assert g.face_features(torch.zeros(1, 32 + 5 * 256, 64, 64)).shape == (1, 8, 256, 256)
    with torch.device("meta"):
        official = MaskGuidedGenerator(256)
    assert official.fuse_conv.in_channels == 1536 and official.up[-1].conv.out_channels == 64
    assert official.mask_encoder[-1].conv.out_channels == 256
    d = MaskGuidedDiscriminator(ndf=4)
    feats = d(torch.zeros(2, 11, 256, 256), torch.zeros(2, 3, 256, 256))
    assert len(feats) == 2 and [f.shape[1] for f in feats[0][-2:]] == [32, 1]
    assert feats[0][-2].shape[-1] == feats[0][-3].shape[-1] + 1  # the FM feature is stride 1
    assert MaskGuidedDiscriminator().discriminators[0].layers[-2].conv.out_channels == 512


def test_image_decoder_output_is_in_range_and_encoder_samples_only_in_training():
    ae = ComponentAutoencoder("eye", 64, 8, 16, 32, 8)
    crop = torch.randn(3, 3, 8, 12)
    sampled, mean = ae.encode(crop, sample=True), ae.encode(crop, sample=False)
    assert torch.equal(mean.z, mean.mu) and not torch.equal(sampled.z, sampled.mu)
    image = ae.image_decoder(sampled.z)
    assert image.shape == (3, 3, 8, 12) and image.abs().max() <= 1


def test_discriminator_sees_the_label_before_the_image():
    d = MaskGuidedDiscriminator(ndf=4)
    first = d.discriminators[0].layers[0].conv
    assert first.in_channels == 14
    onehot, image = torch.zeros(1, 11, 32, 32), torch.zeros(1, 3, 32, 32)
    image[:, 0] = 1
    manual = F.conv2d(torch.cat([onehot, image], 1), first.weight, first.bias, 2, 2)
    assert torch.allclose(F.leaky_relu(manual, 0.2), d(onehot, image)[0][0])


# ----------------------------------------------------------------------------------- fused layout (§8.4)
def test_fused_channel_blocks_follow_the_official_order_and_swapping_hair_touches_only_its_block():
    g = MaskGuidedGenerator(64, **TINY).eval()
    image, label = _face_batch()
    centres = C.component_centres(label).centres
    codes = g.encode(C.crop_components(image, label, centres), sample=False)
    z = {k: v.z for k, v in codes.items()}
    onehot = C.onehot_labels(label)
    fused = g.fuse(g.decode_features(z), centres, g.mask_encoder(onehot))
    f, m = TINY["feat_channels"], 4 * TINY["ngf"]
    assert fused.shape[1] == m + 5 * f
    assert torch.equal(fused[:, :m], g.mask_encoder(onehot))
    skin = g.autoencoders["skin"].feature_decoder(z["skin"])
    assert torch.equal(fused[:, m + 2 * f : m + 3 * f], skin)
    swapped = dict(z, hair=z["hair"].flip(0))
    other = g.fuse(g.decode_features(swapped), centres, g.mask_encoder(onehot))
    changed = (other != fused).flatten(2).any(2).any(0)  # per channel
    hair_block = torch.zeros_like(changed)
    hair_block[m + 3 * f : m + 4 * f] = True
    assert changed.any() and torch.equal(changed & ~hair_block, torch.zeros_like(changed))


# ----------------------------------------------------------------------------------- background (§8.5)
def test_background_feature_is_exactly_zero_on_face_pixels():
    g = MaskGuidedGenerator(64, **TINY)
    image, label = _face_batch()
    bg = C.component_mask(label, "background")
    features = g.background_features(image, bg)
    assert torch.all(features * (1 - bg) == 0) and features.abs().sum() > 0


def test_background_feature_ignores_face_pixels_farther_than_3px_from_the_background_in_eval():
    g = MaskGuidedGenerator(64, **TINY).eval()
    image, label = _face_batch()
    bg = C.component_mask(label, "background")
    near_bg = F.max_pool2d(bg, 7, stride=1, padding=3)  # Chebyshev distance <= 3 to a background pixel
    interior = near_bg == 0
    assert interior.sum() > 100
    changed = torch.where(interior, torch.rand_like(image) * 2 - 1, image)
    assert torch.equal(g.background_features(image, bg), g.background_features(changed, bg))
    changed_near = image.clone()
    changed_near[(near_bg - bg).bool().expand_as(image)] += 0.5  # face pixels within 3 px do leak
    assert not torch.equal(g.background_features(image, bg), g.background_features(changed_near, bg))


def test_paste_variant_keeps_the_target_background_and_the_rgb_face_exactly():
    g = MaskGuidedGenerator(64, ablation="local_paste", **TINY).eval()
    image, label = _face_batch()
    centres = C.component_centres(label).centres
    z = {k: v.z for k, v in g.encode(C.crop_components(image, label, centres), sample=False).items()}
    fused = g.fuse(g.decode_features(z), centres, g.mask_encoder(C.onehot_labels(label)))
    bg = C.component_mask(label, "background")
    out = g.render(fused, image, bg)
    rgb = g.rgb_head(g.face_features(fused))
    assert torch.equal(out * bg, image * bg)
    assert torch.equal(out * (1 - bg), rgb * (1 - bg))


def test_global_ablation_has_one_autoencoder_and_no_placement():
    g = MaskGuidedGenerator(64, ablation="global_paste", **TINY)
    assert g.component_names == ("face",)
    assert g.fuse_conv.in_channels == 4 * TINY["ngf"] + TINY["feat_channels"]
    with pytest.raises(ValueError, match="ablation"):
        MaskGuidedGenerator(64, ablation="setting3", **TINY)


def test_official_parser_shape_returns_logits_at_the_input_size():
    parser = Pix2PixUNet(11, ngf=4)
    assert parser(torch.randn(1, 3, 64, 64)).shape == (1, 11, 64, 64)
    with pytest.raises(ValueError, match="divisible by 64"):
        parser(torch.randn(1, 3, 32, 32))
