"""Test-wide settings: offline, deterministic, light on the 2-core CI machine."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: results of the learning tests are bit-reproducible, and several test processes on the 2-core
# machine do not oversubscribe it (measured: 2 threads per process under load made tiny convs 5-20x slower).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def synthetic_tensors(first: int, count: int, size: int, seed: int = 0):
    """Images (N,3,S,S) in [-1, 1] and 19-class labels (N,S,S) of synthetic faces first .. first+count-1."""
    import numpy as np

    from datamodules.synthetic import SyntheticFaceWorld

    world = SyntheticFaceWorld(seed=seed)
    faces = [world.face(i, image_size=size) for i in range(first, first + count)]
    images = torch.from_numpy(np.stack([f.image for f in faces])).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.from_numpy(np.stack([f.label for f in faces])).long()
    return images, labels


@pytest.fixture(scope="session")
def synthetic_parser():
    """A U-Net parser trained on synthetic faces at 64² (shared by the tests that judge generated masks)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from portrait_models.parsing import FaceParser

    pl.seed_everything(0, verbose=False)
    images, labels = synthetic_tensors(0, 256, 64)
    loader = DataLoader(
        [{"image": x, "label": y} for x, y in zip(images, labels)],
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    parser = FaceParser(unet_feature_scale=8, lr=1e-3)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=250, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(parser, loader)
    parser.eval().requires_grad_(False)
    # The judge is only as good as its own accuracy: on 64 held-out faces it must find the true mask more often
    # than the per-pixel majority mask of its training faces does (measured: 0.846 vs 0.794, one thread).
    held_out, held_out_labels = synthetic_tensors(10_000, 64, 64)
    with torch.no_grad():
        accuracy = (parser(held_out).argmax(1) == held_out_labels).float().mean().item()
    majority = torch.nn.functional.one_hot(labels, 19).sum(0).argmax(-1)
    majority_accuracy = (majority == held_out_labels).float().mean().item()
    assert accuracy >= 0.83 and accuracy >= majority_accuracy + 0.04, (accuracy, majority_accuracy)
    parser.held_out_accuracy = accuracy  # what the judge itself scores on real faces, for the tests' bounds
    return parser
