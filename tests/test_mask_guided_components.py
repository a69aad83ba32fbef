"""Gu et al.'s pure tensor functions on hand-made tensors (specs/mask_guided.md §8, items 1-3 and 6)."""

from __future__ import annotations

import logging

import pytest
import torch

from portrait_models.mask_guided import components as C


def _blank(size: int = 256, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, size, size, dtype=torch.long)


def _face_label(size: int = 256) -> torch.Tensor:
    """A label with both eyes and a mouth near the official positions."""
    s = size / 256
    label = _blank(size)
    label[0, int(60 * s) : int(200 * s), int(60 * s) : int(196 * s)] = 1
    label[0, int(112 * s) : int(120 * s), int(88 * s) : int(104 * s)] = 4
    label[0, int(112 * s) : int(120 * s), int(152 * s) : int(168 * s)] = 5
    label[0, int(178 * s) : int(182 * s), int(112 * s) : int(144 * s)] = 7
    label[0, int(182 * s) : int(186 * s), int(112 * s) : int(144 * s)] = 9
    return label


# ------------------------------------------------------------------------------------------ 1. centres
def test_centre_is_int_of_the_bounding_box_midpoint():
    label = _face_label()
    label[0, 112:120, 88:104] = 1  # remove the default eye
    label[0, 100:104, 80:86] = 4  # a 4x6 block of label 4 at rows 100..103, cols 80..85
    centres = C.component_centres(label).centres
    assert centres[0, 0].tolist() == [(100 + 103) // 2, (80 + 85) // 2] == [101, 82]


def test_mouth_centre_uses_the_union_of_lips_and_inner_mouth():
    label = _face_label()
    label[0, 170:172, 100:102] = 8  # inner mouth pixels widen the box up and to the left
    top, bottom, left, right = 170, 185, 100, 143
    assert C.component_centres(label).centres[0, 2].tolist() == [(top + bottom) // 2, (left + right) // 2]


@pytest.mark.parametrize("size", [64, 128, 256])
def test_missing_component_uses_the_scaled_fallback_and_logs_once(size, caplog):
    C._reported_missing.clear()
    label = _blank(size, batch=2)
    with caplog.at_level(logging.WARNING):
        result = C.component_centres(label)
        C.component_centres(label)
    expected = [[c * size // 256 for c in centre] for centre in C.FALLBACK_CENTRES_256]
    assert result.centres[0].tolist() == expected
    assert result.missing.all()
    warnings = [r for r in caplog.records if "fallback centre" in r.getMessage()]
    assert len(warnings) == 3  # once per component, not once per call or per sample


def test_out_of_range_centre_is_clamped_so_the_crop_fits():
    label = _blank()
    label[0, 2:4, 250:254] = 4  # a left eye in the top-right corner
    label[0, 250:254, 0:3] = 7  # a mouth in the bottom-left corner
    centres = C.component_centres(label).centres[0]
    assert centres[0].tolist() == [16, 256 - 24]
    assert centres[2].tolist() == [256 - 40, 72]
    crops = C.crop_components(torch.randn(1, 3, 256, 256), label, centres[None])
    assert crops["left_eye"].shape == (1, 3, 32, 48) and crops["mouth"].shape == (1, 3, 80, 144)


# ------------------------------------------------------------------------------------------ 2. crops
def _coordinate_image(size: int) -> torch.Tensor:
    y = torch.arange(size).view(size, 1).float()
    x = torch.arange(size).view(1, size).float()
    return (y * 1000 + x).expand(1, 3, size, size).clone()


def test_crops_at_the_paper_sizes_start_at_the_documented_corner():
    label = _face_label()
    image = _coordinate_image(256)
    centres = C.component_centres(label).centres
    crops = C.crop_components(image, label, centres)
    (ly, lx), (ry, rx), (my, mx) = centres[0].tolist()
    assert crops["left_eye"].shape == (1, 3, 32, 48)
    assert crops["left_eye"][0, 0, 0, 0] == (ly - 16) * 1000 + (lx - 24)
    assert crops["right_eye"][0, 1, 31, 47] == (ry + 15) * 1000 + (rx + 23)
    assert crops["mouth"].shape == (1, 3, 80, 144)
    window = image[0, :, my - 40 : my + 40, mx - 72 : mx + 72]
    in_mouth = torch.isin(label[0, my - 40 : my + 40, mx - 72 : mx + 72], torch.tensor([7, 8, 9]))
    assert torch.equal(crops["mouth"][0], window * in_mouth)  # zero exactly where the label is not mouth
    assert torch.equal(crops["left_eye"][0], image[0, :, ly - 16 : ly + 16, lx - 24 : lx + 24])  # unmasked
    assert torch.equal(crops["skin"], image * torch.isin(label, torch.tensor([1, 2, 3, 6])).unsqueeze(1))
    assert torch.equal(crops["hair"], image * (label == 10).unsqueeze(1))


@pytest.mark.parametrize(("size", "eye", "mouth"), [(64, (8, 12), (20, 36)), (128, (16, 24), (40, 72))])
def test_crop_sizes_scale_with_the_image(size, eye, mouth):
    label = _face_label(size)
    crops = C.crop_components(
        torch.randn(2, 3, size, size), label.repeat(2, 1, 1), C.component_centres(label.repeat(2, 1, 1)).centres
    )
    assert crops["left_eye"].shape[-2:] == eye and crops["mouth"].shape[-2:] == mouth
    assert crops["skin"].shape[-2:] == (size, size)


def test_image_size_must_be_a_power_of_two_of_at_least_64():
    with pytest.raises(ValueError, match="power of two"):
        C.component_centres(_blank(96))


# ------------------------------------------------------------------------------------------ 3. placement
def test_eye_feature_is_placed_at_the_rounded_quarter_centre():
    out = C.place_features(torch.ones(1, 256, 8, 12), torch.tensor([[116, 96]]), 64, 4)
    r, q = int(116 / 4 + 0.5), int(96 / 4 + 0.5)
    assert (r, q) == (29, 24)
    expected = torch.zeros(1, 256, 64, 64)
    expected[:, :, r - 4 : r + 4, q - 6 : q + 6] = 1
    assert torch.equal(out, expected)


@pytest.mark.parametrize(("cy", "row"), [(118, 30), (117, 29), (116, 29), (114, 29), (113, 28)])
def test_placement_rounds_half_up(cy, row):
    assert C.feature_centre(torch.tensor([[cy, 0]]), 4)[0, 0] == row


def test_mouth_windows_honour_per_sample_centres_and_a_permutation():
    features = torch.arange(1, 4).float().view(3, 1, 1, 1).expand(3, 2, 20, 36).contiguous()
    centres = torch.tensor([[184, 128], [170, 120], [200, 140]])
    perm = torch.tensor([2, 0, 1])
    out = C.place_features(features[perm], centres, 64, 4)
    for b in range(3):
        r, q = (int(c / 4 + 0.5) for c in centres[b].tolist())
        window = out[b, :, r - 10 : r + 10, q - 18 : q + 18]
        assert torch.all(window == float(perm[b] + 1))  # sample b's window holds sample perm(b)'s feature
        assert out[b].ne(0).sum() == window.numel()


def test_window_near_the_border_is_clamped_not_dropped():
    out = C.place_features(torch.ones(1, 1, 8, 12), torch.tensor([[2, 254]]), 64, 4)
    assert out.sum() == 96 and torch.all(out[0, 0, :8, -12:] == 1)


def test_placement_passes_gradient_to_the_features():
    features = torch.randn(2, 3, 2, 3, requires_grad=True)
    C.place_features(features, torch.tensor([[30, 20], [34, 44]]), 16, 4).sum().backward()
    assert torch.equal(features.grad, torch.ones_like(features))


# ------------------------------------------------------------------------------------------ 6. label growth
def test_growth_enlarges_the_eyes_and_mouth_by_the_factor_about_their_centres():
    label = _face_label()
    centres = C.component_centres(label).centres
    grown = C.grow_components(label, centres, 1.1)
    for value in (4, 5):
        before, after = label[0] == value, grown[0] == value
        assert torch.all(after[before])  # grown ⊇ original
        assert after.sum() > before.sum()
    changed = grown != label
    assert torch.all(torch.isin(grown[changed], torch.tensor([4, 5, 7, 8, 9])))  # only eye/mouth labels write


def test_growth_bounding_box_is_within_one_pixel_of_the_scaled_box():
    label = _blank()
    label[0, 100:120, 80:110] = 4  # box rows 100..119, cols 80..109, centre (109, 94)
    centres = C.component_centres(label).centres
    grown = (C.grow_components(label, centres, 1.1)[0] == 4).nonzero()
    cy, cx = centres[0, 0].tolist()
    expect = (cy + 1.1 * (100 - cy), cy + 1.1 * (119 - cy), cx + 1.1 * (80 - cx), cx + 1.1 * (109 - cx))
    got = (grown[:, 0].min(), grown[:, 0].max(), grown[:, 1].min(), grown[:, 1].max())
    for g, e in zip(got, expect, strict=True):
        assert abs(float(g) - e) <= 1.0 + 1e-6


def test_growth_factor_one_is_the_identity():
    label = _face_label()
    assert torch.equal(C.grow_components(label, C.component_centres(label).centres, 1.0), label)


def test_onehot_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        C.onehot_labels(torch.full((1, 4, 4), 13))
