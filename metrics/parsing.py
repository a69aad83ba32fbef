"""Face-parsing accuracy as a torchmetrics ``Metric`` whose only state is a summed confusion histogram."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from datamodules.labels import NUM_HELEN_CLASSES
from metrics.functional.parsing import confusion_histogram, parsing_scores


class ParsingAccuracy(Metric):
    """Pixel accuracy, mean class accuracy, mIoU and F1 of a face parser over a whole evaluation set.

    The state is one ``(C, C)`` int64 histogram (rows = target, columns = prediction) that is summed over
    batches and, under DDP, over processes, so the result is exactly that of one pass over all pixels.

    Args:
        num_classes: number of classes ``C``.
        ignore_index: target value whose pixels are not counted.
        helen: the 11 Helen classes are used; ``compute`` then adds ``helen_overall_f1`` and
            ``helen_f1_<component>`` (definitions in :mod:`metrics.functional.parsing`).
        **kwargs: passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    hist: Tensor

    def __init__(self, num_classes: int, ignore_index: int | None = None, helen: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if helen and num_classes != NUM_HELEN_CLASSES:
            raise ValueError(f"helen=True needs num_classes={NUM_HELEN_CLASSES}, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.helen = helen
        self.add_state("hist", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` labels ``(B,H,W)`` or scores ``(B,C,H,W)``, ``target`` labels ``(B,H,W)``."""
        hist = confusion_histogram(pred, target, self.num_classes, self.ignore_index)
        self.hist += hist.to(self.hist.device)

    def compute(self) -> dict[str, Tensor]:
        """Scalars ``pixel_acc``, ``mean_class_acc``, ``miou``, ``mean_f1``; per-class vectors ``f1``, ``iou``
        and ``class_acc`` (see :func:`metrics.functional.parsing.parsing_scores`)."""
        return parsing_scores(self.hist, helen_overall=self.helen)
