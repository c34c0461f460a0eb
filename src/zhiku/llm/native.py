"""llama.cpp on CPUs that advertise AMX but fault on it.

A llama.cpp built with -march=native on a CPU whose flags list AMX (Sapphire Rapids and later) places
quantized weights in its AMX buffer type, and every prompt of more than a few tokens then runs AMX
tile code. On the Firecracker VMs zhiku is built on, that code dies with a general protection fault
although the kernel grants the AMX permission, so no check short of running it tells. Loading models
without the "extra" buffer types (AMX, and the CPU repack layouts with it) keeps to the plain CPU
kernels, which work everywhere; it is done only where the CPU advertises AMX.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


@functools.cache
def cpu_advertises_amx() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_tile" in line for line in text.splitlines())


def model_params(base: Any) -> Any:
    """`base` (llama_model_params) with the extra buffer types off where AMX would be used."""
    if cpu_advertises_amx() and hasattr(base, "use_extra_bufts"):
        base.use_extra_bufts = False
    return base


@functools.cache
def patch_llama_defaults() -> None:
    """Make llama_cpp.Llama (which takes its model params from llama_model_default_params) load the same way."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def safe_default() -> Any:
        return model_params(default())

    lib.llama_model_default_params = safe_default
