"""The runtime meters itself: on fake RAPL and NVML trees with honest values its live energy is
the counters' delta; with no counter the estimate follows its own CPU time at the bundle's TDP;
the idle share is the energy spent while no request was in flight; ``--no-live-meter`` exports
none of it. Real servers (``python -m serving``), real bundles; only the absent hardware is
faked (a sysfs tree in a temp folder, ``fake_nvml`` in place of ``pynvml``)."""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving_helpers import REPO, export_bundle, infer_json, serving

from serving.live_energy import (
    DEFAULT_W_PER_LOGICAL_CORE,
    BusyClock,
    LiveMeter,
    NvmlCounters,
    ProcessCpuEstimate,
    RaplCounters,
    detect_cpu_model,
    discover_meters,
    watts_per_logical_core,
)
from serving.manifest import BundleError, Energy, Manifest, ModelFile, load_bundle, parse_manifest
from serving.metrics import ServingMetrics

HERE = Path(__file__).resolve().parent
MAX_UJ = 262_143_328_850  # a real package zone's max_energy_range_uj
PACKAGE = ("cpu_package:0", "measured", "rapl")
DRAM = ("dram:0", "measured", "rapl")
GPU = ("gpu:0", "measured", "nvml")
CPU = ("cpu", "estimated", "process-cpu")


# -- helpers -----------------------------------------------------------------------------------


def _write(path: Path, value: int) -> None:
    """Replace a counter file whole, as sysfs shows a new value (a reader never sees half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def _rapl_tree(root: Path, zones: dict[str, tuple[str, int]]) -> Path:
    """``{"intel-rapl:0": ("package-0", energy_uj), ...}`` as powercap lays it out."""
    for folder, (name, energy) in zones.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "name").write_text(name + "\n")
        (root / folder / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
        _write(root / folder / "energy_uj", energy)
    return root


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{HERE}", **extra)


def _scrape(server) -> dict[tuple[str, tuple[str, ...]], float]:
    """One ``/metrics`` exposition: (sample name, label values in order) -> value."""
    status, _, body = server.request("GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name.startswith("serving_live_"):
                out[(s.name, tuple(s.labels.values()))] = s.value
    return out


def _energy(scrape: dict, key: tuple[str, str, str], idle: bool = False) -> float:
    name = "serving_live_idle_energy_joules_total" if idle else "serving_live_energy_joules_total"
    return scrape[(name, key)]


def _drive(server, seconds: float, model: str, dim: int, threads: int = 4) -> int:
    """Keep ``threads`` requests in flight for ``seconds``; the number answered."""
    row = {"name": "input", "shape": [1, dim], "datatype": "FP32", "data": [0.5] * dim}
    body = json.dumps({"inputs": [row]}).encode()
    stop = time.monotonic() + seconds

    def worker(_: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        answered = 0
        while time.monotonic() < stop:
            conn.request("POST", f"/v2/models/{model}/infer", body, {"Content-Type": "x"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            answered += 1
        conn.close()
        return answered

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(worker, range(threads)))


class _ConstantPower(threading.Thread):
    """A package counter rising at ``watts`` as real time passes (an honest RAPL zone)."""

    def __init__(self, path: Path, watts: float, start_uj: int) -> None:
        super().__init__(daemon=True)
        self.path, self.watts, self.start_uj = path, watts, start_uj
        self.done = threading.Event()

    def run(self) -> None:
        began = time.monotonic()
        while not self.done.wait(0.005):
            _write(self.path, self.start_uj + int((time.monotonic() - began) * self.watts * 1e6))


# -- against a real server ---------------------------------------------------------------------


def test_live_energy_equals_the_rapl_and_nvml_counter_deltas(models_dir, tmp_path):
    root = _rapl_tree(
        tmp_path / "powercap",
        {
            "intel-rapl:0": ("package-0", MAX_UJ - 2_000_000),
            "intel-rapl:0:0": ("core", 5_000_000),  # inside the package: never summed
            "intel-rapl:0:1": ("dram", 10_000_000),
        },
    )
    gpu = tmp_path / "nvml.txt"
    gpu.write_text("5000\n")  # millijoules
    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin", instance_usd_per_h=3.6)
    env = _env(SERVING_RAPL_ROOT=str(root), SERVING_NVML_MODULE="fake_nvml")
    env["FAKE_NVML_ENERGY_FILE"] = str(gpu)
    before_start = time.monotonic()
    with serving([bundle], tmp_path / "log", "--meter-interval-s", "0.05", env=env) as server:
        ready = time.monotonic()
        first = _scrape(server)
        assert _energy(first, PACKAGE) == 0 and _energy(first, GPU) == 0  # nothing counted yet
        assert math.isnan(first[("serving_live_energy_joules_per_prediction", ("measured",))])
        infos = {k[1] for k in first if k[0] == "serving_live_meter_info"}
        assert infos == {("rapl", "measured", "cpu_package:0"), ("rapl", "measured", "dram:0"),
                         ("nvml", "measured", "gpu:0")}  # fmt: skip
        _write(root / "intel-rapl:0" / "energy_uj", MAX_UJ - 500_000)  # +1.5 J
        _write(root / "intel-rapl:0:1" / "energy_uj", 10_400_000)  # +0.4 J
        _write(root / "intel-rapl:0:0" / "energy_uj", 9_000_000)
        gpu.write_text("5600\n")  # +0.6 J
        second = _scrape(server)
        assert _energy(second, PACKAGE) == pytest.approx(1.5, rel=1e-12)
        assert _energy(second, DRAM) == pytest.approx(0.4, rel=1e-12)
        assert _energy(second, GPU) == pytest.approx(0.6, rel=1e-12)
        time.sleep(0.2)  # a few ticks of the sampler: no change, no energy
        _write(root / "intel-rapl:0" / "energy_uj", 700_000)  # wrapped: +0.5 J + 0.7 J
        _write(root / "intel-rapl:0:1" / "energy_uj", 10_900_000)  # +0.5 J
        gpu.write_text("7100\n")  # +1.5 J
        for _ in range(5):
            assert infer_json(server, "lin", np.full((3, 8), 0.1, np.float32))[0] == 200
        before = time.monotonic()
        third = _scrape(server)
        after = time.monotonic()
    assert _energy(third, PACKAGE) == pytest.approx(2.7, rel=1e-12)
    assert _energy(third, DRAM) == pytest.approx(0.9, rel=1e-12)
    assert _energy(third, GPU) == pytest.approx(2.1, rel=1e-12)
    assert not any("core" in key[1][0] for key in third if key[0].endswith("joules_total"))
    total = 2.7 + 0.9 + 2.1
    live = third[("serving_live_energy_joules_per_prediction", ("measured",))]
    assert live == pytest.approx(total / 15, rel=1e-9)
    # the meter started between launch and ready: uptime lies in that bracket
    cost = third[("serving_live_cost_usd_per_1m_predictions", ("measured",))]
    assert 3.6 * (before - ready) / 3600 / 15 * 1e6 <= cost
    assert cost <= 3.6 * (after - before_start) / 3600 / 15 * 1e6


def test_without_counters_the_estimate_follows_the_process_cpu_time(models_dir, tmp_path):
    (tmp_path / "no-powercap").mkdir()
    bundle = export_bundle(models_dir / "slow.onnx", tmp_path / "slow")
    energy = load_bundle(bundle).manifest.energy
    assert energy.cpu_tdp_w and energy.logical_cores == os.cpu_count()
    w = energy.cpu_tdp_w / energy.logical_cores  # this machine's CPU: the bundle's TDP applies
    env = _env(SERVING_RAPL_ROOT=str(tmp_path / "no-powercap"), SERVING_NVML_MODULE="none")
    with serving([bundle], tmp_path / "log", "--meter-interval-s", "0.1", env=env) as server:
        proc = psutil.Process(server.proc.pid)

        def cpu_s() -> float:
            t = proc.cpu_times()
            return t.user + t.system

        b0, s0, a0 = cpu_s(), _scrape(server), cpu_s()
        assert _drive(server, 2.0, "slow", 256) > 0
        b1, s1, a1 = cpu_s(), _scrape(server), cpu_s()
        time.sleep(2.0)
        s2 = _scrape(server)
        line = next(r for r in server.log() if r.get("msg") == "live meter")
    assert line["meters"] == ["process-cpu/estimated/cpu"]
    busy = _energy(s1, CPU) - _energy(s0, CPU)
    idle = _energy(s2, CPU) - _energy(s1, CPU)
    assert busy > 5 * idle, (busy, idle)  # busier -> more joules
    # the joules are this process's CPU seconds x TDP / logical cores (2 clock ticks of slack)
    tick = 2 / os.sysconf("SC_CLK_TCK")
    assert (b1 - a0 - tick) * w <= busy <= (a1 - b0 + tick) * w
    assert ("serving_live_energy_joules_per_prediction", ("estimated",)) in s2
    assert not any(k[0] == "serving_live_cost_usd_per_1m_predictions" for k in s2)  # no price


def test_idle_share_is_all_with_no_requests_and_falls_under_load(models_dir, tmp_path):
    root = _rapl_tree(tmp_path / "powercap", {"intel-rapl:0": ("package-0", 1_000_000)})
    writer = _ConstantPower(root / "intel-rapl:0" / "energy_uj", watts=20.0, start_uj=1_000_000)
    bundle = export_bundle(models_dir / "slow.onnx", tmp_path / "slow")
    env = _env(SERVING_RAPL_ROOT=str(root), SERVING_NVML_MODULE="none")
    writer.start()
    try:
        with serving([bundle], tmp_path / "log", "--meter-interval-s", "0.05", env=env) as s:
            s0 = _scrape(s)
            time.sleep(1.0)
            s1 = _scrape(s)
            assert _drive(s, 2.0, "slow", 256) > 0
            s2 = _scrape(s)
    finally:
        writer.done.set()
        writer.join()
    quiet = _energy(s1, PACKAGE) - _energy(s0, PACKAGE)
    quiet_idle = _energy(s1, PACKAGE, idle=True) - _energy(s0, PACKAGE, idle=True)
    assert quiet > 5  # about 20 W for a second
    assert quiet_idle == pytest.approx(quiet, rel=1e-12)
    loaded = _energy(s2, PACKAGE) - _energy(s1, PACKAGE)
    loaded_idle = _energy(s2, PACKAGE, idle=True) - _energy(s1, PACKAGE, idle=True)
    assert loaded > 10
    assert loaded_idle / loaded < 0.5, (loaded_idle, loaded)
    assert 5 < s2[("serving_live_power_watts", PACKAGE)] < 60  # about the writer's 20 W


def test_no_live_meter_exports_no_live_series(models_dir, tmp_path):
    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin")
    with serving([bundle], tmp_path / "log", "--no-live-meter", env=_env()) as server:
        assert infer_json(server, "lin", np.full((1, 8), 0.1, np.float32))[0] == 200
        status, _, body = server.request("GET", "/metrics")
        assert status == 200 and b"serving_predictions_total" in body
        assert b"serving_live_" not in body
        assert not any(r.get("msg") == "live meter" for r in server.log())


def test_a_bad_meter_interval_is_refused_naming_the_fix(models_dir, tmp_path):
    import subprocess
    import sys

    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin")
    run = subprocess.run(
        [sys.executable, "-m", "serving", str(bundle), "--meter-interval-s", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 2 and "'0' is not a number of seconds > 0" in run.stderr


# -- the sampler and the meters, in process ----------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_estimate_is_cpu_seconds_times_the_manifests_tdp_per_core():
    here = detect_cpu_model()
    m = Manifest("m", (ModelFile("m", "m.onnx"),), energy=Energy(48.0, here, 16, "table"))
    w, note = watts_per_logical_core([m])
    assert w == 3.0 and "48 W / 16 logical cores" in note
    cpu, clock, metrics = [7.0], _Clock(), ServingMetrics()
    meter = LiveMeter([ProcessCpuEstimate(w, lambda: cpu[0])], metrics, clock=clock)
    cpu[0] = 9.0  # before begin (warm-up): not counted
    meter.begin()
    spent = [0.25, 1.5, 0.0, 0.75]
    for s in spent:
        cpu[0] += s
        clock.t += 1.0
        meter.sample()
    joules = metrics.live.energy.get(CPU)
    assert joules == pytest.approx(sum(spent) * 3.0, rel=1e-12)
    assert metrics.live.power.get(CPU) == pytest.approx(0.75 * 3.0)  # the last interval
    assert metrics.live.idle_energy.get(CPU) == pytest.approx(joules)  # no request ran
    metrics.predictions.inc(("m",), 10)
    clock.t += 1.0
    meter.sample()
    got = metrics.live.energy_per_prediction.get(("estimated",))
    assert got == pytest.approx(joules / 10)


def test_idle_energy_is_each_intervals_energy_times_its_idle_fraction():
    cpu, clock, metrics = [0.0], _Clock(), ServingMetrics()
    meter = LiveMeter(
        [ProcessCpuEstimate(2.0, lambda: cpu[0])], metrics, clock=clock, instance_usd_per_h=7.2
    )
    meter.begin()
    busy: BusyClock = meter.busy
    busy.enter()  # one request for 0.25 s of a 1 s interval
    clock.t += 0.25
    busy.enter()  # a second overlaps: still one busy period
    busy.leave()
    busy.leave()
    clock.t += 0.75
    cpu[0] = 1.0
    meter.sample()  # 2 J, idle 3/4 of the interval
    busy.enter()  # busy across the next reading: counted up to it, then on
    clock.t += 1.0
    cpu[0] = 2.0
    meter.sample()  # 2 J, idle 0
    clock.t += 0.5
    busy.leave()
    clock.t += 0.5
    cpu[0] = 3.0
    meter.sample()  # 2 J, idle half
    assert metrics.live.energy.get(CPU) == pytest.approx(6.0)
    assert metrics.live.idle_energy.get(CPU) == pytest.approx(2.0 * 0.75 + 0 + 2.0 * 0.5)
    metrics.predictions.inc(("m",), 2_000)
    meter.sample()  # the same moment: nothing new is read
    cost = metrics.live.cost_per_1m.get(("measured",))
    assert cost == pytest.approx(7.2 * 3 / 3600 / 2_000 * 1e6)


def test_the_tdp_of_another_cpu_or_of_an_older_bundle_falls_back_to_4_w_per_core():
    other = Manifest("m", (ModelFile("m", "m.onnx"),), energy=Energy(48.0, "Other CPU", 16, "x"))
    w, note = watts_per_logical_core([other], cpu_model="This CPU")
    assert w == DEFAULT_W_PER_LOGICAL_CORE and "'Other CPU'" in note and "re-export" in note
    older = Manifest("m", (ModelFile("m", "m.onnx"),))
    assert watts_per_logical_core([older])[0] == DEFAULT_W_PER_LOGICAL_CORE


def test_rapl_counters_unwrap_once_and_sum_package_and_dram_only(tmp_path):
    root = _rapl_tree(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", MAX_UJ - 1_000_000),
            "intel-rapl:0:0": ("core", 0),
            "intel-rapl:0:1": ("dram", 0),
            "intel-rapl:1": ("package-1", 0),
            "intel-rapl-mmio:0": ("package-0", 0),  # not a RAPL zone name: ignored
        },
    )
    rapl = RaplCounters(root)
    assert rapl.components() == ["cpu_package:0", "dram:0", "cpu_package:1"]
    _write(root / "intel-rapl:0" / "energy_uj", 2_000_000)
    _write(root / "intel-rapl:0:1" / "energy_uj", 250_000)
    assert rapl.delta(1.0) == {"cpu_package:0": 3.0, "dram:0": 0.25, "cpu_package:1": 0.0}
    assert rapl.delta(1.0)["cpu_package:0"] == 0.0


def test_discover_meters_finds_rapl_nvml_or_falls_back_to_the_estimate(tmp_path):
    here = detect_cpu_model()
    m = Manifest("m", (ModelFile("m", "m.onnx"),), energy=Energy(32.0, here, 8, "table"))
    empty = tmp_path / "empty"
    empty.mkdir()
    meters, notes = discover_meters(
        [m], {"SERVING_RAPL_ROOT": str(empty), "SERVING_NVML_MODULE": ""}
    )
    assert [(x.meter, x.method) for x in meters] == [("process-cpu", "estimated")]
    assert meters[0].w_per_core == 4.0 and any("no RAPL" in n for n in notes)
    tree = _rapl_tree(tmp_path / "rapl", {"intel-rapl:0": ("package-0", 5)})
    gpu = tmp_path / "gpu.txt"
    gpu.write_text("1\n2\n")
    env = {"SERVING_RAPL_ROOT": str(tree), "SERVING_NVML_MODULE": "fake_nvml"}
    os.environ["FAKE_NVML_ENERGY_FILE"] = str(gpu)
    try:
        meters, _ = discover_meters([m], env)
    finally:
        del os.environ["FAKE_NVML_ENERGY_FILE"]
    assert [(x.meter, x.components()) for x in meters] == [
        ("rapl", ["cpu_package:0"]),
        ("nvml", ["gpu:0", "gpu:1"]),
    ]
    (tree / "intel-rapl:0" / "energy_uj").unlink()
    (tree / "intel-rapl:0" / "energy_uj").mkdir()  # unreadable as a counter
    meters, notes = discover_meters(
        [m], {"SERVING_RAPL_ROOT": str(tree), "SERVING_NVML_MODULE": "no_such_nvml"}
    )
    assert [x.meter for x in meters] == ["process-cpu"]
    assert any("energy_uj" in n for n in notes) and any("no_such_nvml" in n for n in notes)


def test_nvml_without_the_energy_counter_integrates_sampled_power():
    class OlderGpu:  # NVML on a GPU before Volta: power, no energy counter
        def __init__(self) -> None:
            self.watts = [100.0]

        def nvmlInit(self):
            pass

        def nvmlDeviceGetCount(self):
            return 1

        def nvmlDeviceGetHandleByIndex(self, i):
            return i

        def nvmlDeviceGetTotalEnergyConsumption(self, handle):
            raise RuntimeError("Not Supported")

        def nvmlDeviceGetPowerUsage(self, handle):
            return int(self.watts[0] * 1000)

    gpu = OlderGpu()
    nvml = NvmlCounters(gpu)
    gpu.watts[0] = 200.0
    assert nvml.delta(2.0) == {"gpu:0": pytest.approx(300.0)}  # (100 + 200) / 2 W x 2 s


def test_the_manifest_energy_section_is_optional_and_checked():
    doc = {"schema_version": 1, "name": "m", "models": [{"file": "m.onnx"}]}
    assert parse_manifest(doc).energy == Energy()  # older manifests load unchanged
    energy = {
        "cpu_tdp_w": 17.5,
        "cpu_model": "AMD EPYC 7763",
        "logical_cores": 8,
        "tdp_source": "t",
    }
    m = parse_manifest({**doc, "energy": energy})
    assert m.energy == Energy(17.5, "AMD EPYC 7763", 8, "t")
    assert parse_manifest(json.loads(json.dumps(m.to_dict()))) == m
    with pytest.raises(BundleError, match=r"energy\.cpu_tdp_w must be a number > 0"):
        parse_manifest({**doc, "energy": {**energy, "cpu_tdp_w": -1}})
    with pytest.raises(BundleError, match=r"energy\.logical_cores must be a whole number"):
        parse_manifest({**doc, "energy": {**energy, "logical_cores": 0.5}})
    with pytest.raises(BundleError, match="energy has an unknown field"):
        parse_manifest({**doc, "energy": {"tdp": 3}})


def test_export_writes_this_machines_cpu_and_tdp(models_dir, tmp_path):
    from workbench.energy.estimate import cpu_tdp
    from workbench.energy.estimate import detect_cpu_model as workbench_cpu_model

    energy = load_bundle(export_bundle(models_dir / "lin.onnx", tmp_path / "b")).manifest.energy
    watts, source = cpu_tdp(workbench_cpu_model(), os.cpu_count())
    assert energy == Energy(watts, detect_cpu_model(), os.cpu_count(), source)


def test_metrics_carry_no_live_series_until_enabled():
    metrics = ServingMetrics()
    assert b"serving_live_" not in metrics.render()
    assert metrics.enable_live() is metrics.enable_live()
    assert b"# TYPE serving_live_energy_joules_total counter" in metrics.render()
