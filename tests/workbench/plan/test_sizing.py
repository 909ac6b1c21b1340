"""Right-sizing over the hardware table: cheapest configuration, binding constraint, bad tables."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError
from workbench.plan.batch_curve import BatchLatencyCurve
from workbench.plan.simulator import ServerConfig
from workbench.plan.sizing import HardwareEntry, hardware_frame, load_hardware, right_size

HEADER = "name,kind,cores,usd_per_h,idle_w,max_w,latency_scale,power_method,source\n"
#: 10 ms per request, no batching: one instance serves at most 100 req/s.
CURVE = BatchLatencyCurve.from_points({1: 10.0}, method="measured", threads=1)
HARDWARE = [
    HardwareEntry("small", "cpu", 1, 0.10, 2.0, 10.0, 1.0, "typed in", "test"),
    HardwareEntry("big", "cpu", 4, 0.50, 5.0, 40.0, 1.0, "typed in", "test"),
    HardwareEntry("gpu", "gpu", 4, 1.00, 10.0, 80.0, None, "typed in", "test"),
]


#: The unbatched server these tests were worked out for (the defaults batch, as the runtime does).
UNBATCHED = ServerConfig(max_batch_rows=1, max_delay_ms=0.0, max_queue_rows=None)


def size(rate, slo, **kw):
    kw.setdefault("hardware", HARDWARE)
    kw.setdefault("server", UNBATCHED)
    kw.setdefault("measured_on", "small")
    kw.setdefault("requests", 4000)
    return right_size(CURVE, rate, slo, **kw)


def test_shipped_table_has_prices_watts_and_sources():
    table = load_hardware()
    assert len(table) >= 5
    assert {e.kind for e in table} == {"cpu", "gpu"}
    for e in table:
        assert e.usd_per_h > 0 and 0 < e.idle_w < e.max_w
        assert "http" in e.source and "estimated" in e.source
        assert e.power_method == "estimated"
    assert all(e.latency_scale is None for e in table if e.kind == "gpu")
    assert list(hardware_frame(table).columns)[:4] == ["name", "kind", "cores", "usd_per_h"]


def test_light_load_one_cheap_machine_and_cost_binds():
    r = size(50, 100)
    best = r.best
    assert (best.hardware, best.instances, best.machines) == ("small", 1, 1)
    assert r.binding == "cost"
    assert best.latency_method == "measured"  # the curve was measured on 'small'
    assert best.usd_per_million == pytest.approx(0.10 / (50 * 3600) * 1e6)
    # Energy: idle 2 W all the time + 8 W more while busy (1 core of 1): J per request =
    # (2 + 8 u) / rate at utilisation u; here u is about 0.5.
    j_per_request = best.kwh_per_million * 3.6e6 / 1e6
    assert j_per_request == pytest.approx((2 + 8 * best.utilisation) / 50, rel=0.03)
    assert best.energy_method == "estimated"
    assert best.latency_ms_p99 <= 100 and best.utilisation <= 0.8


def test_capacity_binds_when_one_machine_fewer_lacks_headroom():
    r = size(150, 100)  # 150 req/s needs 1.5 instances busy: two 'small' machines at 75 %
    assert (r.best.hardware, r.best.machines) == ("small", 2)
    assert r.binding == "capacity"
    assert r.best.utilisation == pytest.approx(0.75, rel=0.03)


def test_slo_binds_when_latency_rules_out_cheaper_capacity():
    """At 150 req/s two 'small' machines have capacity, but queueing behind a 10 ms service pushes
    p99 past 21 ms until the load is spread thin: a 4-instance 'big' machine wins."""
    r = size(150, 21)
    assert r.best.hardware == "big" and r.best.machines == 1
    assert r.binding == "slo"
    frame = r.to_frame()
    small = frame[frame["hardware"] == "small"].iloc[0]
    assert small["machines"] > 2 and small["binding"] == "slo"
    assert small["usd_per_h"] > r.best.usd_per_h
    assert r.best.latency_method == "estimated"  # 'big' scales the curve measured on 'small'


def test_no_configuration_meets_an_slo_below_one_service_time():
    r = size(50, 5)
    assert r.best is None and r.binding is None
    reasons = r.to_frame()["reason"].tolist()
    assert any("one request alone takes 10 ms" in x for x in reasons)


def test_gpu_needs_a_latency_curve_or_a_scale():
    r = size(150, 21)
    gpu = r.to_frame().query("hardware == 'gpu'").iloc[0]
    assert not gpu["feasible"] and "no latency curve" in gpu["reason"]
    # At 900 req/s: 'small' needs 12+ machines ($1.2/h), 'big' 3 ($1.5/h); a GPU scaled to
    # 0.5 ms per request carries it alone ($1/h).
    fast = size(900, 21, latency_scale={"gpu": 0.05})
    assert (fast.best.hardware, fast.best.machines) == ("gpu", 1)
    assert fast.best.latency_method == "estimated"


def test_batching_and_threads_enter_the_search():
    curves = {
        1: BatchLatencyCurve.from_points({1: 10.0, 8: 20.0}, threads=1),
        2: BatchLatencyCurve.from_points({1: 6.0, 8: 12.0}, threads=2),
    }
    server = ServerConfig(max_batch_rows=8, max_delay_ms=0, max_queue_rows=None)
    r = right_size(curves, 300, 100, hardware=HARDWARE[:2], server=server, requests=3000)
    assert r.best is not None and r.best.mean_batch_size > 1
    assert set(r.to_frame()["threads"]) >= {1, 2}
    unbatched = right_size(curves, 300, 100, hardware=HARDWARE[:2], server=UNBATCHED, requests=3000)
    assert unbatched.best.usd_per_h >= r.best.usd_per_h


def test_bad_sizing_arguments():
    with pytest.raises(ConfigError, match="rate_per_s"):
        size(0, 10)
    with pytest.raises(ConfigError, match="slo_p99_ms"):
        size(10, -1)
    with pytest.raises(ConfigError, match="not in the table"):
        size(10, 100, latency_scale={"nope": 2.0})
    with pytest.raises(ConfigError, match="max_utilisation"):
        size(10, 100, max_utilisation=1.5)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("a,cpu,2,,1,5,1.0,estimated,x", r"line 2 \(a\): usd_per_h is missing"),
        ("a,cpu,2,0.1,,5,1.0,estimated,x", r"line 2 \(a\): idle_w is missing"),
        ("a,cpu,2,0.1,1,,1.0,estimated,x", r"line 2 \(a\): max_w is missing"),
        ("a,cpu,2,cheap,1,5,1.0,estimated,x", r"usd_per_h='cheap' is not a number"),
        ("a,tpu,2,0.1,1,5,1.0,estimated,x", r"kind='tpu' must be cpu or gpu"),
        ("a,cpu,2,0.1,9,5,1.0,estimated,x", r"max_w=5.0 is below idle_w=9.0"),
        ("a,cpu,2,0.1,1,5,0,estimated,x", r"latency_scale=0 must be"),
        (",cpu,2,0.1,1,5,1.0,estimated,x", r"line 2: name is missing"),
    ],
)
def test_bad_hardware_rows_name_line_and_field(tmp_path, row, pattern):
    path = tmp_path / "hw.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(ConfigError, match=pattern):
        load_hardware(path)


def test_bad_hardware_tables(tmp_path):
    path = tmp_path / "hw.csv"
    path.write_text("name,kind\na,cpu\n")
    with pytest.raises(ConfigError, match="missing columns"):
        load_hardware(path)
    path.write_text(HEADER + "a,cpu,2,0.1,1,5,1.0,estimated,x\na,cpu,2,0.1,1,5,1.0,estimated,x\n")
    with pytest.raises(ConfigError, match="appear twice"):
        load_hardware(path)
    path.write_text(HEADER + "ok,cpu,2,0.1,1,5,1.0,estimated,x\nb,cpu,2,,1,5,,estimated,x\n")
    with pytest.raises(ConfigError, match=r"line 3 \(b\): usd_per_h is missing"):
        load_hardware(path)
