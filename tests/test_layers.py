"""Shared layers: norms (instance, AdaIN, SFT, SPADE), blocks, pix2pixHD stacks, PatchGANs, frozen wrapper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from portrait_models.layers import (
    SPADE,
    AdaINResnetBlock,
    AdaptiveInstanceNorm2d,
    ConvNormAct,
    FrozenModule,
    GlobalGenerator,
    InstanceNorm2d,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    ResnetBlock,
    SFTLayer,
    adaptive_instance_norm,
    init_pix2pixhd_weights,
    instance_norm_affine,
    norm_factory,
    num_adain_params,
    split_adain_params,
)


# ------------------------------------------------------------------------------------------ norms
def _manual_adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5):
    """Per-sample, per-channel loops in float64: the definition of AdaIN written out."""
    out = torch.empty_like(x, dtype=torch.float64)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = x[b, c].double()
            out[b, c] = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + eps) * gamma[b, c] + beta[b, c]
    return out


def test_adaptive_instance_norm_matches_manual_per_sample_definition():
    x = torch.randn(3, 4, 5, 6) * 3 + 2
    gamma, beta = torch.randn(3, 4), torch.randn(3, 4)
    expected = _manual_adain(x, gamma.double(), beta.double())
    actual = adaptive_instance_norm(x, gamma, beta).double()
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_instance_norm_matches_torch_with_and_without_affine():
    x = torch.randn(2, 5, 7, 7)
    torch.testing.assert_close(InstanceNorm2d(5)(x), F.instance_norm(x), atol=1e-5, rtol=1e-5)
    w, b = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(
        instance_norm_affine(x, w, b), F.instance_norm(x, weight=w, bias=b), atol=1e-5, rtol=1e-5
    )
    assert list(InstanceNorm2d(5).state_dict()) == []
    assert [n for n, _ in InstanceNorm2d(5, affine=True).named_parameters()] == ["weight", "bias"]


def test_instance_norm_keeps_channels_last_and_dtype():
    x = torch.randn(2, 8, 6, 6).to(memory_format=torch.channels_last)
    y = adaptive_instance_norm(x, torch.ones(2, 8), torch.zeros(2, 8))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert InstanceNorm2d(8)(x.bfloat16()).dtype == torch.bfloat16


def test_instance_norm_statistics_are_fp32_for_bf16_inputs():
    # A large offset makes bf16 statistics useless (bf16 spacing at 200 is 1.0); fp32 statistics stay exact.
    x = (200 + torch.randn(2, 3, 16, 16)).bfloat16()
    reference = F.instance_norm(x.double())
    error = (InstanceNorm2d(3)(x).double() - reference).abs().max()
    assert error < 0.05


def test_adain_layer_reads_beta_then_gamma():
    x = torch.randn(2, 3, 4, 4)
    beta, gamma = torch.randn(2, 3), torch.randn(2, 3)
    layer = AdaptiveInstanceNorm2d(3)
    torch.testing.assert_close(layer(x, torch.cat([beta, gamma], 1)), adaptive_instance_norm(x, gamma, beta))
    with pytest.raises(ValueError, match="needs 6 style values"):
        layer(x, torch.randn(2, 5))


def test_adain_param_helpers_count_in_module_order():
    net = nn.Sequential(AdaINResnetBlock(4), AdaINResnetBlock(6))
    assert num_adain_params(net) == 4 * 4 + 4 * 6
    chunks = split_adain_params(torch.arange(40.0).view(1, 40), [16, 24])
    assert chunks[0][0, -1] == 15 and chunks[1][0, 0] == 16
    with pytest.raises(ValueError, match="need 41"):
        split_adain_params(torch.zeros(1, 40), [16, 25])


def test_sft_layer_formula():
    torch.manual_seed(1)
    sft = SFTLayer(4, negative_slope=0.1)
    x, cond = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)

    def branch(c1: nn.Conv2d, c2: nn.Conv2d) -> torch.Tensor:
        hidden = F.conv2d(cond, c1.weight, c1.bias)
        return F.conv2d(torch.where(hidden > 0, hidden, 0.1 * hidden), c2.weight, c2.bias)

    scale, shift = branch(sft.scale_conv1, sft.scale_conv2), branch(sft.shift_conv1, sft.shift_conv2)
    torch.testing.assert_close(sft(x, cond), x * scale + shift)
    sft.residual_scale = True
    torch.testing.assert_close(sft(x, cond), x * (1 + scale) + shift)
    with pytest.raises(ValueError, match="differ in size"):
        sft(x, torch.randn(2, 4, 2, 2))


def test_spade_with_zero_modulation_is_plain_instance_norm():
    spade = SPADE(6, label_channels=3, hidden_channels=8)
    for conv in (spade.gamma, spade.beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(2, 6, 8, 8)
    segmap = torch.randn(2, 3, 16, 16)  # resized to x's size inside
    torch.testing.assert_close(spade(x, segmap), F.instance_norm(x), atol=1e-5, rtol=1e-5)
    nn.init.constant_(spade.beta.bias, 2.0)
    torch.testing.assert_close(spade(x, segmap), F.instance_norm(x) + 2.0, atol=1e-5, rtol=1e-5)


def test_norm_factory():
    assert isinstance(norm_factory("batch")(4), nn.BatchNorm2d)
    assert isinstance(norm_factory("none")(4), nn.Identity)
    assert norm_factory("instance_affine")(4).affine
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        norm_factory("group")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ blocks
def test_conv_norm_act_reflect_equals_explicit_reflection_pad():
    block = ConvNormAct(3, 4, 7, 1, 3, pad_mode="reflect", act="relu")
    x = torch.randn(1, 3, 10, 10)
    expected = F.relu(F.conv2d(F.pad(x, [3, 3, 3, 3], mode="reflect"), block.conv.weight, block.conv.bias))
    torch.testing.assert_close(block(x), expected)
    with pytest.raises(ValueError, match="only zero padding"):
        ConvNormAct(3, 4, 3, 2, 1, pad_mode="reflect", transposed=True)


def test_resnet_block_is_identity_when_second_conv_is_zero():
    block = ResnetBlock(4)
    nn.init.zeros_(block.conv2.conv.weight)
    nn.init.zeros_(block.conv2.conv.bias)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), x)


def test_adain_resnet_block_uses_beta1_gamma1_beta2_gamma2():
    block = AdaINResnetBlock(3)
    x = torch.randn(2, 3, 5, 5)
    b1, g1, b2, g2 = (torch.randn(2, 3) for _ in range(4))
    h = F.relu(adaptive_instance_norm(block.conv1(x), g1, b1))
    expected = x + adaptive_instance_norm(block.conv2(h), g2, b2)
    torch.testing.assert_close(block(x, torch.cat([b1, g1, b2, g2], 1)), expected)
    assert block.num_adain_params == 12
    with pytest.raises(ValueError, match="needs 12 style values per sample, got 6"):
        block(x, torch.randn(2, 6))


def test_global_generator_shapes_and_output_range():
    net = GlobalGenerator(6, 3, ngf=4, n_downsample=2, n_blocks=1, out_activation="sigmoid")
    y = net(torch.randn(2, 6, 16, 16))
    assert y.shape == (2, 3, 16, 16) and 0 < y.min() and y.max() < 1
    capped = GlobalGenerator(3, 3, ngf=4, n_downsample=3, n_blocks=1, max_channels=8)
    assert capped.blocks[0].conv1.conv.in_channels == 8
    assert capped(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_pix2pixhd_init_draws_conv_weights_with_std_002():
    net = nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(8))
    init_pix2pixhd_weights(net)
    assert abs(net[0].weight.std().item() - 0.02) < 0.001
    assert abs(net[1].weight.mean().item() - 1.0) < 0.05 and net[1].bias.abs().sum() == 0


# ------------------------------------------------------------------------------------------ discriminators
def test_nlayer_discriminator_layout_matches_pix2pixhd():
    d = NLayerDiscriminator(22, ndf=64, n_layers=3)
    assert sum(p.numel() for p in d.parameters()) == 2_784_193  # half of the official 2-scale D
    features = NLayerDiscriminator(5, ndf=4, n_layers=3)(torch.randn(2, 5, 64, 64))
    # pad 2, k4: 64 -> 33 -> 17 -> 9 (stride 2), then 10 -> 11 (stride 1); widths double from ndf.
    assert [tuple(f.shape[1:]) for f in features] == [
        (4, 33, 33),
        (8, 17, 17),
        (16, 9, 9),
        (32, 10, 10),
        (1, 11, 11),
    ]


def test_multiscale_discriminator_downsamples_without_counting_padding():
    msd = MultiscaleDiscriminator(2, ndf=4, n_layers=2, num_d=3)
    x = torch.randn(1, 2, 32, 32)
    outputs = msd(x)
    assert len(outputs) == 3 and all(len(o) == 4 for o in outputs)
    half = msd.downsample(x)
    torch.testing.assert_close(half[..., 0, 0], x[..., :2, :2].mean(dim=(-2, -1)))  # corner: 4 pixels, not 9
    torch.testing.assert_close(outputs[1][-1], msd.discriminators[1](half)[-1])
    assert outputs[2][-1].shape[-1] < outputs[1][-1].shape[-1] < outputs[0][-1].shape[-1]


def test_spectral_norm_discriminator_runs_and_is_initialised():
    d = MultiscaleDiscriminator(3, ndf=4, n_layers=2, num_d=1, spectral_norm=True)
    assert d(torch.randn(1, 3, 16, 16))[0][-1].shape[1] == 1


# ------------------------------------------------------------------------------------------ frozen wrapper
class _Owner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trainable = nn.Linear(2, 2)
        self.fixed = FrozenModule(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))


def test_frozen_module_is_frozen_eval_locked_and_not_checkpointed():
    owner = _Owner()
    assert not any(p.requires_grad for p in owner.fixed.parameters())
    owner.train()
    assert owner.trainable.training and not owner.fixed.training and not owner.fixed.module[1].training
    state = owner.state_dict()
    assert set(state) == {"trainable.weight", "trainable.bias"}

    other = _Owner()
    fixed_before = other.fixed.module[0].weight.clone()
    other.load_state_dict(state, strict=True)  # the frozen tensors are not reported missing
    torch.testing.assert_close(other.trainable.weight, owner.trainable.weight)
    torch.testing.assert_close(other.fixed.module[0].weight, fixed_before)  # kept its own weights
    assert other.to(torch.float64).fixed.module[0].weight.dtype == torch.float64
