"""How fast is the synthetic face world, next to reading the same faces from disk?

``python -m datamodules.bench_data`` (``make bench-data``) renders N faces on ONE thread and then, as a
baseline measured in the same run, decodes the same faces from files written to a temporary folder: a JPEG
photo (quality 95, as the writers use) plus a PNG label map, which is what a real dataset costs per sample.
The files are freshly written, so the read timing is decode cost with a warm page cache, the lower bound of a
real read. It prints both speeds, their ratio and whether rendering meets the target (200 faces/s at 128² on
one core). The target is judged on the process's CPU time, which does not depend on how busy the machine is;
the wall-clock rate is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from datamodules.synthetic import SyntheticFaceWorld

TARGET_FACES_PER_SECOND = 200.0


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds of one timed phase over ``count`` faces."""

    count: int
    wall: float
    cpu: float  # CPU time of this process: one thread, so one core's work regardless of machine load

    @property
    def rate(self) -> float:
        return self.count / max(self.wall, 1e-9)

    @property
    def cpu_rate(self) -> float:
        return self.count / max(self.cpu, 1e-9)


@dataclass(frozen=True)
class BenchResult:
    image_size: int
    render: Timing
    read: Timing


class _Stopwatch:
    def __enter__(self) -> _Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu


def single_thread() -> None:
    """Pin OpenCV (and torch, when it is installed and already imported elsewhere) to one thread."""
    cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _write_faces(folder: Path, faces: Sequence) -> None:
    for i, face in enumerate(faces):
        bgr = cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{i}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(folder / f"{i}.png"), face.label)


def _read_faces(folder: Path, count: int) -> None:
    for i in range(count):
        image = cv2.imread(str(folder / f"{i}.jpg"), cv2.IMREAD_COLOR)
        label = cv2.imread(str(folder / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        if image is None or label is None:
            raise OSError(f"could not decode face {i} in {folder}")
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def bench(num_faces: int = 300, image_size: int = 128, seed: int = 0) -> BenchResult:
    """Time rendering ``num_faces`` faces of a fresh world, then decoding the same faces from disk."""
    if num_faces < 1:
        raise ValueError(f"num_faces must be >= 1, got {num_faces}")
    single_thread()
    world = SyntheticFaceWorld(seed)
    with _Stopwatch() as render:
        faces = [world.face(i, image_size) for i in range(num_faces)]
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        _write_faces(Path(tmp), faces)
        with _Stopwatch() as read:
            _read_faces(Path(tmp), num_faces)
    return BenchResult(image_size, Timing(num_faces, render.wall, render.cpu), Timing(num_faces, read.wall, read.cpu))


def _line(name: str, timing: Timing) -> str:
    return (f"  {name:<6}: {timing.cpu_rate:7.1f} faces/s per core "
            f"(CPU {timing.cpu:.2f} s; wall clock {timing.rate:.1f} faces/s)")  # fmt: skip


def report(result: BenchResult, target: float = TARGET_FACES_PER_SECOND) -> str:
    """Human-readable summary; the target is judged on CPU time (faces per second of one core)."""
    render, read = result.render, result.read
    met = render.cpu_rate >= target
    return "\n".join([
        f"synthetic face world, {result.image_size}x{result.image_size}, 1 thread, {render.count} faces "
        f"(machine has {os.cpu_count()} cores)",
        _line("render", render),
        _line("read", read) + "  <- decode JPEG q95 + label PNG, warm page cache",
        f"  render/read speed ratio: {render.cpu_rate / read.cpu_rate:.2f}",
        f"  target {target:.0f} faces/s on one core: {'met' if met else 'NOT met'}",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-faces", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=TARGET_FACES_PER_SECOND)
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the target is missed")
    args = parser.parse_args(argv)
    result = bench(args.num_faces, args.image_size, args.seed)
    print(report(result, args.target))
    return 1 if args.strict and result.render.cpu_rate < args.target else 0


if __name__ == "__main__":
    raise SystemExit(main())
