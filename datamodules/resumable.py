"""Samplers that make the data order a pure function of (seed, epoch, position), so a run resumes exactly.

- :class:`EpochSampler` (train): a permutation seeded by ``(seed, epoch)``, sharded across DDP ranks by
  stride (rank ``r`` takes positions ``r, r + W, ...``, so W ranks with batch B see the same global batches
  as one process with batch W·B). Each index comes with its own augmentation seed, derived from
  ``(seed, epoch, global position)``; :class:`SeededItems` runs the dataset under that seed. Augmentation
  then depends neither on which worker loads an item nor on how long the workers have lived (persistent
  workers, a restarted process), only on where the item stands in the epoch.
- :meth:`EpochSampler.resume_at` starts the next iteration ``items`` into an epoch: what a mid-epoch
  resume needs. The DataModule fills it from the position it saves in checkpoints.
- :class:`ShardSampler` (val/test): each rank reads its stride of the items, without the padding
  duplicates ``DistributedSampler`` adds, so metrics summed over ranks count every item once.

Both derive from ``DistributedSampler`` only so that Lightning keeps them instead of substituting its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from portrait_models.distributed import world


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the item at ``position`` of epoch ``epoch`` (a fixed mixing of the three numbers)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + position)
    return int(torch.randint(0, 2**62, (), generator=generator))


class EpochSampler(DistributedSampler):
    """Shuffled (or in-order) train indices paired with their item seeds, deterministic per epoch."""

    def __init__(self, dataset: Dataset, *, shuffle: bool = True, seed: int = 0) -> None:
        num_replicas, rank = world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self._start = 0  # items of this rank's shard to skip on the next iteration (a mid-epoch resume)
        self.current_epoch = 0  # the epoch of the pass under way (self.epoch: the next pass)

    def set_epoch(self, epoch: int) -> None:
        """Ignored: each iteration is the next epoch. (Lightning's epoch number can run one ahead after a
        resume from a checkpoint written at the end of training, and with workers the first pass is drawn
        before Lightning sets it.)"""

    def resume_at(self, epoch: int, items: int) -> None:
        """Make the next iteration the rest of epoch ``epoch`` after this rank's first ``items`` items."""
        self.epoch, self.current_epoch, self._start = epoch, epoch, items

    def order(self, epoch: int) -> list[int]:
        """The epoch's global order, truncated to a multiple of the world size."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            indices = torch.randperm(n, generator=generator).tolist()
        else:
            indices = list(range(n))
        return indices[: self.total_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        start, self._start = self._start, 0
        epoch = self.current_epoch = self.epoch
        self.epoch = epoch + 1
        order = self.order(epoch)
        positions = range(self.rank, self.total_size, self.num_replicas)
        for position in list(positions)[start:]:
            yield order[position], item_seed(self.seed, epoch, position)


class SeededItems(Dataset):
    """``dataset[i]`` computed under the torch seed the sampler pairs with ``i`` (the caller's RNG untouched)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:  # the reader's attributes (items, root, ...) stay reachable
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ShardSampler(DistributedSampler):
    """In-order evaluation indices, rank ``r`` taking ``r, r + W, ...``; no item repeated, none dropped."""

    def __init__(self, dataset: Dataset) -> None:
        num_replicas, rank = world()
        if len(dataset) < num_replicas:  # type: ignore[arg-type]
            where = getattr(dataset, "root", None)
            raise ValueError(
                f"an evaluation split{f' of {where}' if where else ''} has {len(dataset)} items, fewer than the "  # type: ignore[arg-type]
                f"{num_replicas} processes: a process without items would never join the metric sync"
            )
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.num_samples
