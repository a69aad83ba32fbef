"""Official MaskGAN checkpoint conversion: names/shapes of the released layout, strict loading, exact forward.

The official state dicts are generated here from the layout rules of the MaskGAN demo's module tree
(documented tensor by tensor in the project's design notes; the totals below are the documented ones), and
the converted network is compared against a small functional re-implementation of the official forward that
reads the official tensor names directly (AdaIN written the demo's way, as a batch norm over (1, B*C, H, W)).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from portrait_models.maskgan import convert
from portrait_models.maskgan.convert import (
    convert_official_blender,
    convert_official_discriminator,
    convert_official_generator,
    generator_from_official,
    infer_generator_config,
    load_official_generator,
    load_state_dict_strictly,
)
from portrait_models.maskgan.networks import AlphaBlender, DenseMappingNetwork, MaskGANDiscriminator

Layout = list[tuple[str, tuple[int, ...]]]


# ------------------------------------------------------------------------------------------ official layouts
def _conv(layout: Layout, name: str, c_out: int, c_in: int, k: int, transposed: bool = False) -> None:
    layout.append((f"{name}.weight", (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)))
    layout.append((f"{name}.bias", (c_out,)))


def _pix2pixhd_trunk(layout: Layout, c_in: int, c_out: int, ngf: int, n_down: int, n_blocks: int, adain: bool) -> None:
    """``model.N``: [pad, conv, IN, ReLU], d x [conv, IN, ReLU], blocks, d x [convT, IN, ReLU], pad, conv."""
    _conv(layout, "model.1", ngf, c_in, 7)
    width, index = ngf, 4
    for _ in range(n_down):
        _conv(layout, f"model.{index}", 2 * width, width, 3)
        width, index = 2 * width, index + 3
    for _ in range(n_blocks):
        for k in (0, 1):
            if adain:
                layout += [
                    (f"model.{index}.conv_block.{k}.norm.running_mean", (width,)),
                    (f"model.{index}.conv_block.{k}.norm.running_var", (width,)),
                ]
            _conv(layout, f"model.{index}.conv_block.{k}.conv", width, width, 3)
        index += 1
    for _ in range(n_down):
        _conv(layout, f"model.{index}", width // 2, width, 3, transposed=True)
        width, index = width // 2, index + 3
    _conv(layout, f"model.{index + 1}", c_out, ngf, 7)


def official_generator_layout(
    num_classes: int = 19,
    ngf: int = 64,
    n_down: int = 4,
    n_blocks: int = 4,
    style_dim: int = 16,
    n_middle: int = 3,
) -> Layout:
    layout: Layout = []
    _pix2pixhd_trunk(layout, num_classes, 3, ngf, n_down, n_blocks, adain=True)
    c, adain_params = style_dim, n_blocks * 2 * 2 * ngf * 2**n_down
    for prefix, c_in in (("enc_style", 3), ("enc_label", num_classes)):
        _conv(layout, f"{prefix}.model.0.conv", c, c_in, 7)
        _conv(layout, f"{prefix}.model.1.conv", 2 * c, c, 4)
        _conv(layout, f"{prefix}.model.2.conv", 4 * c, 2 * c, 4)
        if prefix == "enc_style":
            for i in range(n_middle):
                _conv(layout, f"enc_style.model_middle.{i}.conv", 4 * c, 4 * c, 4)
            _conv(layout, "enc_style.model_last.1", adain_params, 4 * c, 1)
            for sft in ("sft1", "sft2"):
                for name in ("SFT_scale_conv1", "SFT_scale_conv2", "SFT_shift_conv1", "SFT_shift_conv2"):
                    _conv(layout, f"enc_style.{sft}.{name}", 4 * c, 4 * c, 1)
        else:
            for i in range(1, n_middle + 1):
                _conv(layout, f"enc_label.model_last.{i}.conv", 4 * c, 4 * c, 4)
    return layout


def official_blender_layout() -> Layout:
    layout: Layout = []
    _pix2pixhd_trunk(layout, 6, 3, 32, 3, 3, adain=False)
    return layout


def official_discriminator_layout(num_d: int = 2, ndf: int = 64, in_channels: int = 22) -> Layout:
    layout: Layout = []
    widths = [in_channels, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1]
    for i in range(num_d):
        for j in range(5):
            _conv(layout, f"scale{i}_layer{j}.0", widths[j + 1], widths[j], 4)
    return layout


def _constant_state_dict(layout: Layout) -> dict[str, torch.Tensor]:
    """Each tensor filled with its own index, so where it lands after conversion is visible."""
    return {name: torch.full(shape, float(i)) for i, (name, shape) in enumerate(layout)}


def _random_state_dict(layout: Layout, std: float = 0.15) -> dict[str, torch.Tensor]:
    return {name: torch.randn(shape) * std for name, shape in layout}


def _numel(layout: Layout) -> int:
    return sum(torch.Size(shape).numel() for _, shape in layout)


def test_generated_layouts_match_the_documented_checkpoints():
    generator = dict(official_generator_layout())
    assert len(generator) == 94 and _numel(list(generator.items())) == 89_718_979
    assert generator["model.20.weight"] == (1024, 512, 3, 3) and generator["model.20.bias"] == (512,)
    assert generator["model.33.weight"] == (3, 64, 7, 7)
    assert generator["model.19.conv_block.1.norm.running_var"] == (1024,)
    assert generator["enc_style.model_last.1.weight"] == (16384, 64, 1, 1)
    assert generator["enc_label.model_last.3.conv.weight"] == (64, 64, 4, 4)
    blender = dict(official_blender_layout())
    assert len(blender) == 28 and _numel(list(blender.items())) == 4_329_443
    assert blender["model.26.weight"] == (3, 32, 7, 7) and blender["model.16.weight"] == (256, 128, 3, 3)
    assert len(official_discriminator_layout()) == 20 and _numel(official_discriminator_layout()) == 5_568_386


# ------------------------------------------------------------------------------------------ full-size load
def test_full_size_generator_converts_and_loads_strictly():
    official = _constant_state_dict(official_generator_layout())
    config = infer_generator_config(official)
    assert config == dict(
        num_classes=19,
        image_channels=3,
        ngf=64,
        n_downsample=4,
        n_blocks=4,
        style_channels=16,
        style_downsample=5,
    )
    converted = convert_official_generator(official)
    assert len(official) - len(converted) == 16  # 4 blocks x 2 AdaIN x (running_mean, running_var)
    assert sum(official[k].numel() for k in official) - sum(v.numel() for v in converted.values()) == 16_384

    model = generator_from_official(official)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == 89_702_595
    for official_name, local_name in [
        ("model.1.weight", "head.conv.weight"),
        ("model.13.bias", "down.3.conv.bias"),
        ("model.19.conv_block.1.conv.weight", "blocks.3.conv2.weight"),
        ("model.29.weight", "up.3.conv.weight"),
        ("model.33.bias", "tail.conv.bias"),
        ("enc_style.model_middle.2.conv.weight", "style_encoder.image_middle.2.conv.weight"),
        ("enc_style.model_last.1.bias", "style_encoder.to_params.bias"),
        ("enc_style.sft2.SFT_shift_conv1.weight", "style_encoder.fuse2.shift_conv1.weight"),
        ("enc_label.model.2.conv.bias", "style_encoder.mask_branch.stem.2.conv.bias"),
        ("enc_label.model_last.3.conv.weight", "style_encoder.mask_branch.deep.2.conv.weight"),
    ]:
        torch.testing.assert_close(params[local_name], official[official_name], msg=official_name)
    # Every parameter is one official tensor (uniform value), and every official weight tensor is used once.
    values = [p.flatten()[0].item() for p in params.values()]
    assert all(p.min() == p.max() for p in params.values())
    used = {official[k].flatten()[0].item() for k in official if "running" not in k}
    assert sorted(values) == sorted(used)
    assert all(p.requires_grad for p in params.values()) and not model.training


# ------------------------------------------------------------------------------------------ exact forward
def _official_forward(
    sd: dict[str, torch.Tensor],
    target: torch.Tensor,
    source: torch.Tensor,
    image: torch.Tensor,
    n_down: int,
    n_blocks: int,
    n_middle: int,
) -> torch.Tensor:
    """The demo's G forward over its state dict (reflection pads, AdaIN as batch_norm on (1, B*C, H, W))."""

    def conv_block(x: torch.Tensor, name: str, stride: int, pad: int, relu: bool) -> torch.Tensor:
        x = F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), sd[f"{name}.conv.weight"], sd[f"{name}.conv.bias"], stride)
        return F.relu(x) if relu else x

    def sft(x: torch.Tensor, cond: torch.Tensor, name: str) -> torch.Tensor:
        def branch(kind: str) -> torch.Tensor:
            h = F.conv2d(cond, sd[f"{name}.SFT_{kind}_conv1.weight"], sd[f"{name}.SFT_{kind}_conv1.bias"])
            return F.conv2d(
                F.leaky_relu(h, 0.1),
                sd[f"{name}.SFT_{kind}_conv2.weight"],
                sd[f"{name}.SFT_{kind}_conv2.bias"],
            )

        return x * branch("scale") + branch("shift")

    fea1 = conv_block(source, "enc_label.model.0", 1, 3, True)
    fea1 = conv_block(fea1, "enc_label.model.1", 2, 1, True)
    fea1 = conv_block(fea1, "enc_label.model.2", 2, 1, False)
    fea2 = F.relu(fea1)
    for i in range(1, n_middle + 1):
        fea2 = conv_block(fea2, f"enc_label.model_last.{i}", 2, 1, i < n_middle)
    style = conv_block(image, "enc_style.model.0", 1, 3, True)
    style = conv_block(style, "enc_style.model.1", 2, 1, True)
    style = conv_block(style, "enc_style.model.2", 2, 1, True)
    style = sft(style, fea1, "enc_style.sft1")
    for i in range(n_middle):
        style = conv_block(style, f"enc_style.model_middle.{i}", 2, 1, True)
    style = sft(style, fea2, "enc_style.sft2")
    adain = F.conv2d(
        F.adaptive_avg_pool2d(style, 1),
        sd["enc_style.model_last.1.weight"],
        sd["enc_style.model_last.1.bias"],
    ).flatten(1)

    offset = 0

    def adain_norm(x: torch.Tensor) -> torch.Tensor:
        nonlocal offset
        b, c, h, w = x.shape
        mean, std = adain[:, offset : offset + c], adain[:, offset + c : offset + 2 * c]
        offset += 2 * c
        out = F.batch_norm(
            x.reshape(1, b * c, h, w),
            torch.zeros(b * c),
            torch.ones(b * c),
            std.reshape(-1),
            mean.reshape(-1),
            training=True,
            eps=1e-5,
        )
        return out.view(b, c, h, w)

    x = F.conv2d(F.pad(target, [3] * 4, mode="reflect"), sd["model.1.weight"], sd["model.1.bias"])
    x = F.relu(F.instance_norm(x))
    index = 4
    for _ in range(n_down):
        x = F.relu(F.instance_norm(F.conv2d(x, sd[f"model.{index}.weight"], sd[f"model.{index}.bias"], 2, 1)))
        index += 3
    for _ in range(n_blocks):
        prefix = f"model.{index}.conv_block"
        h = F.relu(adain_norm(conv_block(x, f"{prefix}.0", 1, 1, False)))
        x = x + adain_norm(conv_block(h, f"{prefix}.1", 1, 1, False))
        index += 1
    for _ in range(n_down):
        x = F.conv_transpose2d(x, sd[f"model.{index}.weight"], sd[f"model.{index}.bias"], 2, 1, output_padding=1)
        x = F.relu(F.instance_norm(x))
        index += 3
    out = F.conv2d(F.pad(x, [3] * 4, mode="reflect"), sd[f"model.{index + 1}.weight"], sd[f"model.{index + 1}.bias"])
    assert offset == adain.shape[1]
    return torch.tanh(out)


def test_converted_generator_reproduces_the_official_forward():
    torch.manual_seed(7)
    official = _random_state_dict(official_generator_layout(ngf=8, style_dim=4))
    model = generator_from_official(official)
    assert model.num_adain_params == 4 * 2 * 2 * 128
    label = torch.randint(0, 19, (2, 16, 16)).repeat_interleave(4, 1).repeat_interleave(4, 2)
    target = F.one_hot(label, 19).permute(0, 3, 1, 2).float()
    source = target.roll(5, dims=2)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = _official_forward(official, target, source, image, n_down=4, n_blocks=4, n_middle=3)
        actual = model(target, source, image)
    assert expected.std() > 0.05  # a non-degenerate output, so the comparison means something
    # fp32 through ~30 layers: the summation order of the conv kernels differs between CPUs by a few 1e-5
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------ files and CLI
@pytest.fixture
def small_official(tmp_path):
    official = _random_state_dict(official_generator_layout(ngf=8, n_down=2, n_blocks=2, style_dim=4))
    path = tmp_path / "latest_net_G.pth"
    torch.save(official, path)
    return official, path


def test_load_from_file_and_dataparallel_prefix(small_official, tmp_path):
    official, path = small_official
    model = load_official_generator(path)
    assert isinstance(model, DenseMappingNetwork) and len(model.blocks) == 2
    prefixed = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in official.items()}, prefixed)
    torch.testing.assert_close(load_official_generator(prefixed).state_dict(), model.state_dict())


def test_cli_writes_a_loadable_state_dict(small_official, tmp_path, capsys):
    official, path = small_official
    target = tmp_path / "out" / "dmn.pth"
    assert convert.main([str(path), str(target)]) == 0
    printed = capsys.readouterr().out
    assert "ngf=8" in printed and "n_blocks=2" in printed
    model = DenseMappingNetwork(**infer_generator_config(official))
    model.load_state_dict(torch.load(target, weights_only=True), strict=True)
    torch.testing.assert_close(model.state_dict(), generator_from_official(official).state_dict())
    assert convert.main([str(tmp_path / "absent.pth"), str(target)]) == 1
    assert "not found" in capsys.readouterr().err


def test_bad_checkpoints_give_one_clear_error(small_official, tmp_path):
    official, path = small_official
    broken = dict(official)
    del broken["enc_style.sft1.SFT_scale_conv2.bias"]
    broken["model.99.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['enc_style.sft1.SFT_scale_conv2.bias'\].*model.99.weight"):
        convert_official_generator(broken)
    with pytest.raises(
        ValueError,
        match=r"shape mismatch: head.conv.weight: model \(16, 19, 7, 7\) vs "
        r"checkpoint \(8, 19, 7, 7\)",
    ):
        load_official_generator(path, ngf=16)
    with pytest.raises(FileNotFoundError, match="latest_net_G.pth"):
        load_official_generator(tmp_path / "nothing.pth")
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ValueError, match="holds a list"):
        load_official_generator(not_a_dict)
    with pytest.raises(ValueError, match="no 'model.N.conv_block"):
        convert_official_generator({"model.1.weight": torch.zeros(1)})


# ------------------------------------------------------------------------------------------ blender and D
def test_blender_and_discriminator_convert_and_load_strictly():
    blender_sd = _constant_state_dict(official_blender_layout())
    with torch.device("meta"):
        blender = AlphaBlender(init_weights=False)
    load_state_dict_strictly(blender, convert_official_blender(blender_sd), "blender")
    torch.testing.assert_close(blender.net.blocks[2].conv2.conv.weight, blender_sd["model.15.conv_block.1.conv.weight"])
    torch.testing.assert_close(blender.net.tail.conv.bias, blender_sd["model.26.bias"])

    disc_sd = _constant_state_dict(official_discriminator_layout())
    with torch.device("meta"):
        disc = MaskGANDiscriminator()
    load_state_dict_strictly(disc, convert_official_discriminator(disc_sd), "discriminator")
    full_resolution = disc.multiscale.discriminators[0]  # official scale1 sees the full-resolution input
    torch.testing.assert_close(full_resolution.layers[0].conv.weight, disc_sd["scale1_layer0.0.weight"])
    torch.testing.assert_close(disc.multiscale.discriminators[1].layers[4].conv.bias, disc_sd["scale0_layer4.0.bias"])
