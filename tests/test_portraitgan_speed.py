"""bench_portraitgan's paths (names, options, precision; bf16 on a CPU only where wanted) and one tiny run that
prints the device and every path's ratio to eager in wall and CPU time."""

from __future__ import annotations

import pytest

from experiments import bench_portraitgan


def test_cpu_paths_add_channels_last_and_bf16_only_where_wanted(monkeypatch):
    monkeypatch.setattr(bench_portraitgan, "cpu_bf16_wanted", lambda choice: choice == "on")
    paths = bench_portraitgan.paths_for("cpu", "on")
    assert [(p.label, dict(p.options), p.precision) for p in paths] == [
        ("eager fp32 (default)", {}, "32-true"),
        ("batch_d_calls fp32", {"batch_d_calls": True}, "32-true"),
        ("batch_d_calls + channels_last fp32", {"batch_d_calls": True, "channels_last": True}, "32-true"),
        ("batch_d_calls + channels_last + bf16", {"batch_d_calls": True, "channels_last": True}, "bf16-mixed"),
    ]  # fmt: skip
    assert [p.precision for p in bench_portraitgan.paths_for("cpu", "off")] == ["32-true"] * 3
    gpu = bench_portraitgan.paths_for("cuda", "off")
    assert [(p.label, p.precision) for p in gpu] == [
        ("eager fp32 (default)", "32-true"), ("batch_d_calls + bf16 + channels_last", "bf16-mixed"),
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore")
def test_a_tiny_run_prints_the_device_and_each_ratio_in_wall_and_cpu_time(capsys, monkeypatch):
    monkeypatch.setattr(bench_portraitgan, "cpu_bf16_wanted", lambda choice: False)  # bf16 "emulated" here
    argv = "--size 16 --batch 2 --ngf 4 --n-down 2 --n-blocks 1 --ndf 4 --rounds 1 --chunk 1 --cpu-bf16 auto"
    assert bench_portraitgan.main(argv.split()) == 0
    out = capsys.readouterr().out
    assert "  device: " in out and "bf16 path skipped: oneDNN bf16 is emulated" in out
    for clock in ("wall", "CPU (1 threads summed)"):  # tests run one torch thread (conftest)
        assert f"{clock} time ratio to eager fp32 (default):" in out
    for label in ("batch_d_calls fp32", "batch_d_calls + channels_last fp32"):
        assert out.count(f"ratio {label} ") == 2  # wall and CPU time
