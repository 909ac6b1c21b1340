"""Trace replay against the real runtime on loopback, and the figures it measures."""

import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from workbench.errors import ConfigError
from workbench.plan.batch_curve import BatchLatencyCurve
from workbench.plan.replay import replay_trace
from workbench.plan.simulator import ServerConfig, predict
from workbench.plan.traces import poisson_trace, trace_from_times

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "serving"))
from serving_helpers import export_bundle, linear_onnx, serving


def _body(x: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    )


def test_replay_measures_every_request_of_the_trace(tmp_path):
    bundle = export_bundle(linear_onnx(tmp_path / "lin.onnx"), tmp_path / "lin", name="lin")
    trace = poisson_trace(200.0, 1.0, seed=3)
    with serving([bundle], tmp_path / "log") as server:
        result = replay_trace(
            "127.0.0.1",
            server.port,
            "lin",
            trace,
            _body(np.ones((1, 8), np.float32)),
            connections=8,
        )
        wrong = replay_trace(
            "127.0.0.1",
            server.port,
            "nope",
            trace_from_times([0.0, 0.01]),
            _body(np.ones((1, 8), np.float32)),
        )
    f = result.figures
    assert (f.requests, f.served, f.dropped) == (trace.n_requests, trace.n_requests, 0)
    assert set(result.status) == {200} and f.method == "measured"
    assert np.array_equal(result.arrival_s, trace.times_s)
    latency = result.finish_s - result.arrival_s
    assert (latency > 0).all() and latency.max() < 1.0
    assert f.latency_ms_p50 <= f.latency_ms_p99 <= f.latency_ms_max
    # open loop: the throughput is the trace's own rate, as the simulator predicts it
    unbatched = ServerConfig(max_batch_rows=1, max_delay_ms=0.0, max_queue_rows=None)
    predicted = predict(trace, BatchLatencyCurve.from_points({1: 0.05}), unbatched)
    assert f.throughput_requests_per_s == pytest.approx(
        predicted.throughput_requests_per_s, rel=0.05
    )
    assert list(wrong.status) == [404, 404] and wrong.figures.dropped == 2


def test_replay_refuses_addresses_off_this_machine():
    with pytest.raises(ConfigError, match="not a loopback address"):
        replay_trace("10.0.0.1", 80, "m", trace_from_times([0.0]), b"{}")
