"""A discrete-event model of a server with a dynamic batch queue, and the figures it predicts.

The server
----------
``instances`` identical model instances share one FIFO queue. Requests carry ``rows`` items; a
batch holds at most ``max_batch_rows`` rows. The knobs are the bundle manifest's ``batching``
section (:class:`serving.manifest.Batching`), with its defaults; the policy is Triton's dynamic
batcher:

- whenever an instance is free and requests are queued, it takes a batch at once if the queued
  rows fill ``max_batch_rows``, or if the oldest queued request has waited ``max_delay_ms``;
- otherwise it waits until the batch fills or the oldest request's delay runs out, whichever comes
  first. ``max_delay_ms=0`` means "take what is queued, never wait";
- a batch takes queued requests in arrival order while they fit (a request is never split);
- the queue holds at most ``max_queue_rows`` rows waiting (not counting those in service), as in
  the runtime: a request of ``k`` rows takes ``k`` places, and one that does not fit is dropped
  (``None`` means unbounded).

A batch of ``b`` rows occupies its instance for ``curve.service_s(b)``: deterministic, from the
measured batch-latency curve (:class:`workbench.plan.batch_curve.BatchLatencyCurve`), which must
reach ``max_batch_rows``. Each served request's latency is queueing + service +
``request_overhead_ms`` (a constant per-request cost outside the batch, such as HTTP and
decoding; it does not occupy an instance).

Event order: one event at a time, completions before arrivals at the same instant, arrivals in
trace order, and the dispatch rule above is applied after every event. So a request arriving at
the instant an instance frees finds it free, and one arriving exactly at a batch's deadline joins
that batch.

Energy
------
Each instance draws ``idle_w`` while idle. While serving it draws ``busy_w`` (:class:`PowerModel`
with ``busy_w``) or uses the curve's energy per batch (``busy_w=None``). Idle time counts over the
whole window ``[0, max(trace.duration_s, last completion)]``, so gaps between requests cost energy.

Outputs: :class:`ServingFigures` (latency percentiles, throughput, utilisation, mean batch size,
drops, energy per request), the same dataclass a measured replay fills through
:func:`figures_from_requests`, so prediction and measurement compare field by field.

Example
-------
>>> from workbench.plan.batch_curve import BatchLatencyCurve
>>> from workbench.plan.traces import trace_from_times
>>> curve = BatchLatencyCurve.from_points({1: 10.0, 2: 12.0})
>>> trace = trace_from_times([0.000, 0.001, 0.002])
>>> result = simulate(trace, curve, ServerConfig(max_batch_rows=2, max_delay_ms=5.0))
>>> result.finish_s.round(4).tolist()  # batch {0, 1} at 1 ms ends at 13 ms; then {2}: 13 + 10 ms
[0.013, 0.013, 0.023]
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.manifest import Batching
from workbench.checks import number, one_of, whole
from workbench.errors import ConfigError
from workbench.plan.batch_curve import BatchLatencyCurve
from workbench.plan.traces import ArrivalTrace
from workbench.provenance import METHODS, weakest_method


@dataclass(frozen=True)
class ServerConfig:
    """Batch-queue settings of one server (see the module docstring for the policy).

    The three batching knobs carry the names and defaults of the bundle manifest's ``batching``
    section (:class:`serving.manifest.Batching`), so a plan carries over to the served bundle.

    Attributes
    ----------
    max_batch_rows:
        Most rows in one batch (1 turns batching off).
    max_delay_ms:
        Longest the oldest queued request waits for a batch to fill; 0: never wait.
    max_queue_rows:
        Most rows waiting (not in service); a request that does not fit is dropped. ``None``:
        unbounded.
    instances:
        Model instances serving the queue in parallel.
    request_overhead_ms:
        Constant per-request time outside the batch (protocol, decoding), added to latency.
    """

    max_batch_rows: int = Batching.max_batch_rows
    max_delay_ms: float = Batching.max_delay_ms
    max_queue_rows: int | None = Batching.max_queue_rows
    instances: int = 1
    request_overhead_ms: float = 0.0

    def __post_init__(self) -> None:
        whole("max_batch_rows", self.max_batch_rows, minimum=1, fix="use 1 to turn batching off")
        number(
            "max_delay_ms",
            self.max_delay_ms,
            minimum=0,
            fix="0 means take what is queued without waiting",
        )
        if self.max_queue_rows is not None:
            whole(
                "max_queue_rows",
                self.max_queue_rows,
                minimum=1,
                fix="use None for an unbounded queue",
            )
        whole("instances", self.instances, minimum=1, fix="serve with at least one instance")
        number("request_overhead_ms", self.request_overhead_ms, minimum=0, fix="use 0 for none")


@dataclass(frozen=True)
class PowerModel:
    """Power of one instance: ``idle_w`` when idle; ``busy_w`` while serving a batch, or, with
    ``busy_w=None``, the latency curve's energy per batch. ``method`` says where the watts come
    from (``measured``, ``estimated`` or ``typed in``)."""

    idle_w: float
    busy_w: float | None = None
    method: str = "estimated"

    def __post_init__(self) -> None:
        number("idle_w", self.idle_w, minimum=0, fix="give the instance's idle draw in watts")
        if self.busy_w is not None:
            number("busy_w", self.busy_w, minimum=0, fix="give the draw while serving, in watts")
            if self.busy_w < self.idle_w:
                raise ConfigError(
                    f"busy_w={self.busy_w} is below idle_w={self.idle_w}; busy power includes "
                    "the idle draw"
                )
        one_of("method", self.method, METHODS)


@dataclass
class ServingFigures:
    """What a serving configuration did (or is predicted to do) with one trace.

    Latencies are per served request (queue + service + overhead), ms. ``method`` is
    ``"estimated"`` for a simulation and ``"measured"`` for a replay against a real server.
    Fields a replay cannot see (``utilisation``, ``mean_batch_size``, energy) may be ``None``.
    """

    requests: int
    served: int
    dropped: int
    window_s: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_mean: float
    latency_ms_max: float
    queue_ms_mean: float | None
    throughput_requests_per_s: float
    throughput_items_per_s: float
    utilisation: float | None
    mean_batch_size: float | None
    energy_j_per_request: float | None
    power_w_avg: float | None
    energy_method: str | None
    method: str

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop_rate": self.drop_rate}

    def to_frame(self) -> pd.DataFrame:
        """A one-row DataFrame."""
        return pd.DataFrame([self.to_dict()])


def figures_from_requests(
    arrival_s: np.ndarray,
    finish_s: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    window_s: float | None = None,
    method: str = "measured",
    start_s: np.ndarray | None = None,
    busy_s: float | None = None,
    instances: int | None = None,
    batch_rows: np.ndarray | None = None,
    energy_j: float | None = None,
    energy_method: str | None = None,
) -> ServingFigures:
    """Summarise per-request times into :class:`ServingFigures`.

    Parameters
    ----------
    arrival_s, finish_s:
        When each request was sent and when its answer came back, seconds; ``finish_s`` is NaN
        for a dropped (rejected) request.
    rows:
        Items per request (default 1 each).
    window_s:
        The observed window for throughput, utilisation and average power; default: from the
        first arrival to the last arrival or completion.
    start_s:
        When each request's batch started (for queueing time); optional.
    busy_s, instances:
        Instance-seconds spent serving and the number of instances (for utilisation).
    batch_rows:
        Rows of each batch served (for the mean batch size).
    energy_j:
        Total energy over the window (for energy per request and average power).

    >>> f = figures_from_requests(np.array([0.0, 1.0]), np.array([0.5, np.nan]), window_s=2.0)
    >>> f.served, f.dropped, f.latency_ms_p50, f.throughput_requests_per_s
    (1, 1, 500.0, 0.5)
    """
    arrival = np.asarray(arrival_s, dtype=np.float64)
    finish = np.asarray(finish_s, dtype=np.float64)
    if arrival.shape != finish.shape or arrival.ndim != 1 or len(arrival) == 0:
        raise ConfigError("arrival_s and finish_s must be 1-d arrays of equal, non-zero length")
    one_of("method", method, METHODS)
    row_arr = np.ones(len(arrival)) if rows is None else np.asarray(rows, dtype=np.float64)
    served = np.isfinite(finish)
    if window_s is None:
        window_s = float(np.nanmax(np.concatenate([arrival, finish])) - arrival.min())
    latency = (finish[served] - arrival[served]) * 1e3
    pct = np.percentile(latency, (50, 95, 99)) if len(latency) else np.full(3, np.nan)
    queue = None
    if start_s is not None and served.any():
        queue = float(np.mean((np.asarray(start_s)[served] - arrival[served]) * 1e3))
    n_served = int(served.sum())
    window = window_s if window_s > 0 else math.nan
    return ServingFigures(
        requests=len(arrival),
        served=n_served,
        dropped=len(arrival) - n_served,
        window_s=float(window_s),
        latency_ms_p50=float(pct[0]),
        latency_ms_p95=float(pct[1]),
        latency_ms_p99=float(pct[2]),
        latency_ms_mean=float(latency.mean()) if len(latency) else math.nan,
        latency_ms_max=float(latency.max()) if len(latency) else math.nan,
        queue_ms_mean=queue,
        throughput_requests_per_s=n_served / window,
        throughput_items_per_s=float(row_arr[served].sum()) / window,
        utilisation=None if busy_s is None or not instances else busy_s / (instances * window),
        mean_batch_size=None
        if batch_rows is None or not len(batch_rows)
        else float(np.mean(batch_rows)),
        energy_j_per_request=None if energy_j is None or not n_served else energy_j / n_served,
        power_w_avg=None if energy_j is None else energy_j / window,
        energy_method=energy_method if energy_j is not None else None,
        method=method,
    )


@dataclass
class SimulationResult:
    """The simulated timeline and its :class:`ServingFigures`.

    Per request (trace order): ``start_s`` (its batch's start) and ``finish_s`` (when its answer
    leaves, overhead included), NaN if dropped; ``batch`` (index into the batch arrays, -1 if
    dropped). Per batch: ``batch_start_s``, ``batch_rows``, ``batch_requests``,
    ``batch_instance``, ``batch_service_s``.
    """

    config: ServerConfig
    figures: ServingFigures
    arrival_s: np.ndarray
    start_s: np.ndarray
    finish_s: np.ndarray
    batch: np.ndarray
    batch_start_s: np.ndarray
    batch_rows: np.ndarray
    batch_requests: np.ndarray
    batch_instance: np.ndarray
    batch_service_s: np.ndarray
    notes: list[str] = field(default_factory=list)

    #: The columns of :meth:`to_frame` a table of simulations shows (the CLI).
    SUMMARY_COLUMNS = (
        "max_batch_rows",
        "max_delay_ms",
        "instances",
        "latency_ms_p50",
        "latency_ms_p99",
        "throughput_items_per_s",
        "utilisation",
        "mean_batch_size",
        "dropped",
    )

    @property
    def dropped(self) -> np.ndarray:
        return self.batch < 0

    def requests_frame(self) -> pd.DataFrame:
        """One row per request: arrival, start, finish, latency and batch."""
        return pd.DataFrame(
            {
                "arrival_s": self.arrival_s,
                "start_s": self.start_s,
                "finish_s": self.finish_s,
                "latency_ms": (self.finish_s - self.arrival_s) * 1e3,
                "batch": self.batch,
                "dropped": self.dropped,
            }
        )

    def batches_frame(self) -> pd.DataFrame:
        """One row per batch: start, rows, requests, instance, service time."""
        return pd.DataFrame(
            {
                "start_s": self.batch_start_s,
                "rows": self.batch_rows,
                "requests": self.batch_requests,
                "instance": self.batch_instance,
                "service_ms": self.batch_service_s * 1e3,
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """The figures with the configuration, one row."""
        return pd.concat([pd.DataFrame([asdict(self.config)]), self.figures.to_frame()], axis=1)


@dataclass
class _Timeline:
    """What the event loop decided: per request its batch's start and index (-1: dropped), per
    batch its start, rows, requests and instance."""

    start: list[float]
    batch_of: list[int]
    b_start: list[float] = field(default_factory=list)
    b_rows: list[int] = field(default_factory=list)
    b_reqs: list[int] = field(default_factory=list)
    b_inst: list[int] = field(default_factory=list)


def simulate(
    trace: ArrivalTrace,
    curve: BatchLatencyCurve,
    config: ServerConfig | None = None,
    power: PowerModel | None = None,
) -> SimulationResult:
    """Run ``trace`` through a server with ``config``; service times from ``curve``.

    Without ``power`` the energy fields are ``None``.
    """
    cfg = config or ServerConfig()
    max_b = cfg.max_batch_rows
    times, rows = trace.times_s, trace.rows
    too_big = np.flatnonzero(rows > max_b)
    if len(too_big):
        i = int(too_big[0])
        raise ConfigError(
            f"request {i} carries {rows[i]} rows, more than max_batch_rows={max_b}; raise "
            "max_batch_rows or split the request"
        )
    service = [0.0] + [curve.service_s(b) for b in range(1, max_b + 1)]
    energy_of = None  # energy per batch by rows, when the curve supplies the busy energy
    if power is not None and power.busy_w is None:
        energy_of = [0.0] + [curve.energy_j(b) for b in range(1, max_b + 1)]
    timeline = _run_queue(times.tolist(), rows.tolist(), service, cfg)
    b_service = np.array([service[b] for b in timeline.b_rows], dtype=np.float64)
    start_arr = np.array(timeline.start, dtype=np.float64)
    batch_arr = np.array(timeline.batch_of, dtype=np.int64)
    served = batch_arr >= 0
    finish_arr = np.full(len(times), np.nan)
    finish_arr[served] = (
        start_arr[served] + b_service[batch_arr[served]] + cfg.request_overhead_ms / 1e3
    )
    window = max(trace.duration_s, float(np.nanmax(finish_arr)) if served.any() else 0.0)
    busy_s = float(b_service.sum())
    idle_s = cfg.instances * window - busy_s
    energy, energy_method = _energy(curve, power, energy_of, timeline.b_rows, idle_s, busy_s)
    figures = figures_from_requests(
        times,
        finish_arr,
        rows=rows,
        window_s=window,
        method="estimated",
        start_s=start_arr,
        busy_s=busy_s,
        instances=cfg.instances,
        batch_rows=np.array(timeline.b_rows),
        energy_j=energy,
        energy_method=energy_method,
    )
    return SimulationResult(
        config=cfg,
        figures=figures,
        arrival_s=times,
        start_s=start_arr,
        finish_s=finish_arr,
        batch=batch_arr,
        batch_start_s=np.array(timeline.b_start, dtype=np.float64),
        batch_rows=np.array(timeline.b_rows, dtype=np.int64),
        batch_requests=np.array(timeline.b_reqs, dtype=np.int64),
        batch_instance=np.array(timeline.b_inst, dtype=np.int64),
        batch_service_s=b_service,
        notes=[f"service times: {curve.method} ({curve.source})"],
    )


def _run_queue(
    t_list: list[float], r_list: list[int], service: list[float], cfg: ServerConfig
) -> _Timeline:
    """The event loop of the module docstring over arrivals ``t_list`` of ``r_list`` rows;
    ``service[b]`` is the time of a batch of ``b`` rows."""
    max_b = cfg.max_batch_rows
    delay = cfg.max_delay_ms / 1e3
    limit = cfg.max_queue_rows
    n = len(t_list)
    timeline = _Timeline(start=[math.nan] * n, batch_of=[-1] * n)
    queue: deque[int] = deque()
    queued_rows = 0
    free = list(range(cfg.instances))  # a heap: the lowest-numbered free instance serves first
    busy: list[tuple[float, int]] = []
    inf = math.inf
    i = 0
    while True:
        t_arr = t_list[i] if i < n else inf
        t_done = busy[0][0] if busy else inf
        t_timer = inf
        if queue and free and queued_rows < max_b:
            t_timer = t_list[queue[0]] + delay
        if t_done <= t_arr and t_done <= t_timer and t_done < inf:
            t, inst = heapq.heappop(busy)
            heapq.heappush(free, inst)
        elif t_arr <= t_timer and t_arr < inf:
            t = t_arr
            if limit is None or queued_rows + r_list[i] <= limit:  # else dropped: stays NaN / -1
                queue.append(i)
                queued_rows += r_list[i]
            i += 1
        elif t_timer < inf:
            t = t_timer
        else:
            break
        while free and queue and (queued_rows >= max_b or t_list[queue[0]] + delay <= t):
            inst = heapq.heappop(free)
            total = _take_batch(queue, r_list, max_b, t, inst, timeline)
            queued_rows -= total
            heapq.heappush(busy, (t + service[total], inst))
    return timeline


def _take_batch(
    queue: deque[int], r_list: list[int], max_b: int, t: float, inst: int, timeline: _Timeline
) -> int:
    """Start a batch at ``t`` on ``inst`` with the queued requests that fit; returns its rows."""
    index = len(timeline.b_start)
    total = 0
    count = 0
    while queue and total + r_list[queue[0]] <= max_b:
        j = queue.popleft()
        total += r_list[j]
        count += 1
        timeline.start[j] = t
        timeline.batch_of[j] = index
    timeline.b_start.append(t)
    timeline.b_rows.append(total)
    timeline.b_reqs.append(count)
    timeline.b_inst.append(inst)
    return total


def _energy(
    curve: BatchLatencyCurve,
    power: PowerModel | None,
    energy_of: list[float] | None,
    b_rows: list[int],
    idle_s: float,
    busy_s: float,
) -> tuple[float | None, str | None]:
    """Energy over the window (J) and its method; ``(None, None)`` without ``power``."""
    if power is None:
        return None, None
    if energy_of is not None:
        energy = float(sum(energy_of[b] for b in b_rows)) + power.idle_w * idle_s
        return energy, weakest_method(power.method, curve.energy_method or "estimated")
    return power.busy_w * busy_s + power.idle_w * idle_s, power.method


def predict(
    trace: ArrivalTrace,
    curve: BatchLatencyCurve,
    config: ServerConfig | None = None,
    power: PowerModel | None = None,
) -> ServingFigures:
    """The predicted :class:`ServingFigures` for ``trace``: what a measured replay of the same
    trace against a real server fills with ``method="measured"``."""
    return simulate(trace, curve, config, power).figures
