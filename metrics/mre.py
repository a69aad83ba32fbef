"""MagGAN's mask-aware reconstruction error (eq. 2) as a torchmetrics Metric, plus the editing protocol.

The protocol (MagGAN §3.1 and §4): for each test image, flip every one of its ``C`` binary attributes, one
at a time (``att_diff = 1 − 2·att_s``), and measure how much each edit changed the region it should have
preserved. :func:`flip_each_attribute` runs a generator that way; :class:`MaskAwareReconstructionError`
accumulates the result with sum states, so it is exact across batches and DDP processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from datamodules.attribute_regions import attribute_part_matrices
from datamodules.labels import EDIT_ATTRIBUTES
from metrics.functional.mre import attribute_change_vector, mre_per_attribute, single_attribute_edits

Generator = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def flip_each_attribute(generator: Generator, images: Tensor, att_source: Tensor) -> tuple[Tensor, Tensor]:
    """Edit every image once per attribute, flipping only that attribute.

    Args:
        generator: ``G(x, att_diff)`` with ``x`` (B, 3, H, W) and ``att_diff`` (B, C), returning (B, 3, H, W).
        images: (B, 3, H, W) inputs.
        att_source: (B, C) source attributes in {0, 1}.

    Returns:
        ``(edited, att_diff)``: (B, C, 3, H, W) with ``edited[:, i] = G(x, att_diff_i e_i)``, and (B, C).
    """
    att_diff = attribute_change_vector(att_source).to(images.device)
    conditions = single_attribute_edits(att_diff)
    edited = [generator(images, conditions[:, i]) for i in range(att_diff.shape[1])]
    return torch.stack(edited, dim=1), att_diff


class MaskAwareReconstructionError(Metric):
    """Mean over images of MagGAN's MRE, eq. (2); lower is better.

    ``update(images, edited, soft_masks, att_diff)`` takes the shapes of
    :func:`metrics.functional.mre.mre_per_attribute`. Soft masks of another spatial size (MagGAN stores them
    at 256²) are resized bilinearly to the image size, which keeps them summing to 1.

    Args:
        attributes: the edited attributes, in the order of ``att_diff``'s columns; their AR⁺/AR⁻ rows come
            from :mod:`datamodules.attribute_regions` unless ``ar_plus``/``ar_minus`` are given.
        ar_plus, ar_minus: optional explicit (C, P) attribute–part matrices.
        per_attribute: when true, ``compute`` returns ``{"mean": MRE, <attribute>: its mean term}``, where the
            mean term of attribute ``i`` is ``‖(1 − M_i)(x̂_i − x)‖₁ / (HW)`` averaged over images (MRE is the
            mean of the terms).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    error_sum: Tensor
    num_images: Tensor

    def __init__(
        self,
        attributes: Sequence[str] = EDIT_ATTRIBUTES,
        ar_plus: Tensor | None = None,
        ar_minus: Tensor | None = None,
        per_attribute: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (ar_plus is None) != (ar_minus is None):
            raise ValueError("give both ar_plus and ar_minus, or neither (then the table rows are used)")
        if ar_plus is None or ar_minus is None:
            ar_plus, ar_minus = attribute_part_matrices(attributes)
        if ar_plus.shape[0] != len(attributes):
            raise ValueError(f"AR matrices have {ar_plus.shape[0]} rows for {len(attributes)} attributes")
        self.attributes = tuple(attributes)
        self.per_attribute = per_attribute
        self.register_buffer("ar_plus", ar_plus.float(), persistent=False)
        self.register_buffer("ar_minus", ar_minus.float(), persistent=False)
        self.add_state("error_sum", default=torch.zeros(len(attributes), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: Tensor, edited: Tensor, soft_masks: Tensor, att_diff: Tensor) -> None:
        if soft_masks.ndim == 4 and soft_masks.shape[-2:] != images.shape[-2:]:
            soft_masks = F.interpolate(soft_masks.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        terms = mre_per_attribute(images, edited, soft_masks, att_diff, self.ar_plus, self.ar_minus)
        self.error_sum += terms.sum(dim=0).double()
        self.num_images += terms.shape[0]

    def compute(self) -> Tensor | dict[str, Tensor]:
        if self.num_images == 0:
            raise ValueError("MaskAwareReconstructionError.compute() called before any update()")
        per_attribute = (self.error_sum / self.num_images).float()
        mean = per_attribute.mean()
        if not self.per_attribute:
            return mean
        return {"mean": mean, **{name: per_attribute[i] for i, name in enumerate(self.attributes)}}
