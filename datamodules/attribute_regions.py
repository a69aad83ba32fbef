"""MagGAN's attribute–part relation matrices AR⁺ and AR⁻ (Wei et al. 2020, §3.2), in one table.

Row ``i`` of AR⁺ (AR⁻) marks the face-parser classes whose pixels may change when attribute ``i`` is
strengthened (weakened), i.e. ``att_diff_i > 0`` (``< 0``). The masks of eqs. (2), (3), (4), (5) and (12) are
built from these rows by the functions at the end of this module, which the MagGAN generator, its loss
and the MRE metric (``metrics.functional.mre``) all call. Columns follow ``labels.CELEBAMASK_CLASSES``.

The paper's supplement, which holds the exact matrices ("Detailed definitions are in Supplementary", §4),
is not available. What the paper itself says about regions, quoted, is:

* §3.1: "for 'Pale Skin', both M⁺ and M⁻ characterize the 'skin' region".
* §3.1: "for 'Bald', M⁺ characterizes the 'hair' region while M⁻ characterizes the region consisting of
  'background, skin, ears' and 'ear rings'".
* §1: "the hair region for 'To Blonde'"; "the hat and other non-hair regions for attribute 'To Bald'"
  are attribute-irrelevant.
* Abstract: the generator should preserve "the attribute-irrelevant regions (e.g., hat, scarf for
  modification 'To Bald')".
* §3.1 / Fig. 2: STGAN "changes the scarf to white for 'Pale Skin'" and "the hat to golden for
  'Blond Hair'" — both are errors, so cloth is not in the Pale_Skin rows and hat is in no hair row.
* §3.2: "if facial part has no explicit relationship with one attribute, the corresponding matrix
  entry ... could be set to 0"; the matrices are "binary".

Rows the paper does not state are reasoned choices, made with the one rule the Bald example shows: a row
lists the classes of the *source* image's parse whose pixels the edit may repaint. Adding something
paints over the parts it will cover (Bald⁻ = growing hair covers background, skin, ears, earrings);
removing something repaints only the part itself (Bald⁺ = hair). Classes never listed for any attribute
(hat, necklace, cloth) are always preserved. Note the CelebAMask-HQ merge order: eyes and brows are
drawn over the eyeglasses class, so glasses also touch ``l_eye``/``r_eye``/brow pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from datamodules.labels import CELEBAMASK_CLASSES, CLASS_INDEX, EDIT_ATTRIBUTES


class AttributeParts(NamedTuple):
    """Parser classes an edit may repaint: ``plus`` when strengthened, ``minus`` when weakened."""

    plus: tuple[str, ...]
    minus: tuple[str, ...]


_EARS = ("l_ear", "r_ear")
_EYES = ("l_eye", "r_eye")
_BROWS = ("l_brow", "r_brow")
_LIPS = ("mouth", "u_lip", "l_lip")
# Everything that belongs to the person's face and hair, but not accessories, clothes or background.
_FACE_AND_HAIR = ("skin", "nose", *_EYES, *_BROWS, *_EARS, *_LIPS, "hair", "neck")

ATTRIBUTE_PARTS: dict[str, AttributeParts] = {
    # Paper, §3.1 (quoted above). "ears" = both ear classes, "ear rings" = ear_r.
    "Bald": AttributeParts(plus=("hair",), minus=("background", "skin", *_EARS, "ear_r")),
    # Reasoned: bangs are drawn over forehead skin and may cover the brows; removing bangs repaints the
    # hair pixels (the bangs themselves) into forehead.
    "Bangs": AttributeParts(plus=("hair", "skin", *_BROWS), minus=("hair",)),
    # Paper, §1: "the hair region for 'To Blonde'"; hair colours change the colour of existing hair only.
    "Black_Hair": AttributeParts(plus=("hair",), minus=("hair",)),
    "Blond_Hair": AttributeParts(plus=("hair",), minus=("hair",)),
    "Brown_Hair": AttributeParts(plus=("hair",), minus=("hair",)),
    # Reasoned: thicker brows grow into the surrounding skin; thinner brows repaint brow pixels only.
    "Bushy_Eyebrows": AttributeParts(plus=(*_BROWS, "skin"), minus=_BROWS),
    # Reasoned: frames and lenses cover the eyes, brows, nose bridge and the skin around them; removing
    # glasses repaints the glasses class and the eyes/brows drawn on top of it (merge order).
    "Eyeglasses": AttributeParts(plus=("eye_g", "skin", "nose", *_EYES, *_BROWS), minus=("eye_g", *_EYES, *_BROWS)),
    # Reasoned: gender changes the whole face (shape, beard, make-up) and the hair style, not the background,
    # accessories or clothes (the generator should not need to grow hair into the background to succeed).
    "Male": AttributeParts(plus=_FACE_AND_HAIR, minus=_FACE_AND_HAIR),
    # Reasoned: the lips part and the chin moves over skin; the mouth interior appears or disappears.
    "Mouth_Slightly_Open": AttributeParts(plus=(*_LIPS, "skin"), minus=(*_LIPS, "skin")),
    # Reasoned: a moustache lies on the skin above the upper lip and may overlap the lip (it has no class of
    # its own in CelebAMask-HQ: its pixels are parsed as skin).
    "Mustache": AttributeParts(plus=("skin", "u_lip"), minus=("skin", "u_lip")),
    # Reasoned: a beard lies on cheek/chin skin and the neck and may overlap the lips. Strengthening
    # No_Beard removes a beard, weakening it grows one: the same parts either way.
    "No_Beard": AttributeParts(plus=("skin", "neck", "u_lip", "l_lip"), minus=("skin", "neck", "u_lip", "l_lip")),
    # Paper, §3.1: both rows are the skin region (and, §3.1/Fig. 2, not the scarf/cloth).
    "Pale_Skin": AttributeParts(plus=("skin",), minus=("skin",)),
    # Reasoned: age changes skin texture, face shape and hair (greying, hairline) everywhere on the person,
    # not the background, accessories or clothes.
    "Young": AttributeParts(plus=_FACE_AND_HAIR, minus=_FACE_AND_HAIR),
}


def _row(parts: Sequence[str], attribute: str) -> torch.Tensor:
    row = torch.zeros(len(CELEBAMASK_CLASSES))
    for part in parts:
        if part not in CLASS_INDEX:
            raise ValueError(f"attribute {attribute!r} names unknown parser class {part!r}")
        row[CLASS_INDEX[part]] = 1.0
    return row


def attribute_part_matrices(attributes: Sequence[str] = EDIT_ATTRIBUTES) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(AR⁺, AR⁻)``, each float (C, 19) with entries in {0, 1}, rows in the order of ``attributes``.

    Raises KeyError naming the attributes that have no row in :data:`ATTRIBUTE_PARTS`.
    """
    if len(attributes) == 0:
        raise ValueError("attributes is empty; expected at least one attribute name")
    missing = [a for a in attributes if a not in ATTRIBUTE_PARTS]
    if missing:
        raise KeyError(f"no attribute-part row for {missing}; rows exist for {sorted(ATTRIBUTE_PARTS)}")
    plus = torch.stack([_row(ATTRIBUTE_PARTS[a].plus, a) for a in attributes])
    minus = torch.stack([_row(ATTRIBUTE_PARTS[a].minus, a) for a in attributes])
    return plus, minus


# ------------------------------------------------------------------------- eqs. (4), (5), influence regions
def _check_matrices(ar_plus: Tensor, ar_minus: Tensor) -> None:
    if ar_plus.ndim != 2 or ar_plus.shape != ar_minus.shape:
        raise ValueError(
            f"AR+ and AR- must both be (C, P) matrices of one shape, got {tuple(ar_plus.shape)} and "
            f"{tuple(ar_minus.shape)}"
        )


def check_att_diff(att_diff: Tensor, ar_plus: Tensor) -> None:
    if att_diff.ndim != 2 or att_diff.shape[1] != ar_plus.shape[0]:
        raise ValueError(
            f"att_diff must be (B, {ar_plus.shape[0]}) to match AR's {ar_plus.shape[0]} attribute rows, "
            f"got {tuple(att_diff.shape)}"
        )


def _check_soft_masks(soft_masks: Tensor, ar_plus: Tensor, batch: int) -> None:
    if soft_masks.ndim != 4 or soft_masks.shape[0] != batch or soft_masks.shape[1] != ar_plus.shape[1]:
        raise ValueError(
            f"soft_masks must be (B={batch}, P={ar_plus.shape[1]}, H, W) to match the batch and AR's part "
            f"columns, got {tuple(soft_masks.shape)}"
        )


def influenced_parts(att_diff: Tensor, ar_plus: Tensor, ar_minus: Tensor) -> Tensor:
    """Eq. (4): (B, C) attribute changes → (B, P) weights in [0, 1] of the classes the edit may repaint."""
    _check_matrices(ar_plus, ar_minus)
    check_att_diff(att_diff, ar_plus)
    strengthened = (att_diff > 0).to(ar_plus.dtype)
    weakened = (att_diff < 0).to(ar_minus.dtype)
    return torch.clamp(strengthened @ ar_plus + weakened @ ar_minus, max=1.0)


def preserved_region_mask(soft_masks: Tensor, att_diff: Tensor, ar_plus: Tensor, ar_minus: Tensor) -> Tensor:
    """Eq. (5): the (B, H, W) probability that a pixel must stay unchanged under the edit ``att_diff``.

    ``soft_masks`` is (B, P, H, W) and sums to 1 over ``P``; a zero ``att_diff`` preserves the whole image.
    """
    parts = influenced_parts(att_diff, ar_plus, ar_minus)
    _check_soft_masks(soft_masks, ar_plus, att_diff.shape[0])
    touched = torch.einsum("bphw,bp->bhw", soft_masks.to(parts.dtype), parts)
    return 1.0 - touched


def influence_regions(soft_masks: Tensor, ar_plus: Tensor, ar_minus: Tensor) -> tuple[Tensor, Tensor]:
    """``(M⁺, M⁻)``, each (B, C, H, W): the region attribute ``i`` may repaint when strengthened / weakened.

    ``M_i^± = Σ_p soft_masks_p · AR^±_{ip}``, i.e. one minus eq. (5) at ``att_diff = ±e_i`` (a single row
    with entries in [0, 1] needs no clamp). MagGAN's mask-guided conditioning, eq. (12), multiplies
    ``att_diff_i`` by these maps.
    """
    _check_matrices(ar_plus, ar_minus)
    _check_soft_masks(soft_masks, ar_plus, soft_masks.shape[0])
    masks = soft_masks.to(ar_plus.dtype)
    plus = torch.einsum("bphw,cp->bchw", masks, ar_plus)
    minus = torch.einsum("bphw,cp->bchw", masks, ar_minus)
    return plus, minus
