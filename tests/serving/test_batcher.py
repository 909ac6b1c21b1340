"""The batcher with real ONNX Runtime sessions: packing, splitting, own rows back, isolation of a
failing request, overload, and waiting only when waiting can pay off."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from serving_helpers import reference

from serving.batcher import Batcher, BatchTooLarge, Overloaded
from serving.metrics import ServingMetrics
from serving.models import OnnxModel, Warmup

MODES = {"inline": 1.0, "threads": 0.0}


def _batcher(path, warmup: Warmup | None = None, **options) -> Batcher:
    model = OnnxModel(path, name="m", instances=options.pop("instances", 1))
    if warmup is None:
        model.warm_up(options.get("max_batch_rows", 32))
    else:
        model.warmup = warmup
    return Batcher(model, metrics=ServingMetrics(), **options)


def _run(batcher: Batcher, coro_factory):
    async def main():
        batcher.start(asyncio.get_running_loop())
        try:
            return await coro_factory()
        finally:
            await batcher.close()

    return asyncio.run(main())


@pytest.mark.parametrize("mode", list(MODES))
def test_concurrent_requests_share_batches_and_get_their_own_rows(models_dir, mode):
    b = _batcher(
        models_dir / "lin.onnx",
        max_batch_rows=16,
        inline_below_s=MODES[mode],
        instances=2 if mode == "threads" else 1,
    )
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1 + i % 4, 8)).astype(np.float32) for i in range(40)]

    async def go():
        return await asyncio.gather(*[b.submit({"input": x}, len(x), arrived=False) for x in xs])

    results = _run(b, go)
    assert b.inline is (mode == "inline")
    for x, (out, queue_s) in zip(xs, results):
        np.testing.assert_allclose(
            out["output"],
            reference(models_dir / "lin.onnx", {"input": x})["output"],
            rtol=1e-5,
            atol=1e-6,
        )
        assert queue_s >= 0
    runs = b.metrics.batch_rows.values[("m",)]
    assert runs[-1] < len(xs), "requests were never packed together"
    assert runs[-2] == sum(len(x) for x in xs)
    up_to_16 = sum(runs[: b.metrics.batch_rows.bounds.index(16) + 1])  # per-bucket counts
    assert up_to_16 == runs[-1], "a batch exceeded 16 rows"


def test_a_request_larger_than_a_batch_is_split_into_full_batches(models_dir):
    b = _batcher(models_dir / "lin.onnx", max_batch_rows=4)
    x = np.random.default_rng(1).standard_normal((10, 8)).astype(np.float32)
    out, _ = _run(b, lambda: b.submit({"input": x}, 10, arrived=False))
    np.testing.assert_allclose(
        out["output"],
        reference(models_dir / "lin.onnx", {"input": x})["output"],
        rtol=1e-5,
        atol=1e-6,
    )
    runs = b.metrics.batch_rows.values[("m",)]
    assert runs[-1] == 3 and runs[-2] == 10  # 4 + 4 + 2


def test_inputs_with_different_non_batch_sizes_never_share_a_run(models_dir):
    b = _batcher(models_dir / "emb.onnx", max_batch_rows=32)
    short = np.array([[1, 2, 3]], np.int64)
    long = np.array([[4, 5, 6, 7, 8]], np.int64)

    async def go():
        return await asyncio.gather(
            b.submit({"ids": short}, 1, arrived=False),
            b.submit({"ids": long}, 1, arrived=False),
            b.submit({"ids": short + 1}, 1, arrived=False),
        )

    (a, _), (c, _), (d, _) = _run(b, go)
    assert a["output"].shape == (1, 3, 4) and c["output"].shape == (1, 5, 4)
    np.testing.assert_array_equal(
        d["output"], reference(models_dir / "emb.onnx", {"ids": short + 1})["output"]
    )
    runs = b.metrics.batch_rows.values[("m",)]
    assert runs[-1] == 2  # the two short requests together, the long one alone


def test_a_failing_request_does_not_fail_its_batch_mates(models_dir):
    b = _batcher(models_dir / "emb.onnx")
    good = np.array([[1, 2]], np.int64)
    bad = np.array([[1, 99]], np.int64)  # id 99 is outside the 10-row table

    async def go():
        return await asyncio.gather(
            b.submit({"ids": good}, 1, arrived=False),
            b.submit({"ids": bad}, 1, arrived=False),
            b.submit({"ids": good + 1}, 1, arrived=False),
            return_exceptions=True,
        )

    first, failed, third = _run(b, go)
    assert isinstance(failed, Exception) and "indices" in str(failed).lower()
    want = reference(models_dir / "emb.onnx", {"ids": good})["output"]
    np.testing.assert_array_equal(first[0]["output"], want)
    assert third[0]["output"].shape == (1, 2, 4)


def test_a_full_queue_raises_overloaded_with_a_retry_hint(models_dir):
    b = _batcher(models_dir / "lin.onnx", max_queue_rows=4)
    x3, x2 = np.zeros((3, 8), np.float32), np.zeros((2, 8), np.float32)

    async def go():
        return await asyncio.gather(
            b.submit({"input": x3}, 3, arrived=False),
            b.submit({"input": x2}, 2, arrived=False),
            return_exceptions=True,
        )

    ok, refused = _run(b, go)
    assert ok[0]["output"].shape == (3, 4)
    assert isinstance(refused, Overloaded) and refused.retry_after_s >= 1
    b2 = _batcher(models_dir / "lin.onnx", max_queue_rows=4)
    x5 = np.zeros((5, 8), np.float32)
    with pytest.raises(BatchTooLarge, match="at most 4 rows"):
        _run(b2, lambda: b2.submit({"input": x5}, 5, arrived=False))


#: What the overload tests tell the batcher each call costs: 10 ms, so an interval of 100 ms
#: holds 10 requests' work on one instance. The real model (slow.onnx) takes about 0.5 ms.
TEN_MS = Warmup(seconds_1=0.01, seconds_max=0.32, max_rows=32)


def _overload_batcher(models_dir, target_s: float, inline_below_s: float = 0.0) -> Batcher:
    return _batcher(
        models_dir / "slow.onnx",
        TEN_MS,
        enabled=False,
        max_queue_rows=64,
        inline_below_s=inline_below_s,
        queue_target_s=target_s,
        queue_interval_s=0.1,
    )


async def _submit_at_once(b: Batcher, n: int) -> list:
    x = np.ones((1, 256), np.float32)
    return await asyncio.gather(
        *[b.submit({"input": x}, 1, arrived=False) for _ in range(n)], return_exceptions=True
    )


@pytest.mark.parametrize("target_s", [1e-4, 0.0], ids=["detection-on", "detection-off"])
def test_work_offered_beyond_2x_capacity_is_overload_refused_and_shed(models_dir, target_s):
    """30 requests of 10 ms each in one instant: 300 ms of work offered within the 100 ms
    interval. The 20th or 21st (floating-point sums) tips it past 2x (200 ms): from then on a
    request is refused while another waits, and queued ones that waited beyond the target are
    answered 503 unrun, though the hard bound (64) has room. Once the offered work falls,
    overload ends. With detection off only the bound refuses: all 30 are served."""
    b = _overload_batcher(models_dir, target_s)

    async def go():
        burst = await _submit_at_once(b, 30)
        overloaded_then = b.overloaded
        await asyncio.sleep(0.15)  # the burst leaves the interval
        after = await _submit_at_once(b, 1)
        return burst, overloaded_then, after[0], b.overloaded

    burst, overloaded_then, after, overloaded_after = _run(b, go)
    served = [r for r in burst if not isinstance(r, BaseException)]
    refused = [r for r in burst if isinstance(r, BaseException)]
    assert all(isinstance(r, Overloaded) and r.retry_after_s >= 1 for r in refused), refused
    if not target_s:
        assert len(served) == 30 and not overloaded_then
    else:
        assert overloaded_then
        at_admission = [r for r in burst[21:] if isinstance(r, Overloaded)]
        assert len(at_admission) == 9, burst[21:]  # the 22nd to the 30th: others were waiting
        assert all("can give 100 ms" in str(r) for r in at_admission), at_admission
        shed = [r for r in burst[:19] if isinstance(r, Overloaded)]
        assert shed and all("this request waited" in str(r) for r in shed), burst[:19]
        assert 1 <= len(served) < 19, "the first runs at once; the stale rest is shed"
    assert not overloaded_after, "100 ms later only 10 ms of work was offered: overload is over"
    assert after[0]["output"].shape == (1, 256)


@pytest.mark.parametrize("mode", list(MODES))
def test_close_returns_when_overload_sheds_the_last_queued_requests(models_dir, mode):
    """Shutting down in overload: close() starts waiting while requests are queued; they are
    then shed (waited beyond a 1 us target), not run. close() must see the queue drained instead
    of waiting for a batch that never comes (inline mode hung here before)."""
    b = _overload_batcher(models_dir, 1e-6, inline_below_s=MODES[mode])
    x = np.ones((1, 256), np.float32)

    async def go():
        b.start(asyncio.get_running_loop())
        jobs = [asyncio.ensure_future(b.submit({"input": x}, 1, arrived=False)) for _ in range(30)]
        closing = asyncio.ensure_future(b.close())  # runs before the first batch is taken
        await asyncio.wait_for(closing, 10)
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(go())
    assert any(isinstance(r, Overloaded) and "waited" in str(r) for r in results), results
    assert all(isinstance(r, (tuple, Overloaded)) for r in results), results


def test_a_bunch_within_capacity_is_served_not_refused(models_dir):
    """A stall of the machine delivers requests at once; 9 x 10 ms fit in the 100 ms interval:
    no overload, none refused."""
    b = _overload_batcher(models_dir, 1e-4)
    results = _run(b, lambda: _submit_at_once(b, 9))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert not b.overloaded


@pytest.mark.parametrize("count", [12, 3], ids=["burst", "no-burst"])
def test_a_burst_serves_the_newest_first(models_dir, count):
    """12 x 10 ms offered at once: within the last 20 ms (a fifth of the interval) over 2x what
    the instance can do. Once the oldest waiting request has waited beyond the target, the
    newest goes first (adaptive LIFO): fresh requests are served fast while the old wait (and
    are shed if overload follows). 3 x 10 ms (30 ms, under 2x of 20 ms) run in order."""
    b = _overload_batcher(models_dir, 1e-4)
    results = _run(b, lambda: _submit_at_once(b, count))
    assert not any(isinstance(r, BaseException) for r in results), results
    waits = [queue_s for _, queue_s in results]
    assert waits[0] == min(waits), "the first runs at once"
    if count == 12:
        assert waits[11] < waits[1], "then the newest before the oldest waiting"
    else:
        assert waits == sorted(waits)


def test_work_above_capacity_over_eight_intervals_is_overload(models_dir, monkeypatch):
    """The rule on a fake clock: 14 ms of work offered every 10 ms (1.4x what one instance can
    do, below the 2x of a burst) after 60 % of it for a second. Not overload at first; overload
    once the last 8 intervals (800 ms) hold more work than the instance can do in them; over as
    soon as the rate over one interval falls to 1x."""
    b = _overload_batcher(models_dir, 1e-4)  # a 100 ms interval, 10 ms per request
    clock = [0.0]
    monkeypatch.setattr("serving.batcher.time.perf_counter", lambda: clock[0])

    def offer(t: float, requests: float) -> bool:
        clock[0] = t
        for _ in range(int(requests)):
            b._offer(1)
        return b.overloaded

    ticks = np.arange(0, 1.0, 0.01)  # 100 ticks of 10 ms
    assert not any(offer(t, 1 if i % 5 < 3 else 0) for i, t in enumerate(ticks))  # 60 %
    states = [(round(1 + t, 2), offer(1 + t, 1 if i % 5 < 3 else 2)) for i, t in enumerate(ticks)]
    first = next(t for t, on in states if on)
    # over the 800 ms before t: 0.6 x (1.8 - t) + 1.4 x (t - 1) > 0.8 from t = 1.4 s
    assert 1.35 <= first <= 1.45, states
    assert all(on for t, on in states if t >= first + 0.01), states
    assert not offer(2.2, 1), "the last 100 ms hold 10 ms of work: overload is over"


CHEAP_BATCHES = Warmup(seconds_1=1e-4, seconds_max=2e-4, max_rows=32)  # batching pays
COMPUTE_BOUND = Warmup(seconds_1=1e-2, seconds_max=0.33, max_rows=32)  # it does not


@pytest.mark.parametrize("mode", list(MODES))
def test_no_wait_when_nothing_else_is_in_flight(models_dir, mode):
    b = _batcher(
        models_dir / "lin.onnx", CHEAP_BATCHES, max_delay_s=1.0, inline_below_s=MODES[mode]
    )
    x = np.ones((1, 8), np.float32)

    async def sequential():
        start = time.perf_counter()
        for _ in range(20):
            b.arrive()
            await b.submit({"input": x}, 1)
        return time.perf_counter() - start

    assert _run(b, sequential) < 1.0, "a lone request waited for company"


def test_a_batch_waits_for_requests_being_received_when_batching_pays(models_dir):
    b = _batcher(models_dir / "lin.onnx", CHEAP_BATCHES, max_delay_s=1.0)
    x = np.ones((1, 8), np.float32)

    async def two_arrivals():
        b.arrive()
        b.arrive()  # a second request is being received
        first = asyncio.ensure_future(b.submit({"input": x}, 1))
        await asyncio.sleep(0.05)
        assert not first.done(), "the batch did not wait for the request being received"
        await b.submit({"input": x}, 1)
        return await first

    _run(b, two_arrivals)
    runs = b.metrics.batch_rows.values[("m",)]
    assert runs[-1] == 1 and runs[-2] == 2  # one run of both rows


def test_the_wait_ends_at_max_delay_or_when_the_arrival_is_abandoned(models_dir):
    b = _batcher(models_dir / "lin.onnx", CHEAP_BATCHES, max_delay_s=0.1)
    x = np.ones((1, 8), np.float32)

    async def stalled_then_abandoned():
        b.arrive()
        b.arrive()  # never submitted within the delay
        start = time.perf_counter()
        await b.submit({"input": x}, 1)
        waited = time.perf_counter() - start
        b.arrive()
        late = asyncio.ensure_future(b.submit({"input": x}, 1))
        await asyncio.sleep(0.01)
        b.depart()  # e.g. the other request failed to decode: stop waiting for it
        await late
        return waited

    waited = _run(b, stalled_then_abandoned)
    assert 0.09 <= waited < 1.0


def test_a_compute_bound_model_never_waits(models_dir):
    b = _batcher(models_dir / "lin.onnx", COMPUTE_BOUND, max_delay_s=1.0)
    x = np.ones((1, 8), np.float32)

    async def with_pending_arrival():
        b.arrive()
        b.arrive()
        start = time.perf_counter()
        await b.submit({"input": x}, 1)
        return time.perf_counter() - start

    assert _run(b, with_pending_arrival) < 0.5


def test_a_compute_bound_model_runs_each_request_on_its_own(models_dir):
    b = _batcher(models_dir / "lin.onnx", COMPUTE_BOUND, max_batch_rows=16)
    xs = [np.full((2, 8), i, np.float32) for i in range(10)]

    async def go():
        return await asyncio.gather(*[b.submit({"input": x}, 2, arrived=False) for x in xs])

    for x, (out, _) in zip(xs, _run(b, go)):
        want = reference(models_dir / "lin.onnx", {"input": x})["output"]
        np.testing.assert_allclose(out["output"], want, rtol=1e-5, atol=1e-6)
    runs = b.metrics.batch_rows.values[("m",)]
    assert runs[-1] == 10 and runs[-2] == 20  # ten runs of two rows: nothing packed


def test_warm_up_uses_the_typical_shape_of_variable_dimensions(models_dir):
    model = OnnxModel(models_dir / "emb.onnx", name="emb", typical_shapes={"ids": (1, 128)})
    assert model.example(4)["ids"].shape == (4, 128)
    assert OnnxModel(models_dir / "emb.onnx", name="emb").example(4)["ids"].shape == (4, 8)
