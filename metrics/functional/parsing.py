"""Face-parsing scores from a pixel confusion histogram.

Every score here is a function of one ``(C, C)`` integer histogram whose rows are the target class and
whose columns are the predicted class. Histograms of disjoint pixel sets add, so a metric only has to
sum histograms across batches and processes and derive the scores once at the end (the ``compute_hist``
pattern of imaginaire and of the official face-parsing evaluations).

Conventions:

* ``pixel_acc`` = correctly labelled pixels / counted pixels.
* ``mean_class_acc`` = mean over classes of per-class recall ``TP / (TP + FN)``; classes that never occur
  in the target are left out (their recall is undefined).
* ``iou`` and ``f1`` per class = ``TP / (TP + FP + FN)`` and ``2 TP / (2 TP + FP + FN)``, with TP/FP/FN
  pooled over all pixels of the evaluated set (the Helen protocol, reference_implementations.md §6).
  A class absent from both prediction and target gets NaN and is left out of ``miou`` / ``mean_f1``;
  a class that is only predicted (or only present in the target) scores 0 and counts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.labels import HELEN_CLASSES, NUM_HELEN_CLASSES

# Helen face components as the Smith et al. (2013) lineage reports them (indices into labels.HELEN_CLASSES).
HELEN_COMPONENTS: dict[str, tuple[int, ...]] = {
    "brows": (2, 3),
    "eyes": (4, 5),
    "nose": (6,),
    "u_lip": (7,),
    "inner_mouth": (8,),
    "l_lip": (9,),
    "mouth": (7, 8, 9),
    "skin": (1,),
    "hair": (10,),
}
# The components pooled into "overall": eyes, brows, nose and mouth; background, skin and hair are left out.
HELEN_OVERALL_COMPONENTS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth")


def confusion_histogram(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Count pixels per (target class, predicted class) pair.

    Args:
        pred: predicted labels ``(B, H, W)`` (integer) or class scores ``(B, C, H, W)`` (argmax over ``C``).
        target: target labels ``(B, H, W)``, integers in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: ``C``.
        ignore_index: target value whose pixels are not counted.

    Returns:
        ``(C, C)`` int64 histogram, rows = target class, columns = predicted class.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if pred.dim() == 4:
        if pred.shape[1] != num_classes:
            raise ValueError(f"pred scores have {pred.shape[1]} channels, expected num_classes={num_classes}")
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape or target.dim() != 3:
        raise ValueError(
            f"expected pred (B,H,W) or (B,C,H,W) and target (B,H,W) of the same size, "
            f"got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred labels and target must be integer tensors (pass scores as (B,C,H,W))")
    pred, target = pred.long().flatten(), target.long().flatten()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_range("target", target, num_classes)
    _check_range("pred", pred, num_classes)
    pair_index = target * num_classes + pred
    return torch.bincount(pair_index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_range(name: str, labels: Tensor, num_classes: int) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} labels must lie in [0, {num_classes}), found range "
            f"[{int(labels.min())}, {int(labels.max())}] (set ignore_index for void pixels)"
        )


def parsing_scores(hist: Tensor, helen_overall: bool = False) -> dict[str, Tensor]:
    """Pixel accuracy, mean class accuracy, per-class IoU/F1 and their means from a confusion histogram.

    Args:
        hist: ``(C, C)`` histogram from :func:`confusion_histogram` (rows = target, columns = prediction).
        helen_overall: also return ``helen_overall_f1`` and ``helen_f1_<component>`` (11 Helen classes only).

    Returns:
        float64 tensors: scalars ``pixel_acc``, ``mean_class_acc``, ``miou``, ``mean_f1``; ``(C,)`` vectors
        ``iou``, ``f1`` and ``class_acc`` (NaN where undefined, see the module docstring).
    """
    _check_histogram(hist)
    hist = hist.double()
    tp = hist.diagonal()
    target_count = hist.sum(dim=1)  # TP + FN
    pred_count = hist.sum(dim=0)  # TP + FP
    union = target_count + pred_count - tp
    class_acc = _divide_or_nan(tp, target_count)
    iou = _divide_or_nan(tp, union)
    f1 = _divide_or_nan(2 * tp, target_count + pred_count)
    scores = {
        "pixel_acc": _divide_or_nan(tp.sum(), hist.sum()),
        "mean_class_acc": class_acc.nanmean(),
        "miou": iou.nanmean(),
        "mean_f1": f1.nanmean(),
        "iou": iou,
        "f1": f1,
        "class_acc": class_acc,
    }
    if helen_overall:
        scores["helen_overall_f1"] = helen_overall_f1(hist)
        scores.update({f"helen_f1_{name}": value for name, value in helen_component_f1(hist).items()})
    return scores


def helen_component_f1(hist_11: Tensor) -> dict[str, Tensor]:
    """F1 of each Helen face component as usually tabulated: brows (left+right merged), eyes (left+right),
    nose, upper lip, inner mouth, lower lip, mouth (all three mouth classes), skin and hair.

    A component's F1 treats its classes as one region: pixels confused between two classes of the same
    component (e.g. left vs right eye) count as correct for that component.
    """
    _check_helen(hist_11)
    return {name: _pooled_f1(hist_11.double(), [classes]) for name, classes in HELEN_COMPONENTS.items()}


def helen_overall_f1(hist_11: Tensor) -> Tensor:
    """The "overall" Helen F1 in the Smith et al. (CVPR 2013) convention.

    Definition used here: the four facial components brows (classes 2+3), eyes (4+5), nose (6) and mouth
    (upper lip 7 + inner mouth 8 + lower lip 9) are each treated as one region; their true positives,
    false positives and false negatives are summed over the four components, and
    ``F1 = 2 TP / (2 TP + FP + FN)``. Background (0), skin (1) and hair (10) are excluded. Confusing a
    brow with an eye therefore costs an FP and an FN; confusing the left eye with the right eye, or the
    upper lip with the inner mouth, does not. This follows the component list of the Smith-2013 lineage
    as recorded in reference_implementations.md §6 (a convention recalled there, not verified in code);
    some re-implementations instead average precision and recall over all ten foreground classes.
    """
    _check_helen(hist_11)
    groups = [HELEN_COMPONENTS[name] for name in HELEN_OVERALL_COMPONENTS]
    return _pooled_f1(hist_11.double(), groups)


def _pooled_f1(hist: Tensor, groups: list[tuple[int, ...]]) -> Tensor:
    """``2 TP / (2 TP + FP + FN)`` with TP/FP/FN summed over groups of classes (each group one region)."""
    tp = fp = fn = hist.new_zeros(())
    for classes in groups:
        index = torch.tensor(classes, device=hist.device)
        group_tp = hist[index][:, index].sum()
        tp = tp + group_tp
        fn = fn + hist[index].sum() - group_tp
        fp = fp + hist[:, index].sum() - group_tp
    return _divide_or_nan(2 * tp, 2 * tp + fp + fn)


def _divide_or_nan(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Elementwise ``numerator / denominator`` with NaN where the denominator is 0 (score undefined)."""
    defined = denominator > 0
    safe = torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, numerator / safe, torch.full_like(numerator / safe, float("nan")))


def _check_histogram(hist: Tensor) -> None:
    if hist.dim() != 2 or hist.shape[0] != hist.shape[1]:
        raise ValueError(f"expected a square (C, C) confusion histogram, got shape {tuple(hist.shape)}")


def _check_helen(hist: Tensor) -> None:
    _check_histogram(hist)
    if hist.shape[0] != NUM_HELEN_CLASSES:
        raise ValueError(
            f"Helen F1 needs the {NUM_HELEN_CLASSES}-class Helen histogram ({', '.join(HELEN_CLASSES)}), "
            f"got {hist.shape[0]} classes"
        )
