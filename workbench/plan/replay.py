"""Replay an arrival trace against a running V2 inference server, open loop, and measure it.

Each request is sent at its trace time (never later because an earlier one is slow: open loop),
over a pool of keep-alive HTTP/1.1 connections, and its answer time is recorded. The result is
the same :class:`workbench.plan.simulator.ServingFigures` the simulator predicts, with
``method="measured"``, so prediction and measurement compare field by field.

Only loopback addresses are accepted: this is a verification tool for a server you started.

Example
-------
>>> figures = replay_trace("127.0.0.1", 8000, "digits-cnn", trace, body)   # doctest: +SKIP
>>> figures.latency_ms_p99, figures.throughput_requests_per_s               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import numpy as np

from workbench.errors import ConfigError
from workbench.load.generator import read_response
from workbench.plan.simulator import ServingFigures, figures_from_requests
from workbench.plan.traces import ArrivalTrace


@dataclass
class ReplayResult:
    """Per-request times (seconds from the replay's start) and the figures they give."""

    arrival_s: np.ndarray
    finish_s: np.ndarray
    status: np.ndarray
    figures: ServingFigures
    late_ms_max: float  # the worst lag between a request's trace time and its send time


def replay_trace(
    host: str,
    port: int,
    model: str,
    trace: ArrivalTrace,
    body: bytes,
    *,
    connections: int = 64,
    content_type: str = "application/json",
    timeout_s: float = 60.0,
) -> ReplayResult:
    """Send ``body`` to ``/v2/models/{model}/infer`` once per trace arrival; measure each answer.

    Non-200 answers count as dropped (``finish_s`` NaN), as a rejected request does in the
    simulator.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ConfigError(
            f"host={host!r} is not a loopback address; replay only servers on 127.0.0.1"
        )
    return asyncio.run(
        _replay(host, port, model, trace, body, connections, content_type, timeout_s)
    )


async def _replay(
    host: str,
    port: int,
    model: str,
    trace: ArrivalTrace,
    body: bytes,
    connections: int,
    content_type: str,
    timeout_s: float,
) -> ReplayResult:
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    n = trace.n_requests
    sent = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i: int, at: float) -> None:
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        reader, writer = await pool.get()
        sent[i] = loop.time() - start
        try:
            writer.write(request)
            code, _ = await asyncio.wait_for(read_response(reader), timeout_s)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            code = 0
        status[i] = code
        if code == 200:
            finish[i] = loop.time() - start
        pool.put_nowait((reader, writer))

    await asyncio.gather(*(one(i, float(t)) for i, t in enumerate(trace.times_s)))
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    arrival = np.asarray(trace.times_s, dtype=np.float64)
    late = float(np.nanmax(sent - arrival)) * 1e3
    window = max(
        float(trace.duration_s), float(np.nanmax(finish)) if np.isfinite(finish).any() else 0.0
    )
    figures = figures_from_requests(arrival, finish, rows=trace.rows, window_s=window)
    return ReplayResult(arrival, finish, status, figures, late)
