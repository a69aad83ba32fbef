"""Pieces every training-step benchmark (``experiments/bench_<paper>.py``) shares: per-part wall times read by
wrapping a module's own helpers, a timed path (one configuration of a module trained a few batches per Lightning
fit, interleaved with the others), the GPU's peak bf16 rate for MFU, and the side-by-side table."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from experiments.hardware import (  # noqa: F401 (cpu_* re-exported)
    cpu_bf16_wanted,
    cpu_description,
    cpu_has_bf16,
    onednn_fp32_math,
)

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass
class Result:
    path: str
    images_per_s: float
    step_ms: float
    parts_ms: dict[str, float] = field(default_factory=dict)
    mfu: float | None = None


def peak_tflops() -> float | None:
    """Dense bf16 peak of the current GPU (None on CPU or an unlisted GPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


class PartTimer(pl.Callback):
    """Wall time of each training batch and of the wrapped callables inside it (synchronised on CUDA), and the
    same in this process's CPU time (``cpu_times``: under load from other processes a one-thread run's CPU
    time is inflated far less than its wall time).

    ``parts`` names the timed parts in table order; ``wrap(owner, attribute, part)`` replaces
    ``owner.attribute`` by a timed version. Whatever the wrapped parts do not cover is ``rest``.
    """

    def __init__(self, parts: Sequence[str], cuda: bool) -> None:
        self.parts, self.cuda = tuple(parts), cuda
        self.times: dict[str, list[float]] = defaultdict(list)
        self.cpu_times: dict[str, list[float]] = defaultdict(list)
        self._start, self._inside = (0.0, 0.0), defaultdict(lambda: [0.0, 0.0])

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def wrap(self, owner: Any, attribute: str, part: str) -> None:
        function: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            out = function(*args, **kwargs)
            self._sync()
            inside = self._inside[part]
            inside[0] += time.perf_counter() - start
            inside[1] += time.process_time() - start_cpu
            return out

        setattr(owner, attribute, timed)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, index: int) -> None:
        self._inside.clear()
        self._sync()
        self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self._sync()
        totals = (time.perf_counter() - self._start[0], time.process_time() - self._start[1])
        for clock, (times, total) in enumerate(zip((self.times, self.cpu_times), totals, strict=True)):
            for part in self.parts:
                times[part].append(self._inside[part][clock])
            times["rest"].append(total - sum(self._inside[p][clock] for p in self.parts))
            times["step"].append(total)


@dataclass(frozen=True)
class PathSpec:
    """One timed configuration: its label, the module's speed options, the Trainer precision and oneDNN's fp32
    math mode on a CPU (``experiments.hardware.onednn_fp32_math``: ``ieee`` exact, ``bf16`` bf16 products)."""

    label: str
    options: tuple[tuple[str, bool], ...] = ()
    precision: str = "32-true"
    fp32_math: str = "ieee"


class TimedPath:
    """One path of a benchmark: ``model`` (built for ``spec``'s options) with a :class:`PartTimer` around the
    helpers named in ``wrapped`` (``(owner, attribute, part)``), trained on ``loader(batches)`` a few batches per
    Lightning fit. :func:`run_interleaved` alternates the fits of all paths, so load from other processes falls
    on every path alike; each fit's first batch is warm-up and left out of the medians (``kept``)."""

    def __init__(
        self,
        spec: PathSpec,
        model: pl.LightningModule,
        parts: Sequence[str],
        wrapped: Sequence[tuple[Any, str, str]],
        loader: Callable[[int], DataLoader],
        cuda: bool,
    ) -> None:
        self.spec, self.model, self.loader, self.cuda = spec, model, loader, cuda
        self.timer = PartTimer(parts, cuda)
        for owner, attribute, part in wrapped:
            self.timer.wrap(owner, attribute, part)
        self.kept: list[int] = []

    @property
    def name(self) -> str:
        return self.spec.label

    def fit(self, batches: int, callbacks: list[pl.Callback]) -> None:
        trainer = pl.Trainer(
            accelerator="gpu" if self.cuda else "cpu", devices=1, precision=self.spec.precision,
            max_steps=-1, max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=callbacks, num_sanity_val_steps=0, limit_val_batches=0,
        )  # fmt: skip
        with onednn_fp32_math(self.spec.fp32_math):
            trainer.fit(self.model, self.loader(batches))

    def run(self, batches: int) -> None:
        """One timed fit of ``batches`` batches; all but its first count."""
        first = len(self.timer.times["step"])
        self.fit(batches, [self.timer])
        self.kept += list(range(first + 1, len(self.timer.times["step"])))

    def times(self, cpu: bool = False) -> dict[str, list[float]]:
        """Seconds per batch per part (and ``rest``, ``step``): wall, or this process's CPU time (``cpu``)."""
        return self.timer.cpu_times if cpu else self.timer.times

    def median_ms(self, key: str, cpu: bool = False) -> float:
        """Median over the kept batches of one part (or ``step``), in ms."""
        values = self.times(cpu)[key]
        return 1000 * statistics.median(values[i] for i in self.kept)


def run_interleaved(paths: Sequence[TimedPath], rounds: int, chunk: int) -> None:
    """``rounds`` rounds, each one fit of ``chunk`` timed batches (after one warm-up) per path in turn."""
    for _ in range(rounds):
        for path in paths:
            path.run(chunk + 1)


def print_comparison(base: Result, *faster: Result, parts: Sequence[str], clock: str = "wall") -> None:
    """Median ms per part and per step and img/s (and MFU) of ``base`` and every ``faster`` path, then each
    faster path's time ratios to ``base`` per part and per step, and its speed-up; ``clock`` names the times."""
    columns = (*parts, "rest")
    width = max(len(r.path) for r in (base, *faster)) + len("ratio ")
    print(f"  {'median ' + clock + ' ms':<{width}} " + " ".join(f"{p:>10}" for p in (*columns, "step")) + "      img/s")
    for r in (base, *faster):
        cells = " ".join(f"{r.parts_ms[p]:10.1f}" for p in columns) + f" {r.step_ms:10.1f}"
        mfu = f"  MFU {100 * r.mfu:.1f}%" if r.mfu is not None else ""
        print(f"  {r.path:<{width}} {cells} {r.images_per_s:10.2f}{mfu}")
    print(f"  {clock} time ratio to {base.path}:")
    for fast in faster:
        ratios = " ".join(f"{fast.parts_ms[p] / base.parts_ms[p]:10.2f}" for p in columns)
        print(f"  {'ratio ' + fast.path:<{width}} {ratios} {fast.step_ms / base.step_ms:10.2f}"
              f"   speed-up {fast.images_per_s / base.images_per_s:.2f}x")  # fmt: skip
