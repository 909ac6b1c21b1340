"""Production behaviour of the real server: auth, overload, SIGTERM under load, refused bundles,
archives."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton
from serving_helpers import REPO, export_bundle, infer_json, reference, serving, slow_onnx
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def lin_bundle(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ops") / "lin"
    return export_bundle(models_dir / "lin.onnx", out, name="lin", tar=True)


def test_bearer_token_guards_everything_but_health(lin_bundle, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with serving([lin_bundle], tmp_path / "log", "--token-file", str(token_file)) as server:
        x = np.ones((1, 8), np.float32)
        assert server.request("GET", "/v2/health/ready")[0] == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            status, got, raw = server.request("GET", "/v2/models/lin", headers=headers)
            assert status == 401 and got["www-authenticate"] == "Bearer"
            assert "bearer token" in json.loads(raw)["error"]
        assert server.request("GET", "/metrics")[0] == 401
        client = triton.InferenceServerClient(server.url)
        with pytest.raises(InferenceServerException, match="bearer token"):
            client.get_model_metadata("lin")
        auth = {"Authorization": "Bearer s3cret-token"}
        inp = triton.InferInput("input", [1, 8], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("lin", [inp], headers=auth)
        assert result.as_numpy("output").shape == (1, 4)
        client.close()
        assert server.log()[0]["auth"] is True


def test_overload_answers_503_with_retry_after_and_keeps_serving(tmp_path):
    # ~10x the shared slow model, so 24 callers overlap even when a loaded machine starts
    # their threads slowly: the queue of 2 rows must overflow
    slower = slow_onnx(tmp_path / "slow.onnx", depth=600)
    bundle = export_bundle(
        slower,
        tmp_path / "slow",
        name="slow",
        batching={"max_batch_rows": 1, "max_queue_rows": 2},
    )
    callers = 24
    start = threading.Barrier(callers)
    results: list[tuple[int, dict, dict]] = []
    with serving([bundle], tmp_path / "log") as server:

        def caller() -> None:
            x = np.ones((1, 256), np.float32)
            start.wait(30)
            results.append(infer_json(server, "slow", x))

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(status for status, _, _ in results)
        assert len(results) == callers and set(statuses) <= {200, 503}, statuses
        refused = [(h, doc) for status, h, doc in results if status == 503]
        assert refused and 200 in statuses, statuses
        for headers, doc in refused:
            assert int(headers["retry-after"]) >= 1
            assert "overloaded" in doc["error"]
        assert server.metric("serving_failures_total", model="slow", reason="overloaded") == len(
            refused
        )
        assert infer_json(server, "slow", np.ones((1, 256), np.float32))[0] == 200


@pytest.mark.reliability
def test_sigterm_under_load_finishes_every_accepted_request(models_dir, tmp_path):
    bundle = export_bundle(
        models_dir / "slow.onnx",
        tmp_path / "slow",
        name="slow",
        batching={"max_batch_rows": 4, "max_delay_ms": 1.0},
        threads={"instances": 2, "inline_below_ms": 0},  # worker threads, two sessions
    )
    server = None
    try:
        from serving_helpers import start_server

        server = start_server([bundle], tmp_path / "log")
        received: list[tuple[int, bool]] = []
        errors: list[str] = []
        want_w = reference(models_dir / "slow.onnx", {"input": np.eye(256, dtype=np.float32)})

        def caller(seed: int) -> None:
            rng = np.random.default_rng(seed)
            deadline = time.monotonic() + 30
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            while time.monotonic() < deadline:
                x = rng.standard_normal((1, 256)).astype(np.float32)
                body = json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [1, 256],
                                "datatype": "FP32",
                                "data": x.ravel().tolist(),
                            }
                        ]
                    }
                )
                try:
                    conn.request("POST", "/v2/models/slow/infer", body)
                    resp = conn.getresponse()
                    doc = json.loads(resp.read())
                except ConnectionRefusedError:
                    return  # the listener is closed: nothing more can be accepted
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                    errors.append(type(e).__name__)  # an idle keep-alive connection was closed
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                    continue
                out = np.array(doc["outputs"][0]["data"], np.float32) if resp.status == 200 else 0
                ok = resp.status == 200 and np.allclose(out, x[0] @ want_w["output"], atol=1e-4)
                received.append((resp.status, ok))

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        while len(received) < 20:
            time.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        # a graceful stop exits 0; -SIGTERM is accepted should the handler not be installed yet
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        shutdown = [e for e in server.log() if e.get("msg") == "shutdown"]
        assert shutdown, server.log_path.read_text()
        accepted, answered = shutdown[0]["accepted"], shutdown[0]["answered"]
        assert accepted == answered == len(received), (accepted, answered, len(received), errors)
        assert all(status == 200 and ok for status, ok in received)
    finally:
        if server is not None:
            server.stop(signal.SIGKILL)


@pytest.mark.parametrize("damage", ["tampered", "missing", "extra pickle"])
def test_a_damaged_bundle_is_refused_at_start_naming_the_file(lin_bundle, tmp_path, damage):
    import shutil

    bundle = tmp_path / "copy"
    shutil.copytree(lin_bundle, bundle)
    model = bundle / "models" / "lin.onnx"
    if damage == "tampered":
        data = bytearray(model.read_bytes())
        data[-5] ^= 0xFF
        model.write_bytes(bytes(data))
        phrase = "checksum mismatch for"
    elif damage == "missing":
        model.unlink()
        phrase = "incomplete"
    else:
        (bundle / "models" / "extra.pkl").write_bytes(b"\x80\x04N.")
        phrase = "is a pickle"
    out = subprocess.run(
        [sys.executable, "-m", "serving", str(bundle), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 2
    error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
    assert phrase in error
    assert str(model if damage != "extra pickle" else bundle / "models" / "extra.pkl") in error


def test_a_bundle_archive_is_served(lin_bundle, models_dir, tmp_path):
    archive = lin_bundle.with_name("lin.tar.gz")
    assert archive.is_file()
    with serving([archive], tmp_path / "log") as server:
        x = np.ones((2, 8), np.float32)
        status, _, doc = infer_json(server, "lin", x)
        assert status == 200
        want = reference(models_dir / "lin.onnx", {"input": x})["output"]
        np.testing.assert_allclose(np.array(doc["outputs"][0]["data"]).reshape(2, 4), want, 1e-6)
