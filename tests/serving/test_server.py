"""One real server (a subprocess on a free loopback port) serving several bundles, driven by
``tritonclient.http`` and plain HTTP: results, batching, cache, cascade and every bad input."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import tritonclient.http as triton
from serving_helpers import export_bundle, infer_json, reference, serving
from tritonclient.utils import InferenceServerException

MAX_BODY_MB = 0.25


@pytest.fixture(scope="module")
def bundles(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return {
        "lin": export_bundle(
            models_dir / "lin.onnx",
            out / "lin",
            name="lin",
            batching={"max_batch_rows": 32, "max_delay_ms": 5.0},
        ),
        "cached": export_bundle(
            models_dir / "lin.onnx", out / "cached", name="lin-cached", cache={"enabled": True}
        ),
        "cascade": export_bundle(
            None,
            out / "cascade",
            name="casc",
            cascade=(models_dir / "small.onnx", models_dir / "large.onnx", 0.8),
        ),
        "emb": export_bundle(models_dir / "emb.onnx", out / "emb", name="emb"),
    }


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    with serving(list(bundles.values()), log, "--max-body-mb", str(MAX_BODY_MB)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.url, network_timeout=30)
    yield c
    c.close()


def _triton_infer(client, model, x, binary_in, binary_out):
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = triton.InferRequestedOutput("output", binary_data=binary_out)
    return client.infer(model, [inp], outputs=[out], request_id="req-7")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_results_equal_in_process_onnxruntime(server, client, models_dir, binary):
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    result = _triton_infer(client, "lin", x, binary_in=binary, binary_out=binary)
    want = reference(models_dir / "lin.onnx", {"input": x})["output"]
    np.testing.assert_allclose(result.as_numpy("output"), want, rtol=1e-6, atol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "lin"


def test_metadata_readiness_and_triton_config(server, client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lin") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("lin")
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert model["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}]
    config = client.get_model_config("lin")
    assert config["max_batch_size"] == 32
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [8]}]
    status, _, body = server.request("GET", "/v2/models/lin/versions/1/ready")
    assert status == 200 and json.loads(body) == {"name": "lin", "ready": True}


def test_nested_json_data_and_flat_data_give_the_same_answer(server, models_dir):
    x = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
    nested = {
        "inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32", "data": x.tolist()}],
        "id": "n1",
    }
    status, _, raw = server.request("POST", "/v2/models/lin/infer", json.dumps(nested).encode())
    assert status == 200
    doc = json.loads(raw)
    assert doc["id"] == "n1" and doc["outputs"][0]["shape"] == [2, 4]
    _, _, flat = infer_json(server, "lin", x)
    assert doc["outputs"][0]["data"] == flat["outputs"][0]["data"]
    want = reference(models_dir / "lin.onnx", {"input": x})["output"]
    np.testing.assert_allclose(np.array(flat["outputs"][0]["data"]).reshape(2, 4), want, 1e-6)


def test_concurrent_callers_form_batches_and_each_gets_its_own_rows(server, models_dir):
    batches_before = server.metric("serving_batch_rows_count", model="lin")
    rows_before = server.metric("serving_batch_rows_sum", model="lin")
    callers, requests_each = 16, 25
    failures: list[str] = []
    sent: list[tuple[np.ndarray, np.ndarray]] = []

    def caller(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        for j in range(requests_each):
            x = rng.standard_normal((1 + (i + j) % 3, 8)).astype(np.float32)
            status, _, doc = infer_json(server, "lin", x)
            if status != 200:
                failures.append(f"{status} {doc}")
                continue
            got = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(len(x), 4)
            sent.append((x, got))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    assert len(sent) == callers * requests_each
    xs = np.concatenate([x for x, _ in sent])
    want = reference(models_dir / "lin.onnx", {"input": xs})["output"]
    np.testing.assert_allclose(np.concatenate([g for _, g in sent]), want, rtol=1e-5, atol=1e-5)
    batches = server.metric("serving_batch_rows_count", model="lin") - batches_before
    rows = server.metric("serving_batch_rows_sum", model="lin") - rows_before
    assert rows == len(xs)
    assert rows / batches > 1.0, f"no batch held more than one row ({rows} rows, {batches} runs)"


def test_a_request_bigger_than_the_batch_limit_is_split_and_reassembled(server, models_dir):
    before = server.metric("serving_batch_rows_count", model="lin")
    x = np.random.default_rng(5).standard_normal((100, 8)).astype(np.float32)
    status, _, doc = infer_json(server, "lin", x)
    assert status == 200
    got = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(100, 4)
    np.testing.assert_allclose(
        got, reference(models_dir / "lin.onnx", {"input": x})["output"], rtol=1e-5, atol=1e-5
    )
    assert server.metric("serving_batch_rows_count", model="lin") - before >= 4  # 32+32+32+4
    assert server.metric("serving_batch_rows_bucket", model="lin", le="32.0") == server.metric(
        "serving_batch_rows_count", model="lin"
    )


def test_repeated_input_is_answered_from_the_cache(server, client):
    x = np.random.default_rng(9).standard_normal((3, 8)).astype(np.float32)
    hits = server.metric("serving_cache_hits_total", model="lin-cached")
    first = _triton_infer(client, "lin-cached", x, binary_in=False, binary_out=False)
    assert server.metric("serving_cache_hits_total", model="lin-cached") == hits
    second = _triton_infer(client, "lin-cached", x, binary_in=True, binary_out=True)
    assert server.metric("serving_cache_hits_total", model="lin-cached") == hits + 1
    np.testing.assert_array_equal(first.as_numpy("output"), second.as_numpy("output"))
    other = _triton_infer(client, "lin-cached", x + 1, binary_in=True, binary_out=True)
    assert server.metric("serving_cache_hits_total", model="lin-cached") == hits + 1
    assert not np.array_equal(other.as_numpy("output"), first.as_numpy("output"))


def test_cascade_escalates_the_rows_the_small_model_is_unsure_of(server, client, models_dir):
    from serving.router import confidence

    x = np.random.default_rng(3).standard_normal((40, 8)).astype(np.float32)
    small = reference(models_dir / "small.onnx", {"input": x})["output"]
    large = reference(models_dir / "large.onnx", {"input": x.reshape(40, 2, 4)})["output"]
    unsure = confidence(small, "max_softmax") < 0.8
    assert 0 < unsure.sum() < len(x), "the test data must hold sure and unsure rows"
    escalated = server.metric("serving_escalated_rows_total", model="casc")
    got = _triton_infer(client, "casc", x, binary_in=True, binary_out=True).as_numpy("output")
    np.testing.assert_allclose(got, np.where(unsure[:, None], large, small), rtol=1e-5, atol=1e-5)
    assert server.metric("serving_escalated_rows_total", model="casc") - escalated == unsure.sum()
    ratio = server.metric("serving_escalation_ratio", model="casc")
    assert 0 < ratio < 1


def test_variable_length_inputs_and_int64(server, models_dir):
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    status, _, doc = infer_json(server, "emb", ids, name="ids", datatype="INT64")
    assert status == 200
    want = reference(models_dir / "emb.onnx", {"ids": ids})["output"]
    assert doc["outputs"][0]["shape"] == [2, 3, 4]
    np.testing.assert_array_equal(np.array(doc["outputs"][0]["data"]).reshape(2, 3, 4), want)


def _post(server, model, body, headers=None):
    return server.request("POST", f"/v2/models/{model}/infer", body, headers or {})


GOOD = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}
BAD_REQUESTS = {
    "wrong shape": (
        "lin",
        {"inputs": [{**GOOD, "shape": [1, 7], "data": [0.0] * 7}]},
        400,
        "has shape [1, 7]; model 'lin' takes [-1, 8]",
    ),
    "wrong datatype": (
        "lin",
        {"inputs": [{**GOOD, "datatype": "FP64"}]},
        400,
        "datatype 'FP64'; model 'lin' takes FP32",
    ),
    "wrong tensor name": (
        "lin",
        {"inputs": [{**GOOD, "name": "pixels"}]},
        400,
        "no input 'pixels'; its inputs are ['input']",
    ),
    "data count": (
        "lin",
        {"inputs": [{**GOOD, "data": [0.0] * 9}]},
        400,
        "(8 values) but its data holds 9",
    ),
    "not numbers": (
        "lin",
        {"inputs": [{**GOOD, "data": ["a"] * 8}]},
        400,
        "data is not a FP32 array",
    ),
    "no inputs": ("lin", {"outputs": []}, 400, "non-empty 'inputs' list"),
    "unknown output": (
        "lin",
        {"inputs": [GOOD], "outputs": [{"name": "probs"}]},
        400,
        "no output 'probs'",
    ),
    "unknown model": ("nope", {"inputs": [GOOD]}, 404, "unknown model 'nope'"),
    "int64 out of range": (
        "emb",
        {"inputs": [{"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 99]}]},
        400,
        "failed on this input",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_v2_error_naming_the_problem(server, case):
    model, doc, status, phrase = BAD_REQUESTS[case]
    got, _, raw = _post(server, model, json.dumps(doc).encode())
    assert got == status
    assert phrase in json.loads(raw)["error"]


def test_malformed_json_oversized_body_and_unknown_version(server):
    status, _, raw = _post(server, "lin", b'{"inputs": [{"name": "input",')
    assert status == 400 and "not valid JSON" in json.loads(raw)["error"]
    big = json.dumps({"inputs": [{**GOOD, "shape": [8000, 8], "data": [0.0] * 64000}]}).encode()
    assert len(big) > MAX_BODY_MB * 2**20
    status, _, raw = _post(server, "lin", big)
    assert status == 413 and "exceeds the limit" in json.loads(raw)["error"]
    status, _, raw = server.request("POST", "/v2/models/lin/versions/9/infer", b"{}")
    assert status == 404 and "no version '9'" in json.loads(raw)["error"]
    status, _, raw = server.request("GET", "/v2/models/lin/infer")
    assert status == 405 and "use POST" in json.loads(raw)["error"]
    status, _, raw = server.request("GET", "/v2/models/lin/versions/1")
    assert status == 200 and json.loads(raw)["name"] == "lin"


def test_binary_body_with_wrong_sizes_is_refused(server):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    ).encode()
    body = head + np.zeros(8, np.float32).tobytes()[:20]
    headers = {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    status, _, raw = _post(server, "lin", body, headers)
    assert status == 400 and "binary_data_size" in json.loads(raw)["error"]


def test_the_server_survives_bad_input_and_counts_failures(server, client):
    failures = server.metric("serving_failures_total", model="lin")
    _post(server, "lin", b"\xff\xfe garbage")
    assert server.metric("serving_failures_total", model="lin") == failures + 1
    assert client.is_server_live()
    x = np.ones((1, 8), np.float32)
    assert _triton_infer(client, "lin", x, True, True).as_numpy("output").shape == (1, 4)
    with pytest.raises(InferenceServerException, match="unknown model"):
        _triton_infer(client, "missing", x, True, True)


def test_metrics_expose_every_series_in_valid_prometheus_format(server):
    from prometheus_client.parser import text_string_to_metric_families

    _, headers, body = server.request("GET", "/metrics")
    assert headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    for want in (
        "serving_requests",
        "serving_failures",
        "serving_request_seconds",
        "serving_queue_seconds",
        "serving_compute_seconds",
        "serving_batch_rows",
        "serving_queue_rows",
        "serving_cache_hits",
        "serving_escalated_rows",
        "serving_escalation_ratio",
        "serving_predictions",
    ):
        assert want in names, want
