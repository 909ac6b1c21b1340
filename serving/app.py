"""The HTTP app: Open Inference Protocol V2 routes as a bare ASGI callable, plus ``/metrics``.

Routes (``[/versions/{v}]`` optional wherever a model is named):

========  ===========================================  ==========================================
GET       ``/v2/health/live``, ``/v2/health/ready``    200 (ready: every model warmed up), no auth
GET       ``/v2``                                      server metadata
GET       ``/v2/models/{m}``                           model metadata
GET       ``/v2/models/{m}/ready``                     200 once warmed up, else 503
GET       ``/v2/models/{m}/config``                    Triton model configuration (perf_analyzer)
POST      ``/v2/models/{m}/infer``                     inference, JSON or binary tensors
GET       ``/metrics``                                 Prometheus text format
========  ===========================================  ==========================================

Production behaviour: optional bearer token on every route but the health checks (compared in
constant time); a request size limit (413); overload answered 503 with Retry-After by the batcher's
bounded queue; every error a V2 ``{"error": "..."}`` body; graceful shutdown (uvicorn stops
accepting, finishes accepted requests, then the lifespan shutdown drains the batchers); one JSON
object per log line.

Example
-------
>>> app = ServingApp([endpoint], token="s3cret")          # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from serving.endpoint import Endpoint
from serving.metrics import ServingMetrics
from serving.protocol import ProtocolError, decode_infer, encode_infer, error_body

SERVER_NAME = "inference-workbench-serving"
SERVER_VERSION = "1.0"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

JSON_HEADERS = [(b"content-type", b"application/json")]
log = logging.getLogger("serving")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class ServingApp:
    """ASGI app serving ``endpoints`` (one per bundle) by model name."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        metrics: ServingMetrics | None = None,
        access_log: bool = False,
    ) -> None:
        self.endpoints = {e.name: e for e in endpoints}
        if len(self.endpoints) != len(endpoints):
            names = [e.name for e in endpoints]
            raise ValueError(f"two bundles serve the same model name: {names}")
        self.metrics = metrics or (endpoints[0].metrics if endpoints else ServingMetrics())
        self.auth = None if not token else b"Bearer " + token.encode()
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.accepted = 0  # infer requests whose handling began
        self.answered = 0  # ... and whose response was sent
        self._started: asyncio.Task | None = None

    # -- ASGI entry points ---------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> asyncio.Task:
        """Warm the models up in the background: the server is live at once, ready after."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._warm_up())
        return self._started

    async def _warm_up(self) -> None:
        for endpoint in self.endpoints.values():
            started = time.perf_counter()
            try:
                await endpoint.start()
            except Exception:
                log.error("warm-up failed", extra={"model": endpoint.name,
                                                   "error": traceback.format_exc()})  # fmt: skip
                raise
            warm = endpoint.front.model.warmup
            log.info(
                "model ready",
                extra={
                    "model": endpoint.name,
                    "warmup_s": round(time.perf_counter() - started, 3),
                    "call_ms_1_row": round(warm.seconds_1 * 1e3, 4),
                    f"call_ms_{warm.max_rows}_rows": round(warm.seconds_max * 1e3, 4),
                    "batching_pays": warm.batching_pays,
                    "runs": "inline" if endpoint.front.inline else "worker threads",
                },
            )

    async def shutdown(self) -> None:
        """Drain the batchers (uvicorn has already finished the accepted requests)."""
        if self._started is not None and not self._started.done():
            self._started.cancel()
        for endpoint in self.endpoints.values():
            await endpoint.close()
        log.info("shutdown", extra={"accepted": self.accepted, "answered": self.answered})

    # -- HTTP ------------------------------------------------------------------------------

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self._started is None:  # a host that sends no lifespan events (some ASGI wrappers)
            self.start()
        path, method = scope["path"], scope["method"]
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "health"] and len(parts) == 3:
            return await self._health(parts[2], method, send)
        if self.auth is not None and not self._authorised(scope["headers"]):
            message = "missing or wrong bearer token; send 'Authorization: Bearer <token>'"
            headers = [*JSON_HEADERS, (b"www-authenticate", b"Bearer")]
            return await _send(send, 401, error_body(message), headers)
        try:
            if parts[0] == "metrics" and len(parts) == 1:
                _allow(method, "GET")
                return await _send(send, 200, self.metrics.render(),
                                   [(b"content-type", b"text/plain; version=0.0.4")])  # fmt: skip
            if parts[0] != "v2":
                raise ProtocolError(f"no route for {path}; the API lives under /v2", 404)
            if len(parts) == 1:
                _allow(method, "GET")
                body = {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
                return await _send_json(send, 200, body)
            if parts[1] != "models" or len(parts) < 3:
                raise ProtocolError(f"no route for {path}", 404)
            endpoint, action = self._route_model(parts[2:], path)
            if action == "infer":
                _allow(method, "POST")
                return await self._infer(endpoint, scope, receive, send)
            _allow(method, "GET")
            if action == "":
                return await _send_json(send, 200, endpoint.metadata())
            if action == "ready":
                status = 200 if endpoint.ready else 503
                return await _send_json(
                    send, status, {"name": endpoint.name, "ready": endpoint.ready}
                )
            if action == "config":
                return await _send_json(send, 200, endpoint.triton_config())
            raise ProtocolError(f"no route for {path}", 404)
        except ProtocolError as exc:
            await self._send_error(send, exc, path)

    def _route_model(self, parts: list[str], path: str) -> tuple[Endpoint, str]:
        name, rest = parts[0], parts[1:]
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ProtocolError(
                f"unknown model {name!r}; this server serves {sorted(self.endpoints)}", 404
            )
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or rest[1] != endpoint.version:
                version = rest[1] if len(rest) > 1 else ""
                raise ProtocolError(
                    f"model {name!r} has no version {version!r}; it serves version "
                    f"{endpoint.version!r}", 404,
                )  # fmt: skip
            rest = rest[2:]
        if len(rest) > 1:
            raise ProtocolError(f"no route for {path}", 404)
        return endpoint, rest[0] if rest else ""

    async def _infer(self, endpoint: Endpoint, scope: dict[str, Any], receive: Receive,
                     send: Send) -> None:  # fmt: skip
        started = time.perf_counter()
        self.accepted += 1
        label = endpoint.label
        endpoint.arrive()
        try:
            try:
                body, header_length = await self._read_body(scope["headers"], receive)
                request = decode_infer(body, header_length, endpoint.signature)
            except BaseException:
                endpoint.depart()
                raise
            outputs = await endpoint.infer(request)
            payload, json_length = encode_infer(
                endpoint.name, endpoint.version, request, outputs, endpoint.signature
            )
        except ProtocolError as exc:
            self.metrics.requests.inc((endpoint.name, str(exc.status)))
            self.metrics.failures.inc((endpoint.name, _reason(exc)))
            await self._send_error(send, exc, scope["path"])
            self.answered += 1
            return
        except Exception as exc:  # a bug: answer 500, log it, keep serving
            self.metrics.requests.inc((endpoint.name, "500"))
            self.metrics.failures.inc((endpoint.name, "internal"))
            log.error("internal error", extra={"path": scope["path"],
                                               "error": traceback.format_exc()})  # fmt: skip
            await _send(send, 500, error_body(f"internal error: {type(exc).__name__}: {exc}"),
                        JSON_HEADERS)  # fmt: skip
            self.answered += 1
            return
        if json_length is None:
            headers = JSON_HEADERS
        else:
            headers = [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(json_length).encode()),
            ]
        await _send(send, 200, payload, headers)
        self.answered += 1
        elapsed = time.perf_counter() - started
        self.metrics.requests.inc((endpoint.name, "200"))
        self.metrics.request_seconds.observe(label, elapsed)
        if self.access_log:
            log.info("infer", extra={"model": endpoint.name, "rows": request.rows,
                                     "ms": round(elapsed * 1e3, 3)})  # fmt: skip

    async def _read_body(self, headers: list[tuple[bytes, bytes]],
                         receive: Receive) -> tuple[bytes, int | None]:  # fmt: skip
        length = header_length = None
        for key, value in headers:
            if key == b"content-length":
                length = value
            elif key == b"inference-header-content-length":
                header_length = value
        limit = self.max_body_bytes
        if length is not None and int(length) > limit:
            raise ProtocolError(
                f"request body of {int(length)} bytes exceeds the limit of {limit} bytes; send "
                "fewer rows per request (or raise --max-body-mb)", 413,
            )  # fmt: skip
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProtocolError("client disconnected before sending the whole body", 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ProtocolError(f"request body exceeds the limit of {limit} bytes", 413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if header_length is not None:
            try:
                header_length = int(header_length)
            except ValueError:
                raise ProtocolError("Inference-Header-Content-Length must be a number") from None
        return body, header_length

    async def _health(self, what: str, method: str, send: Send) -> None:
        if what == "live":
            return await _send_json(send, 200, {"live": True})
        if what == "ready":
            ready = all(e.ready for e in self.endpoints.values())
            return await _send_json(send, 200 if ready else 503, {"ready": ready})
        await self._send_error(send, ProtocolError(f"no route for /v2/health/{what}", 404), what)

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for key, value in headers:
            if key == b"authorization":
                return hmac.compare_digest(value, self.auth)
        return False

    async def _send_error(self, send: Send, exc: ProtocolError, path: str) -> None:
        headers = list(JSON_HEADERS)
        if exc.retry_after_s is not None:
            headers.append((b"retry-after", str(exc.retry_after_s).encode()))
        if exc.status >= 500 or self.access_log:
            log.info("request refused", extra={"path": path, "status": exc.status,
                                               "error": str(exc)})  # fmt: skip
        await _send(send, exc.status, error_body(str(exc)), headers)


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise ProtocolError(f"method {method} is not allowed here; use {allowed}", 405)


def _reason(exc: ProtocolError) -> str:
    return {400: "bad_request", 404: "not_found", 413: "too_large", 503: "overloaded"}.get(
        exc.status, str(exc.status)
    )


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, doc: Any) -> None:
    await _send(send, status, orjson.dumps(doc), JSON_HEADERS)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message", "color_message"}  # fmt: skip

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._SKIP and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)
