"""The app as an ASGI callable (how Ray Serve hosts it): start-up completes only after warm-up,
so a host routes no request to a cold model; requests then answer as over the built-in server."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from serving_helpers import export_bundle, reference

from serving.app import ServingApp
from serving.endpoint import Endpoint
from serving.manifest import load_bundle
from serving.metrics import ServingMetrics


async def _lifespan_and_infer(app: ServingApp, x: np.ndarray) -> tuple[list, dict, int]:
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []
    ready_at_complete: list[bool] = []

    async def send(message: dict) -> None:
        if message["type"] == "lifespan.startup.complete":
            ready_at_complete.append(all(e.ready for e in app.endpoints.values()))
        sent.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    while not sent:
        await asyncio.sleep(0.01)

    body = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [2, 8], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    ).encode()
    chunks = [{"type": "http.request", "body": body, "more_body": False}]
    replies: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0)

    async def reply(message: dict) -> None:
        replies.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/lin/infer", "headers": []}
    await app(scope, receive, reply)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    status = replies[0]["status"]
    return [m["type"] for m in sent], {"ready": ready_at_complete, "body": replies[1]}, status


def test_lifespan_startup_completes_after_warm_up_then_requests_answer(models_dir, tmp_path):
    bundle = export_bundle(models_dir / "lin.onnx", tmp_path / "lin", name="lin")
    app = ServingApp([Endpoint(load_bundle(bundle), ServingMetrics())])
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    types, seen, status = asyncio.run(_lifespan_and_infer(app, x))
    assert types == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert seen["ready"] == [True]  # every model was warm when start-up was reported complete
    assert status == 200
    doc = json.loads(seen["body"]["body"])
    want = reference(models_dir / "lin.onnx", {"input": x})["output"]
    np.testing.assert_allclose(np.array(doc["outputs"][0]["data"]).reshape(2, 4), want, 1e-6)
