"""The meter interface, its combinators and the per-inference arithmetic."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from workbench.energy import (
    CompositeMeter,
    EnergyFallbackWarning,
    EnergyReading,
    EstimateMeter,
    FallbackMeter,
    Meter,
    auto_meter,
    idle_baseline,
    per_inference,
)
from workbench.errors import ConfigError, EnergyError
from workbench.measure.store import RunStore


class ScriptedMeter(Meter):
    """A meter whose joules are scripted and which can be told to fail at either edge."""

    def __init__(self, name: str, watts: float, fail_at: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.watts = watts
        self.fail_at = fail_at

    def _begin(self, name: str) -> None:
        if self.fail_at == "begin":
            raise OSError("device vanished")

    def _end(self, name: str, token: None, duration_s: float) -> EnergyReading:
        if self.fail_at == "end":
            raise RuntimeError("counter read failed")
        return EnergyReading.from_components(
            duration_s, {self.name: self.watts * duration_s}, {self.name: "measured"}, self.name
        )


def test_ending_a_window_never_begun_names_the_window_and_the_fix() -> None:
    meter = EstimateMeter(tdp_w=8.0)
    meter.begin_window("other")
    with pytest.raises(EnergyError) as info:
        meter.end_window("predict")
    message = str(info.value)
    assert "'predict' was never begun" in message
    assert "begin_window('predict')" in message and "open windows: 'other'" in message


def test_ending_a_window_twice_is_an_error() -> None:
    meter = EstimateMeter(tdp_w=8.0)
    meter.begin_window("w")
    meter.end_window("w")
    with pytest.raises(EnergyError, match=r"'w' was already ended .*begin_window\('w'\) again"):
        meter.end_window("w")
    meter.begin_window("w")  # a name can be used again after it ended
    meter.end_window("w")


def test_beginning_an_open_window_again_is_an_error() -> None:
    meter = EstimateMeter(tdp_w=8.0)
    meter.begin_window("w")
    with pytest.raises(EnergyError, match=r"'w' is already open .*end_window\('w'\)"):
        meter.begin_window("w")


def test_a_failed_begin_leaves_no_open_window() -> None:
    meter = ScriptedMeter("x", 1.0, fail_at="begin")
    with pytest.raises(OSError):
        meter.begin_window("w")
    with pytest.raises(EnergyError, match="never begun"):
        meter.end_window("w")


def test_composite_puts_components_side_by_side() -> None:
    meter = CompositeMeter([ScriptedMeter("a", 10.0), ScriptedMeter("b", 30.0)])
    assert meter.name == "a+b"
    with meter.window("w") as window:
        time.sleep(0.05)
    reading = window.reading
    assert reading.energy_j_by_component["a"] == pytest.approx(10.0 * reading.duration_s, rel=0.05)
    assert reading.energy_j_by_component["b"] == pytest.approx(30.0 * reading.duration_s, rel=0.05)
    assert reading.power_w_avg == pytest.approx(40.0, rel=0.05)
    assert reading.method == "measured"


def test_composite_with_an_estimate_is_estimated_overall() -> None:
    meter = CompositeMeter([ScriptedMeter("gpu:0", 50.0), EstimateMeter(tdp_w=8.0)])
    with meter.window("w") as window:
        pass
    assert window.reading.method == "estimated"
    assert window.reading.method_by_component["gpu:0"] == "measured"


def test_composite_refuses_two_meters_for_one_component() -> None:
    meter = CompositeMeter([EstimateMeter(tdp_w=8.0), EstimateMeter(tdp_w=8.0)])
    meter.begin_window("w")
    with pytest.raises(EnergyError, match="both report component 'cpu'"):
        meter.end_window("w")


def test_composite_ends_every_meter_even_when_one_fails() -> None:
    good = ScriptedMeter("good", 1.0)
    meter = CompositeMeter([ScriptedMeter("bad", 1.0, fail_at="end"), good])
    meter.begin_window("w")
    with pytest.raises(RuntimeError, match="counter read failed"):
        meter.end_window("w")
    good.begin_window("w")  # its window was closed, so the name is free again
    good.end_window("w")


@pytest.mark.parametrize("fail_at", ["begin", "end"])
def test_fallback_warns_and_returns_the_estimate(fail_at: str) -> None:
    meter = FallbackMeter(ScriptedMeter("probe", 5.0, fail_at=fail_at), EstimateMeter(tdp_w=8.0))
    latencies_ms = [0.5, 0.7]
    with pytest.warns(EnergyFallbackWarning, match="probe energy meter failed"):
        meter.begin_window("w")
        latencies_ms.append(0.6)
        reading = meter.end_window("w")
    assert latencies_ms == [0.5, 0.7, 0.6]
    assert reading.method == "estimated"
    assert reading.meter == "estimate (fallback for probe)"
    assert set(reading.energy_j_by_component) == {"cpu", "ram"}
    reason = "OSError: device vanished" if fail_at == "begin" else "RuntimeError: counter read"
    assert any(reason in w for w in reading.warnings)


def test_fallback_passes_a_working_meter_through_silently() -> None:
    meter = FallbackMeter(ScriptedMeter("probe", 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with meter.window("w") as window:
            pass
    assert window.reading.method == "measured"
    assert window.reading.meter == "probe"
    with pytest.raises(EnergyError, match="never begun"):  # misuse is still an error
        meter.end_window("nope")


def test_auto_meter_without_powercap_is_the_estimate(tmp_path: Path) -> None:
    meter = auto_meter(rapl_root=tmp_path / "none", tdp_w=8.0)
    assert isinstance(meter, EstimateMeter)
    with meter.window("w") as window:
        pass
    assert window.reading.method == "estimated"
    assert any("CPU and RAM estimated" in n and "does not exist" in n for n in window.reading.notes)


def test_auto_meter_uses_readable_rapl_with_an_estimate_behind(tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    meter = auto_meter(rapl_root=tmp_path)
    assert isinstance(meter, FallbackMeter) and meter.name == "rapl"
    meter.begin_window("w")
    (zone / "energy_uj").write_text("2501000\n")
    reading = meter.end_window("w")
    assert reading.energy_j_by_component == {"cpu_package:0": pytest.approx(2.5)}
    assert reading.method == "measured"


def test_this_machine_gets_an_estimate_when_it_has_no_powercap() -> None:
    if Path("/sys/class/powercap").is_dir():
        pytest.skip("this machine has powercap; the estimate is not the live path here")
    with auto_meter().window("w") as window:
        pass
    assert window.reading.method == "estimated"


def test_per_inference_arithmetic() -> None:
    reading = EnergyReading.from_components(
        4.0, {"cpu": 30.0, "ram": 6.0}, {"cpu": "estimated", "ram": "estimated"}, "estimate"
    )
    figures = per_inference(reading, items=1200, idle_power_w=2.0, g_co2e_per_kwh=400.0)
    assert figures.energy_j_per_item == pytest.approx(0.03)
    assert figures.energy_j_per_item_net == pytest.approx((36.0 - 8.0) / 1200)
    assert figures.power_w_avg == pytest.approx(9.0)
    assert figures.wh_per_million == pytest.approx(0.03 * 1e6 / 3600)
    assert figures.g_co2e_per_million == pytest.approx(0.03 * 1e6 / 3.6e6 * 400.0)
    assert figures.g_co2e_per_million_net == pytest.approx(28 / 1200 * 1e6 / 3.6e6 * 400.0)
    assert figures.energy_j_per_item_by_component == {
        "cpu": pytest.approx(0.025),
        "ram": pytest.approx(0.005),
    }
    assert figures.carbon_source == "user setting g_co2e_per_kwh"
    row = figures.to_dict()
    for key in (
        "energy_j_per_item",
        "energy_method",
        "power_w_avg",
        "energy_wh_per_1m",
        "co2e_g_per_1m",
    ):
        assert key in row
    assert row["energy_method"] == "estimated"
    assert row["energy_method.cpu"] == "estimated"
    assert all(isinstance(v, (int, float, str)) for v in row.values())


def test_per_inference_defaults_to_the_world_grid_and_the_reading_idle() -> None:
    reading = EnergyReading.from_components(1.0, {"gpu:0": 100.0}, {"gpu:0": "measured"}, "nvml")
    figures = per_inference(reading.with_idle(40.0), items=10)
    assert figures.g_co2e_per_kwh == 480.0 and "Ember" in figures.carbon_source
    assert figures.energy_j_per_item_net == pytest.approx(6.0)
    assert figures.method == "measured"
    assert per_inference(reading, items=10, region="FRA").g_co2e_per_kwh == 56.0


@pytest.mark.parametrize("items", [0, -3, 2.5, True])
def test_per_inference_needs_a_count(items) -> None:
    reading = EnergyReading.from_components(1.0, {"cpu": 1.0}, {"cpu": "estimated"}, "estimate")
    with pytest.raises(ConfigError, match="items="):
        per_inference(reading, items=items)
    with pytest.raises(ConfigError, match="g_co2e_per_kwh=-1"):
        per_inference(reading, items=1, g_co2e_per_kwh=-1)


def test_estimated_shows_end_to_end_in_the_store_and_its_dataframe(tmp_path: Path) -> None:
    meter = auto_meter(rapl_root=tmp_path / "no-powercap")
    idle_w = idle_baseline(meter, seconds=0.05)
    with meter.window("profile") as window:
        total = sum(i * i for i in range(200_000))
    assert total > 0
    metrics = {"latency_ms_p50": 1.0, **per_inference(window.reading, 100, idle_w).to_dict()}
    with RunStore(tmp_path / "runs.sqlite") as store:
        run_id = store.add("profile", model="m", fingerprint="f", config={}, metrics=metrics)
        stored = store.get(run_id).metrics
        frame = store.to_frame()
    assert stored["energy_method"] == "estimated"
    assert stored["energy_method.cpu"] == "estimated"
    assert stored["energy_j_per_item"] == pytest.approx(metrics["energy_j_per_item"])
    assert stored["energy_j_per_item_net"] <= stored["energy_j_per_item"]
    assert frame.loc[0, "energy_method"] == "estimated"
    assert frame.loc[0, "latency_ms_p50"] == 1.0


def test_meters_are_importable_from_workbench_energy() -> None:
    import workbench.energy as energy

    for name in energy.__all__:
        assert getattr(energy, name) is not None
    with pytest.raises(AttributeError):
        _ = energy.NoSuchMeter
