"""``python -m experiments.editor [--checkpoint [MODEL=]PATH ...] [--port N] [--device D] [--out-dir DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from experiments.editor import TABS, available_tabs, build_app, launch, offline_environment


def parse_checkpoints(values: list[str], tabs: list[str]) -> dict[str, str]:
    """``MODEL=PATH`` entries; a bare ``PATH`` belongs to the only tab, or to the tab named in its run folder."""
    checkpoints = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and (name in tabs or name in TABS):
            checkpoints[name] = path
            continue
        owners = [t for t in tabs if f"{t}_" in value or len(tabs) == 1]
        if len(owners) != 1:
            raise ValueError(
                f"--checkpoint {value}: say which tab it is for, as MODEL=PATH with MODEL one of {', '.join(tabs)}"
            )
        checkpoints[owners[0]] = value
    return checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.editor", description=__doc__)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[MODEL=]PATH",
                        help="a tab checkpoint (repeatable); default: newest run of make train-<model>")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="serve on this address (default: localhost only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/editor"), help="where Save writes")
    args = parser.parse_args(argv)
    offline_environment()
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        print("editor: needs the editor extra (gradio); run `make install`", file=sys.stderr)
        return 2
    try:
        tabs = list(available_tabs())
        app = build_app(parse_checkpoints(args.checkpoint, tabs), args.device, args.out_dir)
    except ValueError as err:
        print(f"editor: {err}", file=sys.stderr)
        return 2
    print(f"editor: tabs {', '.join(tabs)}; open http://{args.host}:{args.port}")
    launch(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
