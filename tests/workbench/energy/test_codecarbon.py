"""CodeCarbon: the offline tracker behind our interface, its CSV format, and how its figures
compare with EstimateMeter's for the same window and TDP (see docs/energy.md)."""

from __future__ import annotations

import csv
import dataclasses
import platform
import socket
import sys
import time
import warnings
from pathlib import Path

import psutil
import pytest

from workbench.energy import (
    CODECARBON_CSV_COLUMNS,
    CodeCarbonMeter,
    EnergyReading,
    EstimateMeter,
    codecarbon_row,
    write_codecarbon_csv,
)
from workbench.errors import MissingExtraError

TDP_W = 8.0


@pytest.fixture(scope="module")
def codecarbon_meter() -> CodeCarbonMeter:
    """One meter for the module, warmed up: CodeCarbon's first tracker start in a process
    inspects the CPU (about 2 s); later ones take a few hundredths of a second."""
    pytest.importorskip("codecarbon")
    meter = CodeCarbonMeter("USA", tdp_w=TDP_W)
    meter.begin_window("warm-up")
    meter.end_window("warm-up")
    return meter


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and refuse) every name lookup and connection."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(200))


def test_cpu_agrees_within_10_percent_and_ram_differs_as_documented(codecarbon_meter) -> None:
    """docs/energy.md, "CodeCarbon": with the same TDP both CPU figures are
    tdp x process CPU seconds / logical cores; the RAM models differ by design."""
    ours = EstimateMeter(tdp_w=TDP_W)
    codecarbon_meter.begin_window("busy")
    ours.begin_window("busy")
    spin(0.6)
    mine = ours.end_window("busy")
    theirs = codecarbon_meter.end_window("busy")

    assert theirs.method == "estimated"  # no RAPL here, and a forced TDP skips it anyway
    assert theirs.energy_j_by_component["cpu"] == pytest.approx(
        mine.energy_j_by_component["cpu"], rel=0.10
    )
    # CodeCarbon: RAM power from a guessed DIMM count, at least two DIMMs (5 W each on x86,
    # 1.5 W on ARM) whatever the process uses; ours: 0.375 W per GB resident.
    arm = platform.machine().lower().startswith(("arm", "aarch"))
    rss_gb = psutil.Process().memory_info().rss / 1024**3
    assert rss_gb < 16  # the DIMM guess is two DIMMs up to 16 GB
    assert codecarbon_meter.last_emissions_data.ram_power == pytest.approx(3.0 if arm else 10.0)
    assert mine.energy_j_by_component["ram"] == pytest.approx(
        0.375 * rss_gb * mine.duration_s, rel=0.2
    )
    assert theirs.energy_j_by_component["ram"] > 10 * mine.energy_j_by_component["ram"]


def test_offline_process_mode_no_files_no_network(
    codecarbon_meter, network_attempts, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with codecarbon_meter.window("w") as window:
            spin(0.05)
    assert list(tmp_path.iterdir()) == []
    assert network_attempts == []
    data = codecarbon_meter.last_emissions_data
    assert data.tracking_mode == "process"
    assert data.country_iso_code == "USA"
    reading = window.reading
    assert reading.meter == "codecarbon"
    assert reading.energy_j == pytest.approx(data.energy_consumed * 3.6e6)
    assert reading.energy_j_by_component["cpu"] == pytest.approx(data.cpu_energy * 3.6e6)
    assert any("CodeCarbon" in n for n in reading.notes)


def test_its_csv_and_ours_have_the_same_columns(tmp_path: Path) -> None:
    pytest.importorskip("codecarbon")
    from codecarbon.output_methods.emissions_data import EmissionsData

    assert tuple(f.name for f in dataclasses.fields(EmissionsData)) == CODECARBON_CSV_COLUMNS
    meter = CodeCarbonMeter("FRA", tdp_w=TDP_W, output_dir=tmp_path / "cc")
    with meter.window("w"):
        spin(0.02)
    with (tmp_path / "cc" / "emissions.csv").open() as handle:
        assert tuple(next(csv.reader(handle))) == CODECARBON_CSV_COLUMNS


def test_any_reading_can_be_written_in_codecarbon_format(tmp_path: Path) -> None:
    reading = EnergyReading.from_components(
        2.0,
        {"cpu_package:0": 36.0, "dram:0": 7.2, "gpu:0": 360.0},
        {"cpu_package:0": "measured", "dram:0": "measured", "gpu:0": "measured"},
        "rapl+nvml",
    )
    path = tmp_path / "emissions.csv"
    write_codecarbon_csv(reading, path, region="DEU")
    write_codecarbon_csv([reading], path, region="DEU")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and tuple(rows[0]) == CODECARBON_CSV_COLUMNS
    row = rows[0]
    assert float(row["cpu_energy"]) == pytest.approx(36.0 / 3.6e6)
    assert float(row["ram_energy"]) == pytest.approx(7.2 / 3.6e6)
    assert float(row["gpu_power"]) == pytest.approx(180.0)
    assert float(row["energy_consumed"]) == pytest.approx(403.2 / 3.6e6)
    assert float(row["emissions"]) == pytest.approx(403.2 / 3.6e6 * 380.9 / 1000)
    assert row["country_iso_code"] == "DEU" and row["gpu_count"] == "1"
    assert codecarbon_row(reading)["country_iso_code"] == "WORLD"


def test_missing_codecarbon_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(MissingExtraError, match=r"inference-workbench\[energy\]"):
        CodeCarbonMeter("USA")
