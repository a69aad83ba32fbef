"""Compare finished runs: ``python -m experiments.compare RUN_DIR [RUN_DIR ...] [--out DIR]``.

Each run directory is what ``experiments.train`` writes (``runs/<experiment>/<run>/``); its metrics are
read from the CSV log that always sits beside the wandb one (wandb's offline ``.wandb`` files have no
Python reader). A wandb offline-run folder or a ``metrics.csv`` path is accepted too and traced back to
its run. Writes ``curves.png`` (one panel per metric, runs overlaid) and ``summary.md`` (final and best
value per run and metric; "best" is the minimum for losses, FID, KID, MRE and errors, else the maximum).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOWER_IS_BETTER = ("loss", "fid", "kid", "mre", "mse", "error", "lpips")


@dataclass
class RunMetrics:
    name: str
    path: Path
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def lower_is_better(metric: str) -> bool:
    return any(token in metric.lower() for token in LOWER_IS_BETTER)


def find_metrics_csv(path: Path) -> Path:
    """The metrics.csv of a run directory (or of the run that holds a wandb folder / the file itself)."""
    path = Path(path)
    if path.is_file() and path.name == "metrics.csv":
        return path
    for candidate in (path, *path.parents[:3]):
        hits = sorted(candidate.glob("csv/**/metrics.csv")) + sorted(candidate.glob("metrics.csv"))
        if hits:
            return hits[-1]
    raise FileNotFoundError(
        f"{path}: no metrics.csv found (expected <run>/csv/metrics.csv as written by experiments.train)"
    )


def read_run(path: Path) -> RunMetrics:
    metrics_csv = find_metrics_csv(path)
    run_dir = metrics_csv.parent.parent if metrics_csv.parent.name == "csv" else metrics_csv.parent
    run = RunMetrics(name=f"{run_dir.parent.name}/{run_dir.name}", path=run_dir)
    with open(metrics_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number):
                    run.series.setdefault(key, []).append((step, number))
    if not run.series:
        raise ValueError(f"{metrics_csv} holds no numeric metrics yet (is the run finished?)")
    return run


def summarize(runs: list[RunMetrics]) -> str:
    metrics = sorted({m for r in runs for m in r.series})
    lines = ["| metric | " + " | ".join(r.name for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for metric in metrics:
        cells = []
        for run in runs:
            values = [v for _, v in run.series.get(metric, [])]
            if not values:
                cells.append("–")
                continue
            best = min(values) if lower_is_better(metric) else max(values)
            cells.append(f"{values[-1]:.4g} (best {best:.4g})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: list[RunMetrics], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({m for r in runs for m in r.series})
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for run in runs:
            points = run.series.get(metric)
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=run.name, marker="." if len(points) < 30 else None)
        ax.set_title(metric + (" (lower is better)" if lower_is_better(metric) else ""), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = parser.parse_args(argv)
    try:
        runs = [read_run(p) for p in args.runs]
    except (FileNotFoundError, ValueError) as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "curves.png")
    table = summarize(runs)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'curves.png'} and {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
