"""Train a stand-in for the ImageNet VGG19 of PortraitGAN's texture loss on the synthetic face world.

No ImageNet weights can be downloaded here, and a random VGG19's Gram matrices are poor texture descriptors.
This trains the same architecture (torchvision's VGG19 ``features`` up to relu5_1, the loss's conv1_1-conv5_1)
on a texture-aware task of the synthetic world: classify each render's **modality** (photo, sketch, cartoon,
painting), **emotion** and **identity**. The head reads the global average of every relu{1..5}_1 output
(one linear layer on their concatenation), so the shallow layers the texture loss reads are trained directly,
not only through the deep ones. The VGG starts from the seeded random VGG19 rescaled to unit-variance conv
outputs (:func:`~portrait_models.portraitgan.networks.calibrate_random_vgg`, LSUV-style: VGG19 has no
normalisation layers and trains poorly from PyTorch's default init).

The people are identities ``--first-identity`` .. ``--identities - 1`` of ``SyntheticFaceWorld(--seed)``
(default 40..99), disjoint from the 40 identities that ``portraitgan_synthetic_64`` and the learning tests
train and test on, in jittered poses (``variation`` 1..), rendered at 32² by default (a quarter of the 64² cost
on a CPU; the convolutions are the same at any size, and the texture loss applies them at 64²).

Output: a torchvision-format state dict (``features.<i>.weight`` / ``.bias``, the keys of
``vgg19-dcbb9e9d.pth``), loaded by the same path as the real file
(:meth:`~portrait_models.losses.perceptual.VGG19Features.load_torchvision_weights`): pass it as
``model.texture_weights=PATH``. Command::

    python -m experiments.texture_vgg runs/texture_vgg19_synthetic.pth   # ~17 min at load 5, one thread

It is a stand-in, not ImageNet VGG19: it knows only this world's textures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from experiments.callbacks import AtomicCheckpointIO
from portrait_models.losses.perceptual import VGG19_RELU_X_1, ImageNetNormalize, VGG19Features


class TextureClassifier(nn.Module):
    """VGG19 relu1_1..relu5_1 + one linear head on the concatenated global averages of the five outputs."""

    def __init__(self, num_classes: tuple[int, ...], seed: int = 0) -> None:
        super().__init__()
        from portrait_models.portraitgan.networks import calibrate_random_vgg

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.vgg = VGG19Features(VGG19_RELU_X_1, pretrained=False)
            calibrate_random_vgg(self.vgg, seed)
            self.head = nn.Linear(64 + 128 + 256 + 512 + 512, sum(num_classes))
        self.num_classes = num_classes
        self.normalize = ImageNetNormalize()

    def forward(self, images: Tensor) -> list[Tensor]:
        pooled = torch.cat([f.mean((2, 3)) for f in self.vgg(self.normalize(images))], 1)
        return list(self.head(pooled).split(self.num_classes, 1))


def render_pool(seed: int, identities: range, size: int, variations: range) -> tuple[Tensor, Tensor]:
    """Every (identity, emotion, modality, variation) render in [-1, 1] and its (modality, emotion, person)."""
    from datamodules.synthetic import MODALITIES, RAFD_EMOTIONS, SyntheticFaceWorld

    world = SyntheticFaceWorld(seed, num_identities=identities.stop)
    images, labels = [], []
    for p in identities:
        for e in range(len(RAFD_EMOTIONS)):
            for m in range(len(MODALITIES)):
                for v in variations:
                    images.append(world.render(p, e, m, size, variation=v).image)
                    labels.append((m, e, p - identities.start))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, torch.tensor(labels)


def train(
    out: str | Path,
    *,
    seed: int = 0,
    first_identity: int = 40,
    identities: int = 100,
    size: int = 32,
    variations: int = 1,
    steps: int = 400,
    batch: int = 16,
    lr: float = 1e-4,
    log_every: int = 50,
) -> dict[str, float]:
    """Train the stand-in, save its VGG19 ``features`` state dict to ``out``; returns the last-100-step train
    accuracies per task and the held-out ones (every third person in pose variation ``variations + 1``)."""  # fmt: skip
    from datamodules.synthetic import MODALITIES, RAFD_EMOTIONS

    people = range(first_identity, identities)
    classes = (len(MODALITIES), len(RAFD_EMOTIONS), len(people))
    x, y = render_pool(seed, people, size, range(1, variations + 1))
    model = TextureClassifier(classes, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    start, hits = time.perf_counter(), []
    for step in range(1, steps + 1):
        index = torch.randint(len(x), (batch,), generator=generator)
        logits = model(x[index])
        loss = sum(F.cross_entropy(z, y[index, k]) for k, z in enumerate(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        hits.append([float((z.argmax(1) == y[index, k]).float().mean()) for k, z in enumerate(logits)])
        if step % log_every == 0 or step == steps:
            recent = np.mean(hits[-log_every:], 0)
            print(
                f"step {step}/{steps}: loss {loss.item():.3f}, train acc modality {recent[0]:.2f} emotion "
                f"{recent[1]:.2f} identity {recent[2]:.2f}, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    held_x, held_y = render_pool(seed, people[::3], size, range(variations + 1, variations + 2))
    model.eval()
    with torch.no_grad():
        held = [float((z.argmax(1) == held_y[:, k]).float().mean()) for k, z in enumerate(model(held_x))]
    out = Path(out)  # written as the runner's checkpoints are: a killed process never leaves half a file
    AtomicCheckpointIO().save_checkpoint({f"features.{k}": v for k, v in model.vgg.features.state_dict().items()}, out)
    recent = np.mean(hits[-100:], 0)
    report = {f"train_{t}": float(a) for t, a in zip(("modality", "emotion", "identity"), recent, strict=True)}
    report |= {f"held_{t}": a for t, a in zip(("modality", "emotion", "identity"), held, strict=True)}
    print(f"saved {out}; held-out pose accuracy modality {held[0]:.2f} emotion {held[1]:.2f} identity {held[2]:.2f}"
          f" (chance {1 / classes[0]:.2f} / {1 / classes[1]:.2f} / {1 / classes[2]:.3f})")  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="where to write the VGG19 features state dict (.pth)")
    parser.add_argument("--seed", type=int, default=0, help="world seed and VGG init seed")
    parser.add_argument("--first-identity", type=int, default=40)
    parser.add_argument("--identities", type=int, default=100, help="people first-identity .. identities-1")
    parser.add_argument("--size", type=int, default=32, help="render size (32: a quarter of the 64² cost)")
    parser.add_argument("--variations", type=int, default=1, help="pose variations per render in training")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)
    train(
        args.out, seed=args.seed, first_identity=args.first_identity, identities=args.identities, size=args.size,
        variations=args.variations, steps=args.steps, batch=args.batch, lr=args.lr,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
