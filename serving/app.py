"""The app: Open Inference Protocol V2 routes, ``/metrics``, auth, limits and logs.

Routes (``[/versions/{v}]`` optional wherever a model is named):

========  ===========================================  ==========================================
GET       ``/v2/health/live``, ``/v2/health/ready``    200 (ready: every model warmed up), no auth
GET       ``/v2``                                      server metadata
GET       ``/v2/models/{m}``                           model metadata
GET       ``/v2/models/{m}/ready``                     200 once warmed up, else 503
GET       ``/v2/models/{m}/config``                    Triton model configuration (perf_analyzer)
POST      ``/v2/models/{m}/infer``                     inference, JSON or binary tensors
GET       ``/metrics``                                 Prometheus text format
GET       ``/openapi.json``                            OpenAPI 3.0 description of these routes
========  ===========================================  ==========================================

``serving/openapi.json`` describes every route above, its request body and every status it
answers with; ``/openapi.json`` serves it with the model names and versions of this server filled
in (as enums of the path parameters).

Production behaviour: optional bearer token on every route but the health checks (compared in
constant time); a request size limit (413, enforced by the HTTP layer before the body is read);
overload answered 503 with Retry-After by the batcher's bounded queue; a wrong method answered
405 with an ``Allow`` header; every error a V2 ``{"error": "..."}`` body; one JSON object per
log line.

:class:`ServingApp` is the handler of :class:`serving.http.HttpServer` (``handle(request)``
returns a response or a coroutine of one) and also an ASGI callable, for hosts such as Ray Serve.

Example
-------
>>> app = ServingApp([endpoint], token="s3cret")          # doctest: +SKIP
>>> server = HttpServer(app)                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from serving.endpoint import Endpoint
from serving.http import Request, Response
from serving.live_energy import LiveMeter
from serving.metrics import ServingMetrics
from serving.protocol import ProtocolError, decode_infer, encode_infer, error_body

SERVER_NAME = "inference-workbench-serving"
SERVER_VERSION = "1.0"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

OPENAPI_PATH = Path(__file__).with_name("openapi.json")

JSON_HEADERS = [(b"content-type", b"application/json")]
BINARY_CONTENT = (b"content-type", b"application/octet-stream")
log = logging.getLogger("serving")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class ServingApp:
    """Serve ``endpoints`` (one per bundle) by model name."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        metrics: ServingMetrics | None = None,
        access_log: bool = False,
        live_meter: LiveMeter | None = None,
    ) -> None:
        self.endpoints = {e.name: e for e in endpoints}
        if len(self.endpoints) != len(endpoints):
            names = [e.name for e in endpoints]
            raise ValueError(f"two bundles serve the same model name: {names}")
        self.metrics = metrics or (endpoints[0].metrics if endpoints else ServingMetrics())
        self.auth = None if not token else b"Bearer " + token.encode()
        self._max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.accepted = 0  # infer requests whose handling began
        self.answered = 0  # ... and whose response is ready
        self.refused = 0  # ... of which refused as overloaded (503 with Retry-After)
        self._refused_logged = (0, 0.0)  # (refused count, monotonic time) at the last log line
        self._started: asyncio.Task | None = None
        self._openapi: bytes | None = None
        self.live_meter = live_meter  # started once every model is warm
        self.busy = None if live_meter is None else live_meter.busy

    # -- life cycle ------------------------------------------------------------------------

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
                log.error(
                    "warm-up failed",
                    extra={"model": endpoint.name, "error": traceback.format_exc()},
                )
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
        if self.live_meter is not None:  # warm-up energy is not serving energy
            self.live_meter.start(asyncio.get_running_loop())

    async def shutdown(self) -> None:
        """Drain the batchers (call after the HTTP server finished the accepted requests)."""
        if self._started is not None and not self._started.done():
            self._started.cancel()
        for endpoint in self.endpoints.values():
            await endpoint.close()
        if self.live_meter is not None:
            self.live_meter.stop()
        log.info(
            "shutdown",
            extra={"accepted": self.accepted, "answered": self.answered, "refused": self.refused},
        )

    # -- the HTTP server's handler interface -----------------------------------------------

    def max_body_bytes(self) -> int:
        return self._max_body_bytes

    def begin(self, request: Request) -> Endpoint | None:
        """Headers are in: an infer request announces itself to its model's batcher."""
        if request.method != "POST" or not request.path.endswith("/infer"):
            return None
        parts = request.path.split("/")
        if len(parts) < 5 or parts[1:3] != ["v2", "models"]:
            return None
        endpoint = self.endpoints.get(parts[3])
        if endpoint is not None:
            endpoint.arrive()
        return endpoint

    def abort(self, token: Endpoint) -> None:
        token.depart()

    def handle(self, request: Request) -> Response | Coroutine[Any, Any, Response]:
        if self._started is None:  # a host that sent no start-up (e.g. an ASGI wrapper)
            self.start()
        try:
            result = self._route(request)
        except ProtocolError as exc:
            result = self._error(exc, request.path)
        if request.token is not None and isinstance(result, Response):
            request.token.depart()  # announced, but will never reach the batcher
        return result

    def _route(self, request: Request) -> Response | Coroutine[Any, Any, Response]:
        path, method = request.path, request.method
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and parts[2] in ("live", "ready"):
            _allow(method, "GET")
            return self._health(parts[2])
        if self.auth is not None and not self._authorised(request.headers):
            message = "missing or wrong bearer token; send 'Authorization: Bearer <token>'"
            return Response(
                401, error_body(message), [*JSON_HEADERS, (b"www-authenticate", b"Bearer")]
            )
        if parts == ["metrics"]:
            _allow(method, "GET")
            if self.live_meter is not None:  # energy read at the same moment as the counts
                self.live_meter.sample()
            return Response(
                200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4")]
            )
        if parts == ["openapi.json"]:
            _allow(method, "GET")
            return Response(200, self.openapi(), JSON_HEADERS)
        if parts[0] != "v2":
            raise ProtocolError(f"no route for {path}; the API lives under /v2", 404)
        if len(parts) == 1:
            _allow(method, "GET")
            return _json(
                200, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
            )
        if parts[1] != "models" or len(parts) < 3:
            raise ProtocolError(f"no route for {path}", 404)
        endpoint, action = self._route_model(parts[2:], path)
        if action == "infer":
            _allow(method, "POST")
            if request.token is not endpoint:
                raise ProtocolError("inference requests must be announced by the server", 500)
            return self._infer(endpoint, request)
        _allow(method, "GET")
        if action == "":
            return _json(200, endpoint.metadata())
        if action == "ready":
            return _json(
                200 if endpoint.ready else 503, {"name": endpoint.name, "ready": endpoint.ready}
            )
        if action == "config":
            return _json(200, endpoint.triton_config())
        raise ProtocolError(f"no route for {path}", 404)

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
                    f"{endpoint.version!r}",
                    404,
                )
            rest = rest[2:]
        if len(rest) > 1:
            raise ProtocolError(f"no route for {path}", 404)
        return endpoint, rest[0] if rest else ""

    async def _infer(self, endpoint: Endpoint, request: Request) -> Response:
        started = time.perf_counter()
        busy = self.busy  # the live meter's busy time (idle energy is the rest); None: no meter
        if busy is not None:
            busy.enter(started)
        self.accepted += 1
        name = endpoint.name
        try:
            try:
                endpoint.admit()
                header_length = _header_length(request.headers)
                decoded = decode_infer(request.body, header_length, endpoint.signature)
            except BaseException:
                endpoint.depart()
                raise
            outputs = await endpoint.infer(decoded)
            payload, json_length = encode_infer(
                name, endpoint.version, decoded, outputs, endpoint.signature
            )
        except ProtocolError as exc:
            self.metrics.requests.inc((name, str(exc.status)))
            self.metrics.failures.inc((name, _reason(exc)))
            self.answered += 1
            if exc.retry_after_s is not None and exc.status == 503:
                return self._overloaded(exc, request.path)
            return self._error(exc, request.path)
        except Exception as exc:  # a bug: answer 500, log it, keep serving
            self.metrics.requests.inc((name, "500"))
            self.metrics.failures.inc((name, "internal"))
            log.error(
                "internal error", extra={"path": request.path, "error": traceback.format_exc()}
            )
            self.answered += 1
            return Response(
                500, error_body(f"internal error: {type(exc).__name__}: {exc}"), JSON_HEADERS
            )
        finally:
            if busy is not None:
                busy.leave(time.perf_counter())
        self.answered += 1
        elapsed = time.perf_counter() - started
        self.metrics.requests.inc((name, "200"))
        self.metrics.request_seconds.observe(endpoint.label, elapsed)
        if self.access_log:
            log.info(
                "infer", extra={"model": name, "rows": decoded.rows, "ms": round(elapsed * 1e3, 3)}
            )
        if json_length is None:
            return Response(200, payload, JSON_HEADERS)
        length = (b"inference-header-content-length", b"%d" % json_length)
        return Response(200, payload, [BINARY_CONTENT, length])

    def openapi(self) -> bytes:
        """``serving/openapi.json`` with this server's model names and versions as enums."""
        if self._openapi is None:
            doc = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
            params = doc["components"]["parameters"]
            params["ModelName"]["schema"]["enum"] = sorted(self.endpoints)
            versions = sorted({e.version for e in self.endpoints.values()})
            params["ModelVersion"]["schema"]["enum"] = versions
            self._openapi = orjson.dumps(doc)
        return self._openapi

    def _health(self, what: str) -> Response:
        """``what`` is ``live`` or ``ready`` (the router sends nothing else)."""
        if what == "live":
            return _json(200, {"live": True})
        ready = all(e.ready for e in self.endpoints.values())
        return _json(200 if ready else 503, {"ready": ready})

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        return hmac.compare_digest(headers.get(b"authorization", b""), self.auth)

    def _error(self, exc: ProtocolError, path: str, log_it: bool = True) -> Response:
        headers = list(JSON_HEADERS)
        if exc.retry_after_s is not None:
            headers.append((b"retry-after", b"%d" % exc.retry_after_s))
        if exc.allow is not None:
            headers.append((b"allow", exc.allow.encode()))
        if log_it and (exc.status >= 500 or self.access_log):
            log.info(
                "request refused", extra={"path": path, "status": exc.status, "error": str(exc)}
            )
        return Response(exc.status, error_body(str(exc)), headers)

    def _overloaded(self, exc: ProtocolError, path: str) -> Response:
        """Answer 503 + Retry-After; log one line a second at most, with the count refused.

        A line per refusal would cost an overloaded server a third of its event loop (measured
        with py-spy at 4x capacity) and flood the log; the counter is in ``/metrics`` anyway.
        """
        self.refused += 1
        count, at = self._refused_logged
        now = time.monotonic()
        if now - at >= 1.0 or self.access_log:
            log.info(
                "overloaded: requests refused",
                extra={
                    "path": path,
                    "status": exc.status,
                    "error": str(exc),
                    "refused": self.refused - count,
                    "since_s": round(now - at, 3) if at else None,
                },
            )
            self._refused_logged = (self.refused, now)
        return self._error(exc, path, log_it=False)

    # -- ASGI, for hosts that bring their own HTTP server (Ray Serve) -------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # an ASGI host (Ray Serve) routes to a replica once its start-up is complete:
                    # complete it after warm-up, so no request meets a cold model (503)
                    try:
                        await self.start()
                    except Exception as exc:
                        failed = {"type": "lifespan.startup.failed", "message": repr(exc)}
                        await send(failed)
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(
            scope["method"], scope["path"], {k.lower(): v for k, v in scope["headers"]}
        )
        request.token = self.begin(request)
        try:
            request.body = await self._asgi_body(receive)
        except ProtocolError as exc:
            if request.token is not None:
                request.token.depart()
            response = self._error(exc, request.path)
        else:
            result = self.handle(request)
            response = result if isinstance(result, Response) else await result
        headers = [*response.headers, (b"content-length", b"%d" % len(response.body))]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _asgi_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProtocolError("client disconnected before sending the whole body", 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise ProtocolError(
                    f"request body exceeds the limit of {self._max_body_bytes} "
                    "bytes; send fewer rows per request",
                    413,
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _header_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ProtocolError("Inference-Header-Content-Length must be a number") from None


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise ProtocolError(
            f"method {method} is not allowed here; use {allowed}", 405, allow=allowed
        )


def _reason(exc: ProtocolError) -> str:
    return {400: "bad_request", 404: "not_found", 413: "too_large", 503: "overloaded"}.get(
        exc.status, str(exc.status)
    )


def _json(status: int, doc: Any) -> Response:
    return Response(status, orjson.dumps(doc), JSON_HEADERS)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

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
