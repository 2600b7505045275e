"""Which numeric precision a run uses, decided without importing torch (`auto` looks at the CPU's features)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from autolabel.core.errors import UsageError

CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")
# The weights' dtype as run metadata and cache keys write it (torch's names; int8 is ONNX Runtime's).
NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_HINT = "pip install 'autolabel[int8]'"


def native_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """True when this CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX-BF16).

    Without them torch emulates bf16 and it is slower than fp32, so `auto` keeps fp32. Linux only (the
    flags come from /proc/cpuinfo); elsewhere False. AUTOLABEL_CPU_BF16=0 or 1 overrides the detection
    (a VM that hides the flags, or a test suite that wants fp32's exact numbers on every machine).
    """
    forced = os.environ.get("AUTOLABEL_CPU_BF16", "").strip().lower()
    if forced in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        return forced in ("1", "true", "yes", "on")
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _NATIVE_BF16_FLAGS)
    except OSError:
        pass
    return False


def resolve(precision: str, device_type: str) -> str:
    """`auto` → fp16 on CUDA, bf16 on a CPU with native bf16, fp32 elsewhere; any other choice as given."""
    if precision not in CHOICES:
        raise UsageError(f"--precision: unknown '{precision}'; use {', '.join(CHOICES)}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "fp16"
    if device_type == "cpu" and native_bf16():
        return "bf16"
    return "fp32"


def explain(requested: str, chosen: str, device_type: str = "cpu") -> str:
    """One phrase for the run summary and metadata: what was asked, what runs, and why."""
    if requested != "auto":
        return f"{chosen} (asked for)"
    if chosen == "bf16":
        return "bf16 (auto: this CPU has native bf16)"
    if chosen == "fp16":
        return "fp16 (auto: CUDA)"
    return "fp32 (auto: no native bf16 on this CPU)" if device_type == "cpu" else f"fp32 (auto: {device_type})"


def require_runtime(precision: str) -> None:
    """`--precision int8` runs on ONNX Runtime, an optional extra: say how to install it before anything loads."""
    if precision == "int8" and importlib.util.find_spec("onnxruntime") is None:
        raise UsageError(f"--precision int8 needs ONNX Runtime, which is not installed: {INT8_HINT}")


def light_device(device: str) -> str | None:
    """The device `auto`/`cpu` resolves to, when that is knowable without importing torch, else None.

    `auto` is the CPU when the installed torch has no CUDA/ROCm libraries, or the machine no GPU driver, and
    this is not a Mac (MPS); then a run the cache answers never needs torch at all.
    """
    if device == "cpu":
        return "cpu"
    if device != "auto" or sys.platform != "linux":
        return None
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    gpu_build = any(lib.glob("libtorch_cuda*")) or any(lib.glob("libtorch_hip*"))
    driver = any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd"))
    return None if gpu_build and driver else "cpu"
