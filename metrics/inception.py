"""Feature extractors for FID/KID, frozen the way every evaluator network is (``FrozenModule``).

The standard extractor is torch-fidelity's ``inception-v3-compat``: the TensorFlow FID Inception ported
to PyTorch (bit-exact TF resize and normalisation, 2048-d pool features), the same network and weight file
torchmetrics' ``FrechetInceptionDistance`` loads. Note that torchmetrics resizes with ``antialias=True`` by
default; we keep torch-fidelity's TensorFlow-1 bilinear resize (no antialiasing), which is what the original
TF FID and published numbers use, and equals torchmetrics with ``antialias=False``.

The weights are read from the local cache through :func:`portrait_models.pretrained.resolve_weights` and
never downloaded; a missing file stops with one message naming the file, its sha256 and where to get it.

Any ``nn.Module`` mapping ``uint8`` images ``(B, 3, H, W)`` to features ``(B, D)`` can replace it; tests and
smoke runs use :class:`RandomConvFeatureExtractor`, a small fixed random network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from portrait_models.layers.frozen import FrozenModule
from portrait_models.pretrained import resolve_weights

INCEPTION_FEATURE_DIM = 2048


class FrozenExtractor(FrozenModule):
    """A frozen feature extractor (no gradients, locked in eval mode, kept out of state dicts: see
    :class:`portrait_models.layers.frozen.FrozenModule`) that also carries its identity and output size.

    Args:
        module: the network.
        name: identifies the network and its weights (part of real-statistics cache keys).
        num_features: output feature dimension, when known without running the network.
    """

    def __init__(self, module: nn.Module, name: str | None = None, num_features: int | None = None):
        super().__init__(module)
        self.name = name or type(module).__name__
        self.num_features = num_features


def frozen_extractor(module: nn.Module, name: str | None = None, num_features: int | None = None) -> FrozenExtractor:
    """Wrap ``module`` in :class:`FrozenExtractor` (an extractor that already is one is returned unchanged);
    ``num_features`` defaults to the module's own ``num_features`` attribute when it has one."""
    if isinstance(module, FrozenExtractor):
        return module
    return FrozenExtractor(module, name=name, num_features=num_features or getattr(module, "num_features", None))


def build_fid_inception(weights_path: str | Path | None = None) -> FrozenExtractor:
    """The standard FID Inception-v3 (torch-fidelity ``inception-v3-compat``, 2048-d pool3 features).

    Args:
        weights_path: the weight file or a directory holding it; default: the project's weight cache
            (``$PORTRAIT_GANS_WEIGHTS``). The file is ``weights-inception-2015-12-05-6726825d.pth`` from the
            torch-fidelity v0.2.0 release (see ``portrait_models.pretrained.WEIGHTS["inception_fid"]``).

    Raises:
        portrait_models.pretrained.MissingWeightsError: the file is absent or its sha256 does not match.
    """
    path = resolve_weights("inception_fid", weights_path)
    # Imported here: torch-fidelity pulls in torchvision, which only this builder needs.
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    network = FeatureExtractorInceptionV3(
        "inception-v3-compat", [str(INCEPTION_FEATURE_DIM)], feature_extractor_weights_path=str(path)
    )
    return FrozenExtractor(_FirstOutput(network), name="inception-v3-compat", num_features=INCEPTION_FEATURE_DIM)


class _FirstOutput(nn.Module):
    """torch-fidelity extractors return a tuple of the requested feature layers; FID uses the only one."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, images: Tensor) -> Tensor:
        return self.module(images)[0]


class RandomConvFeatureExtractor(nn.Module):
    """A small convolutional network with fixed random weights: ``uint8 (B,3,H,W)`` → ``(B, num_features)``.

    Not a perceptual feature space, so its "FID" means nothing about image quality; it exists so that FID
    and KID plumbing can be tested and smoke-run on CPU without the Inception weights. Weights depend only
    on ``seed`` (drawn from a private generator, the global RNG is untouched).
    """

    def __init__(self, num_features: int = 16, width: int = 16, seed: int = 0):
        super().__init__()
        self.num_features = num_features
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, num_features, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):  # He-normal weights, zero bias: features of order 1
                    std = (2 / layer.weight[0].numel()) ** 0.5
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                    layer.bias.zero_()

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        return self.net(images.float() / 127.5 - 1)
