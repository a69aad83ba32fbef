"""Identity preservation as face verification (MaskGAN §5.3), a torchmetrics Metric over embedding pairs.

The metric stores every pair's cosine similarity and same/different flag (``cat`` states, gathered across
processes) because the best threshold of the LFW protocol needs all pairs at once. Embeddings come from a
:class:`portrait_models.classifiers.FaceEmbedder` (ArcFace as in MaskGAN, or dlib); the metric itself
takes embeddings so that it stays independent of the network and its device.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from metrics.functional.verification import (
    cosine_similarity,
    edit_verification_pairs,
    kfold_accuracy,
    verification_accuracy,
)


class IdentityVerification(Metric):
    """Verification accuracy of embedding pairs; higher is better.

    ``compute()`` returns a dict:

    * ``accuracy``: LFW-protocol accuracy (threshold chosen on ``num_folds − 1`` folds, tested on the last);
    * ``accuracy_std``: its standard deviation over the folds; ``threshold``: the mean chosen threshold;
    * ``accuracy_at_threshold``: accuracy at the fixed ``threshold`` (only when one is given);
    * ``similarity_same`` / ``similarity_different``: mean cosine of positive / negative pairs (NaN if none).

    Args:
        threshold: optional fixed cosine threshold ("same" when the similarity is above it).
        num_folds: folds of the cross-validated accuracy, 10 as in LFW.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    similarities: list[Tensor]
    same: list[Tensor]

    def __init__(self, threshold: float | None = None, num_folds: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.num_folds = num_folds
        self.add_state("similarities", default=[], dist_reduce_fx="cat")
        self.add_state("same", default=[], dist_reduce_fx="cat")

    def update(self, embeddings_a: Tensor, embeddings_b: Tensor, same: Tensor) -> None:
        """Add N pairs: two (N, D) embedding sets and the (N,) flags "same person"."""
        similarity = cosine_similarity(embeddings_a, embeddings_b)
        if same.shape != similarity.shape:
            raise ValueError(f"same must be ({similarity.numel()},), got {tuple(same.shape)}")
        self.similarities.append(similarity)
        self.same.append(same.bool())

    def update_edits(self, edited: Tensor, original: Tensor, identities: Tensor) -> None:
        """MaskGAN's protocol for a batch: (B, D) embeddings of edited faces and of their (B, D) originals.

        Each edited face is paired with its own original (positive) and with the original of the next face
        in the batch that shows another person (negative; see ``edit_verification_pairs``).
        """
        if edited.shape != original.shape or edited.shape[:1] != identities.shape:
            raise ValueError(
                f"expected edited and original (B, D) and identities (B,), got {tuple(edited.shape)}, "
                f"{tuple(original.shape)} and {tuple(identities.shape)}"
            )
        edited_index, original_index, same = edit_verification_pairs(identities.cpu())
        device = edited.device
        self.update(edited[edited_index.to(device)], original[original_index.to(device)], same.to(device))

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.similarities, list) and len(self.similarities) == 0:
            raise ValueError("IdentityVerification.compute() called before any update()")
        similarities, same = dim_zero_cat(self.similarities), dim_zero_cat(self.same)
        accuracy, accuracy_std, thresholds = kfold_accuracy(similarities, same, self.num_folds)
        result = {
            "accuracy": accuracy,
            "accuracy_std": accuracy_std,
            "threshold": thresholds.mean(),
            "similarity_same": similarities[same].mean(),
            "similarity_different": similarities[~same].mean(),
        }
        if self.threshold is not None:
            result["accuracy_at_threshold"] = verification_accuracy(similarities, same, self.threshold)
        return result
