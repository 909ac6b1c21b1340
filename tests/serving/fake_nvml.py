"""A stand-in for ``pynvml`` where no NVIDIA GPU exists: the functions the live meter calls, with
honest values. Each line of the file named by ``FAKE_NVML_ENERGY_FILE`` is one GPU's total
energy counter in millijoules (what ``nvmlDeviceGetTotalEnergyConsumption`` returns); the test
raises them as a GPU would. A server started with ``SERVING_NVML_MODULE=fake_nvml`` and this
folder on ``PYTHONPATH`` reads it in place of ``pynvml``."""

from __future__ import annotations

import os
from pathlib import Path


class NVMLError(Exception):
    """What pynvml raises."""


def _counters() -> list[int]:
    path = os.environ.get("FAKE_NVML_ENERGY_FILE")
    if not path:
        raise NVMLError("Driver Not Loaded")
    return [int(line) for line in Path(path).read_text().split()]


def nvmlInit() -> None:
    _counters()


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_counters())


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    return _counters()[handle]


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    raise NVMLError("Not Supported")
