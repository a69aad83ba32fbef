"""The official-checkpoint converter: state dicts with exactly the released names and shapes (random values)
load strictly, and the converted networks compute what a direct functional evaluation of the official layer
order computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from portrait_models.mask_guided import components as C
from portrait_models.mask_guided.convert import (
    convert_decoder,
    convert_discriminator,
    convert_encoder,
    convert_folder,
    convert_generator_trunk,
    convert_parser,
    main,
)
from portrait_models.mask_guided.networks import (
    ComponentAutoencoder,
    MaskGuidedDiscriminator,
    MaskGuidedGenerator,
    Pix2PixUNet,
)


# ------------------------------------------------------------------ official layouts (names and shapes only)
def _conv(name, c_out, c_in, k, bias=True):
    return {f"{name}.weight": (c_out, c_in, k, k), **({f"{name}.bias": (c_out,)} if bias else {})}


def _convt(name, c_in, c_out, k=4, bias=True):
    return {f"{name}.weight": (c_in, c_out, k, k), **({f"{name}.bias": (c_out,)} if bias else {})}


def _bn(name, c):
    return {f"{name}.{t}": (c,) for t in ("weight", "bias", "running_mean", "running_var")} | {
        f"{name}.num_batches_tracked": ()
    }


def _linear(name, c_out, c_in, bias=True):
    return {f"{name}.weight": (c_out, c_in), **({f"{name}.bias": (c_out,)} if bias else {})}


def official_g(ngf=64, n_blocks=9, embed=1280, classes=11):
    s = _conv("downsample_model.1", ngf, classes, 7) | _bn("downsample_model.2", ngf)
    s |= _conv("downsample_model.4", 2 * ngf, ngf, 3) | _bn("downsample_model.5", 2 * ngf)
    s |= _conv("downsample_model.7", 4 * ngf, 2 * ngf, 3) | _bn("downsample_model.8", 4 * ngf)
    s |= _conv("model.0", 4 * ngf, 4 * ngf + embed, 1)
    for i in range(1, n_blocks + 1):
        for conv, bn in ((1, 2), (5, 6)):
            s |= _conv(f"model.{i}.conv_block.{conv}", 4 * ngf, 4 * ngf, 3) | _bn(f"model.{i}.conv_block.{bn}", 4 * ngf)
    s |= _convt(f"model.{n_blocks + 1}", 4 * ngf, 2 * ngf) | _bn(f"model.{n_blocks + 2}", 2 * ngf)
    s |= _convt(f"model.{n_blocks + 4}", 2 * ngf, ngf) | _bn(f"model.{n_blocks + 5}", ngf)
    s |= _conv("bg_encoder.1", ngf, 3, 7) | _bn("bg_encoder.2", ngf)
    return s | _conv("bg_decoder.0", ngf, 2 * ngf, 1) | _conv("bg_decoder.2", 3, ngf, 7)


def official_autoencoder(kind, w=64, latent=512, hidden=1024, feat=256, n_feat=None):
    """(encoder, feature decoder, image decoder) layouts at 256 px (eyes/mouth 4 blocks, skin/hair 7)."""
    enc_w = [w, 2 * w, 4 * w, 8 * w] + ([8 * w] * 3 if kind == "full" else [])
    grid = {"eye": 6, "mouth": 45, "full": 4}[kind]
    enc = {}
    for i, (a, b) in enumerate(zip([3, *enc_w[:-1]], enc_w, strict=True)):
        enc |= _conv(f"conv.{i}.conv", b, a, 4) | _bn(f"conv.{i}.bn", b)
    for head in ("fc_mu", "fc_var"):
        enc |= _linear(f"{head}.0", hidden, 8 * w * grid) | _linear(f"{head}.2", latent, hidden)
    bias = kind != "eye"
    n_feat = n_feat if n_feat is not None else (5 if kind == "full" else 2)
    fdec = _linear("fc.0", 8 * w * grid, latent, bias)
    for i, a in enumerate([8 * w] + [feat] * (n_feat - 1)):
        fdec |= _convt(f"conv.{i}.conv.0", a, feat) | _bn(f"conv.{i}.conv.1", feat)
    outs = [8 * w] * 4 + [4 * w, 2 * w, w] if kind == "full" else [4 * w, 2 * w, w, w]
    idec = _linear("fc.0", 8 * w * grid, latent, bias)
    for i, (a, b) in enumerate(zip([8 * w, *outs[:-1]], outs, strict=True)):
        idec |= _convt(f"conv.{i}.conv.0", a, b) | _bn(f"conv.{i}.conv.1", b)
    idec |= _conv(f"conv.{len(outs) + 1}", 3, w, 5)
    return enc, fdec, idec


def official_d(ndf=64, in_ch=14, num_d=2):
    s = {}
    for k in range(num_d):
        widths = [ndf, 2 * ndf, 4 * ndf, 8 * ndf]
        s |= _conv(f"scale{k}_layer0.0", ndf, in_ch, 4)
        for j in range(1, 4):
            s |= _conv(f"scale{k}_layer{j}.0", widths[j], widths[j - 1], 4) | _bn(f"scale{k}_layer{j}.1", widths[j])
        s |= _conv(f"scale{k}_layer4.0", 1, 8 * ndf, 4)
    return s


def official_p(ngf=64, classes=11):
    s = _conv("model.model.0", ngf, 3, 4, bias=False) | _convt("model.model.3", 2 * ngf, classes)
    levels = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf), (8 * ngf, 8 * ngf)]
    prefix = "model.model.1."
    for outer, inner in levels:
        s |= _conv(prefix + "model.1", inner, outer, 4, False) | _bn(prefix + "model.2", inner)
        s |= _convt(prefix + "model.5", 2 * inner, outer, bias=False) | _bn(prefix + "model.6", outer)
        prefix += "model.3."
    return (
        s
        | _conv(prefix + "model.1", 8 * ngf, 8 * ngf, 4, False)
        | (_convt(prefix + "model.3", 8 * ngf, 8 * ngf, bias=False) | _bn(prefix + "model.4", 8 * ngf))
    )


def randomise(layout, generator):
    out = {}
    for name, shape in layout.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            out[name] = torch.randn(shape, generator=generator) * 0.1
    return out


def meta(layout):
    return {n: torch.empty(s, device="meta", dtype=torch.long if not s else torch.float32) for n, s in layout.items()}


# ------------------------------------------------------------------ strict loading at the official shapes
def test_official_names_and_shapes_load_strictly():
    assert sum(1 for _ in official_g()) == 174 and len(official_p()) == 58 and len(official_d()) == 50
    with torch.device("meta"):
        g, d, p = MaskGuidedGenerator(256), MaskGuidedDiscriminator(), Pix2PixUNet()
    state = {**convert_generator_trunk(meta(official_g()))}
    for name in C.COMPONENTS:
        kind = {"left_eye": "eye", "right_eye": "eye", "mouth": "mouth"}.get(name, "full")
        enc, fdec, idec = official_autoencoder(kind)
        for part in (convert_encoder(meta(enc)), convert_decoder(meta(fdec), False), convert_decoder(meta(idec), True)):
            state |= {f"autoencoders.{name}.{k}": v for k, v in part.items()}
    g.load_state_dict(state, strict=True, assign=True)
    d.load_state_dict(convert_discriminator(meta(official_d())), strict=True, assign=True)
    p.load_state_dict(convert_parser(meta(official_p())), strict=True, assign=True)


def test_unknown_official_tensor_is_named():
    with pytest.raises(ValueError, match="model.42.weight"):
        convert_generator_trunk({"model.42.weight": torch.zeros(1)})


# ------------------------------------------------------------------ functional evaluation of the official order
def _bn_eval(x, s, name):
    return F.batch_norm(x, s[f"{name}.running_mean"], s[f"{name}.running_var"], s[f"{name}.weight"],
                        s[f"{name}.bias"], training=False)  # fmt: skip


def _reflect_conv(x, s, name, pad, stride=1):
    return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), s[f"{name}.weight"], s.get(f"{name}.bias"), stride)


def official_trunk_forward(s, onehot, components, image, background, n_blocks):
    h = F.relu(_bn_eval(_reflect_conv(onehot, s, "downsample_model.1", 3), s, "downsample_model.2"))
    for conv, bn in ((4, 5), (7, 8)):
        h = F.conv2d(h, s[f"downsample_model.{conv}.weight"], s[f"downsample_model.{conv}.bias"], 2, 1)
        h = F.relu(_bn_eval(h, s, f"downsample_model.{bn}"))
    x = F.conv2d(torch.cat([h, components], 1), s["model.0.weight"], s["model.0.bias"])
    for i in range(1, n_blocks + 1):
        r = F.relu(_bn_eval(_reflect_conv(x, s, f"model.{i}.conv_block.1", 1), s, f"model.{i}.conv_block.2"))
        x = x + _bn_eval(_reflect_conv(r, s, f"model.{i}.conv_block.5", 1), s, f"model.{i}.conv_block.6")
    for conv in (n_blocks + 1, n_blocks + 4):
        x = F.conv_transpose2d(x, s[f"model.{conv}.weight"], s[f"model.{conv}.bias"], 2, 1)
        x = F.relu(_bn_eval(x, s, f"model.{conv + 1}"))
    bg = F.relu(_bn_eval(_reflect_conv(image, s, "bg_encoder.1", 3), s, "bg_encoder.2")) * background
    y = F.conv2d(torch.cat([x, bg], 1), s["bg_decoder.0.weight"], s["bg_decoder.0.bias"])
    return torch.tanh(_reflect_conv(y, s, "bg_decoder.2", 3)), h


def official_ae_forward(enc, fdec, idec, crop, grid):
    h = crop
    for i in range(sum(1 for k in enc if k.endswith("conv.weight"))):
        h = F.conv2d(h, enc[f"conv.{i}.conv.weight"], enc[f"conv.{i}.conv.bias"], 2, 1)
        h = F.relu(_bn_eval(h, enc, f"conv.{i}.bn"))
    h = h.flatten(1)
    mu = F.linear(F.relu(F.linear(h, enc["fc_mu.0.weight"], enc["fc_mu.0.bias"])), enc["fc_mu.2.weight"],
                  enc["fc_mu.2.bias"])  # fmt: skip

    def decode(s):
        x = F.linear(mu, s["fc.0.weight"], s.get("fc.0.bias")).view(mu.shape[0], -1, *grid)
        i = 0
        while f"conv.{i}.conv.0.weight" in s:
            x = F.conv_transpose2d(x, s[f"conv.{i}.conv.0.weight"], s[f"conv.{i}.conv.0.bias"], 2, 1)
            x = F.relu(_bn_eval(x, s, f"conv.{i}.conv.1"))
            i += 1
        return x, i

    feature, _ = decode(fdec)
    x, n = decode(idec)
    return mu, feature, torch.tanh(_reflect_conv(x, idec, f"conv.{n + 1}", 2))


def official_p_forward(s, x):
    def level(prefix, h):
        down = F.conv2d(F.leaky_relu(h, 0.2), s[prefix + "model.1.weight"], None, 2, 1)
        if prefix + "model.3.model.1.weight" in s:
            inner = level(prefix + "model.3.", _bn_eval(down, s, prefix + "model.2"))
            up = _bn_eval(F.conv_transpose2d(F.relu(inner), s[prefix + "model.5.weight"], None, 2, 1), s,
                          prefix + "model.6")  # fmt: skip
        else:
            up = _bn_eval(F.conv_transpose2d(F.relu(down), s[prefix + "model.3.weight"], None, 2, 1), s,
                          prefix + "model.4")  # fmt: skip
        return torch.cat([h, up], 1)

    h = F.conv2d(x, s["model.model.0.weight"], None, 2, 1)
    h = level("model.model.1.", h)
    return F.conv_transpose2d(F.relu(h), s["model.model.3.weight"], s["model.model.3.bias"], 2, 1)


def test_converted_networks_equal_the_official_layer_order_evaluated_directly(tmp_path):
    g = torch.Generator().manual_seed(0)
    ngf, w, feat, latent, hidden, blocks = 4, 4, 8, 16, 12, 2
    trunk = randomise(official_g(ngf, blocks, embed=5 * feat), g)
    net = MaskGuidedGenerator(256, 11, ngf, w, latent, hidden, feat, blocks).eval()
    net.load_state_dict({**net.state_dict(), **convert_generator_trunk(trunk, blocks)}, strict=True)
    label = torch.randint(0, 11, (2, 256, 256), generator=g)
    onehot = C.onehot_labels(label)
    image = torch.rand(2, 3, 256, 256, generator=g) * 2 - 1
    background = C.component_mask(label, "background")
    components = torch.randn(2, 5 * feat, 64, 64, generator=g)
    expected, expected_mask_feature = official_trunk_forward(trunk, onehot, components, image, background, blocks)
    with torch.no_grad():
        mask_feature = net.mask_encoder(onehot)
        fused = torch.cat([mask_feature, components], 1)
        assert torch.allclose(mask_feature, expected_mask_feature, atol=1e-5)
        assert torch.allclose(net.render(fused, image, background), expected, atol=1e-5)

    for kind, crop_shape, grid in (("eye", (3, 32, 48), (2, 3)), ("full", (3, 256, 256), (2, 2))):
        enc, fdec, idec = (randomise(p, g) for p in official_autoencoder(kind, w, latent, hidden, feat))
        ae = ComponentAutoencoder(kind, 256, w, latent, hidden, feat).eval()
        ae.load_state_dict(convert_encoder(enc) | convert_decoder(fdec, False) | convert_decoder(idec, True))
        crop = torch.rand(2, *crop_shape, generator=g) * 2 - 1
        mu, feature, decoded = official_ae_forward(enc, fdec, idec, crop, grid)
        with torch.no_grad():
            codes = ae.encode(crop, sample=False)
            assert torch.allclose(codes.mu, mu, atol=1e-5)
            assert torch.allclose(ae.feature_decoder(codes.z), feature, atol=1e-5)
            assert torch.allclose(ae.image_decoder(codes.z), decoded, atol=1e-5)

    parser_state = randomise(official_p(ngf), g)
    parser = Pix2PixUNet(11, ngf).eval()
    parser.load_state_dict(convert_parser(parser_state), strict=True)
    x = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        assert torch.allclose(parser(x), official_p_forward(parser_state, x), atol=1e-5)

    d_state = randomise(official_d(ndf=4), g)
    d = MaskGuidedDiscriminator(ndf=4).eval()
    d.load_state_dict(convert_discriminator(d_state), strict=True)
    z = torch.cat([onehot[:1, :, :64, :64], image[:1, :, :64, :64]], 1)
    h = F.leaky_relu(F.conv2d(z, d_state["scale1_layer0.0.weight"], d_state["scale1_layer0.0.bias"], 2, 2), 0.2)
    with torch.no_grad():  # official scale1 sees the full-resolution input
        assert torch.allclose(d(onehot[:1, :, :64, :64], image[:1, :, :64, :64])[0][0], h, atol=1e-6)


def test_cli_converts_a_folder_and_reports_missing_files(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="latest_net_G.pth"):
        convert_folder(tmp_path)
    g = torch.Generator().manual_seed(1)
    ngf, w, feat, latent, hidden = 4, 4, 8, 16, 12
    torch.save(randomise(official_g(ngf, 9, embed=5 * feat), g), tmp_path / "latest_net_G.pth")
    for name in C.COMPONENTS:
        kind = {"left_eye": "eye", "right_eye": "eye", "mouth": "mouth"}.get(name, "full")
        enc, fdec, idec = (randomise(p, g) for p in official_autoencoder(kind, w, latent, hidden, feat))
        torch.save(enc, tmp_path / f"latest_net_encoder_{name}.pth")
        torch.save(fdec, tmp_path / f"latest_net_decoder_{name}.pth")
        torch.save(idec, tmp_path / f"latest_net_decoder_{name}_image.pth")
    main([str(tmp_path), str(tmp_path / "out.pth")])
    assert "generator" in capsys.readouterr().out
    converted = torch.load(tmp_path / "out.pth", weights_only=True)
    net = MaskGuidedGenerator(256, 11, ngf, w, latent, hidden, feat, 9)
    net.load_state_dict(converted["generator"], strict=True)
    assert converted["parser"] is None
