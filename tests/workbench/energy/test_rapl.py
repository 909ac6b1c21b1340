"""RaplMeter against a fake powercap tree: real files that the test writes and advances."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.energy import EnergyFallbackWarning, EstimateMeter, FallbackMeter, RaplMeter
from workbench.errors import BackendUnavailableError, EnergyError

MAX_UJ = 262_143_328_850  # a real package range: about 262 kJ


def zone(root: Path, name: str, kind: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    path = root / name
    path.mkdir()
    (path / "name").write_text(f"{kind}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def advance(path: Path, microjoules: int, max_uj: int = MAX_UJ) -> None:
    """Move a zone's counter on by ``microjoules``, wrapping at the range as the kernel does."""
    counter = path / "energy_uj"
    counter.write_text(f"{(int(counter.read_text()) + microjoules) % max_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> dict[str, Path]:
    """Two sockets with package, core and DRAM domains, a psys zone and the decoys a real
    /sys/class/powercap holds (the control directory and the MMIO duplicate)."""
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control type: no counters
    zones = {
        "pkg0": zone(root, "intel-rapl:0", "package-0", MAX_UJ - 1_000_000),  # 1 J from a wrap
        "core0": zone(root, "intel-rapl:0:0", "core", 5_000_000),
        "dram0": zone(root, "intel-rapl:0:1", "dram", 7_000_000),
        "pkg1": zone(root, "intel-rapl:1", "package-1", 100),
        "dram1": zone(root, "intel-rapl:1:0", "dram", 0),
        "psys": zone(root, "intel-rapl:2", "psys", 123),
        "mmio": zone(root, "intel-rapl-mmio:0", "package-0", 0),
    }
    zones["root"] = root
    return zones


def test_counters_are_differenced_exactly_including_a_wrap_around(powercap) -> None:
    meter = RaplMeter(powercap["root"])
    assert [z.component for z in meter.zones] == [
        "cpu_package:0",
        "dram:0",
        "cpu_package:1",
        "dram:1",
    ]
    meter.begin_window("w")
    advance(powercap["pkg0"], 12_345_678)  # crosses max_energy_range_uj
    advance(powercap["dram0"], 3_500_000)
    advance(powercap["pkg1"], 40_000_001)
    advance(powercap["dram1"], 250)
    advance(powercap["core0"], 9_000_000)  # inside the package: must not be added again
    advance(powercap["psys"], 99_000_000)  # the whole platform: must not be added
    advance(powercap["mmio"], 99_000_000)  # a duplicate of package-0
    reading = meter.end_window("w")

    assert int((powercap["pkg0"] / "energy_uj").read_text()) < 12_345_678  # it did wrap
    expected = {
        "cpu_package:0": 12.345678,
        "dram:0": 3.5,
        "cpu_package:1": 40.000001,
        "dram:1": 0.00025,
    }
    assert reading.energy_j_by_component.keys() == expected.keys()
    for component, joules in expected.items():
        assert reading.energy_j_by_component[component] == pytest.approx(joules, rel=1e-3)
    assert reading.energy_j == pytest.approx(sum(expected.values()), rel=1e-3)
    assert reading.method == "measured"
    assert set(reading.method_by_component.values()) == {"measured"}
    assert reading.power_w_avg == pytest.approx(reading.energy_j / reading.duration_s)
    assert any("intel-rapl:0:0 (core)" in n and "intel-rapl:2 (psys)" in n for n in reading.notes)
    assert reading.warnings == []


def test_package_without_dram_domain_says_memory_is_not_included(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    meter = RaplMeter(tmp_path)
    meter.begin_window("w")
    advance(pkg, 2_000_000)
    reading = meter.end_window("w")
    assert reading.energy_j_by_component == {"cpu_package:0": pytest.approx(2.0)}
    assert any("no DRAM domain" in n for n in reading.notes)


def test_amd_zone_names_are_read_too(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "amd-rapl:0", "package-0", 10)
    meter = RaplMeter(tmp_path)
    meter.begin_window("w")
    advance(pkg, 1_500_000)
    assert meter.end_window("w").energy_j == pytest.approx(1.5)


def test_permission_denied_names_the_fix(powercap) -> None:
    def read_text(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    with pytest.raises(EnergyError) as info:
        RaplMeter(powercap["root"], read_text=read_text)
    message = str(info.value)
    assert "energy_uj" in message and "permission denied" in message
    assert "root" in message and "5.10" in message
    assert "chmod o+r" in message and "EstimateMeter" in message


def test_counter_that_is_not_a_file_is_a_clear_error(powercap) -> None:
    counter = powercap["dram0"] / "energy_uj"
    counter.unlink()
    counter.mkdir()  # root can read anything, so break the file instead of its mode
    with pytest.raises(EnergyError, match=r"intel-rapl:0:1/energy_uj .*modprobe"):
        RaplMeter(powercap["root"])


def test_counter_with_garbage_is_a_clear_error(powercap) -> None:
    (powercap["pkg1"] / "energy_uj").write_text("n/a\n")
    with pytest.raises(EnergyError, match=r"holds 'n/a', not a counter"):
        RaplMeter(powercap["root"])


def test_no_powercap_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="EstimateMeter"):
        RaplMeter(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendUnavailableError, match="no RAPL package or DRAM zones"):
        RaplMeter(tmp_path / "empty")


def test_failure_mid_window_falls_back_to_the_estimate_and_recovers(powercap) -> None:
    broken = {"now": False}

    def read_text(path: Path) -> str:
        if broken["now"] and path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    meter = FallbackMeter(RaplMeter(powercap["root"], read_text=read_text), EstimateMeter(8.0))
    latencies_ms = []
    meter.begin_window("run")
    latencies_ms.append(1.25)
    broken["now"] = True
    with pytest.warns(EnergyFallbackWarning, match=r"rapl energy meter failed during window 'run'"):
        reading = meter.end_window("run")
    assert latencies_ms == [1.25]
    assert reading.method == "estimated"
    assert reading.meter == "estimate (fallback for rapl)"
    assert set(reading.energy_j_by_component) == {"cpu", "ram"}
    assert any("chmod" in w for w in reading.warnings)

    broken["now"] = False  # the next window measures again
    meter.begin_window("run")
    advance(powercap["pkg0"], 1_000_000)
    again = meter.end_window("run")
    assert again.method == "measured"
    assert again.energy_j_by_component["cpu_package:0"] == pytest.approx(1.0)


def test_overlapping_windows_each_get_their_own_difference(powercap) -> None:
    meter = RaplMeter(powercap["root"])
    meter.begin_window("outer")
    advance(powercap["pkg1"], 1_000_000)
    meter.begin_window("inner")
    advance(powercap["pkg1"], 2_000_000)
    inner = meter.end_window("inner")
    advance(powercap["pkg1"], 4_000_000)
    outer = meter.end_window("outer")
    assert inner.energy_j_by_component["cpu_package:1"] == pytest.approx(2.0)
    assert outer.energy_j_by_component["cpu_package:1"] == pytest.approx(7.0)
