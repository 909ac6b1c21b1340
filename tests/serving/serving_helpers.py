"""Helpers for the serving tests: tiny real models (built with onnx.helper in milliseconds),
bundles exported from them, and a real server started as a subprocess on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def linear_onnx(
    path: Path,
    in_dim: int = 8,
    classes: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    in_shape: tuple[int, ...] | None = None,
) -> Path:
    """``logits = reshape(x, [-1, in_dim]) @ W + b``: a classifier of ``classes`` classes."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((in_dim, classes)) * scale).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    shape = in_shape or (in_dim,)
    nodes = [
        helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, in_dim], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "b"),
    ]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _save(graph, path)


def slow_onnx(path: Path, dim: int = 256, depth: int = 60) -> Path:
    """``depth`` chained MatMuls sharing one weight: milliseconds per row, a small file."""
    from workbench.load.generator import fixed_time_model

    return fixed_time_model(path, depth, dim)


def embedding_onnx(path: Path, vocab: int = 10, dim: int = 4) -> Path:
    """``Gather`` of int64 ids: an id outside ``[0, vocab)`` makes ONNX Runtime fail the call."""
    table = np.arange(vocab * dim, dtype=np.float32).reshape(vocab, dim)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["output"])],
        path.stem,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "seq", dim])],
        [numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def reference(onnx_path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """In-process ONNX Runtime outputs, the ground truth the server must match."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def export_bundle(onnx_path: Path | None, out: Path, **options) -> Path:
    from workbench.ship.bundle import export

    return export(onnx_path, out, **options).path


class Server:
    """A ``python -m serving`` subprocess; ``url`` is ``127.0.0.1:PORT``."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, port: int) -> None:
        self.proc, self.log_path, self.port = proc, log_path, port
        self.url = f"127.0.0.1:{port}"

    def log(self) -> list[dict]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        status, _, body = self.request("GET", "/metrics")
        assert status == 200
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                wanted = all(sample.labels.get(k) == v for k, v in labels.items())
                if sample.name == name and wanted:
                    total += sample.value
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def start_server(
    bundles: list[Path],
    log_path: Path,
    *args: str,
    python: str = sys.executable,
    cwd: Path | None = None,
    env: dict | None = None,
) -> Server:
    """Start the server on a free port (``--port 0``), wait until every model is ready."""
    if env is None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [python, "-m", "serving", *map(str, bundles), "--port", "0", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or REPO,
            env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    port = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log_path.read_text()}")
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if '"listening"' in line:
                port = json.loads(line)["port"]
        if port is not None:
            server = Server(proc, log_path, port)
            try:
                if server.request("GET", "/v2/health/ready")[0] == 200:
                    return server
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server not ready in {START_TIMEOUT_S} s: {log_path.read_text()}")


@contextmanager
def serving(bundles: list[Path], log_path: Path, *args: str, **kwargs) -> Iterator[Server]:
    server = start_server(bundles, log_path, *args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def infer_json(
    server: Server, model: str, x: np.ndarray, name: str = "input", datatype: str = "FP32", **extra
) -> tuple[int, dict, dict]:
    body = {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}
        ],
        **extra,
    }
    status, headers, raw = server.request(
        "POST",
        f"/v2/models/{model}/infer",
        json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return status, headers, json.loads(raw)
