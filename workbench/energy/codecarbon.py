"""CodeCarbon: its figures for a window through ``OfflineEmissionsTracker``, and its CSV format.

Optional (extra ``energy``); CodeCarbon is imported only when a ``CodeCarbonMeter`` is made.
Only the offline tracker is used (the online one looks up the location over the network and
silently assumes Canada when it cannot). Part of ``workbench.energy.base``; import it from there.

Where CodeCarbon and ``EstimateMeter`` differ (same window, same TDP): the CPU figures agree
(both are ``tdp x process CPU time / logical cores`` in CodeCarbon's process mode), the RAM
figures do not: CodeCarbon charges RAM by DIMMs it guesses from the process's memory, at least
two 5 W DIMMs (10 W) on x86, whatever the process uses; ``EstimateMeter`` charges 0.375 W per GB
resident. See ``docs/energy.md``.
"""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import logging
import platform
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from workbench.checks import number
from workbench.energy.base import EnergyReading, Meter
from workbench.energy.carbon import co2e_g, lookup
from workbench.energy.estimate import GIB, detect_cpu_model
from workbench.errors import MissingExtraError
from workbench.provenance import ESTIMATED, MEASURED
from workbench.units import J_PER_WH

CODECARBON_CSV_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)
"""Columns of CodeCarbon's ``emissions.csv`` (its ``EmissionsData`` fields, version 3.x)."""

_CC_MEASURED_CPU_MODES = {"intel_rapl", "windows_emi", "intel_power_gadget", "apple_powermetrics"}


def _import_codecarbon() -> Any:
    try:
        return importlib.import_module("codecarbon")
    except ImportError:
        raise MissingExtraError("energy", "codecarbon", "CodeCarbonMeter") from None


class CodeCarbonMeter(Meter):
    """CodeCarbon's figures for a window, through ``OfflineEmissionsTracker`` (never online).

    One tracker per window, ``tracking_mode="process"``, no files unless ``output_dir`` is
    given (then CodeCarbon appends its own ``emissions.csv`` there). ``tdp_w`` becomes
    CodeCarbon's ``force_cpu_power``. Without RAPL (and always when ``tdp_w`` is set) CodeCarbon
    estimates the CPU as ``tdp x process CPU% / logical cores``; its RAM figure is always an
    estimate (at least 10 W on x86: two 5 W DIMMs). ``last_emissions_data`` keeps CodeCarbon's
    own record of the last window. The first window in a process costs about 2 s (CodeCarbon
    inspects the CPU); later ones about 0.03 s.

    Example
    -------
    >>> meter = CodeCarbonMeter("FRA", tdp_w=8.0)  # doctest: +SKIP
    """

    name = "codecarbon"

    def __init__(
        self,
        country_iso_code: str,
        tdp_w: float | None = None,
        *,
        output_dir: str | Path | None = None,
        measure_power_secs: float = 1.0,
    ) -> None:
        super().__init__()
        self._codecarbon = _import_codecarbon()
        if tdp_w is not None:
            number("tdp_w", tdp_w, minimum=0, open_low=True, fix="pass watts, or None")
        self.country_iso_code = country_iso_code
        self.tdp_w = tdp_w
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.measure_power_secs = measure_power_secs
        self.last_emissions_data: Any = None

    def _tracker_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "country_iso_code": self.country_iso_code,
            "project_name": "inference-workbench",
            "tracking_mode": "process",
            "measure_power_secs": self.measure_power_secs,
            "log_level": "error",
            "allow_multiple_runs": True,
        }
        if self.tdp_w is not None:
            kwargs["force_cpu_power"] = self.tdp_w
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            kwargs["output_dir"] = str(self.output_dir)
        try:  # CodeCarbon 3.x: output_methods; the older save_to_file is deprecated there
            from codecarbon.output_methods.base_output import OutputMethod
        except ImportError:
            kwargs["save_to_file"] = self.output_dir is not None
        else:
            kwargs["output_methods"] = [OutputMethod.CSV] if self.output_dir is not None else []
        return kwargs

    def components(self) -> list[str]:
        return ["cpu", "ram"]  # and "gpu" where CodeCarbon finds one

    def _begin(self, name: str) -> Any:
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        tracker = self._codecarbon.OfflineEmissionsTracker(**self._tracker_kwargs())
        tracker.start()
        return tracker

    def _end(self, name: str, tracker: Any, duration_s: float) -> EnergyReading:
        tracker.stop()
        data = tracker.final_emissions_data
        self.last_emissions_data = data
        kwh = {"cpu": data.cpu_energy, "ram": data.ram_energy}
        if data.gpu_count or data.gpu_energy:
            kwh["gpu"] = data.gpu_energy
        methods = {"cpu": ESTIMATED, "ram": ESTIMATED, "gpu": MEASURED}
        for hardware in getattr(tracker, "_hardware", []):
            if type(hardware).__name__ == "CPU" and (
                getattr(hardware, "_mode", None) in _CC_MEASURED_CPU_MODES
            ):
                methods["cpu"] = MEASURED
        notes = [
            f"CodeCarbon {data.codecarbon_version} OfflineEmissionsTracker, process mode: "
            f"cpu {data.cpu_power:.2f} W, ram {data.ram_power:.2f} W; {data.emissions * 1000:.4g} "
            f"gCO2e for {data.country_iso_code}"
        ]
        return EnergyReading.from_components(
            data.duration,
            {k: v * J_PER_WH * 1000 for k, v in kwh.items()},
            {k: methods[k] for k in kwh},
            self.name,
            notes=notes,
        )


def _group(component: str) -> str:
    if component.startswith("gpu"):
        return "gpu"
    if component.startswith(("ram", "dram")):
        return "ram"
    return "cpu"


def codecarbon_row(
    reading: EnergyReading,
    *,
    region: str | None = None,
    project_name: str = "inference-workbench",
    run_id: str | None = None,
) -> dict[str, Any]:
    """One row of CodeCarbon's ``emissions.csv`` for any reading (columns in its order).

    Components are grouped into CodeCarbon's cpu / gpu / ram; energies are in kWh, powers in W,
    emissions in kg CO2e at the grid intensity of ``region`` (``workbench.energy.carbon``).

    Example
    -------
    >>> r = EnergyReading.from_components(2.0, {"cpu": 7.2}, {"cpu": "estimated"}, "estimate")
    >>> row = codecarbon_row(r, region="FRA")
    >>> row["cpu_energy"], row["cpu_power"], row["country_iso_code"]
    (2e-06, 3.6, 'FRA')
    """
    grid = lookup(region)
    joules = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
    for component, value in reading.energy_j_by_component.items():
        joules[_group(component)] += value
    seconds = reading.duration_s
    emissions_kg = co2e_g(reading.energy_j, grid.g_co2e_per_kwh) / 1000.0
    try:
        cc_version = importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        cc_version = ""
    row = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "project_name": project_name,
        "run_id": run_id or str(uuid.uuid4()),
        "experiment_id": "",
        "duration": seconds,
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / seconds if seconds > 0 else 0.0,
        **{f"{k}_power": (v / seconds if seconds > 0 else 0.0) for k, v in joules.items()},
        **{f"{k}_energy": v / J_PER_WH / 1000 for k, v in joules.items()},
        "energy_consumed": reading.energy_j / J_PER_WH / 1000,
        "water_consumed": 0.0,
        "country_name": grid.name,
        "country_iso_code": grid.region,
        "region": "",
        "cloud_provider": "",
        "cloud_region": "",
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": cc_version,
        "cpu_count": psutil.cpu_count() or 1,
        "cpu_model": detect_cpu_model(),
        "gpu_count": sum(1 for c in reading.energy_j_by_component if _group(c) == "gpu"),
        "gpu_model": "",
        "longitude": "",
        "latitude": "",
        "ram_total_size": psutil.virtual_memory().total / GIB,
        "tracking_mode": "process",
        "cpu_utilization_percent": 0.0,
        "gpu_utilization_percent": 0.0,
        "ram_utilization_percent": 0.0,
        "ram_used_gb": 0.0,
        "on_cloud": "N",
        "pue": 1.0,
        "wue": 0.0,
    }
    return {column: row[column] for column in CODECARBON_CSV_COLUMNS}


def write_codecarbon_csv(
    readings: EnergyReading | Iterable[EnergyReading],
    path: str | Path,
    *,
    region: str | None = None,
) -> Path:
    """Append readings to a CodeCarbon-format CSV (header written when the file is new)."""
    items = [readings] if isinstance(readings, EnergyReading) else list(readings)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CODECARBON_CSV_COLUMNS)
        if new:
            writer.writeheader()
        for reading in items:
            writer.writerow(codecarbon_row(reading, region=region))
    return path
