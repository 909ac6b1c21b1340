"""Load and overload against the real server, open loop on loopback (the scenarios of
``benchmarks/reliability.py``, short by default: ``WORKBENCH_RELIABILITY=full`` runs them at full
length, a 10-minute soak and a 15 s burst, with the issue's targets).

The server under test: a 5 ms model, the default queue bound (1024 requests) and overload
control by arrival rate (see the benchmark). The short versions check every property that other
jobs on a shared 2-core machine cannot break (nothing but 200 or 503, every 503 with Retry-After, no
request unanswered, memory flat). Three are targets that such jobs do break, by taking the cores
the server needs (measured at load average 5: 10 % of 503s in the soak, an accepted p99 4x the
unloaded one); the short versions allow for that, the full run does not:

- soak 503s: at most 25 % of the requests (full: none);
- accepted p99 during the burst: within 8x the unloaded p99 (full: 2x). With the default queue
  bound of 1024 rows and no overload detection, a 5 s burst at 4x capacity gave an accepted p99
  of 6 s, 47x the unloaded p99, and no recovery in the 5 s after: this still fails where
  admission control fails;
- after the burst: at least 90 % answered 200 (full: recovered within 5 s).

The stalls test freezes the server (SIGSTOP) for 200 ms every 3 s at 80 % of capacity: the
requests sent meanwhile arrive at once and are queued and served, none refused. With the earlier
queue-length detection (a bound of 4 and CoDel's standing-queue test) such stalls of the shared
machine caused the 387 503s of a 10-minute soak.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from serving_helpers import REPO, Server

FULL = os.environ.get("WORKBENCH_RELIABILITY") == "full"
pytestmark = pytest.mark.reliability


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "reliability_benchmark", REPO / "benchmarks" / "reliability.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _benchmark()
LENGTHS = bench.FULL if FULL else bench.QUICK


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return bench.build_bundle(tmp_path_factory.mktemp("reliability"))


@pytest.fixture(scope="module")
def loaded(bundle, tmp_path_factory):
    """A server on the fixed-time model and its measured capacity (requests/s)."""
    with bench.serve(bundle, tmp_path_factory.mktemp("log") / "server.log") as server:
        cap = bench.capacity(server, bench.request_body(), LENGTHS)
        assert cap.refused_503 == 0 and 30 < cap.requests_per_s < 5000, cap
        yield server, cap.requests_per_s


@pytest.mark.load
def test_soak_at_80_percent_of_capacity_has_no_errors_and_flat_memory(loaded):
    server, capacity = loaded
    result = bench.soak(server, bench.request_body(), capacity, LENGTHS)
    s = result["figures"]["summary"]
    assert s["requests_sent"] >= 0.75 * capacity * LENGTHS.soak_s
    assert s["errors"] == 0 and s["unanswered"] == 0, s  # nothing but 200 and 503
    assert s["server_errors_not_503"] == 0 and s["refused_without_retry_after"] == 0, s
    allowed_503 = 0 if FULL else 0.25 * s["requests_sent"]
    assert s["refused_503"] <= allowed_503, s
    assert result["checks"]["memory growth < 10 %"], result["figures"]["memory_growth_pct"]


@pytest.mark.load
def test_overload_refuses_beyond_the_bound_keeps_accepted_fast_and_recovers(loaded):
    server, capacity = loaded
    result = bench.overload(server, bench.request_body(), capacity, LENGTHS)
    f, checks = result["figures"], result["checks"]
    assert checks["only 200 or 503"], f
    assert checks["every 503 has Retry-After"], f
    assert checks["requests beyond the bound refused"], f["burst"]
    # still serving during the burst (measured: 87 % of capacity at load average 4.5, 31 % at 7.7)
    assert f["burst"]["ok"] >= (0.7 if FULL else 0.2) * capacity * LENGTHS.burst_s, f["burst"]
    assert f["p99_ratio"] is not None and f["p99_ratio"] <= (2 if FULL else 8), f
    if FULL:
        assert checks["recovered within 5 s"], f["recovery_s"]
    else:  # one stall of the shared machine late in a 5 s tail can refuse a request there
        after = f["after"]
        assert after["ok"] >= 0.9 * after["requests_sent"], after
    # the server's books agree with the client's, and refusals are logged once a second at most
    refused = sum(f[phase]["refused_503"] for phase in ("baseline", "burst", "after"))
    books = Server(server.proc, server.log_path, server.port)
    assert books.metric("serving_failures_total", model=bench.MODEL, reason="overloaded") >= refused
    lines = [e for e in server.log() if e.get("msg") == "overloaded: requests refused"]
    span_s = LENGTHS.baseline_s + LENGTHS.burst_s + LENGTHS.after_s
    assert 1 <= len(lines) <= span_s + 2, len(lines)
    assert all(e["status"] == 503 and "overloaded" in e["error"] for e in lines)


@pytest.mark.load
def test_stalls_of_the_server_at_80_percent_are_absorbed_not_refused(loaded):
    server, capacity = loaded
    result = bench.stalls(server, bench.request_body(), capacity, LENGTHS)
    f = result["figures"]
    assert result["checks"]["stalls happened"], f
    s = f["summary"]
    assert s["unanswered"] == 0 and s["errors"] == 0, s
    assert s["refused_503"] == 0, s
    assert s["latency_ms_max"] >= 0.8 * bench.STALL_MS, "the stalls delayed requests"


def test_sigterm_under_open_loop_load_loses_no_accepted_request(bundle, tmp_path):
    result = bench.sigterm(bundle, bench.request_body(), 150.0, tmp_path, LENGTHS)
    f = result["figures"]
    assert all(result["checks"].values()), (result["checks"], f)
    assert f["lost_requests"] == 0 and f["server_accepted"] > 0


def test_a_connection_the_server_closed_while_idle_is_not_a_lost_request(models_dir, tmp_path):
    """The server closes keep-alive connections idle beyond ``--idle-timeout-s``; the load
    generator resends on a fresh connection (as HTTP clients do) instead of counting the
    request unanswered. Before this, a 10-minute soak counted 26 such requests as lost."""
    import numpy as np
    import orjson
    from serving_helpers import export_bundle, serving

    from workbench.load import generator as loadgen

    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin", name="lin")
    body = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}
    )
    with serving([bundle], tmp_path / "server.log", "--idle-timeout-s", "0.3") as server:
        times = np.array([0.0, 0.1, 1.5, 1.6, 3.0])  # gaps longer than the idle timeout
        result = loadgen.open_loop("127.0.0.1", server.port, "lin", body, times, connections=1)
    assert list(result.status) == [200] * len(times)
