"""What the CPU can do, for the runner (bf16 fallback) and the benches (which paths to time, the device line)."""

from __future__ import annotations

import contextlib
import platform

import torch


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX; otherwise bf16 would be emulated)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16_wanted(choice: str) -> bool:
    """A bench's ``--cpu-bf16 auto|on|off``: whether to time a bf16 path on this CPU (auto: where it is native)."""
    return choice == "on" or (choice == "auto" and cpu_has_bf16())


def cpu_description() -> str:
    """``/proc/cpuinfo``'s model name with the units that decide the conv kernels here (AVX-512, AMX), e.g.
    "Intel(R) Xeon(R) Processor (AVX-512, AMX-BF16; oneDNN bf16 native)"."""
    name, flags = platform.processor() or "unknown CPU", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    units = [unit for flag, unit in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"))
             if flag in flags]  # fmt: skip
    return f"{name} ({', '.join(units) or 'no AVX-512'}; oneDNN bf16 {'native' if cpu_has_bf16() else 'emulated'})"
