"""Random draws and batch-coupled operations that give the same global result on W processes as on one.

Under DDP every rank is seeded alike (``experiments.train``), so every rank's RNG stream is the same. The
train sampler (``datamodules.resumable.EpochSampler``) gives rank ``r`` the rows ``r, r + W, ...`` of the
global batch a single process with batch ``W·B`` sees. A per-sample draw then has to be made for the whole
global batch on every rank, each rank keeping its rows: the ranks' RNG streams stay in lockstep with the
single process's, and the W ranks together use exactly its random numbers. Operations that mix samples of a
batch (a shuffle of the attribute vectors) gather the (small, gradient-free) inputs of all ranks first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(world size, rank) of the default process group, (1, 0) outside distributed runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def rank_rows(draw: Callable[[int], Tensor], local_batch: int) -> Tensor:
    """``draw(global_batch)`` (rows = samples), made alike on every rank; this rank's rows ``r::W``."""
    size, rank = world()
    if size == 1:
        return draw(local_batch)
    return draw(local_batch * size)[rank::size]


@torch.no_grad()
def gather_rows(x: Tensor) -> Tensor:
    """The global batch in the single-process order (row ``r + W·j`` = rank ``r``'s row ``j``); no gradient."""
    size, _ = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)


def randn_rows(like: Tensor) -> Tensor:
    """``torch.randn_like(like)`` (rows = samples), drawn for the global batch: see :func:`rank_rows`."""
    return rank_rows(lambda n: torch.randn(n, *like.shape[1:], dtype=like.dtype, device=like.device), like.shape[0])


def rand_rows(batch: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.rand(batch)`` drawn for the global batch: see :func:`rank_rows`."""
    return rank_rows(lambda n: torch.rand(n, device=device, dtype=dtype), batch)


def shuffled_rows(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``x[torch.randperm(len(x))]`` over the global batch (rows of other ranks included), this rank's rows."""
    size, rank = world()
    every = gather_rows(x)
    perm = torch.randperm(every.shape[0], generator=generator, device="cpu").to(x.device)
    return every[perm][rank::size]


def rolled_rows(x: Tensor, shifts: int = 1) -> Tensor:
    """``x.roll(shifts, 0)`` over the global batch (a row's neighbour may live on another rank); no gradient."""
    size, rank = world()
    if size == 1:
        return x.roll(shifts, 0)
    return gather_rows(x).roll(shifts, 0)[rank::size]


def indexed_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x_global[index]``: ``index`` holds rows of the global batch (this rank's part of a global draw, see
    :func:`rank_rows`), ``x`` this rank's rows. Differentiable: under DDP the rows are gathered with
    ``torch.distributed.nn.functional.all_gather``, whose backward returns each row's gradient to the rank
    that owns it, so a loss on a borrowed row trains the network that produced it, as on one process."""
    size, _ = world()
    if size == 1:
        return x[index]
    from torch.distributed.nn.functional import all_gather

    return torch.stack(all_gather(x.contiguous()), dim=1).flatten(0, 1)[index]
