"""Attribute editing accuracy: does the edited image show the target attribute? (STGAN / MagGAN, MaskGAN)

STGAN's protocol, which MagGAN follows (§4): for each test image, reverse one of its 13 attributes at a time
and count an edit as a success when the attribute classifier's prediction of the *reversed* attribute on
the edited image equals the target value; report the success rate per attribute and their mean. MaskGAN's
"attribute classification accuracy" (§5.3, Tables 2–3) is the same count for the attributes it studies
(Smiling; Male, Heavy_Makeup, No_Beard) over its generated images.

:class:`AttributeEditAccuracy` keeps per-attribute success and edit counts as sum states, so it is exact
across batches and processes. ``edited`` says which (image, attribute) entries are scored; attributes that
were carried along unchanged are not counted (their preservation is what MRE measures).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from datamodules.labels import EDIT_ATTRIBUTES


class AttributeEditAccuracy(Metric):
    """Fraction of edits whose edited attribute the classifier sees at its target value; higher is better.

    ``compute()`` returns the mean over attributes of the per-attribute accuracy (attributes never edited are
    left out of the mean), or with ``per_attribute=True`` a dict ``{"mean": …, <attribute>: …}`` (NaN for an
    attribute never edited).

    Args:
        attributes: names of the classifier's outputs, in order.
        threshold: probability above which an attribute counts as present (on ``sigmoid(logits)``).
        per_attribute: return the per-attribute dict instead of the mean.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(
        self,
        attributes: Sequence[str] = EDIT_ATTRIBUTES,
        threshold: float = 0.5,
        per_attribute: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not attributes:
            raise ValueError("attributes is empty")
        self.attributes = tuple(attributes)
        self.threshold = threshold
        self.per_attribute = per_attribute
        self.add_state("correct", default=torch.zeros(len(attributes), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(len(attributes), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor, edited: Tensor | None = None) -> None:
        """Score a batch of edited images.

        Args:
            logits: (B, C) classifier logits on the edited images.
            targets: (B, C) target attribute values in {0, 1}.
            edited: (B, C) bool, which attributes each image was edited for; default all of them.
        """
        num = len(self.attributes)
        if logits.ndim != 2 or logits.shape[1] != num or targets.shape != logits.shape:
            raise ValueError(
                f"expected logits and targets (B, {num}) for attributes {self.attributes}, got "
                f"{tuple(logits.shape)} and {tuple(targets.shape)}"
            )
        if edited is None:
            edited = torch.ones_like(logits, dtype=torch.bool)
        elif edited.shape != logits.shape:
            raise ValueError(f"edited must be {tuple(logits.shape)} like logits, got {tuple(edited.shape)}")
        edited = edited.bool()
        hits = (logits.sigmoid() > self.threshold) == targets.bool()
        self.correct += (hits & edited).sum(dim=0)
        self.total += edited.sum(dim=0)

    def update_single_attribute_edits(self, logits: Tensor, att_source: Tensor) -> None:
        """STGAN's protocol in one call.

        ``logits`` (B, C, C): ``logits[:, i]`` are the classifier's outputs on the image edited by reversing
        attribute ``i`` alone (``metrics.mre.flip_each_attribute``); ``att_source`` (B, C) are the source
        attributes. Only attribute ``i`` of edit ``i`` is scored, against its target ``1 − att_source_i``.
        """
        num = len(self.attributes)
        if logits.ndim != 3 or logits.shape[1:] != (num, num) or att_source.shape != (logits.shape[0], num):
            raise ValueError(
                f"expected logits (B, {num}, {num}) and att_source (B, {num}), got {tuple(logits.shape)} and "
                f"{tuple(att_source.shape)}"
            )
        self.update(logits.diagonal(dim1=1, dim2=2), 1 - att_source.long())

    def compute(self) -> Tensor | dict[str, Tensor]:
        if int(self.total.sum()) == 0:
            raise ValueError("AttributeEditAccuracy.compute() called before any edit was scored")
        accuracy = self.correct.double() / self.total.double()  # NaN where total is 0
        mean = accuracy.nanmean().float()
        if not self.per_attribute:
            return mean
        return {"mean": mean, **{name: accuracy[i].float() for i, name in enumerate(self.attributes)}}
