"""What machine and software a measurement ran on (stored with every run)."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

from workbench.measure.backends import cuda_available, logical_cores

_LIBRARIES = (
    "inference-workbench",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "transformers",
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform's best guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """CPU model, cores, memory, GPU, OS, Python and library versions."""
    import psutil

    env: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": logical_cores(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }
    if cuda_available():
        import torch

        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    for lib in _LIBRARIES:
        try:
            env[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return env
