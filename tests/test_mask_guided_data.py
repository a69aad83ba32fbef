"""Gu et al.'s data: Helen aligned to the canonical eye/mouth positions, parser masks as the label source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.helen import CANONICAL_POINTS_256, Helen, alignment_points, similarity_to
from datamodules.soft_masks import save_soft_mask
from datamodules.synthetic import helen_name, write_helen


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.array([[10.0, 20.0], [40.0, 22.0], [25.0, 50.0]])
    matrix = similarity_to(source, source @ rotation.T + shift)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)


@pytest.fixture(scope="module")
def helen_root(tmp_path_factory):
    return write_helen(tmp_path_factory.mktemp("helen"), num_train=4, num_val=1, num_test=1, image_size=128)


def test_aligned_faces_put_eyes_and_mouth_at_the_canonical_positions(helen_root):
    plain, aligned = Helen(helen_root, "train", 64), Helen(helen_root, "train", 64, align=True)
    target = CANONICAL_POINTS_256 * 64 / 256
    for index in range(len(aligned)):
        error = np.abs(alignment_points(aligned[index]["label"].numpy()) - target).max()
        before = np.abs(alignment_points(plain[index]["label"].numpy()) - target).max()
        assert error <= 2.0 and error < before
        assert aligned[index]["image"].shape == (3, 64, 64)


def test_parser_masks_replace_the_labels(helen_root, tmp_path):
    names = [helen_name(i) for i in range(4)]
    for name in names:
        probs = torch.zeros(11, 32, 32)
        probs[10] = 1.0  # a parser that says "hair" everywhere
        save_soft_mask(tmp_path, name, probs)
    data = Helen(helen_root, "train", 32, mask_source="parser", parser_masks=str(tmp_path))
    assert torch.all(data[0]["label"] == 10)
    with pytest.raises(ValueError, match="parser_masks"):
        Helen(helen_root, "train", 32, mask_source="parser")
    with pytest.raises(FileNotFoundError, match="experiments.parse"):
        Helen(helen_root, "train", 32, mask_source="parser", parser_masks=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="classes='helen'"):
        Helen(helen_root, "train", 32, align=True, classes="celebamask")
