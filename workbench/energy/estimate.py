"""The estimate: CPU and RAM energy from a TDP, this process's CPU time and its resident memory.

Used where no energy counter exists (a cloud VM without powercap) and as the fallback of every
measured meter. Part of ``workbench.energy.base``; import it from there.

Model (every figure labelled ``"estimated"``):

- ``cpu = tdp_w x cpu_s / logical_cores``: the full-load power of this machine's logical cores,
  scaled by this process's utilisation, ``cpu_s / (duration_s x logical_cores)``, where ``cpu_s``
  is the user + system CPU time of this process (all threads) and its child processes in the
  window. ``tdp_w`` is a user setting, else ``cpu_tdp()``: the shipped table
  ``workbench/data/cpu_tdp.csv`` (TDP and threads per model, from AMD and Intel specifications),
  as TDP per thread x logical cores visible here, else 4 W per logical core (CodeCarbon's default).
- ``ram = ram_w_per_gb x resident GB x duration_s`` with 0.3725 W per GB (Green Algorithms) of this
  process's resident memory (RSS, children included, mean of the window's two edges).

Both are this process's share; other processes' load does not count.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import platform
import re
from importlib import resources
from pathlib import Path

import psutil

from workbench.checks import number
from workbench.energy.base import EnergyReading, Meter
from workbench.provenance import ESTIMATED
from workbench.units import DRAM_W_PER_GB

RAM_W_PER_GB = DRAM_W_PER_GB
"""RAM power per GB resident: Green Algorithms' 0.3725 W/GB, the lifecycle model's figure too."""
DEFAULT_W_PER_LOGICAL_CORE = 4.0
"""Full-load CPU power per logical core when the CPU model is not in the table (CodeCarbon's
``DEFAULT_POWER_PER_CORE``)."""
GIB = 1024**3


def detect_cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@functools.cache
def _tdp_table() -> list[tuple[str, float, int, str]]:
    text = resources.files("workbench").joinpath("data/cpu_tdp.csv").read_text("utf-8")
    rows = [
        (r["model_substring"], float(r["tdp_w"]), int(r["threads"]), r["source"])
        for r in csv.DictReader(text.splitlines())
    ]
    return sorted(rows, key=lambda r: -len(r[0]))  # longest (most specific) match first


def _normalise_model(model: str) -> str:
    model = re.sub(r"\((r|tm)\)", " ", model.lower())
    return " ".join(model.split())


def cpu_tdp(cpu_model: str | None = None, logical_cores: int | None = None) -> tuple[float, str]:
    """Full-load CPU power of this machine's logical cores, in watts, and how it was found.

    The shipped table (``workbench/data/cpu_tdp.csv``) gives each model's TDP and thread count;
    the result is the TDP per thread times the logical cores visible here, so a VM with 8 vCPUs
    of a 128-thread package gets 8/128 of its TDP. A model not in the table gets
    ``DEFAULT_W_PER_LOGICAL_CORE`` (4 W) per logical core.

    Example
    -------
    >>> cpu_tdp("AMD EPYC 7763 64-Core Processor", logical_cores=8)[0]
    17.5
    """
    model = cpu_model or detect_cpu_model()
    cores = logical_cores or psutil.cpu_count() or 1
    name = _normalise_model(model)
    for substring, tdp_w, threads, source in _tdp_table():
        pattern = rf"(?<![a-z0-9]){re.escape(substring.lower())}(?![a-z0-9+])"
        if re.search(pattern, name):
            watts = tdp_w / threads * cores
            return watts, (
                f"TDP {tdp_w:g} W of {substring} ({source}) / {threads} threads x {cores} "
                f"logical cores = {watts:g} W"
            )
    watts = DEFAULT_W_PER_LOGICAL_CORE * cores
    return watts, (
        f"CPU model {model!r} is not in the TDP table: default {DEFAULT_W_PER_LOGICAL_CORE:g} W "
        f"per logical core x {cores} = {watts:g} W; pass tdp_w to set it"
    )


def _process_tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return [process]


def _tree_cpu_s_and_rss(process: psutil.Process) -> tuple[float, int]:
    """CPU seconds (user + system, all threads, children included) and resident bytes."""
    cpu_s, rss = 0.0, 0
    for proc in _process_tree(process):
        try:
            times = proc.cpu_times()
            rss += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu_s += times.user + times.system + times.children_user + times.children_system
    return cpu_s, rss


class EstimateMeter(Meter):
    """CPU and RAM energy estimated from a TDP, this process's CPU time, and its memory.

    ``cpu = tdp_w x (CPU seconds of this process and its children in the window) / logical
    cores``, i.e. the TDP scaled by the process's utilisation of the machine; ``ram = ram_w_per_gb
    x resident GB (mean of the window's two edges) x duration``. Both are this process's share,
    not the machine's: other processes' load does not count. Always labelled ``"estimated"``.

    Parameters
    ----------
    tdp_w : full-load power of this machine's logical cores; ``None`` looks it up with
        ``cpu_tdp(cpu_model)``.
    cpu_model : model name for the lookup; ``None`` detects it.
    ram_w_per_gb : RAM watts per GB (2**30 bytes) resident.
    pid : the process to follow; ``None`` is this one.

    Example
    -------
    >>> meter = EstimateMeter(tdp_w=8.0)
    >>> with meter.window("w") as w:
    ...     _ = sum(range(100_000))
    >>> w.reading.method
    'estimated'
    """

    name = "estimate"

    def __init__(
        self,
        tdp_w: float | None = None,
        cpu_model: str | None = None,
        ram_w_per_gb: float = RAM_W_PER_GB,
        *,
        pid: int | None = None,
    ) -> None:
        super().__init__()
        self.logical_cores = psutil.cpu_count() or 1
        if tdp_w is None:
            self.tdp_w, self.tdp_source = cpu_tdp(cpu_model, self.logical_cores)
        else:
            fix = "pass the CPU's full-load watts, or None to look it up by CPU model"
            self.tdp_w = number("tdp_w", tdp_w, minimum=0, open_low=True, fix=fix)
            self.tdp_source = f"TDP {tdp_w:g} W (user setting tdp_w)"
        self.ram_w_per_gb = number("ram_w_per_gb", ram_w_per_gb, minimum=0,
                                   fix=f"pass watts per GB (default {RAM_W_PER_GB})")  # fmt: skip
        self._process = psutil.Process(pid)

    def components(self) -> list[str]:
        return ["cpu", "ram"]

    def _begin(self, name: str) -> tuple[float, int]:
        return _tree_cpu_s_and_rss(self._process)

    def _end(self, name: str, token: tuple[float, int], duration_s: float) -> EnergyReading:
        cpu_s1, rss1 = _tree_cpu_s_and_rss(self._process)
        cpu_s0, rss0 = token
        cpu_s = max(cpu_s1 - cpu_s0, 0.0)
        rss_gb = (rss0 + rss1) / 2 / GIB
        utilisation = cpu_s / (duration_s * self.logical_cores) if duration_s > 0 else 0.0
        energy = {
            "cpu": self.tdp_w * cpu_s / self.logical_cores,
            "ram": self.ram_w_per_gb * rss_gb * duration_s,
        }
        notes = [
            f"cpu: {self.tdp_source}, x this process's CPU utilisation {utilisation:.1%} "
            f"({cpu_s:.3f} CPU-s in {duration_s:.3f} s on {self.logical_cores} logical cores)",
            f"ram: {self.ram_w_per_gb:g} W/GB x {rss_gb:.3f} GB resident in this process",
        ]
        return EnergyReading.from_components(
            duration_s, energy, dict.fromkeys(energy, ESTIMATED), self.name, notes=notes
        )
