"""Face verification from identity embeddings: cosine similarities, thresholded accuracy, and LFW's
10-fold protocol, as pure tensor functions.

A pair is predicted "same person" when its cosine similarity is above the threshold. The LFW protocol
(as insightface's verification code runs it): split the pairs into 10 contiguous folds, pick on 9 folds
the threshold with the best accuracy, measure accuracy on the held-out fold with it, and report the mean
over the 10 held-out folds. Folds are contiguous, as in LFW's ``pairs.txt`` where each fold is balanced:
give pairs in an order that mixes positives and negatives (:func:`edit_verification_pairs` does).

MaskGAN's identity evaluation (§5.3: ArcFace, 400 pairs of an edited and an unmodified face, 112×112)
pairs each edited face with the original of the same person (positive); :func:`edit_verification_pairs`
adds, for each edited face, a negative with the original of another person, so accuracy is defined.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cosine_similarity(embeddings_a: Tensor, embeddings_b: Tensor, eps: float = 1e-12) -> Tensor:
    """Row-wise cosine similarity of two (N, D) embedding sets → (N,)."""
    if embeddings_a.ndim != 2 or embeddings_a.shape != embeddings_b.shape:
        raise ValueError(
            f"expected two (N, D) embedding tensors of one shape, got {tuple(embeddings_a.shape)} and "
            f"{tuple(embeddings_b.shape)}"
        )
    a = embeddings_a.float() / embeddings_a.float().norm(dim=1, keepdim=True).clamp_min(eps)
    b = embeddings_b.float() / embeddings_b.float().norm(dim=1, keepdim=True).clamp_min(eps)
    return (a * b).sum(dim=1)


def _check_pairs(similarities: Tensor, same: Tensor) -> None:
    if similarities.ndim != 1 or similarities.shape != same.shape:
        raise ValueError(
            f"similarities and same must be (N,) tensors of one length, got {tuple(similarities.shape)} and "
            f"{tuple(same.shape)}"
        )
    if similarities.numel() == 0:
        raise ValueError("no verification pairs given")


def verification_accuracy(similarities: Tensor, same: Tensor, threshold: float | Tensor) -> Tensor:
    """Fraction of pairs classified right when "same person" is predicted for ``similarity > threshold``."""
    _check_pairs(similarities, same)
    predicted = similarities > threshold
    return (predicted == same.bool()).float().mean()


def _accuracies_at(thresholds: Tensor, similarities: Tensor, same: Tensor) -> Tensor:
    """Accuracy at every threshold at once, by counting sorted similarities on either side of it."""
    same = same.bool()
    positives = torch.sort(similarities[same]).values
    negatives = torch.sort(similarities[~same]).values
    positives_at_or_below = torch.searchsorted(positives, thresholds, right=True)
    negatives_at_or_below = torch.searchsorted(negatives, thresholds, right=True)
    correct = (positives.numel() - positives_at_or_below) + negatives_at_or_below
    return correct.double() / similarities.numel()


def best_threshold(similarities: Tensor, same: Tensor) -> tuple[Tensor, Tensor]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Candidates are every midpoint between consecutive distinct similarities plus one below and one above all
    of them, so the optimum over all real thresholds is found exactly. Of tied candidates the lowest wins.
    """
    _check_pairs(similarities, same)
    values = torch.unique(similarities.double())  # sorted
    candidates = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0])
    accuracies = _accuracies_at(candidates, similarities.double(), same)
    best = int(torch.argmax(accuracies))
    return candidates[best].to(similarities.dtype), accuracies[best].float()


def kfold_accuracy(similarities: Tensor, same: Tensor, num_folds: int = 10) -> tuple[Tensor, Tensor, Tensor]:
    """LFW protocol: ``(mean accuracy, its std over folds, (num_folds,) chosen thresholds)``.

    Folds are contiguous slices (the first ``N mod num_folds`` folds one pair longer, as sklearn's
    ``KFold(shuffle=False)`` that insightface uses); each fold's threshold is chosen on the other folds.
    """
    _check_pairs(similarities, same)
    if num_folds < 2 or similarities.numel() < num_folds:
        raise ValueError(
            f"need num_folds >= 2 and at least num_folds pairs, got {num_folds} folds and {similarities.numel()} pairs"
        )
    folds = torch.tensor_split(torch.arange(similarities.numel()), num_folds)
    accuracies, thresholds = [], []
    for held_out in folds:
        train = torch.ones(similarities.numel(), dtype=torch.bool)
        train[held_out] = False
        threshold, _ = best_threshold(similarities[train], same[train])
        accuracies.append(verification_accuracy(similarities[held_out], same[held_out], threshold))
        thresholds.append(threshold)
    accuracy = torch.stack(accuracies)
    return accuracy.mean(), accuracy.std(unbiased=False), torch.stack(thresholds)


def edit_verification_pairs(identities: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """MaskGAN's pairs for N edited faces and their N originals: ``(edited_index, original_index, same)``.

    Pair ``2j`` is (edited j, original j), a positive. Pair ``2j + 1`` is (edited j, original k), a negative,
    with ``k`` the first of ``j+1, j+2, …`` (cyclically) whose identity differs from j's; it is left out when
    every face has j's identity. Positives and negatives alternate, so contiguous folds stay balanced.
    """
    if identities.ndim != 1 or identities.numel() == 0:
        raise ValueError(f"identities must be a non-empty (N,) tensor, got {tuple(identities.shape)}")
    count = identities.numel()
    index = torch.arange(count)
    partner = torch.full((count,), -1, dtype=torch.long)
    # Walk the cyclic shifts until every face has a partner of another identity (a run of equal
    # identities ends after at most its length in shifts; a single identity has no negatives at all).
    for step in range(1, count if torch.unique(identities).numel() > 1 else 1):
        shifted = (index + step) % count
        found = (partner < 0) & (identities[shifted] != identities)
        partner[found] = shifted[found]
        if bool((partner >= 0).all()):
            break
    has_negative = partner >= 0
    edited = torch.stack([index, index], dim=1).flatten()
    original = torch.stack([index, partner], dim=1).flatten()
    same = torch.stack([torch.ones(count, dtype=torch.bool), torch.zeros(count, dtype=torch.bool)], 1).flatten()
    keep = torch.stack([torch.ones(count, dtype=torch.bool), has_negative], dim=1).flatten()
    return edited[keep], original[keep], same[keep]
