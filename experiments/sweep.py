"""Start a wandb sweep and an agent: ``python -m experiments.sweep NAME [--count N]``.

``NAME`` is a file under ``experiments/configs/sweeps/``. Its ``command`` runs ``experiments.train``
with ``${args_no_hyphens}``, so the sampled values arrive as ``key=value`` overrides and are checked
against the experiment's schemas like any command-line override.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from experiments.config import CONFIG_DIR

SWEEP_DIR = CONFIG_DIR / "sweeps"


def load_sweep(name: str) -> dict:
    path = SWEEP_DIR / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in SWEEP_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no sweep {name!r} ({path}); available: {options}")
    sweep = OmegaConf.to_container(OmegaConf.load(path))
    if "${args_no_hyphens}" not in sweep.get("command", []):
        raise ValueError(f"{path}: command must pass ${{args_no_hyphens}} to experiments.train")
    return sweep


def sweep_experiment(sweep: dict) -> str:
    command = sweep["command"]
    return command[command.index("experiments.train") + 1]


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--count", type=int, default=10, help="runs this agent executes")
    parser.add_argument("--project", default="portrait-gans")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.name)
    except (FileNotFoundError, ValueError) as err:
        print(f"sweep: {err}", file=sys.stderr)
        return 2
    if not wandb_logged_in() or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        print(
            "sweep: wandb sweeps need the wandb server: run `wandb login` (or set WANDB_API_KEY) and unset"
            " WANDB_MODE=offline/disabled. Single runs work offline: `python -m experiments.train "
            f"{sweep_experiment(sweep)}`.",
            file=sys.stderr,
        )
        return 2
    import wandb

    sweep_id = wandb.sweep(sweep, project=args.project)
    wandb_cli = shutil.which("wandb") or str(Path(sys.executable).parent / "wandb")
    return subprocess.call([wandb_cli, "agent", "--count", str(args.count), f"{args.project}/{sweep_id}"])


if __name__ == "__main__":
    sys.exit(main())
