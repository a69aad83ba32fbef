"""MagGAN networks on hand-made tensors: eqs. 1, 12, 13, 14, the STU, shapes and parameter counts (spec §8.1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datamodules.attribute_regions import attribute_part_matrices, influence_regions
from datamodules.labels import CLASS_INDEX, EDIT_ATTRIBUTES, label_to_onehot
from metrics.functional.mre import attribute_change_vector, mask_aware_reconstruction_error
from portrait_models.maggan.losses import attribute_difference
from portrait_models.maggan.networks import (
    STGAN_PORT_ATTRIBUTES,
    AttributeCondition,
    MagGANGenerator,
    MultiLevelDiscriminator,
    SelectiveTransferUnit,
    STGANDiscriminator,
    blend_output,
    discriminator_settings,
    from_tiles,
    generator_settings,
    resize_maps,
    stgan_port_networks,
    to_tiles,
)

C = len(EDIT_ATTRIBUTES)
HAIR, HAT, SKIN, BG = CLASS_INDEX["hair"], CLASS_INDEX["hat"], CLASS_INDEX["skin"], CLASS_INDEX["background"]
BLOND, BALD, PALE = (EDIT_ATTRIBUTES.index(a) for a in ("Blond_Hair", "Bald", "Pale_Skin"))


def tiny_generator(**kwargs) -> MagGANGenerator:
    settings = dict(enc_dim=4, dec_dim=4, num_layers=3, max_dim=16, shortcut_layers=2, inject_layers=2, spade_hidden=4)
    return MagGANGenerator(**{**settings, **kwargs})


def random_onehot(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return label_to_onehot(torch.randint(0, 19, (batch, size, size), generator=g), 19).float()


# ------------------------------------------------------------------------------------------- eq. 1
def test_attribute_difference_is_target_minus_source():
    a = torch.tensor([[0.0, 1, 1, 0]])
    b = torch.tensor([[1.0, 1, 0, 0]])
    assert torch.equal(attribute_difference(a, b), b - a)  # STGAN's (b·2−1)·0.5 − (a·2−1)·0.5
    assert torch.equal(attribute_difference(a, a), torch.zeros_like(a))  # reconstruction condition
    assert torch.equal(attribute_change_vector(a), torch.tensor([[1.0, -1, -1, 1]]))  # evaluation flips


# ------------------------------------------------------------------------------------------- eq. 12
def test_mask_condition_hand_values():
    # pixel 0: hair 0.7 + hat 0.3; pixel 1: skin; pixel 2: background; pixel 3: hair.
    masks = torch.zeros(1, 19, 1, 4)
    masks[0, HAIR, 0, 0], masks[0, HAT, 0, 0] = 0.7, 0.3
    masks[0, SKIN, 0, 1] = masks[0, BG, 0, 2] = masks[0, HAIR, 0, 3] = 1.0
    att = torch.zeros(1, C)
    att[0, BLOND], att[0, BALD], att[0, PALE] = 1.0, -1.0, 0.5
    maps = AttributeCondition("mask").maps(att, masks, (1, 4))
    torch.testing.assert_close(maps[0, BLOND, 0], torch.tensor([0.7, 0.0, 0.0, 1.0]))  # 1 · M⁺(hair)
    torch.testing.assert_close(maps[0, BALD, 0], torch.tensor([-0.0, -1.0, -1.0, 0.0]))  # −1 · M⁻(bg, skin, ears)
    torch.testing.assert_close(maps[0, PALE, 0], torch.tensor([0.0, 0.5, 0.0, 0.0]))  # 0.5 · M⁺(skin)
    others = [i for i in range(C) if i not in (BLOND, BALD, PALE)]
    assert torch.equal(maps[0, others], torch.zeros(len(others), 1, 4))
    replicated = AttributeCondition("replicated").maps(att, masks, (1, 4))
    assert torch.equal(replicated[0, :, 0, 2], att[0])


def test_all_ones_influence_maps_make_mask_conditioning_bitwise_replicated():
    torch.manual_seed(0)
    masks = random_onehot(2, 32)
    att = torch.tensor([[1.0, -1, 0, 0.5, -0.5, 1, 0, 0, -1, 1, 0, 0, 1]] * 2)
    mask_g = tiny_generator(conditioning="mask")
    rep_g = tiny_generator(conditioning="replicated")
    rep_g.load_state_dict(mask_g.state_dict())
    for g in (mask_g, rep_g):
        g.condition.ar_plus.fill_(1.0)
        g.condition.ar_minus.fill_(1.0)
        g.eval()
    for size in ((32, 32), (8, 8), (4, 4)):
        assert torch.equal(mask_g.condition.maps(att, masks, size), rep_g.condition.maps(att, masks, size))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(mask_g(x, att, masks), rep_g(x, att, masks))


def test_area_pooling_commutes_with_the_condition():
    torch.manual_seed(1)
    masks = torch.rand(2, 19, 32, 32).softmax(1)
    att = torch.tensor([[1.0, -1, 0, 0.5, -0.5, 1, 0, 0, -1, 1, 0, 0, 1]] * 2)
    cond = AttributeCondition("mask")
    full = cond.maps(att, masks, (32, 32))
    torch.testing.assert_close(
        F.interpolate(full, size=(8, 8), mode="area"), cond.maps(att, masks, (8, 8)), atol=1e-6, rtol=0
    )
    # and it is eq. 12 built from pooled masks
    plus, minus = influence_regions(F.interpolate(masks, size=(8, 8), mode="area"), cond.ar_plus, cond.ar_minus)
    expected = att[:, :, None, None] * torch.where(att[:, :, None, None] > 0, plus, minus)
    torch.testing.assert_close(cond.maps(att, masks, (8, 8)), expected)


@pytest.mark.parametrize("decoder", ["spade", "bn_concat"])
def test_reconstruction_ignores_the_masks_and_the_conditioning_kind(decoder):
    torch.manual_seed(2)
    mask_g = tiny_generator(conditioning="mask", decoder=decoder).eval()
    rep_g = tiny_generator(conditioning="replicated", decoder=decoder).eval()
    rep_g.load_state_dict(mask_g.state_dict())
    x = torch.randn(2, 3, 32, 32)
    zero = torch.zeros(2, C)
    out = mask_g(x, zero, random_onehot(2, 32, seed=3))
    assert torch.equal(out, mask_g(x, zero, torch.rand(2, 19, 16, 16).softmax(1)))
    assert torch.equal(out, rep_g(x, zero, None))
    edit = torch.zeros(2, C)
    edit[:, BLOND] = 1.0
    assert not torch.equal(mask_g(x, edit, random_onehot(2, 32, seed=3)), mask_g(x, edit, random_onehot(2, 32, seed=4)))


def test_mask_conditioning_without_masks_is_one_clear_error():
    with pytest.raises(ValueError, match="soft parser masks"):
        tiny_generator(conditioning="mask")(torch.randn(1, 3, 32, 32), torch.zeros(1, C), None)
    with pytest.raises(ValueError, match="att_diff must be"):
        tiny_generator()(torch.randn(1, 3, 32, 32), torch.zeros(1, 5), random_onehot(1, 32))


# ------------------------------------------------------------------------------------------- eq. 13
def test_blending_with_hard_masks_copies_preserved_pixels_and_has_zero_mre():
    torch.manual_seed(5)
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    generated = torch.rand(1, 3, 8, 8) * 2 - 1
    label = torch.full((1, 8, 8), SKIN)
    label[:, :3] = HAIR
    label[:, :1, :4] = HAT
    masks = label_to_onehot(label, 19).float()
    att = torch.zeros(1, C)
    att[0, BLOND] = 1.0
    cond = AttributeCondition("mask")
    out = blend_output(x, generated, masks, att, cond)
    hair = (label == HAIR).unsqueeze(1).expand_as(x)
    assert torch.equal(out[~hair], x[~hair])
    assert torch.equal(out[hair], generated[hair])
    # eq. 2 for the single Blond⁺ edit (the other attributes unchanged) is 0
    att_eval = torch.zeros(1, C)
    edited = x.unsqueeze(1).repeat(1, C, 1, 1, 1)
    edited[:, BLOND] = out
    att_eval[0, BLOND] = 1.0
    mre = mask_aware_reconstruction_error(x, edited, masks, att_eval, cond.ar_plus, cond.ar_minus)
    assert mre.item() == 0.0


def test_blending_with_soft_masks_is_the_convex_combination():
    torch.manual_seed(6)
    x, generated = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    masks = torch.rand(2, 19, 8, 8).softmax(1)
    att = torch.zeros(2, C)
    att[:, BALD] = torch.tensor([1.0, -1.0])
    cond = AttributeCondition("mask")
    keep = 1 - torch.einsum("bphw,bp->bhw", masks, torch.stack([cond.ar_plus[BALD], cond.ar_minus[BALD]]))
    out = blend_output(x, generated, masks, att, cond)
    torch.testing.assert_close(out - x, (1 - keep.unsqueeze(1)) * (generated - x))
    g = tiny_generator(blend=True).eval()
    assert torch.equal(g(x.repeat(1, 1, 4, 4), torch.zeros(2, C), masks), x.repeat(1, 1, 4, 4))  # M ≡ 1 at att 0


# ------------------------------------------------------------------------------------------- STU
def test_stu_with_zero_weights_is_the_hand_gru():
    stu = SelectiveTransferUnit(state_channels=3, feature_channels=2)
    with torch.no_grad():
        for conv in (stu.upsample, stu.reset_gate, stu.update_gate, stu.hidden):
            conv.weight.zero_()
        stu.upsample.bias.copy_(torch.tensor([0.3, -0.2]))
        stu.reset_gate.bias.copy_(torch.tensor([0.5, -1.0]))
        stu.update_gate.bias.copy_(torch.tensor([1.0, 2.0]))
        stu.hidden.bias.copy_(torch.tensor([-0.4, 0.8]))
    out, new_state = stu(torch.randn(1, 2, 4, 4), torch.randn(1, 3, 2, 2))
    s = torch.tensor([0.3, -0.2])
    z = torch.sigmoid(torch.tensor([1.0, 2.0]))
    expected = (1 - z) * s + z * torch.tanh(torch.tensor([-0.4, 0.8]))
    torch.testing.assert_close(out[0, :, 1, 2], expected)
    torch.testing.assert_close(new_state[0, :, 0, 0], torch.sigmoid(torch.tensor([0.5, -1.0])) * s)
    assert out.shape == (1, 2, 4, 4)


# ------------------------------------------------------------------------------------------- shapes
def test_generator_shapes_at_256_follow_stgan():
    with torch.device("meta"):
        g = MagGANGenerator(decoder="bn_concat")
        zs = g.encode(torch.empty(2, 3, 256, 256))
        assert [tuple(z.shape[1:]) for z in zs] == [
            (64, 128, 128),
            (128, 64, 64),
            (256, 32, 32),
            (512, 16, 16),
            (1024, 8, 8),
        ]
        assert g.decoder_input_widths == [1037, 1549, 781, 397, 205]
        assert [stu.hidden.out_channels for stu in g.stus] == [512, 256, 128, 64]
        out = g(torch.empty(2, 3, 256, 256), torch.empty(2, C), torch.empty(2, 19, 256, 256))
        assert out.shape == (2, 3, 256, 256)
        assert MagGANGenerator(decoder="spade").decoder_input_widths == [1024, 1536, 768, 384, 192]


def test_small_generator_output_is_in_tanh_range():
    out = tiny_generator()(torch.randn(2, 3, 32, 32) * 5, torch.ones(2, C), random_onehot(2, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_scaling_rule_keeps_an_8x8_bottleneck(size):
    s = generator_settings(size)
    assert size // 2**s.num_layers == 8 and s.enc_dim * size == 64 * 256 and s.shortcut_layers == s.num_layers - 1
    assert discriminator_settings(size) == ({256: 1, 512: 2, 1024: 3}[size], 256)


def _expected_generator_params(size: int, decoder: str, c: int = 13, hidden: int = 128) -> int:
    """Hand count from the spec's layer list (independent of the module code)."""
    s = generator_settings(size)
    L, enc = s.num_layers, [min(s.enc_dim * 2**i, 1024) for i in range(s.num_layers)]
    n = sum(16 * i * o + 2 * o for i, o in zip([3, *enc[:-1]], enc))  # conv4x4 (no bias) + BN affine
    state = enc[-1] + c
    for j in range(s.shortcut_layers):
        d = enc[L - 2 - j]
        n += 16 * state * d + d + 3 * (9 * 2 * d * d + d)  # deconv + 3 gates
        state = d + c
    z = enc[-1] + (c if decoder == "bn_concat" else 0)
    for i in range(L - 1):
        d = min(s.dec_dim * 2 ** (L - 1 - i), 1024)
        n += 16 * z * d  # deconv, no bias
        if decoder == "spade":
            n += 9 * (d + c) * hidden + hidden + 2 * (9 * hidden * d + d)
        else:
            n += 2 * d  # BN affine
        z = d + enc[L - 2 - i] + (c if decoder == "bn_concat" else 0)
    return n + 16 * z * 3 + 3


def _expected_discriminator_params(size: int, c: int = 13) -> int:
    levels, level = discriminator_settings(size)
    widths = [min(64 * 2**i, 1024) for i in range(5)]
    trunk = sum(16 * i * o + o + 2 * o for i, o in zip([3, *widths[:-1]], widths))
    flat = 1024 * (level // 32) ** 2
    return levels * (trunk + (flat * 1024 + 1024) * 2 + 1024 + 1 + 1024 * c + c)


PARAMETER_COUNTS = {  # the README's table
    (256, "spade"): 81_294_723, (256, "bn_concat"): 74_998_771,
    (512, "spade"): 81_849_283, (512, "bn_concat"): 75_330_355,
    (1024, "spade"): 82_054_755, (1024, "bn_concat"): 75_416_787,
}  # fmt: skip
D_PARAMETER_COUNTS = {256: 145_384_270, 512: 290_768_540, 1024: 436_152_810}


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_parameter_counts_on_meta_device(size):
    s = generator_settings(size)
    levels, level = discriminator_settings(size)
    with torch.device("meta"):
        for decoder in ("spade", "bn_concat"):
            g = MagGANGenerator(
                enc_dim=s.enc_dim, dec_dim=s.dec_dim, num_layers=s.num_layers,
                shortcut_layers=s.shortcut_layers, inject_layers=s.shortcut_layers, decoder=decoder,
            )  # fmt: skip
            count = sum(p.numel() for p in g.parameters())
            assert count == _expected_generator_params(size, decoder) == PARAMETER_COUNTS[(size, decoder)]
        d = MultiLevelDiscriminator(levels, level)
        assert (
            sum(p.numel() for p in d.parameters()) == _expected_discriminator_params(size) == D_PARAMETER_COUNTS[size]
        )


def _expected_stgan_port_params(c: int = 10) -> tuple[int, int]:
    """Hand count of bluestyle97/STGAN-pytorch's G and D at 128² (its models/stgan.py layer list)."""
    enc = [64, 128, 256, 512, 1024]
    g = sum(16 * i * o + 2 * o for i, o in zip([3, *enc[:-1]], enc))  # conv (no bias) + BN
    for d in (512, 256, 128):  # STU: deconv of cat(state, att) (no bias), 3 gates conv (no bias) + BN
        g += 16 * (2 * d + c) * d + 3 * (9 * 2 * d * d + 2 * d)
    g += 16 * (1024 + c) * 1024 + 2 * 1024  # decoder 0: att concatenated once
    g += sum(16 * 3 * d * d + 2 * d for d in (512, 256, 128))  # decoder 1-3: cat(h, STU out)
    g += 16 * 128 * 16 + 2 * 16 + 9 * 16 * 3  # one_more_conv: deconv to 64 // 4 + BN, 3×3 deconv to RGB
    trunk = sum(16 * i * o + o + 2 * o for i, o in zip([3, *enc[:-1]], enc))  # conv + bias, IN affine
    flat = 1024 * 4 * 4
    return g, trunk + 2 * (flat * 1024 + 1024) + 1024 + 1 + 1024 * c + c


def test_stgan_port_preset_has_the_ports_exact_parameter_counts():
    """The issue's figures for the port's own config: G 74,379,600 and D 44,717,899 at 128²."""
    with torch.device("meta"):
        g, d = stgan_port_networks(128)
        counts = (sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters()))
        assert counts == _expected_stgan_port_params() == (74_379_600, 44_717_899)
        assert len(STGAN_PORT_ATTRIBUTES) == g.num_attributes == 10 and len(g.stus) == 3
        out = g(torch.empty(2, 3, 128, 128), torch.empty(2, 10))
        assert out.shape == (2, 3, 128, 128)
        assert d(torch.empty(2, 3, 128, 128))[0].attributes.shape == (2, 10)


def test_stu_batch_norm_variant_is_bias_free_and_normalised():
    stu = SelectiveTransferUnit(state_channels=6, feature_channels=4, norm="batch")
    assert stu.upsample.bias is None and all(gate[0].bias is None for gate in (stu.reset_gate, stu.hidden))
    seen = {}
    stu.reset_gate.register_forward_hook(lambda module, args, output: seen.update(reset=output))
    with torch.no_grad():
        out, new_state = stu(torch.randn(3, 4, 8, 8) * 5 + 2, torch.randn(3, 6, 4, 4))
    assert out.shape == new_state.shape == (3, 4, 8, 8)
    pre = seen["reset"]  # the gate's pre-activation is batch-normalised per channel (training mode)
    torch.testing.assert_close(pre.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(pre.var((0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="STU norm"):
        SelectiveTransferUnit(2, 2, norm="instance")


def test_spade_and_concat_variants_differ_only_in_the_decoder_norm_and_conv_inputs():
    spade = dict(tiny_generator(decoder="spade").named_parameters())
    concat = dict(tiny_generator(decoder="bn_concat").named_parameters())
    shared = [k for k in spade if k in concat and spade[k].shape == concat[k].shape]
    differing = sorted(set(spade) ^ set(concat) | {k for k in spade if k in concat and k not in shared})
    assert all(k.startswith(("spade.", "up.", "to_rgb.")) for k in differing), differing
    assert any(k.startswith("encoder.") for k in shared) and any(k.startswith("stus.") for k in shared)


def test_seg_branch_masks_condition_the_edit():
    g = tiny_generator(seg_branch=True).eval()
    out = g.forward_full(torch.randn(2, 3, 32, 32), torch.ones(2, C), None)
    assert out.seg_logits.shape == (2, 19, 32, 32)
    torch.testing.assert_close(out.masks.sum(1), torch.ones(2, 32, 32))


# ------------------------------------------------------------------------------------------- eq. 14
def test_tiles_count_and_reassemble():
    x = torch.randn(2, 3, 64, 64)
    d = MultiLevelDiscriminator(levels=3, level_size=16, dim=2, n_layers=2, max_dim=4, fc_dim=4)
    counts = []
    for k in range(3):
        x_k = d.level_input(x, k)
        assert x_k.shape[-1] == 16 * 2**k
        tiles = to_tiles(x_k, 16)
        counts.append(tiles.shape[1])
        assert torch.equal(from_tiles(tiles, 2**k, 2**k), x_k)
    assert counts == [1, 4, 16]
    torch.testing.assert_close(d.level_input(x, 0), F.interpolate(x, size=(16, 16), mode="area"))
    assert torch.equal(d.level_input(x, 2), x)
    assert torch.equal(to_tiles(x, 32)[:, 1], x[:, :, :32, 32:])  # row-major


def test_level_scores_are_tile_means_and_classifier_reads_the_mean_feature():
    torch.manual_seed(7)
    d = MultiLevelDiscriminator(levels=2, level_size=16, dim=2, n_layers=2, max_dim=4, fc_dim=4)
    x = torch.randn(2, 3, 32, 32)
    out = d(x)
    level = d.discriminators[1]
    tiles = to_tiles(x, 16)
    feats = torch.stack([level.features(tiles[:, t]) for t in range(4)], 1)
    torch.testing.assert_close(out[1].adversarial, level.adv_head(feats).squeeze(-1).mean(1))
    torch.testing.assert_close(out[1].attributes, level.cls_head(feats.mean(1)))
    # level 0 is a plain STGAN D on the area-downsampled image
    torch.testing.assert_close(
        out[0].adversarial, d.discriminators[0](F.interpolate(x, size=16, mode="area")).adversarial
    )


def test_one_level_is_stgans_single_discriminator():
    torch.manual_seed(8)
    multi = MultiLevelDiscriminator(levels=1, level_size=32, dim=2, n_layers=3, max_dim=8, fc_dim=4)
    single = STGANDiscriminator(32, C, dim=2, n_layers=3, max_dim=8, fc_dim=4)
    single.load_state_dict(multi.discriminators[0].state_dict())
    x = torch.randn(3, 3, 32, 32)
    (out,) = multi(x)
    ref = single(x)
    assert torch.equal(out.adversarial, ref.adversarial) and torch.equal(out.attributes, ref.attributes)


def test_resize_maps_keeps_soft_masks_summing_to_one():
    masks = torch.rand(1, 19, 16, 16).softmax(1)
    for size in ((4, 4), (64, 64)):
        torch.testing.assert_close(resize_maps(masks, size).sum(1), torch.ones(1, *size))


def test_attribute_table_is_the_metrics_table():
    cond = AttributeCondition("mask")
    plus, minus = attribute_part_matrices(EDIT_ATTRIBUTES)
    assert torch.equal(cond.ar_plus, plus) and torch.equal(cond.ar_minus, minus)
    # no attribute may repaint hat, necklace or cloth
    for name in ("hat", "neck_l", "cloth"):
        assert plus[:, CLASS_INDEX[name]].sum() == 0 and minus[:, CLASS_INDEX[name]].sum() == 0
