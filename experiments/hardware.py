"""What the CPU can do, for the runner (bf16 fallback, fp32 math mode) and the benches (which paths to time, the
device line)."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

import torch


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX; otherwise bf16 would be emulated)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


FP32_MATH_MODES = ("ieee", "bf16")


@contextlib.contextmanager
def onednn_fp32_math(mode: str) -> Iterator[None]:
    """fp32 convolutions and matrix products on the CPU in oneDNN's math ``mode``, the previous mode restored after.

    ``ieee``: exact fp32 arithmetic (torch's default). ``bf16``: tensors, storage and accumulation stay fp32, but
    each convolution and matrix product rounds its inputs to bf16 inside the kernel and runs on the bf16 units
    (AMX / AVX512-BF16), forward and backward: the CPU counterpart of TF32 on a GPU. Unlike bf16 autocast no
    activation is stored in bf16. oneDNN uses the fp32 kernels where the CPU has no native bf16."""
    if mode not in FP32_MATH_MODES:
        raise ValueError(f"fp32 math mode {mode!r}: expected one of {', '.join(FP32_MATH_MODES)}")
    backends = (torch.backends.mkldnn.conv, torch.backends.mkldnn.matmul)
    before = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = mode
    try:
        yield
    finally:
        for backend, previous in zip(backends, before):
            backend.fp32_precision = previous


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
