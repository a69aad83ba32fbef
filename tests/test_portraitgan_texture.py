"""The synthetic-world stand-in for ImageNet VGG19 (``experiments.texture_vgg``) and ``model.texture_weights``:
the saved file has torchvision's ``features.<i>`` keys, PortraitGAN's texture network loads it exactly, and the
loaded VGG stays frozen and out of the checkpoint."""

from __future__ import annotations

import torch

from experiments import texture_vgg
from portrait_models.portraitgan import PortraitGAN

TINY = dict(image_size=16, ngf=4, n_downsample=2, n_blocks=1, ndf=4, texture_pretrained=False, decay_length=0)


def _fake_pool(seed, identities, size, variations):  # no rendering: random images, valid labels
    g = torch.Generator().manual_seed(len(variations) + variations.start)
    n = 12
    labels = torch.stack([torch.arange(n) % 4, torch.arange(n) % 8, torch.arange(n) % len(identities)], 1)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, labels


def test_the_stand_in_trains_saves_torchvision_keys_and_loads_as_texture_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(texture_vgg, "render_pool", _fake_pool)
    out = tmp_path / "vgg.pth"
    report = texture_vgg.train(out, first_identity=40, identities=46, size=16, steps=2, batch=4, log_every=1)
    assert set(report) == {f"{s}_{t}" for s in ("train", "held") for t in ("modality", "emotion", "identity")}
    state = torch.load(out, weights_only=True)
    assert sorted(state, key=lambda k: (int(k.split(".")[1]), k))[:2] == ["features.0.bias", "features.0.weight"]
    assert "features.28.weight" in state and not any(k.startswith("head") for k in state)  # conv5_1, no head

    model = PortraitGAN(**TINY, texture_layers=3, texture_weights=str(out))
    vgg = model.texture.vgg.module.features
    for key, value in vgg.state_dict().items():
        torch.testing.assert_close(value, state[f"features.{key}"], rtol=0, atol=0)
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not any(k.startswith("texture.") for k in model.state_dict())  # frozen VGG outside the checkpoint
    random = PortraitGAN(**TINY, texture_layers=3)  # default: the seeded random VGG19, not the file
    assert not torch.equal(random.texture.vgg.module.features[0].weight, vgg[0].weight)
