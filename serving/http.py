"""A small HTTP/1.1 server: asyncio (uvloop when installed) with the httptools parser.

Why not uvicorn: on the 2-core machines this project targets, uvicorn's per-request machinery
(ASGI message dicts, a receive/send pair, per-request timers) cost about 95 us of CPU per
request for an app that does nothing, against about 33 us for this protocol (measured with
perf_analyzer at concurrency 16, see docs/serving.md); for a model that runs in 40 us that is
most of the bill. The app is still an ASGI callable too (``serving.app``), for hosts such as
Ray Serve.

What it does: keep-alive and pipelined requests (answered in order), ``Content-Length`` and
chunked bodies, ``Expect: 100-continue``, a request size limit (413 before the body is read), a
header/body read timeout and an idle keep-alive timeout (one sweeper for all connections),
back-pressure when a client does not read, and graceful shutdown: stop listening, close idle
connections, let in-flight requests finish (up to a grace period), close.

The handler sees a :class:`Request` (method, path, lower-case headers, body) and returns a
:class:`Response`, or a coroutine that returns one. ``begin(request)`` runs when the headers are
in (before the body), ``abort(token)`` when a begun request dies with its connection.

Example
-------
>>> server = HttpServer(handler)                                   # doctest: +SKIP
>>> await server.start("127.0.0.1", 8000); await server.serve()    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import httptools

REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    417: b"Expectation Failed",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
MAX_PIPELINED = 16  # requests parsed ahead of the one being answered before reading pauses


@dataclass(slots=True)
class Request:
    """One parsed request; header names are lower-case bytes."""

    method: str
    path: str
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    token: Any = None  # what the handler's begin() returned


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Handler(Protocol):
    def begin(self, request: Request) -> Any: ...

    def abort(self, token: Any) -> None: ...

    def handle(self, request: Request) -> Response | Awaitable[Response]: ...

    def max_body_bytes(self) -> int: ...


def error_response(status: int, message: str) -> Response:
    import orjson

    return Response(
        status, orjson.dumps({"error": message}), [(b"content-type", b"application/json")]
    )


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.handler = server.handler
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.current: Request | None = None  # headers in, body being read
        self.queue: deque[tuple[Request, bool]] = deque()  # parsed, waiting for their turn
        self.busy = False  # a response is being produced
        self.closing = False
        self.last_active = time.monotonic()

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.current is not None and self.current.token is not None:
            self.handler.abort(self.current.token)
        for request, _ in self.queue:
            if request.token is not None:
                self.handler.abort(request.token)
        self.queue.clear()
        self.current = None

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self.closing:
                self._fail(400, f"malformed HTTP request: {exc}")

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        path = httptools.parse_url(self.url).path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        request = Request(self.parser.get_method().decode("ascii"), path, self.headers)
        length = self.headers.get(b"content-length")
        limit = self.handler.max_body_bytes()
        if length is not None and length.isdigit() and int(length) > limit:
            return self._fail(
                413,
                f"request body of {int(length)} bytes exceeds the limit of "
                f"{limit} bytes; send fewer rows per request",
            )
        if self.headers.get(b"expect", b"").lower() == b"100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.token = self.handler.begin(request)
        self.current = request

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.handler.max_body_bytes():
            self._fail(
                413,
                f"request body exceeds the limit of {self.handler.max_body_bytes()} "
                "bytes; send fewer rows per request",
            )
            raise httptools.HttpParserError("body too large")  # stops the parser
        self.body.append(body)

    def on_message_complete(self) -> None:
        request, self.current = self.current, None
        if request is None:
            return
        body = self.body
        request.body = body[0] if len(body) == 1 else b"".join(body)
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) > MAX_PIPELINED:
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    # -- answering ---------------------------------------------------------------------------

    def _next(self) -> None:
        while self.queue and not self.busy and not self.closing:
            request, keep_alive = self.queue.popleft()
            try:
                result = self.handler.handle(request)
            except Exception as exc:  # a bug in the handler: answer, keep serving
                result = self.server.internal_error(request, exc)
            if isinstance(result, Response):
                self._write(result, keep_alive)
            else:
                self.busy = True
                task = self.loop.create_task(result)
                task.add_done_callback(lambda t, r=request, k=keep_alive: self._done(t, r, k))

    def _done(self, task: asyncio.Task, request: Request, keep_alive: bool) -> None:
        self.busy = False
        try:
            response = task.result()
        except Exception as exc:
            response = self.server.internal_error(request, exc)
        self._write(response, keep_alive)
        if self.queue and len(self.queue) <= MAX_PIPELINED and not self.closing:
            self.transport.resume_reading()
        self._next()

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.closing and self.transport.is_closing():
            return
        self.server.responses += 1
        keep_alive = keep_alive and not self.server.draining
        parts = [b"HTTP/1.1 %d %s\r\n" % (response.status, REASONS.get(response.status, b""))]
        for name, value in response.headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"content-length: %d\r\n" % len(response.body))
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        parts.append(response.body)
        self.transport.write(b"".join(parts))
        self.last_active = time.monotonic()
        if not keep_alive:
            self.close()

    def _fail(self, status: int, message: str) -> None:
        """Answer an unreadable request and close: the rest of its bytes cannot be trusted."""
        if self.closing:
            return
        if self.current is not None and self.current.token is not None:
            self.handler.abort(self.current.token)
            self.current = None
        self.queue.clear()
        self._write(error_response(status, message), keep_alive=False)

    def close(self) -> None:
        """Close the connection (once); requests still queued on it are dropped."""
        if not self.closing:
            self.closing = True
            self.transport.close()

    # -- housekeeping --------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.busy and not self.queue and self.current is None

    def sweep(self, now: float, idle_timeout_s: float, read_timeout_s: float) -> None:
        if self.idle and now - self.last_active > idle_timeout_s:
            self.close()
        elif self.current is not None and now - self.last_active > read_timeout_s:
            self._fail(408, "the request was not received in time")


class HttpServer:
    """Listen, serve connections, shut down gracefully."""

    def __init__(
        self,
        handler: Handler,
        *,
        idle_timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        log: Callable[..., None] | None = None,
    ) -> None:
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.read_timeout_s = read_timeout_s
        self.log = log
        self.connections: set[HttpProtocol] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.draining = False
        self.responses = 0
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, sock: Any, backlog: int = 2048) -> None:
        """Serve on an already bound socket."""
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(
            lambda: HttpProtocol(self), sock=sock, backlog=backlog
        )
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            conn.sweep(now, self.idle_timeout_s, self.read_timeout_s)
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def shutdown(self, grace_s: float) -> bool:
        """Stop accepting, finish requests in flight (up to ``grace_s``); True if all finished."""
        self.draining = True
        self.server.close()
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            for conn in list(self.connections):
                if conn.idle:
                    conn.close()
            await asyncio.sleep(0.01)
        finished = not self.connections
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.server.wait_closed()
        return finished

    def internal_error(self, request: Request, exc: BaseException) -> Response:
        if self.log is not None:
            self.log(request, exc)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
