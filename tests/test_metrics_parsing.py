"""Parsing metrics: exact histogram counts, the score definitions, Helen's overall F1 and summable states."""

import math

import numpy as np
import pytest
import torch

from metrics.functional.parsing import (
    confusion_histogram,
    helen_component_f1,
    helen_overall_f1,
    parsing_scores,
)
from metrics.parsing import ParsingAccuracy


def _reference_scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, object]:
    """Per-class IoU / F1 / recall counted pixel by pixel with NumPy, NaN for classes absent from both."""
    iou, f1, recall = [], [], []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c))
        fn = np.sum((pred != c) & (target == c))
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan)
        recall.append(tp / (tp + fn) if tp + fn else math.nan)
    return {
        "pixel_acc": np.mean(pred == target),
        "miou": np.nanmean(iou),
        "mean_f1": np.nanmean(f1),
        "mean_class_acc": np.nanmean(recall),
        "iou": np.array(iou),
        "f1": np.array(f1),
    }


def test_histogram_counts_pairs_with_rows_as_target():
    target = torch.tensor([[[0, 0], [1, 2]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])
    hist = confusion_histogram(pred, target, num_classes=3)
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    assert hist.dtype == torch.int64
    assert torch.equal(hist, expected)


def test_scores_match_pixelwise_reference():
    target = torch.randint(0, 5, (3, 16, 16))
    pred = torch.where(torch.rand(3, 16, 16) < 0.7, target, torch.randint(0, 5, (3, 16, 16)))
    scores = parsing_scores(confusion_histogram(pred, target, 5))
    reference = _reference_scores(pred.numpy(), target.numpy(), 5)
    for key in ("pixel_acc", "miou", "mean_f1", "mean_class_acc"):
        assert scores[key].item() == pytest.approx(reference[key], abs=1e-12), key
    np.testing.assert_allclose(scores["iou"].numpy(), reference["iou"], atol=1e-12)
    np.testing.assert_allclose(scores["f1"].numpy(), reference["f1"], atol=1e-12)


def test_scores_take_argmax_of_class_scores():
    target = torch.randint(0, 4, (2, 8, 8))
    logits = torch.randn(2, 4, 8, 8)
    from_scores = confusion_histogram(logits, target, 4)
    from_labels = confusion_histogram(logits.argmax(1), target, 4)
    assert torch.equal(from_scores, from_labels)


def test_ignore_index_pixels_are_not_counted():
    target = torch.tensor([[[0, 255], [1, 255]]])
    pred = torch.tensor([[[0, 1], [1, 0]]])
    hist = confusion_histogram(pred, target, 2, ignore_index=255)
    assert hist.sum() == 2
    assert parsing_scores(hist)["pixel_acc"] == 1.0


def test_absent_classes_are_left_out_of_means_but_false_positives_count():
    # class 2 never appears; class 3 is only predicted (a pure false positive, IoU 0).
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 0, 1, 3]]])
    scores = parsing_scores(confusion_histogram(pred, target, 4))
    assert math.isnan(scores["iou"][2]) and math.isnan(scores["f1"][2])
    assert scores["iou"][3] == 0.0
    # IoU: class 0 = 1, class 1 = 1/2, class 3 = 0 -> mean over the three defined classes.
    assert scores["miou"].item() == pytest.approx((1 + 0.5 + 0) / 3)
    # recall is undefined for classes 2 and 3 (never in target): mean over classes 0 and 1.
    assert scores["mean_class_acc"].item() == pytest.approx((1 + 0.5) / 2)


def test_helen_overall_pools_components_and_skips_skin_hair_background():
    hist = torch.zeros(11, 11, dtype=torch.int64)
    for c in range(11):
        hist[c, c] = 10
    hist[4, 5] = 6  # left eye called right eye: same component (eyes), not an error
    hist[7, 8] = 4  # upper lip called inner mouth: same component (mouth), not an error
    hist[2, 4] = 3  # brow called eye: FN for brows, FP for eyes
    hist[1, 10] = 50  # skin called hair: outside the components, ignored by "overall"
    hist[0, 6] = 5  # background called nose: FP for nose
    tp = 80 + 6 + 4  # the 8 diagonal classes 2..9 plus the two within-component confusions
    fp, fn = 3 + 5, 3
    assert helen_overall_f1(hist).item() == pytest.approx(2 * tp / (2 * tp + fp + fn))
    components = helen_component_f1(hist)
    assert components["eyes"].item() == pytest.approx(2 * 26 / (2 * 26 + 3))
    assert components["mouth"].item() == 1.0
    assert components["u_lip"].item() == pytest.approx(2 * 10 / (2 * 10 + 4))
    assert components["skin"].item() == pytest.approx(2 * 10 / (2 * 10 + 50))


def test_helen_f1_rejects_other_class_counts():
    with pytest.raises(ValueError, match="11-class Helen"):
        helen_overall_f1(torch.zeros(19, 19, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes=11"):
        ParsingAccuracy(19, helen=True)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5, dtype=torch.long), "same size"),
        (
            torch.zeros(1, 4, 4, dtype=torch.long),
            torch.full((1, 4, 4), 7),
            r"target labels must lie in \[0, 3",
        ),
        (torch.randn(1, 5, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "5 channels"),
        (torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "integer"),
    ],
)
def test_bad_input_is_rejected(pred, target, message):
    with pytest.raises(ValueError, match=message):
        confusion_histogram(pred, target, 3)


def test_metric_state_sums_over_batches_and_processes():
    target = torch.randint(0, 11, (6, 12, 12))
    pred = torch.where(torch.rand(6, 12, 12) < 0.6, target, torch.randint(0, 11, (6, 12, 12)))

    whole = ParsingAccuracy(11, helen=True)
    whole.update(pred, target)
    chunked = ParsingAccuracy(11, helen=True)
    for part in range(3):
        chunked.update(pred[2 * part : 2 * part + 2], target[2 * part : 2 * part + 2])
    # two "processes" each seeing half of the data, merged as DDP's sum reduction would.
    rank0, rank1 = ParsingAccuracy(11, helen=True), ParsingAccuracy(11, helen=True)
    rank0.update(pred[:3], target[:3])
    rank1.update(pred[3:], target[3:])
    rank0.merge_state(rank1)

    expected = whole.compute()
    for other in (chunked.compute(), rank0.compute()):
        assert other.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(other[key], value, equal_nan=True, msg=key)
    assert expected["pixel_acc"].item() == pytest.approx((pred == target).double().mean().item())
