"""``workbench monitor``: the exposition parser (cross-checked with prometheus_client on the
runtime's own renderer), window figures and drift on hand-written scrapes with honest numbers,
and the whole loop against a real runtime driven at two loads and with a slowed model."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from serving.manifest import Cost, Manifest, ModelFile, Slo
from serving.metrics import ServingMetrics
from workbench.errors import ConfigError
from workbench.measure.store import RunStore
from workbench.monitor import (
    Baseline,
    MonitorReport,
    Thresholds,
    compare,
    monitor,
    parse,
    parse_duration,
    window,
)
from workbench.monitor.window import histogram_quantile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "serving"))
from serving_helpers import REPO, export_bundle, linear_onnx, serving

LIVE = '{component="%s",method="%s",meter="%s"}'


def exposition(
    energy: dict, idle: dict, predictions: float, buckets: list, price: float | None = None
) -> str:
    """A runtime's /metrics as text: live energy per (component, method, meter), predictions,
    requests and the request-time histogram of model ``m`` (cumulative ``(le, count)``)."""
    lines = ["# TYPE serving_live_energy_joules_total counter"]
    lines += [f"serving_live_energy_joules_total{LIVE % k} {v}" for k, v in energy.items()]
    lines += [f"serving_live_idle_energy_joules_total{LIVE % k} {v}" for k, v in idle.items()]
    lines.append(f'serving_predictions_total{{model="m"}} {predictions}')
    lines.append(f'serving_requests_total{{model="m",code="200"}} {buckets[-1][1]}')
    for le, n in buckets:
        lines.append(f'serving_request_seconds_bucket{{model="m",le="{le}"}} {n}')
    lines.append(f'serving_request_seconds_count{{model="m"}} {buckets[-1][1]}')
    lines.append('serving_model_ready{model="m"} 1')
    if price is not None:
        lines.append(f'serving_instance_usd_per_hour{{model="m"}} {price}')
    return "\n".join(lines) + "\n"


CPU = ("cpu", "estimated", "process-cpu")


def test_parser_reads_the_runtimes_exposition_as_prometheus_client_does() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    m = ServingMetrics()
    m.requests.inc(('a "quoted" \\ model\nname', "200"), 3)
    m.request_seconds.observe(("digits",), 0.0007, count=5)
    m.request_seconds.observe(("digits",), 0.3)
    m.energy_per_prediction.set(("digits", "main", "unknown", ""), float("nan"))
    m.instance_usd_per_hour.set(("digits",), 0.68)
    text = m.render().decode()
    ours = [(s.name, s.labels, s.value) for s in parse(text).samples]
    theirs = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    assert len(ours) == len(theirs) > 20
    for (name, labels, value), (name2, labels2, value2) in zip(ours, theirs):
        assert (name, labels) == (name2, labels2)
        assert value == value2 or (math.isnan(value) and math.isnan(value2))
    assert parse(text).total("serving_requests_total") == 3


def test_parser_names_a_line_that_is_not_a_sample() -> None:
    with pytest.raises(ConfigError, match="line 2 of the metrics is not a Prometheus sample"):
        parse("ok 1\n<html>not metrics</html>\n")


def test_a_window_turns_counter_deltas_into_live_figures() -> None:
    # 10 s: 50 J (5 W), 10 J of it idle, 500 predictions; 400 requests <= 1 ms, 90 <= 2.5 ms,
    # 10 <= 5 ms: the 99th percentile (rank 495) is halfway into the 2.5-5 ms bucket.
    before = parse(
        exposition({CPU: 120}, {CPU: 20}, 1000,
                   [(0.001, 800), (0.0025, 980), (0.005, 1000), ("+Inf", 1000)],
                   price=0.36),
        at=100, wall=1.7e9,
    )  # fmt: skip
    after = parse(
        exposition({CPU: 170}, {CPU: 30}, 1500,
                   [(0.001, 1200), (0.0025, 1470), (0.005, 1500), ("+Inf", 1500)],
                   price=0.36),
        at=110, wall=1.7e9 + 10,
    )  # fmt: skip
    w = window(before, after, model="m")
    assert w.seconds == 10 and w.requests_per_s == 50 and w.predictions == 500
    assert w.energy_j == 50 and w.power_w == 5
    assert w.j_per_prediction == pytest.approx(0.1)
    assert w.idle_share == pytest.approx(0.2)
    assert w.latency_ms_p99 == pytest.approx(3.75)
    assert w.usd_per_1m == pytest.approx(0.36 / 3600 * 10 / 500 * 1e6)  # $2 per 1M
    assert w.energy_method == "estimated" and w.meters == "process-cpu"
    assert w.start.startswith("2023-11-14T22:13:20")


def test_meters_add_up_and_the_weakest_method_labels_the_window() -> None:
    rapl, gpu = ("cpu_package:0", "measured", "rapl"), ("gpu:0", "measured", "nvml")
    est = ("cpu", "estimated", "process-cpu")
    b = [(0.001, 0), ("+Inf", 0)]
    before = parse(exposition({rapl: 10, gpu: 100}, {rapl: 0, gpu: 0}, 0, b), at=0)
    after = parse(exposition({rapl: 30, gpu: 160}, {rapl: 8, gpu: 0}, 40, b), at=2)
    w = window(before, after, model="m")
    assert w.energy_j == 80 and w.power_w == 40 and w.j_per_prediction == 2
    assert w.idle_share == pytest.approx(0.1) and w.energy_method == "measured"
    assert w.meters == "rapl,nvml" and math.isnan(w.latency_ms_p99)  # no request finished
    mixed = parse(exposition({rapl: 30, est: 5}, {rapl: 0, est: 0}, 40, b), at=2)
    assert window(before, mixed).energy_method == "estimated"


def test_a_restarted_server_counts_from_zero_and_no_live_energy_is_nan() -> None:
    b = [(0.001, 10), ("+Inf", 10)]
    before = parse(exposition({CPU: 500}, {CPU: 100}, 1000, [(0.001, 900), ("+Inf", 900)]), at=0)
    after = parse(exposition({CPU: 4}, {CPU: 1}, 10, b), at=5)  # restarted in between
    w = window(before, after, model="m")
    assert (w.energy_j, w.predictions, w.requests) == (4, 10, 10)
    assert w.j_per_prediction == pytest.approx(0.4)
    bare = parse('serving_predictions_total{model="m"} 3\n', at=0)
    bare2 = parse('serving_predictions_total{model="m"} 9\n', at=1)
    w = window(bare, bare2, model="m", usd_per_h=3.6)
    assert math.isnan(w.j_per_prediction) and w.energy_method == ""
    assert w.usd_per_1m == pytest.approx(3.6 / 3600 / 6 * 1e6)  # the bundle's price


def test_histogram_quantile_interpolates_in_its_bucket() -> None:
    assert histogram_quantile(0.99, [(0.01, 99), (0.02, 100), (math.inf, 100)]) == 0.01
    assert histogram_quantile(0.5, [(0.01, 0), (0.02, 10), (math.inf, 10)]) == 0.015
    assert histogram_quantile(0.99, [(0.01, 1), (math.inf, 100)]) == 0.01  # beyond: last bound
    assert math.isnan(histogram_quantile(0.99, [(0.01, 0), (math.inf, 0)]))


def manifest(**profile) -> Manifest:
    return Manifest(
        name="m",
        models=(ModelFile("m", "models/m.onnx"),),
        slo=Slo(p99_ms=profile.pop("slo", None)),
        cost=Cost(
            usd_per_million=profile.pop("usd_per_million", None),
            instance_usd_per_h=profile.pop("usd_per_h", None),
        ),
        profile=profile,
    )


def test_the_baseline_is_the_bundles_profile_plan_and_slo() -> None:
    base = Baseline.from_manifest(
        manifest(energy_j_per_item=0.02, latency_ms_p99=4.0, throughput_items_per_s=1000,
                 usd_per_h=0.36, slo=10)
    )  # fmt: skip
    assert base.j_per_prediction == 0.02 and base.latency_ms_p99 == 4 and base.slo_p99_ms == 10
    assert base.usd_per_1m == pytest.approx(0.1)  # $0.36/h at 1000/s: $0.1 per 1M
    planned = Baseline.from_manifest(manifest(throughput_items_per_s=1000, usd_per_h=0.36,
                                              usd_per_million=0.2))  # fmt: skip
    assert planned.usd_per_1m == 0.2 and planned.j_per_prediction is None


def test_drift_flags_only_figures_beyond_their_threshold() -> None:
    base = Baseline(j_per_prediction=0.1, latency_ms_p99=4.0, slo_p99_ms=10.0, usd_per_1m=2.0)
    ok = {"j_per_prediction": 0.119, "usd_per_1m": 2.39, "latency_ms_p99": 5.9}
    assert [d.drifted for d in compare(ok, base)] == [False, False, False]
    bad = compare({"j_per_prediction": 0.125, "usd_per_1m": 2.5, "latency_ms_p99": 6.1}, base)
    assert [d.figure for d in bad if d.drifted] == ["J/prediction", "cost per 1M", "p99"]
    assert "+25 %" in bad[0].reason and "limit +20 %" in bad[0].reason
    slo = compare({"latency_ms_p99": 11.0}, Baseline(None, None, 10.0, None))
    assert slo[2].drifted and "over the SLO's 10 ms" in slo[2].reason
    assert not any(d.drifted for d in slo[:2])  # no profile figure: shown, never flagged
    loose = Thresholds(max_energy_increase_pct=30)
    assert not compare({"j_per_prediction": 0.125}, base, loose)[0].drifted
    with pytest.raises(ConfigError, match="max_energy_increase_pct"):
        Thresholds(max_energy_increase_pct=-1)


def test_the_report_judges_the_whole_period_and_shows_each_window() -> None:
    b = [(0.001, 0), ("+Inf", 0)]
    scrapes = [parse(exposition({CPU: j}, {CPU: 0}, n, b), at=t)
               for t, j, n in ((0, 0, 0), (1, 10, 100), (2, 40, 200))]  # fmt: skip
    report = MonitorReport("u", "b", "m", Baseline(0.2, None, None, None), Thresholds())
    report.windows = [window(scrapes[0], scrapes[1]), window(scrapes[1], scrapes[2])]
    report.overall = window(scrapes[0], scrapes[2])
    frame = report.to_frame()
    assert list(frame["j_per_prediction"]) == [0.1, 0.3]
    assert list(frame["drift"]) == ["", "J/prediction"]  # the second window alone drifts
    assert report.drifted == [] and report.summary().startswith("no drift on m")  # 0.2 overall
    report.baseline = Baseline(0.1, None, None, None)
    assert "J/prediction: live 0.2 J is +100 %" in report.summary()


def test_durations_read_as_seconds() -> None:
    assert [parse_duration(x) for x in ("10s", "2m", "90", 1.5, " 1H ")] == [10, 120, 90, 1.5,
                                                                             3600]  # fmt: skip
    for bad in ("", "ten", "0s", "-1m", "inf"):
        with pytest.raises(ConfigError, match="give seconds or a number with s, m or h"):
            parse_duration(bad)


# -- against a real runtime (the estimate meter: no RAPL tree, no NVML) --------------------------


@pytest.fixture
def estimate_env(tmp_path, monkeypatch) -> dict:
    """The runtime's environment on a machine without RAPL or NVML: the process-CPU estimate."""
    (tmp_path / "no-rapl").mkdir()
    monkeypatch.setenv("SERVING_RAPL_ROOT", str(tmp_path / "no-rapl"))
    monkeypatch.setenv("SERVING_NVML_MODULE", "none")
    return dict(os.environ, PYTHONPATH=str(REPO))


def body(width: int) -> bytes:
    """One row of ``width`` floats as a V2 JSON request."""
    row = {"name": "input", "shape": [1, width], "datatype": "FP32", "data": [0.5] * width}
    return orjson.dumps({"inputs": [row]})


@contextmanager
def driven(server, model: str, rate: float, seconds: float, width: int = 8) -> Iterator[None]:
    """An open loop sending ``rate`` requests a second for ``seconds`` (+1.5 s) meanwhile."""
    from workbench.load.generator import constant_rate, open_loop

    times = constant_rate(rate, seconds + 1.5)
    args = ("127.0.0.1", server.port, model, body(width), times)
    load = threading.Thread(target=open_loop, args=args)
    load.start()
    time.sleep(0.3)  # the first scrape sees traffic already flowing
    try:
        yield
    finally:
        load.join()


def watched(server, bundle: Path, model: str, rate: float, seconds: float, width=8, **options):
    """Monitor ``server`` in 1 s windows while it serves ``rate`` requests a second."""
    with driven(server, model, rate, seconds, width):
        return monitor(server.url, bundle, interval_s=1.0, duration_s=seconds, **options)


def cli_monitor(url: str, bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", "monitor", url, "--bundle", str(bundle), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def test_monitor_sees_idle_share_fall_and_j_per_prediction_change_with_load(
    tmp_path, estimate_env, db_path
) -> None:
    from workbench.load.generator import fixed_time_model

    model = fixed_time_model(tmp_path / "busy.onnx", depth=8, dim=256)  # ~0.5 ms a row
    bundle = export_bundle(model, tmp_path / "b", instance_usd_per_h=0.36)
    with serving([bundle], tmp_path / "server.log", env=estimate_env) as server:
        low = watched(server, bundle, "busy", 10, 4, width=256, store=db_path)
        high = watched(server, bundle, "busy", 200, 3, width=256, store=db_path)
    lo, hi = low.overall, high.overall
    assert len(low.windows) == 4 and len(high.windows) == 3
    assert lo.requests_per_s == pytest.approx(10, rel=0.15)
    assert hi.requests_per_s == pytest.approx(200, rel=0.15)
    assert lo.energy_method == hi.energy_method == "estimated" and lo.meters == "process-cpu"
    assert lo.idle_share > hi.idle_share  # busier: less of the energy is spent idle
    assert 1 - hi.idle_share > 3 * (1 - lo.idle_share)  # 20x the requests: a busy share 3x+
    assert hi.power_w > 2 * lo.power_w > 0  # busier: more joules a second
    assert lo.j_per_prediction > hi.j_per_prediction > 0  # the idle overhead, over fewer rows
    # the instance costs the same per hour: 20x the rows, 1/20 the cost per 1M
    assert lo.usd_per_1m == pytest.approx(20 * hi.usd_per_1m, rel=0.2)
    runs = RunStore(db_path).runs(kind="monitor")
    assert len(runs) == 7 and {r.model for r in runs} == {"busy"}
    assert len({r.sweep_id for r in runs}) == 2  # one id per monitoring session
    newest = runs[0].metrics
    assert newest["j_per_prediction"] == high.windows[-1].j_per_prediction
    assert newest["idle_share"] == high.windows[-1].idle_share


def test_check_fails_when_the_served_model_is_slower_than_its_profile(
    tmp_path, estimate_env, db_path, capsys
) -> None:
    from workbench.cli import main
    from workbench.report import with_extra_work

    model = linear_onnx(tmp_path / "lin.onnx")
    plain = export_bundle(model, tmp_path / "plain", instance_usd_per_h=0.36)
    with serving([plain], tmp_path / "fast.log", env=estimate_env) as fast:
        live = watched(fast, plain, "lin", 100, 3, store=False).overall
        # the production figures come back as the profile the next bundles are exported with
        figures = {
            "energy_j_per_item": live.j_per_prediction,
            "energy_method": live.energy_method,
            "latency_ms_p99": live.latency_ms_p99,
            "throughput_items_per_s": live.requests_per_s,
        }
        same = export_bundle(model, tmp_path / "same", instance_usd_per_h=0.36, utilisation=1.0,
                             profile=figures)  # fmt: skip
        check = ["--interval", "1s", "--for", "3", "--check", "--db", db_path]
        loose = ["--max-energy-increase-pct", "60", "--max-p99-increase-pct", "300"]
        with driven(fast, "lin", 100, 3):
            code = main(["monitor", fast.url, "--bundle", str(same), *check, *loose])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert "no drift on lin" in out.out

    slow = with_extra_work(model, matmuls=6, width=1024, out_dir=tmp_path)
    slowed = export_bundle(slow, tmp_path / "slowed", instance_usd_per_h=0.36, utilisation=1.0,
                           profile=figures)  # fmt: skip
    with (
        serving([slowed], tmp_path / "slow.log", env=estimate_env) as server,
        driven(server, slow.name, 100, 3),
    ):
        code = main(["monitor", server.url, "--bundle", str(slowed), *check, *loose])
    out = capsys.readouterr()
    assert code == 1, out.out + out.err
    line = out.err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(f"error: drift on {slow.name}: J/prediction: live")
    assert "limit +60 %" in line
    assert len(RunStore(db_path).runs(kind="monitor", model=slow.name)) == 3


def test_bad_url_bundle_or_token_is_one_clear_line(tmp_path, estimate_env) -> None:
    model = linear_onnx(tmp_path / "lin.onnx")
    bundle = export_bundle(model, tmp_path / "b")
    other = export_bundle(linear_onnx(tmp_path / "other.onnx"), tmp_path / "o")
    out = cli_monitor("127.0.0.1:1", bundle, "--for", "1s", "--interval", "1s")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot read http://127.0.0.1:1/metrics" in out.stderr
    assert "start the runtime (python -m serving BUNDLE) or fix the URL" in out.stderr
    out = cli_monitor("127.0.0.1:1", tmp_path, "--for", "1s", "--interval", "1s")
    assert out.returncode == 2 and "is not a bundle: manifest.json is missing" in out.stderr
    with serving([bundle], tmp_path / "s.log", "--token", "s3cret", env=estimate_env) as server:
        with pytest.raises(ConfigError, match="HTTP 401; pass the runtime's bearer token"):
            monitor(server.url, bundle, interval_s=0.2, duration_s=0.2, store=False)
        with pytest.raises(ConfigError, match="serves lin, not the bundle's model 'other'"):
            monitor(server.url, other, token="s3cret", interval_s=0.2, duration_s=0.2)
        report = monitor(server.url, bundle, token="s3cret", interval_s=0.2, duration_s=0.4,
                         store=False)  # fmt: skip
    assert len(report.windows) == 2 and report.windows[0].energy_method == "estimated"
    assert "no drift on lin" in report.summary()  # no profile figures: nothing to drift from


def test_a_watch_shorter_than_one_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="--for 5 s is shorter than one --interval 10 s window"):
        monitor("127.0.0.1:1", "no-bundle", interval_s="10s", duration_s="5s")
