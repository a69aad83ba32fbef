import numpy as np
import pytest
import torch

from datamodules import labels as L


def test_official_order_and_parts():
    assert L.CELEBAMASK_CLASSES[13] == "hair" and L.CELEBAMASK_CLASSES[18] == "cloth"
    assert L.CELEBAMASK_PARTS[0] == "skin" and len(L.CELEBAMASK_PARTS) == 18
    assert len(L.CELEBA_ATTRIBUTES) == 40 and L.CELEBA_ATTRIBUTES[31] == "Smiling"
    assert [L.CELEBA_ATTRIBUTES[i] for i in L.EDIT_ATTRIBUTE_COLUMNS] == list(L.EDIT_ATTRIBUTES)


def test_helen_mapping_names_agree():
    # every Helen class maps onto the official class of the same meaning
    for helen_idx, official_idx in enumerate(L.HELEN_TO_CELEBAMASK):
        helen_name = L.HELEN_CLASSES[helen_idx].replace("inner_mouth", "mouth")
        assert L.CELEBAMASK_CLASSES[official_idx] == helen_name
    # and the reverse table is its left inverse
    assert np.array_equal(L.CELEBAMASK_TO_HELEN[L.HELEN_TO_CELEBAMASK], np.arange(11))


def test_bisenet_remap_is_a_permutation_with_matching_names():
    assert sorted(L.BISENET_TO_CELEBAMASK.tolist()) == list(range(19))
    for b, o in enumerate(L.BISENET_TO_CELEBAMASK):
        assert L.BISENET_CLASSES[b] == L.CELEBAMASK_CLASSES[o]


def test_landmark_flip_permutation_is_an_involution():
    perm = L.LANDMARK_FLIP_PERMUTATION
    assert np.array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[0] == 16 and perm[30] == 30 and perm[48] == 54


@pytest.mark.parametrize("num_classes,pair", [(19, (4, 5)), (11, (2, 3))])
def test_flip_label_lut(num_classes, pair):
    lut = L.flip_label_permutation(num_classes)
    assert lut[pair[0]] == pair[1] and lut[0] == 0
    with pytest.raises(ValueError, match="19 or 11"):
        L.flip_label_permutation(7)


def test_onehot_color_round_trip():
    label = torch.randint(0, 19, (2, 8, 8))
    onehot = L.label_to_onehot(label)
    assert onehot.shape == (2, 19, 8, 8) and torch.equal(onehot.sum(1), torch.ones(2, 8, 8))
    assert torch.equal(L.onehot_to_label(onehot), label)
    color = L.label_to_color(label[0])
    assert color.shape == (8, 8, 3) and color.dtype == np.uint8
    assert np.array_equal(L.color_to_label(color), label[0].numpy())


def test_bad_labels_are_named():
    with pytest.raises(ValueError, match=r"\[0, 19\)"):
        L.label_to_onehot(torch.tensor([[19]]))
    color = L.label_to_color(np.zeros((4, 4), dtype=np.int64))
    color[1, 2] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"1 pixels are not palette colours \(first at x=2, y=1"):
        L.color_to_label(color)


def test_read_mask_png_reads_label_grey_alpha_and_colour_masks_and_names_bad_files(tmp_path):
    from PIL import Image

    from datamodules.labels import CELEBAMASK_PALETTE, CELEBAMASK_TO_HELEN, read_mask_png

    label = np.zeros((8, 8), np.uint8)
    label[2:5, 3:7] = 13  # hair
    label[6:, :] = 4  # l_eye
    Image.fromarray(label).save(tmp_path / "label.png")
    Image.fromarray(np.stack([label, np.full_like(label, 255)], -1), "LA").save(tmp_path / "alpha.png")
    Image.fromarray(CELEBAMASK_PALETTE[label].astype(np.uint8)).save(tmp_path / "colour.png")
    for name in ("label.png", "alpha.png", "colour.png"):
        np.testing.assert_array_equal(read_mask_png(tmp_path / name), label)
    np.testing.assert_array_equal(
        read_mask_png(tmp_path / "colour.png", 11, CELEBAMASK_TO_HELEN), CELEBAMASK_TO_HELEN[label]
    )
    with pytest.raises(ValueError, match=r"label.png: label value 13 is not a class; Helen"):
        read_mask_png(tmp_path / "label.png", 11, CELEBAMASK_TO_HELEN, "Helen labels are 0..10")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken.png: cannot decode the mask"):
        read_mask_png(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError, match=r"mask not found: .*missing.png"):
        read_mask_png(tmp_path / "missing.png")
