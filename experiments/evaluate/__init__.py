"""Evaluate a trained model with its paper's protocols on the test split: ``python -m experiments.evaluate <paper>``.

One protocol module per paper lives beside this file (``experiments/evaluate/<paper>.py``) and exposes

- ``HELP``: one line shown by ``python -m experiments.evaluate --help``;
- ``add_arguments(parser)``: its command-line options;
- ``run(args) -> int``: runs the protocols, prints (and with ``--out`` / ``--json`` writes) the report with the
  paper's numbers beside ours, and returns the exit status.

Registering a paper is one entry in ``PROTOCOLS`` (command name -> module). What the protocols share (the
judges with their "needs <file> (sha256 …)" cells, the test-split loader, scoring, the report) is in
:mod:`experiments.evaluate.common`. Bad input (a missing checkpoint, a parser with the wrong classes) is
reported as one ``evaluate: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

PROTOCOLS: dict[str, str] = {
    "maskgan": "experiments.evaluate.maskgan",
    "maggan": "experiments.evaluate.maggan",
    "mask-guided": "experiments.evaluate.mask_guided",
    "portraitgan": "experiments.evaluate.portraitgan",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(PROTOCOLS[name])


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__,
                                     formatter_class=formatter)  # fmt: skip
    sub = parser.add_subparsers(dest="paper", required=True, metavar="PAPER")
    for name in PROTOCOLS:
        module = _module(name)
        child = sub.add_parser(name, help=module.HELP, description=module.__doc__, formatter_class=formatter)
        module.add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_module(args.paper).run(args))
    except (FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"evaluate: {message}", file=sys.stderr)
        return 2
