"""Edit a face with a trained model: ``python -m experiments.edit <model> ...``.

One module per model lives beside this file (``experiments/edit/<model>.py``) and exposes

- ``HELP``: one line shown by ``python -m experiments.edit --help``;
- ``add_arguments(parser)``: its command-line options;
- ``run(args)``: performs the edit and returns the written path (or paths).

Registering a model is one entry in ``MODELS`` (command name -> module). Bad input (a missing file, a mask that is
not a label or palette PNG, a checkpoint of another model) is reported as one ``edit: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

MODELS: dict[str, str] = {
    "maskgan": "experiments.edit.maskgan",
    "maggan": "experiments.edit.maggan",
    "mask-guided": "experiments.edit.mask_guided",
    "portraitgan": "experiments.edit.portraitgan",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(MODELS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.edit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in MODELS:
        module = _module(name)
        child = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        module.add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = _module(args.model).run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"edit: {err}", file=sys.stderr)
        return 2
    for path in written if isinstance(written, (list, tuple)) else [written]:
        print(f"wrote {Path(path)}")
    return 0


def load_maskgan(checkpoint, device: str = "cpu"):
    """Kept for callers of the former single-file CLI; see :func:`experiments.edit.maskgan.load_maskgan`."""
    from experiments.edit.maskgan import load_maskgan as load

    return load(checkpoint, device)
