"""The panels built headless over real workbench calls (digits-cnn, tiny settings): results land
in the session and the run store, flow between panels, and errors read as one line."""

from __future__ import annotations

import json

import pytest

from widgets import Dashboard, Session

SECONDS = 0.15


@pytest.fixture
def app(tmp_path) -> Dashboard:
    d = Dashboard(Session(tmp_path / "runs.sqlite", background=False), bundles_dir=tmp_path / "b")
    d.profile.seconds.value = SECONDS
    return d


def profiled(app: Dashboard) -> Dashboard:
    app.profile.model.value = "digits-cnn"
    app.profile.run_button.click()
    assert app.profile.error.value == "", app.profile.error.value
    return app


def mimes(panel) -> list[str]:
    return [m for o in panel.out.outputs for m in o["data"] if m != "text/plain"]


def dollars(html: str) -> float:
    return float(html.split("$")[1].split("<")[0].replace(",", ""))


def test_profile_lands_in_session_and_store_and_cost_follows_its_inputs(app) -> None:
    profiled(app)
    p = app.session.profile
    assert p is not None and p.energy is not None
    run = app.session.store.get(p.run_id)
    assert run.kind == "profile" and run.metrics["energy_j_per_item"] == p.energy.energy_j_per_item
    assert mimes(app.profile)[:2] == ["image/svg+xml", "text/html"]  # latency chart, table
    assert "ms" in app.profile.latency.value

    cost = app.cost
    assert cost.source.value == p.run_id  # the profile flowed into the cost tab untyped
    before, svg_before = dollars(cost.total.value), cost.out.outputs[0]["data"]["image/svg+xml"]
    cost.inputs["instance_usd_per_h"].value = 2 * cost.inputs["instance_usd_per_h"].value
    after = dollars(cost.total.value)
    assert after > before
    assert cost.out.outputs[0]["data"]["image/svg+xml"] != svg_before
    assert app.session.cost.total_cost_usd == pytest.approx(after, abs=1)
    assert "day" in cost.break_even.value  # training included: a break-even day exists

    saved = cost.save()
    cost.inputs["instance_usd_per_h"].value = 9.0
    message = app.session.reopen(saved)
    assert "cost inputs restored" in message
    assert cost.inputs["instance_usd_per_h"].value == pytest.approx(0.68)
    assert dollars(cost.total.value) == pytest.approx(after, abs=1)


def test_errors_show_as_one_readable_line(app, tmp_path) -> None:
    app.profile.run_button.click()
    text = app.profile.error.value
    assert "no model chosen" in text and "Traceback" not in text
    assert app.profile.error.layout.display is None  # shown

    app.profile.path.value = str(tmp_path / "missing.onnx")
    app.profile.load_button.click()
    assert "missing.onnx" in app.profile.error.value

    profiled(app)
    assert app.profile.error.layout.display == "none"  # cleared by the next success
    app.cost.inputs["pue"].value = 0.5
    assert "grid.pue must be &gt;= 1" in app.cost.error.value

    app.batching.act(app.batching._size)
    assert "no batch curve yet" in app.batching.error.value

    app.compression.batch_sizes.value = "1,x"
    app.compression.run()
    assert "whole numbers separated by commas" in app.compression.error.value


def test_compression_result_flows_into_batching_cost_and_export(app) -> None:
    profiled(app)
    c = app.compression
    c.variants.value = ("ort-fp32", "ort-int8-dynamic-per-channel")
    c.batch_sizes.value = "8"
    c.seconds.value = 0.1
    c.run()
    assert c.error.value == "", c.error.value
    rec = app.session.recommendation
    assert rec is not None and rec.candidate.label in c.recommended.value
    assert mimes(c)[0] == "image/svg+xml"  # Pareto chart
    kinds = {r.kind for r in app.session.store.runs()}
    assert {"variant", "optimize"} <= kinds

    # cost: the recommendation is a scenario, chosen, and compared with the profiled model
    assert app.cost.source.value == rec.candidate.run_id
    assert "against" in app.cost.savings.value

    # batching measures the recommendation
    assert "recommended" in app.batching.target.value
    app.batching.batch_sizes.value = "1,4"
    app.batching.seconds.value = 0.1
    app.batching.run()
    assert app.batching.error.value == "", app.batching.error.value
    knee = app.session.batching.knee_batch_size
    assert knee in (1, 4) and app.export.max_batch.value == knee

    info = app.export.run()
    manifest = json.loads((info.path / "manifest.json").read_text())
    assert manifest["profile"]["run_id"] == rec.candidate.run_id
    assert manifest["batching"]["max_batch_rows"] == knee
    assert manifest["threads"]["threads"] == rec.candidate.threads
    assert app.session.bundle is info
    assert "export" in {r.kind for r in app.session.store.runs()}


def test_stop_button_ends_a_running_sweep_and_keeps_what_finished(tmp_path) -> None:
    app = Dashboard(Session(tmp_path / "runs.sqlite", background=True))
    app.profile.model.value = "digits-cnn"
    b = app.batching
    b.batch_sizes.value = "1,2,4,8,16,32"
    b.seconds.value = 0.1
    b.progress.observe(lambda ch: b.stop_button.click() if ch["new"] == 1 else None, "value")
    b.run()
    assert b.stop_button.disabled is False  # running in its thread
    b.join(60)
    assert b.error.value == "", b.error.value
    assert b.run_button.disabled is False and b.stop_button.disabled is True
    frame = app.session.batching.to_frame()
    assert len(frame) == 1  # stopped after the first size
    assert len(app.session.store.runs(kind="profile")) == 1


def test_cache_and_cascade_feed_the_cost_tab(app) -> None:
    profiled(app)
    before = dollars(app.cost.total.value)
    app.cascade.max_entries.value = 300
    app.cascade.act(app.cascade._cache)
    rate = app.session.cache_hit_rate
    assert 0 < rate < 1 and app.cost.inputs["cache_hit_rate"].value == pytest.approx(rate, abs=1e-4)
    assert app.export.cache.value is True
    assert "cache" in {r.kind for r in app.session.store.runs()}
    assert dollars(app.cost.total.value) <= before  # fewer served requests never cost more

    app.cascade.min_accuracy.value = 0.9
    app.cascade.act(app.cascade._cascade)
    assert app.cascade.error.value == "", app.cascade.error.value
    choice = app.session.cascade
    assert choice.accuracy >= 0.9 and "cheaper" in app.cascade.choice.value


def test_runs_panel_lists_and_reopens_a_profile(app) -> None:
    profiled(app)
    first = app.session.profile.run_id
    app.profile.batch_size.value = 4
    app.profile.run_button.click()
    runs = app.runs
    ids = [v for _, v in runs.run_id.options]
    assert first in ids and app.session.profile.run_id in ids
    runs.run_id.value = first
    message = runs.reopen()
    assert f"run {first}" in message
    assert app.session.figures.run_id == first
    assert app.cost.source.value == first  # cost now uses the reopened run
    assert "b=1" in app.profile.out.outputs[0]["data"]["text/plain"] or mimes(app.profile)


def test_monitor_panel_charts_a_live_runtime_of_the_exported_bundle(tmp_path, monkeypatch) -> None:
    import sys
    import threading
    from pathlib import Path

    import orjson

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
    from serving_helpers import linear_onnx, serving

    from workbench.load.generator import constant_rate, open_loop

    (tmp_path / "no-rapl").mkdir()
    monkeypatch.setenv("SERVING_RAPL_ROOT", str(tmp_path / "no-rapl"))  # the estimate meter
    app = Dashboard(Session(tmp_path / "runs.sqlite", background=False), bundles_dir=tmp_path / "b")
    app.session.load(linear_onnx(tmp_path / "lin.onnx"))
    info = app.export.run()
    panel = app.monitor
    assert panel.bundle.value == str(info.path)  # the export tab's bundle flowed in

    panel.bundle.value = str(tmp_path)
    panel.run_button.click()
    assert "is not a bundle" in panel.error.value and "Traceback" not in panel.error.value

    panel.bundle.value = str(info.path)
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                                     "data": [0.5] * 8}]})  # fmt: skip
    with serving([info.path], tmp_path / "server.log") as server:
        times = constant_rate(50, 3.5)
        load = threading.Thread(target=open_loop, args=("127.0.0.1", server.port, "lin", body,
                                                        times))  # fmt: skip
        load.start()
        panel.url.value, panel.interval.value, panel.duration.value = server.url, "0.5s", "1.5"
        panel.run_button.click()
        load.join()
    assert panel.error.value == "", panel.error.value
    assert mimes(panel) == ["image/svg+xml", "text/html"]  # the chart, the window table
    svg = panel.out.outputs[0]["data"]["image/svg+xml"]
    assert "J per prediction" in svg and "idle share" in svg and "estimated" in svg
    assert (panel.progress.value, panel.progress.max) == (3, 3)
    assert "no drift on lin" in panel.verdict.value
    runs = app.session.store.runs(kind="monitor")
    assert [r.config["window"] for r in runs] == [3, 2, 1]
    assert all(r.metrics["predictions"] > 0 for r in runs)
    assert sum(r.metrics["energy_j"] for r in runs) > 0  # the runtime's live meter, metered
    assert "3 windows stored as monitor runs" in panel.status.value


def test_monitor_panel_stop_ends_the_watch_after_the_current_window(tmp_path) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
    from serving_helpers import export_bundle, linear_onnx, serving

    bundle = export_bundle(linear_onnx(tmp_path / "lin.onnx"), tmp_path / "b")
    app = Dashboard(Session(tmp_path / "runs.sqlite", background=True))
    panel = app.monitor
    with serving([bundle], tmp_path / "server.log") as server:
        panel.url.value, panel.bundle.value = server.url, str(bundle)
        panel.interval.value, panel.duration.value = "0.3s", "10m"
        panel.progress.observe(lambda ch: panel.stop_button.click() if ch["new"] == 1 else None,
                               "value")  # fmt: skip
        panel.run_button.click()
        panel.join(30)
    assert panel.error.value == "", panel.error.value
    assert len(panel.report.windows) == 1 and panel.run_button.disabled is False
    assert len(app.session.store.runs(kind="monitor")) == 1
