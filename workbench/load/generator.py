"""Load a live V2 inference endpoint: its capacity, an open-loop run, a soak and an overload burst.

Open loop means each request leaves at its scheduled time, whether or not earlier ones were
answered, and its latency counts from that scheduled time (so a slow server cannot slow the
generator down and hide its own queueing: no coordinated omission). Requests go over a pool of
keep-alive HTTP/1.1 connections from one asyncio loop (uvloop when installed), opened as needed up
to ``connections`` in flight (1024: a pool as small as the server's queue would turn the open
loop into a closed one, its lateness showing as ``late_ms``); the generator costs
about 0.2 ms of CPU per request at 1000 requests/s (measured on a busy 2-core machine), so it can
share a small machine with the server.

Every request is recorded: HTTP status (0: no answer at all, the connection failed or the answer
timed out), latency, and whether a 503 carried ``Retry-After``.

- :func:`measure_capacity`: closed loop at a fixed concurrency, answered requests per second;
- :func:`open_loop`: requests at given times (:func:`constant_rate` makes them);
- :func:`soak`: a long constant rate while sampling the server's resident memory;
- :func:`overload`: low rate, a burst, low rate again: the unloaded p99, the p99 of requests
  accepted during the burst, and how long the server took to recover.

Only loopback addresses are accepted: this verifies a server you started.

Example
-------
>>> cap = measure_capacity("127.0.0.1", 8000, "slow", body)               # doctest: +SKIP
>>> run = open_loop("127.0.0.1", 8000, "slow", body, constant_rate(0.8 * cap.requests_per_s, 10))
...                                                                        # doctest: +SKIP
>>> run.summary().latency_ms_p99                                           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.checks import number
from workbench.errors import ConfigError

NO_ANSWER = 0  # status recorded for a request that got no HTTP answer


@dataclass
class LoadResult:
    """Per-request records of one open-loop run (seconds from the run's start).

    ``latency_s`` counts from the scheduled time to the last byte of the answer (NaN: no answer);
    ``status`` is the HTTP status (``NO_ANSWER``: none); ``retry_after`` is True when the answer
    carried a ``Retry-After`` header.
    """

    scheduled_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    retry_after: np.ndarray
    send_lag_s: np.ndarray  # scheduled time -> sent (the generator's own lateness)
    method: str = "measured"

    def select(self, start_s: float, stop_s: float) -> LoadResult:
        """The requests scheduled in ``[start_s, stop_s)``."""
        keep = (self.scheduled_s >= start_s) & (self.scheduled_s < stop_s)
        return LoadResult(
            self.scheduled_s[keep],
            self.latency_s[keep],
            self.status[keep],
            self.retry_after[keep],
            self.send_lag_s[keep],
            self.method,
        )

    def summary(self) -> LoadSummary:
        ok = self.status == 200
        refused = self.status == 503
        server_errors = (self.status >= 500) & ~refused
        n = len(self.status)
        span = float(self.scheduled_s[-1] - self.scheduled_s[0]) if n > 1 else 0.0
        return LoadSummary(
            requests_sent=n,
            answered=int((self.status != NO_ANSWER).sum()),
            unanswered=int((self.status == NO_ANSWER).sum()),
            ok=int(ok.sum()),
            refused_503=int(refused.sum()),
            refused_without_retry_after=int((refused & ~self.retry_after).sum()),
            status_5xx=int((self.status >= 500).sum()),
            errors=int((~ok & ~refused).sum()),
            server_errors_not_503=int(server_errors.sum()),
            offered_per_s=round(n / span, 2) if span > 0 else 0.0,
            latency_ms_p50=_percentile_ms(self.latency_s[ok], 50),
            latency_ms_p99=_percentile_ms(self.latency_s[ok], 99),
            latency_ms_max=_percentile_ms(self.latency_s[ok], 100),
            late_ms_p99=_percentile_ms(self.send_lag_s, 99) or 0.0,
            late_ms_max=_percentile_ms(self.send_lag_s, 100) or 0.0,
        )


@dataclass
class LoadSummary:
    """Counts and latencies of one run; latencies are of the answered 200s (ms, measured).

    ``errors`` counts every request that was neither a 200 nor a 503 (including unanswered ones).
    """

    requests_sent: int
    answered: int
    unanswered: int
    ok: int
    refused_503: int
    refused_without_retry_after: int
    status_5xx: int
    errors: int
    server_errors_not_503: int
    offered_per_s: float
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    latency_ms_max: float | None
    late_ms_p99: float  # the generator's lag behind its schedule (p99, worst)
    late_ms_max: float
    method: str = "measured"


@dataclass
class Capacity:
    """Closed-loop throughput of 200 answers at ``concurrency`` (measured)."""

    requests_per_s: float
    concurrency: int
    duration_s: float
    latency_ms_p50: float | None
    refused_503: int
    method: str = "measured"


@dataclass
class SoakResult:
    """A constant-rate run and the server's resident memory sampled through it."""

    summary: LoadSummary
    rate_per_s: float
    duration_s: float
    rss_mb_after_warmup: float
    rss_mb_end: float
    rss_mb_max: float
    memory_growth_pct: float  # (end - after warm-up) / after warm-up x 100
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (s, MB)
    method: str = "measured"


@dataclass
class OverloadResult:
    """Low rate, a burst above capacity, low rate again (latencies in ms, measured)."""

    baseline: LoadSummary
    burst: LoadSummary
    after: LoadSummary
    low_rate_per_s: float
    burst_rate_per_s: float
    burst_s: float
    unloaded_p99_ms: float | None
    burst_accepted_p99_ms: float | None
    p99_ratio: float | None  # burst accepted p99 / unloaded p99
    recovery_s: float | None  # burst end -> every later window healthy (None: never)
    method: str = "measured"


def is_ready(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """True once the V2 server at ``host:port`` answers ``/v2/health/ready`` with 200 (every
    model warmed up; it answers 503 until then); False while it cannot be reached."""
    _check_loopback(host)
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", "/v2/health/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def fixed_time_model(path: str | Path, depth: int = 60, dim: int = 256) -> Path:
    """An ONNX model with a fixed service time to load-test a server with: ``depth`` chained
    ``dim`` x ``dim`` MatMuls sharing one weight (milliseconds per row, a small file), input and
    output ``[batch, dim]`` FP32 named ``input`` and ``output``; the model is named after the file.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    w = (np.eye(dim) * 0.999).astype(np.float32)
    nodes, prev = [], "input"
    for i in range(depth):
        out = "output" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "W"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def constant_rate(rate_per_s: float, duration_s: float, start_s: float = 0.0) -> np.ndarray:
    """Evenly spaced send times: ``rate_per_s`` requests a second for ``duration_s`` seconds."""
    number("rate_per_s", rate_per_s, minimum=0, open_low=True, fix="pass requests per second")
    number("duration_s", duration_s, minimum=0, open_low=True, fix="pass seconds of traffic")
    return start_s + np.arange(int(round(rate_per_s * duration_s))) / rate_per_s


def open_loop(
    host: str,
    port: int,
    model: str,
    body: bytes,
    times_s: np.ndarray,
    *,
    connections: int = 1024,
    timeout_s: float = 10.0,
    content_type: str = "application/json",
) -> LoadResult:
    """Send ``body`` to ``/v2/models/{model}/infer`` at each of ``times_s``; record each answer."""
    _check_loopback(host)
    times = np.asarray(times_s, dtype=np.float64)
    return _run_loop(
        _open_loop(host, port, model, body, times, connections, timeout_s, content_type)
    )


def measure_capacity(
    host: str,
    port: int,
    model: str,
    body: bytes,
    *,
    concurrency: int = 4,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    content_type: str = "application/json",
) -> Capacity:
    """Closed loop: ``concurrency`` clients send back to back; 200 answers per second.

    Keep ``concurrency`` at or below the server's queue bound + its instances, or the surplus is
    refused (counted in ``refused_503``) instead of measured.
    """
    _check_loopback(host)
    return _run_loop(
        _closed_loop(host, port, model, body, concurrency, duration_s, warmup_s, content_type)
    )


def soak(
    host: str,
    port: int,
    model: str,
    body: bytes,
    *,
    pid: int,
    rate_per_s: float,
    duration_s: float,
    warmup_s: float = 5.0,
    sample_every_s: float = 1.0,
) -> SoakResult:
    """``rate_per_s`` for ``duration_s`` while sampling process ``pid``'s resident memory.

    Memory growth compares the median of the last few samples with the median of the first few
    after ``warmup_s`` (allocators and caches settle during warm-up).
    """
    sampler = ResidentMemory(pid, sample_every_s)
    with sampler:
        run = open_loop(host, port, model, body, constant_rate(rate_per_s, duration_s))
    samples = sampler.samples
    settled = [mb for t, mb in samples if t >= warmup_s] or [mb for _, mb in samples]
    head = float(np.median(settled[:5]))
    tail = float(np.median(settled[-5:]))
    return SoakResult(
        summary=run.summary(),
        rate_per_s=rate_per_s,
        duration_s=duration_s,
        rss_mb_after_warmup=round(head, 2),
        rss_mb_end=round(tail, 2),
        rss_mb_max=round(max(mb for _, mb in samples), 2),
        memory_growth_pct=round((tail - head) / head * 100, 3),
        rss_samples=[(round(t, 2), round(mb, 2)) for t, mb in samples],
    )


def overload(
    host: str,
    port: int,
    model: str,
    body: bytes,
    *,
    capacity_per_s: float,
    low_fraction: float = 0.2,
    factor: float = 4.0,
    baseline_s: float = 5.0,
    burst_s: float = 5.0,
    after_s: float = 5.0,
    window_s: float = 0.5,
    healthy_ratio: float = 2.0,
) -> OverloadResult:
    """Low rate (``low_fraction`` x capacity), a burst at ``factor`` x capacity, low rate again.

    The unloaded p99 is the baseline phase's; the burst's accepted p99 is that of the 200s sent
    during the burst. Recovery: the time from the burst's end until every later ``window_s``
    window (by send time) is all 200s with a p99 within ``healthy_ratio`` x the unloaded p99.
    """
    low = low_fraction * capacity_per_s
    high = factor * capacity_per_s
    burst_start, burst_end = baseline_s, baseline_s + burst_s
    times = np.concatenate(
        [
            constant_rate(low, baseline_s),
            constant_rate(high, burst_s, burst_start),
            constant_rate(low, after_s, burst_end),
        ]
    )
    run = open_loop(host, port, model, body, times)
    baseline = run.select(0, burst_start).summary()
    burst = run.select(burst_start, burst_end).summary()
    after = run.select(burst_end, np.inf)
    unloaded = baseline.latency_ms_p99
    accepted = burst.latency_ms_p99
    return OverloadResult(
        baseline=baseline,
        burst=burst,
        after=after.summary(),
        low_rate_per_s=round(low, 2),
        burst_rate_per_s=round(high, 2),
        burst_s=burst_s,
        unloaded_p99_ms=unloaded,
        burst_accepted_p99_ms=accepted,
        p99_ratio=round(accepted / unloaded, 3) if unloaded and accepted else None,
        recovery_s=_recovery_s(after, burst_end, window_s, healthy_ratio * (unloaded or np.inf)),
    )


def _recovery_s(
    after: LoadResult, start_s: float, window_s: float, limit_ms: float
) -> float | None:
    """Start of the first ``window_s`` window (from ``start_s``) from which on every request is
    answered 200 and the p99 of all those later requests is within ``limit_ms``.

    The p99 is pooled over the rest of the run, not taken per window: one slow request among a
    window's few dozen (another process took the core for a moment) is the 1 % a p99 allows,
    not a server that has not recovered.
    """
    if not len(after.scheduled_s):
        return None
    edges = np.arange(start_s, after.scheduled_s[-1] + 1e-9, window_s)  # the last holds a request
    for lo in edges:
        rest = after.select(lo, np.inf)
        p99 = _percentile_ms(rest.latency_s[rest.status == 200], 99)
        if bool((rest.status == 200).all()) and p99 is not None and p99 <= limit_ms:
            return round(float(lo - start_s), 3)
    return None


class ResidentMemory:
    """Sample a process's resident memory (psutil) on a thread; a context manager.

    ``samples`` holds (seconds since start, MB) pairs, measured.
    """

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, self.process.memory_info().rss / 2**20))
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> ResidentMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the client ------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"host={host!r} is not a loopback address; load only servers on 127.0.0.1"
        )


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with the serving extra
        return asyncio.run(coro)
    return uvloop.run(coro)


def _request(host: str, port: int, model: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response with a Content-Length body: (status, has Retry-After)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ", 2)[1])
    length, retry_after = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "retry-after":
            retry_after = True
    if length:
        await reader.readexactly(length)
    return code, retry_after


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError)


async def _exchange(
    conn: _Conn | None, host: str, port: int, request: bytes, timeout_s: float
) -> tuple[_Conn | None, int, bool]:
    """One request on ``conn`` (opened if None); the connection to reuse (None: closed).

    A kept-alive connection the server has closed meanwhile (its idle timeout) ends before a
    single byte of the answer: the request is sent again once on a new connection, as HTTP
    clients do for a stale connection, and not counted as unanswered.
    """
    reused = conn is not None
    try:
        if conn is None:
            conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        conn[1].write(request)
        code, retry_after = await asyncio.wait_for(read_response(conn[0]), timeout_s)
        return conn, code, retry_after
    except _FAILURES as exc:
        if conn is not None:
            conn[1].close()
        stale = isinstance(exc, (ConnectionResetError, BrokenPipeError)) or (
            isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
        )
        if reused and stale:
            return await _exchange(None, host, port, request, timeout_s)
        return None, NO_ANSWER, False


async def _open_loop(
    host: str,
    port: int,
    model: str,
    body: bytes,
    times: np.ndarray,
    connections: int,
    timeout_s: float,
    content_type: str,
) -> LoadResult:
    request = _request(host, port, model, body, content_type)
    n = len(times)
    latency = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    retry_after = np.zeros(n, dtype=bool)
    late = np.zeros(n)
    idle: list[_Conn | None] = [None] * connections
    free = asyncio.Semaphore(connections)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int) -> None:
        async with free:
            late[i] = loop.time() - start - times[i]
            conn, code, has_retry = await _exchange(idle.pop(), host, port, request, timeout_s)
            idle.append(conn)
        status[i], retry_after[i] = code, has_retry
        if code != NO_ANSWER:
            latency[i] = loop.time() - start - times[i]

    tasks = set()
    for i in range(n):
        delay = start + times[i] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    for conn in idle:
        if conn is not None:
            conn[1].close()
    return LoadResult(times, latency, status, retry_after, late)


async def _closed_loop(
    host: str,
    port: int,
    model: str,
    body: bytes,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    content_type: str,
) -> Capacity:
    request = _request(host, port, model, body, content_type)
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup_s
    end = begin + duration_s
    latencies: list[float] = []
    refused = [0]

    async def client() -> None:
        conn = None
        while loop.time() < end:
            sent = loop.time()
            conn, code, _ = await _exchange(conn, host, port, request, 30.0)
            now = loop.time()
            if sent >= begin and now <= end:
                if code == 200:
                    latencies.append(now - sent)
                elif code == 503:
                    refused[0] += 1
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Capacity(
        requests_per_s=round(len(latencies) / duration_s, 2),
        concurrency=concurrency,
        duration_s=duration_s,
        latency_ms_p50=_percentile_ms(np.array(latencies), 50),
        refused_503=refused[0],
    )


def _percentile_ms(seconds: np.ndarray, q: float) -> float | None:
    seconds = seconds[np.isfinite(seconds)]
    if not len(seconds):
        return None
    return round(float(np.percentile(seconds, q)) * 1e3, 3)
