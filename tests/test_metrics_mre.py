"""MagGAN's MRE (eq. 2), the preserved-region mask (eqs. 4–5) and the AR⁺/AR⁻ table."""

from __future__ import annotations

import pytest
import torch

from datamodules.attribute_regions import ATTRIBUTE_PARTS, attribute_part_matrices
from datamodules.labels import CELEBAMASK_CLASSES, CLASS_INDEX, EDIT_ATTRIBUTES, label_to_onehot
from metrics.functional.mre import (
    attribute_change_vector,
    influence_regions,
    influenced_parts,
    mask_aware_reconstruction_error,
    mre_per_attribute,
    preserved_region_mask,
)
from metrics.mre import MaskAwareReconstructionError, flip_each_attribute

# A toy world: 3 parser classes (background, skin, hair) and 2 attributes A, B.
#   A: strengthened repaints hair; weakened repaints background and skin.
#   B: repaints skin either way.
AR_PLUS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
AR_MINUS = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
# 2×2 soft parse: (0,0) background, (0,1) skin, (1,0) half hair / half skin, (1,1) hair.
SOFT = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.5, 0.0]], [[0.0, 0.0], [0.5, 1.0]]]).unsqueeze(
    0
)  # (1, 3, 2, 2)


def test_influenced_parts_is_eq4_with_clamp():
    att_diff = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.3, -2.0], [0.0, 0.0]])
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(influenced_parts(att_diff, AR_PLUS, AR_MINUS), expected)


def test_preserved_region_mask_hand_computed():
    masks = SOFT.expand(3, -1, -1, -1)
    att_diff = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])
    expected = torch.tensor(
        [
            [[1.0, 1.0], [0.5, 0.0]],  # A+: hair is repainted
            [[0.0, 0.0], [0.5, 1.0]],  # A−, B+: background and skin are repainted
            [[1.0, 1.0], [1.0, 1.0]],  # no edit preserves everything
        ]
    )
    torch.testing.assert_close(preserved_region_mask(masks, att_diff, AR_PLUS, AR_MINUS), expected)


def test_influence_regions_are_one_minus_preserved_at_unit_edits():
    masks = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    plus, minus = influence_regions(masks, AR_PLUS, AR_MINUS)
    for i in range(2):
        unit = torch.zeros(2, 2)
        unit[:, i] = 1.0
        torch.testing.assert_close(plus[:, i], 1 - preserved_region_mask(masks, unit, AR_PLUS, AR_MINUS))
        torch.testing.assert_close(minus[:, i], 1 - preserved_region_mask(masks, -unit, AR_PLUS, AR_MINUS))


def _hand_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x = 0; edit A+ adds 1 everywhere (all channels); edit B− changes channel 0 at two pixels."""
    images = torch.zeros(1, 3, 2, 2)
    edited = torch.zeros(1, 2, 3, 2, 2)
    edited[0, 0] = 1.0
    edited[0, 1, 0, 0, 1] = 2.0  # a skin pixel: B− may repaint it, no error
    edited[0, 1, 0, 1, 1] = -0.4  # a hair pixel: must be preserved, error 0.4
    att_diff = attribute_change_vector(torch.tensor([[0, 1]]))  # A: 0→1 (+1), B: 1→0 (−1)
    return images, edited, att_diff


def test_mre_hand_computed():
    images, edited, att_diff = _hand_example()
    torch.testing.assert_close(att_diff, torch.tensor([[1.0, -1.0]]))
    # A+: preserved [[1, 1], [0.5, 0]] · |1| · 3 channels = 7.5, / (H·W = 4) = 1.875.
    # B−: preserved [[1, 0], [0.5, 1]]; error 2 at (0,1) has weight 0, 0.4 at (1,1) weight 1 → 0.4 / 4 = 0.1.
    terms = mre_per_attribute(images, edited, SOFT, att_diff, AR_PLUS, AR_MINUS)
    torch.testing.assert_close(terms, torch.tensor([[1.875, 0.1]]))
    # eq. (2): 1/(HWC) Σ_i ‖·‖₁ = (7.5 + 0.4) / (4 · 2).
    mre = mask_aware_reconstruction_error(images, edited, SOFT, att_diff, AR_PLUS, AR_MINUS)
    torch.testing.assert_close(mre, torch.tensor(0.9875))

    metric = MaskAwareReconstructionError(attributes=("A", "B"), ar_plus=AR_PLUS, ar_minus=AR_MINUS, per_attribute=True)
    metric.update(images, edited, SOFT, att_diff)
    result = metric.compute()
    torch.testing.assert_close(result["mean"], torch.tensor(0.9875))
    torch.testing.assert_close(result["A"], torch.tensor(1.875))
    torch.testing.assert_close(result["B"], torch.tensor(0.1))


def _random_batch(batch: int = 6, size: int = 8):
    images = torch.rand(batch, 3, size, size) * 2 - 1
    labels = torch.randint(0, len(CELEBAMASK_CLASSES), (batch, size, size))
    soft = torch.softmax(4 * label_to_onehot(labels) + torch.randn(batch, len(CELEBAMASK_CLASSES), size, size), 1)
    att_source = torch.randint(0, 2, (batch, len(EDIT_ATTRIBUTES)))
    return images, soft, att_source


def test_identity_generator_has_zero_mre():
    images, soft, att_source = _random_batch()
    edited, att_diff = flip_each_attribute(lambda x, d: x.clone(), images, att_source)
    assert edited.shape == (6, len(EDIT_ATTRIBUTES), 3, 8, 8)
    metric = MaskAwareReconstructionError()
    metric.update(images, edited, soft, att_diff)
    assert metric.compute().item() == 0.0


def test_split_batches_equal_one_batch():
    images, soft, att_source = _random_batch()
    att_diff = attribute_change_vector(att_source)
    edited = images.unsqueeze(1) + 0.3 * torch.randn(6, len(EDIT_ATTRIBUTES), 3, 8, 8)
    whole, split = MaskAwareReconstructionError(), MaskAwareReconstructionError()
    whole.update(images, edited, soft, att_diff)
    split.update(images[:2], edited[:2], soft[:2], att_diff[:2])
    split.update(images[2:], edited[2:], soft[2:], att_diff[2:])
    torch.testing.assert_close(whole.compute(), split.compute())
    ar_plus, ar_minus = attribute_part_matrices()
    expected = mask_aware_reconstruction_error(images, edited, soft, att_diff, ar_plus, ar_minus)
    torch.testing.assert_close(whole.compute(), expected)


def test_hair_colour_edit_of_hair_only_is_free_but_repainting_the_hat_costs():
    """Real table: recolouring only hair for Blond_Hair costs nothing; recolouring the hat too does cost."""
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, 0, :] = CLASS_INDEX["hat"]
    label[0, 1, :] = CLASS_INDEX["hair"]
    label[0, 2:, 1:3] = CLASS_INDEX["skin"]
    soft = label_to_onehot(label)
    blond = EDIT_ATTRIBUTES.index("Blond_Hair")
    images = torch.zeros(1, 3, 4, 4)
    att_source = torch.zeros(1, len(EDIT_ATTRIBUTES), dtype=torch.long)

    def recolour(region: torch.Tensor):
        def generator(x: torch.Tensor, att_diff: torch.Tensor) -> torch.Tensor:
            return x + (att_diff[:, blond] != 0).float().view(-1, 1, 1, 1) * region.unsqueeze(1)

        return generator

    def mre_of(region: torch.Tensor) -> float:
        edited, att_diff = flip_each_attribute(recolour(region.float()), images, att_source)
        metric = MaskAwareReconstructionError()
        metric.update(images, edited, soft, att_diff)
        return metric.compute().item()

    assert mre_of(label == CLASS_INDEX["hair"]) == 0.0
    # the whole image repainted: the 12 non-hair pixels count, by 1 in 3 channels, in 1 of the 13 edits
    assert mre_of(torch.ones_like(label)) == pytest.approx(12 * 3 / 16 / len(EDIT_ATTRIBUTES))


def test_metric_resizes_masks_to_the_image():
    images, _, att_source = _random_batch(batch=2, size=4)
    att_diff = attribute_change_vector(att_source)
    edited = images.unsqueeze(1) + torch.randn(2, len(EDIT_ATTRIBUTES), 3, 4, 4)
    soft_small = torch.softmax(torch.randn(2, len(CELEBAMASK_CLASSES), 1, 1), 1).expand(-1, -1, 4, 4)
    soft_large = soft_small[..., :1, :1].expand(-1, -1, 16, 16)
    at_size, resized = MaskAwareReconstructionError(), MaskAwareReconstructionError()
    at_size.update(images, edited, soft_small, att_diff)
    resized.update(images, edited, soft_large, att_diff)
    torch.testing.assert_close(at_size.compute(), resized.compute())


def test_table_follows_the_paper_statements():
    ar_plus, ar_minus = attribute_part_matrices()
    assert ar_plus.shape == ar_minus.shape == (13, 19)
    row = {a: i for i, a in enumerate(EDIT_ATTRIBUTES)}

    def parts(matrix: torch.Tensor, attribute: str) -> set[str]:
        return {CELEBAMASK_CLASSES[j] for j in torch.nonzero(matrix[row[attribute]]).flatten().tolist()}

    assert parts(ar_plus, "Bald") == {"hair"}
    assert parts(ar_minus, "Bald") == {"background", "skin", "l_ear", "r_ear", "ear_r"}
    assert parts(ar_plus, "Pale_Skin") == parts(ar_minus, "Pale_Skin") == {"skin"}
    assert parts(ar_plus, "Blond_Hair") == {"hair"}
    hat, cloth = CLASS_INDEX["hat"], CLASS_INDEX["cloth"]
    assert ar_plus[:, [hat, cloth]].sum() == 0 and ar_minus[:, [hat, cloth]].sum() == 0
    assert set(ATTRIBUTE_PARTS) >= set(EDIT_ATTRIBUTES)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_bad_inputs_raise_clear_errors():
    with pytest.raises(KeyError, match="Smiling"):
        attribute_part_matrices(["Bald", "Smiling"])
    images, edited, att_diff = _hand_example()
    with pytest.raises(ValueError, match="one edit per"):
        mre_per_attribute(images, edited[:, :1], SOFT, att_diff, AR_PLUS, AR_MINUS)
    with pytest.raises(ValueError, match="spatial size"):
        mre_per_attribute(images, edited, SOFT[..., :1], att_diff, AR_PLUS, AR_MINUS)
    with pytest.raises(ValueError, match="att_diff must be"):
        preserved_region_mask(SOFT, torch.ones(1, 3), AR_PLUS, AR_MINUS)
    with pytest.raises(ValueError, match="before any update"):
        MaskAwareReconstructionError().compute()
