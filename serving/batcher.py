"""Adaptive batching across concurrent requests, run inline or on one worker thread per instance.

A :class:`Batcher` serves one model: it queues requests as row ranges, runs batches of up to
``max_batch_rows`` rows and hands every caller exactly its own rows back, in order. It packs
requests only when warm-up measured that batching pays, waits (at most ``max_delay_s``) only while
other requests are being received, and refuses with :class:`Overloaded` (Retry-After) beyond
``max_queue_rows`` queued rows or, with ``queue_target_s`` set, while the arrival rate exceeds
what the instances can do. A model faster than ``inline_below_s`` runs on the event loop thread,
others on one worker thread per instance; all bookkeeping runs on the event loop thread, so
there are no locks.

Use: :meth:`Batcher.start` after the model's warm-up; :meth:`Batcher.arrive` when a request's
headers are in (a batch may wait for it), then :meth:`Batcher.submit`, or :meth:`Batcher.depart`
when it will not come; :meth:`Batcher.close` finishes the queue. The rules in full:
docs/serving.md ("Batching"); how they were chosen and measured: docs/batcher-history.md.

Example
-------
>>> batcher = Batcher(model, max_batch_rows=32, max_delay_s=0.002)   # doctest: +SKIP
>>> batcher.start(asyncio.get_running_loop())                         # doctest: +SKIP
>>> batcher.arrive()                                                   # doctest: +SKIP
>>> outputs, queue_s = await batcher.submit({"input": x}, rows=4)     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.metrics import ServingMetrics
from serving.models import OnnxModel

#: Overload: the work offered over the interval exceeds OVERLOAD_FACTOR times what the instances
#: can do, or exceeds what they can do both over it and over SUSTAINED_INTERVALS intervals.
OVERLOAD_FACTOR, SUSTAINED_INTERVALS = 2.0, 8
#: A burst: the work offered over the last BURST_SHARE of the interval exceeds OVERLOAD_FACTOR
#: times what the instances can do in it; then the newest request runs first.
BURST_SHARE = 0.2


class Overloaded(Exception):
    """The queue is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BatchTooLarge(Exception):
    """A request holds more rows than the queue may ever hold."""


@dataclass(eq=False)
class _Job:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float
    pending: int = 1
    results: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)
    started: float | None = None


@dataclass(eq=False)
class _Part:
    job: _Job
    start: int
    stop: int
    key: tuple
    solo: bool = False  # run alone (retry after a batch failed, to isolate the bad request)


class Batcher:
    """Queue, batch and run requests for one model.

    Parameters
    ----------
    model: the ONNX Runtime sessions; one worker thread per session (instance).
    enabled: False runs each request alone, as sent.
    max_batch_rows: most rows per model run.
    max_delay_s: most time the oldest request waits for rows being received (see docs/serving.md).
    max_queue_rows: most rows queued; more raises :class:`Overloaded`.
    inline_below_s: run on the event loop thread when the largest batch is faster than this
        (0: always use worker threads).
    queue_target_s: overload control (0: off): in overload, a request queued longer than this
        is refused when its turn comes; see docs/serving.md.
    queue_interval_s: the window over which offered work is compared with the instances' time.
    """

    def __init__(
        self,
        model: OnnxModel,
        *,
        enabled: bool = True,
        max_batch_rows: int = 32,
        max_delay_s: float = 0.002,
        max_queue_rows: int = 1024,
        metrics: ServingMetrics | None = None,
        label: str | None = None,
        inline_below_s: float = 0.001,
        queue_target_s: float = 0.0,
        queue_interval_s: float = 0.25,
    ) -> None:
        self.model = model
        self.enabled = enabled and model.batch_axis
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self.metrics = metrics or ServingMetrics()
        self.label = (label or model.name,)
        self._queue: deque[_Part] = deque()
        self._queued_rows = 0
        self._arriving = 0
        self._idle: list[int] = []
        self._inboxes: list[queue.SimpleQueue] = []
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._packs = False  # several requests share a run only when batching pays
        self._wait_pays = False
        self.inline_below_s = inline_below_s
        self.inline = False
        self._flush_pending = False
        self._busy = 0
        self.queue_target_s = queue_target_s
        self.queue_interval_s = queue_interval_s
        self.overloaded = False  # more work offered over the interval than the instances can do
        self._offered = _WorkWindow(queue_interval_s)  # model time offered over the interval
        self._sustained = _WorkWindow(SUSTAINED_INTERVALS * queue_interval_s)
        self._burst = _WorkWindow(BURST_SHARE * queue_interval_s)

    @property
    def started(self) -> bool:
        return self._loop is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Choose inline or worker threads from the warm-up times and start; call after
        :meth:`OnnxModel.warm_up`."""
        self._loop = loop
        self._drained = asyncio.Event()
        warm = self.model.warmup
        self._packs = bool(self.enabled and warm is not None and warm.batching_pays)
        self._wait_pays = self._packs and self.max_delay_s > 0
        instances = len(self.model.sessions)
        self.inline = bool(
            instances == 1 and warm is not None and warm.seconds_max < self.inline_below_s
        )
        if self.inline:
            self._idle.append(0)
            return
        for instance in range(instances):
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._work,
                args=(instance, inbox),
                name=f"{self.model.name}-{instance}",
                daemon=True,
            )
            self._inboxes.append(inbox)
            self._threads.append(thread)
            self._idle.append(instance)
            thread.start()

    def arrive(self) -> None:
        """A request for this model is being received: a batch may wait for it."""
        self._arriving += 1

    def depart(self) -> None:
        """A request announced with :meth:`arrive` will not be submitted (error, cache hit)."""
        self._arriving -= 1
        if self._arriving == 0 and self._queue:
            self._dispatch()

    async def submit(
        self, inputs: dict[str, np.ndarray], rows: int, arrived: bool = True
    ) -> tuple[dict[str, np.ndarray], float]:
        """Queue one request; returns its outputs (its own rows) and its time in the queue (s)."""
        if arrived:
            self._arriving -= 1
        if rows > self.max_queue_rows:
            raise BatchTooLarge(
                f"the request holds {rows} rows; model {self.model.name!r} takes at most "
                f"{self.max_queue_rows} rows per request: split it"
            )
        self._offer(rows)
        self._admit(rows)
        assert self._loop is not None, "Batcher.start() was not called"
        job = _Job(inputs, rows, self._loop.create_future(), time.perf_counter())
        key = tuple((name, a.shape[1:]) for name, a in inputs.items())
        self._queue.append(_Part(job, 0, rows, key))
        self._queued_rows += rows
        self.metrics.queue_rows.set(self.label, self._queued_rows)
        self._dispatch()
        outputs = await job.future
        return outputs, job.started - job.enqueued

    def admit(self, rows: int = 1) -> None:
        """Raise :class:`Overloaded` unless ``rows`` more rows fit in the queue.

        Cheap, so the server can refuse before it decodes a request it could not queue. A request
        admitted here is counted as offered when it is submitted; one refused here, now.
        """
        try:
            self._admit(rows)
        except Overloaded:
            self._offer(rows)
            raise

    def _admit(self, rows: int) -> None:
        if self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(
                f"model {self.model.name!r} is overloaded ({self._queued_rows} rows queued, limit "
                f"{self.max_queue_rows}); retry later",
                self._retry_after_s(),
            )
        if self.overloaded and self._queued_rows and self._queued_rows + rows > self._next_rows():
            raise Overloaded(self._overload_message(), self._retry_after_s())

    def _next_rows(self) -> int:
        """Rows the instances take in their next batches."""
        return len(self.model.sessions) * (self.max_batch_rows if self._packs else 1)

    def _overload_message(self, waited_s: float | None = None) -> str:
        waited = "" if waited_s is None else f"; this request waited {waited_s * 1e3:.0f} ms"
        instances = len(self.model.sessions)
        need_ms = self._offered.total_s * 1e3
        return (
            f"model {self.model.name!r} is overloaded (the requests of the last "
            f"{self.queue_interval_s * 1e3:g} ms need {need_ms:.0f} ms of model "
            f"time; {instances} instance{'s' if instances > 1 else ''} can give "
            f"{self._can_do_s(self.queue_interval_s) * 1e3:g} ms{waited}); retry later"
        )

    def _can_do_s(self, span_s: float) -> float:
        """Model time the instances have in ``span_s`` seconds."""
        return len(self.model.sessions) * span_s

    def _offer(self, rows: int) -> None:
        """Count offered work over the interval; enter or leave overload (docs/serving.md)."""
        if self.queue_target_s <= 0 or self.model.warmup is None:
            return
        now = time.perf_counter()
        work = self._cost_s(rows)
        recent = self._offered.add(now, work)
        sustained = self._sustained.add(now, work)
        self._burst.add(now, work)
        can_do = self._can_do_s(self.queue_interval_s)
        self.overloaded = recent > OVERLOAD_FACTOR * can_do or (
            recent > can_do and sustained > SUSTAINED_INTERVALS * can_do
        )

    def _bursting(self) -> bool:
        """Over 2x the instances' time offered within the last BURST_SHARE of the interval, and
        the oldest queued request has waited beyond the target."""
        if self.queue_target_s <= 0 or len(self._queue) < 2:
            return False
        now = time.perf_counter()
        can_do = self._can_do_s(self._burst.span_s)
        return (
            now - self._queue[0].job.enqueued > self.queue_target_s
            and self._burst.total_at(now) > OVERLOAD_FACTOR * can_do
        )

    def _cost_s(self, rows: int) -> float:
        """Model time for ``rows`` rows, from the warm-up: a share of a full batch when batching
        pays, else one call (interpolated between the 1-row and the largest call)."""
        warm = self.model.warmup
        if self._packs:
            return rows * warm.seconds_max / warm.max_rows
        if warm.max_rows <= 1:
            return rows * warm.seconds_1
        per_row = max(0.0, warm.seconds_max - warm.seconds_1) / (warm.max_rows - 1)
        return warm.seconds_1 + (rows - 1) * per_row

    async def close(self) -> None:
        """Finish every queued request, then stop the worker threads."""
        assert self._drained is not None
        while self._queue or self._busy:
            self._drained.clear()
            await self._drained.wait()
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10.0)

    # -- event loop side -------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.inline:  # the flush sheds, when the batch is taken
            if self._queue and not self._flush_pending:
                self._flush_pending = True
                self._loop.call_soon(self._flush)
            return
        if self.overloaded:
            self._shed()
        while self._idle and self._queue:
            if self._should_wait():
                return
            self._inboxes[self._idle.pop()].put(self._take())

    def _shed(self) -> None:
        """In overload, answer 503 to queued requests that waited beyond the target, unrun."""
        now = time.perf_counter()
        while self._queue:
            part = self._queue[0]
            job = part.job
            waited = now - job.enqueued
            if (
                waited <= self.queue_target_s
                or job.started is not None
                or part.stop - part.start != job.rows
            ):
                return
            self._queue.popleft()
            self._queued_rows -= job.rows
            self.metrics.queue_rows.set(self.label, self._queued_rows)
            if not job.future.done():
                job.future.set_exception(
                    Overloaded(self._overload_message(waited), self._retry_after_s())
                )
        if not self._busy:  # nothing left to finish: close() may be waiting for this
            self._drained.set()

    def _flush(self) -> None:
        """Inline mode: run one batch on the event loop thread, then yield to the loop."""
        if self.overloaded:
            self._shed()
        if not self._queue or self._should_wait():
            self._flush_pending = False
            return
        batch = self._take()
        instance = self._idle.pop()
        started = time.perf_counter()
        outputs, error = _run(self.model, batch, instance)
        self._finish(instance, batch, outputs, error, started, time.perf_counter())
        if self._queue:
            self._loop.call_soon(self._flush)
        else:
            self._flush_pending = False

    def _should_wait(self) -> bool:
        if not self._wait_pays or self._arriving <= 0 or self._queued_rows >= self.max_batch_rows:
            return False
        remaining = self._queue[0].job.enqueued + self.max_delay_s - time.perf_counter()
        if remaining <= 0:
            return False
        if self._timer is None:
            self._timer = self._loop.call_later(remaining, self._on_timer)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Part]:
        if self._bursting():  # adaptive LIFO: the newest first; the oldest will be shed
            self._queue.appendleft(self._queue.pop())
        head = self._queue[0]
        if not self.enabled or head.solo:
            return self._taken([self._queue.popleft()])
        space = self.max_batch_rows
        batch: list[_Part] = []
        skipped: list[_Part] = []
        while self._queue and space > 0 and (self._packs or not batch):
            part = self._queue.popleft()
            if part.key != head.key or part.solo:
                skipped.append(part)
                continue
            if part.stop - part.start > space:
                rest = _Part(part.job, part.start + space, part.stop, part.key)
                part = _Part(part.job, part.start, part.start + space, part.key)
                part.job.pending += 1
                skipped.append(rest)
            batch.append(part)
            space -= part.stop - part.start
        self._queue.extendleft(reversed(skipped))
        return self._taken(batch)

    def _taken(self, batch: list[_Part]) -> list[_Part]:
        self._queued_rows -= sum(p.stop - p.start for p in batch)
        self.metrics.queue_rows.set(self.label, self._queued_rows)
        self._busy += 1
        return batch

    def _finish(
        self,
        instance: int,
        batch: list[_Part],
        outputs: dict[str, np.ndarray] | None,
        error: BaseException | None,
        started: float,
        ended: float,
    ) -> None:
        self._idle.append(instance)
        self._busy -= 1
        rows = sum(p.stop - p.start for p in batch)
        self.metrics.batch_rows.observe(self.label, rows)
        self.metrics.compute_seconds.observe(self.label, ended - started)
        if error is not None and len({id(p.job) for p in batch}) > 1:
            # One bad request must not fail its batch-mates: run each part alone.
            for part in reversed(batch):
                part.solo = True
                self._queue.appendleft(part)
            self._queued_rows += rows
            self.metrics.queue_rows.set(self.label, self._queued_rows)
        else:
            offset = 0
            for part in batch:
                job, n = part.job, part.stop - part.start
                if job.started is None:
                    job.started = started
                if error is not None:
                    if not job.future.done():
                        job.future.set_exception(error)
                    continue
                job.results.append(
                    (part.start, {k: v[offset : offset + n] for k, v in outputs.items()})
                )
                offset += n
                job.pending -= 1
                if job.pending == 0 and not job.future.done():
                    job.future.set_result(_assemble(job.results))
        self._dispatch()
        if not self._queue and not self._busy:
            self._drained.set()

    def _retry_after_s(self) -> int:
        warm = self.model.warmup
        per_row = warm.seconds_max / warm.max_rows if warm else 0.01
        return max(1, math.ceil(self._queued_rows * per_row))

    # -- worker threads ----------------------------------------------------------------------

    def _work(self, instance: int, inbox: queue.SimpleQueue) -> None:
        while True:
            batch = inbox.get()
            if batch is None:
                return
            started = time.perf_counter()
            outputs, error = _run(self.model, batch, instance)
            self._loop.call_soon_threadsafe(
                self._finish, instance, batch, outputs, error, started, time.perf_counter()
            )


class _WorkWindow:
    """Seconds of model time offered over the last ``span_s`` seconds."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.total_s = 0.0
        self._items: deque[tuple[float, float]] = deque()

    def add(self, now: float, work_s: float) -> float:
        self._items.append((now, work_s))
        self.total_s += work_s
        return self.total_at(now)

    def total_at(self, now: float) -> float:
        horizon = now - self.span_s
        while self._items and self._items[0][0] < horizon:
            self.total_s -= self._items.popleft()[1]
        if not self._items:
            self.total_s = 0.0
        return self.total_s


def _run(
    model: OnnxModel, batch: list[_Part], instance: int
) -> tuple[dict[str, np.ndarray] | None, BaseException | None]:
    try:
        return model.run(_feed(batch), instance), None
    except Exception as exc:  # handed to the callers; never kills a worker
        return None, exc


def _feed(batch: list[_Part]) -> dict[str, np.ndarray]:
    first = batch[0]
    if len(batch) == 1:
        if first.start == 0 and first.stop == first.job.rows:
            return first.job.inputs
        return {k: v[first.start : first.stop] for k, v in first.job.inputs.items()}
    return {
        name: np.concatenate([p.job.inputs[name][p.start : p.stop] for p in batch])
        for name in first.job.inputs
    }


def _assemble(results: list[tuple[int, dict[str, Any]]]) -> dict[str, np.ndarray]:
    if len(results) == 1:
        return results[0][1]
    results.sort(key=lambda r: r[0])
    return {k: np.concatenate([r[1][k] for r in results]) for k in results[0][1]}
