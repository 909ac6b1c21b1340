"""Figures of one monitoring window, from two scrapes of a live runtime's ``/metrics``.

Every figure is a difference of counters between the window's first and last scrape (a counter
that went down means the server restarted: its new value is the window's delta, as Prometheus'
``increase`` counts it):

- ``latency_ms_p99``: from the ``serving_request_seconds`` histogram's bucket deltas, interpolated
  inside the bucket as Prometheus' ``histogram_quantile`` does;
- ``j_per_prediction``: delta ``serving_live_energy_joules_total`` / delta
  ``serving_predictions_total``; ``idle_share``: delta idle energy / delta energy; ``power_w``:
  delta energy / seconds; each labelled with the weakest method of the meters behind it;
- ``usd_per_1m``: the instance price x the window's hours / its predictions x 1e6 (the price from
  ``serving_instance_usd_per_hour``, else the bundle's), so idle time costs what it costs.

>>> from workbench.monitor.scrape import parse
>>> def text(j, idle, n):
...     return (f'serving_live_energy_joules_total{{component="cpu",method="estimated",'
...             f'meter="process-cpu"}} {j}\\n'
...             f'serving_live_idle_energy_joules_total{{component="cpu",method="estimated",'
...             f'meter="process-cpu"}} {idle}\\n'
...             f'serving_predictions_total{{model="m"}} {n}\\n')
>>> w = window(parse(text(10, 4, 100), at=0), parse(text(30, 9, 300), at=10), model="m")
>>> w.j_per_prediction, w.idle_share, w.power_w, w.energy_method
(0.1, 0.25, 2.0, 'estimated')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from workbench.monitor.scrape import Scrape
from workbench.provenance import METHODS, weakest_method

ENERGY = "serving_live_energy_joules_total"
IDLE_ENERGY = "serving_live_idle_energy_joules_total"
PREDICTIONS = "serving_predictions_total"
REQUESTS = "serving_requests_total"
LATENCY = "serving_request_seconds"
PRICE = "serving_instance_usd_per_hour"
NAN = math.nan


@dataclass(frozen=True)
class Window:
    """What a live runtime did between two scrapes (NaN: the window cannot say, e.g. no
    prediction was made or the runtime exports no live energy)."""

    start: str
    end: str
    seconds: float
    requests: float
    requests_per_s: float
    predictions: float
    latency_ms_p99: float
    energy_j: float
    idle_energy_j: float
    j_per_prediction: float
    idle_share: float
    power_w: float
    usd_per_1m: float
    energy_method: str
    meters: str

    def to_dict(self) -> dict:
        return asdict(self)


def increase(before: float, after: float) -> float:
    """A counter's rise; a fall means the server restarted, so ``after`` is all of it.

    >>> increase(5, 8), increase(5, 2), increase(float("nan"), 3)
    (3, 2, 3)
    """
    if math.isnan(before):
        return after
    return after - before if after >= before else after


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, interpolated linearly in
    its bucket (the ``+Inf`` bucket gives the largest finite bound); NaN when empty.

    >>> histogram_quantile(0.5, [(0.001, 0), (0.002, 10), (float("inf"), 10)])
    0.0015
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return NAN
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = (bound if not math.isinf(bound) else lower), count
    return lower


def _bucket_deltas(before: Scrape, after: Scrape, model: str | None) -> list[tuple[float, float]]:
    where = {} if model is None else {"model": model}
    out = []
    for le in after.labels(f"{LATENCY}_bucket", "le", **where):
        now = after.total(f"{LATENCY}_bucket", le=le, **where)
        then = before.total(f"{LATENCY}_bucket", le=le, **where)
        out.append((float(le), increase(then, now)))
    return out


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    now = after.total(name, **labels)
    if math.isnan(now):
        return NAN
    return float(increase(before.total(name, **labels), now))


def _ratio(top: float, bottom: float) -> float:
    if math.isnan(top) or math.isnan(bottom) or bottom <= 0:
        return NAN
    return top / bottom


def energy_method(scrape: Scrape) -> tuple[str, str]:
    """The weakest method of the live energy series and their meters (``'rapl,nvml'``);
    ``('', '')`` when the runtime exports none."""
    series = scrape.select(ENERGY)
    methods = [s.labels.get("method", "") for s in series]
    known = [m for m in methods if m in METHODS]
    method = weakest_method(*known) if known else (methods[0] if methods else "")
    meters = ",".join(dict.fromkeys(s.labels.get("meter", "") for s in series))
    return method, meters


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds")


def window(
    before: Scrape, after: Scrape, *, model: str | None = None, usd_per_h: float | None = None
) -> Window:
    """The figures between two scrapes of one runtime (``model``: the bundle's model name, for
    the per-model series; ``usd_per_h``: the instance price when the runtime exports none)."""
    where = {} if model is None else {"model": model}
    seconds = max(after.at - before.at, 0.0)
    predictions = _delta(before, after, PREDICTIONS, **where)
    requests = _delta(before, after, REQUESTS, **where)
    energy = _delta(before, after, ENERGY)
    idle = _delta(before, after, IDLE_ENERGY)
    price = after.total(PRICE, **where)
    if math.isnan(price) or price <= 0:
        price = NAN if usd_per_h is None else float(usd_per_h)
    p99_s = histogram_quantile(0.99, _bucket_deltas(before, after, model))
    method, meters = energy_method(after)
    return Window(
        start=_iso(before.wall),
        end=_iso(after.wall),
        seconds=seconds,
        requests=requests,
        requests_per_s=_ratio(requests, seconds),
        predictions=predictions,
        latency_ms_p99=p99_s * 1000,
        energy_j=energy,
        idle_energy_j=idle,
        j_per_prediction=_ratio(energy, predictions),
        idle_share=_ratio(idle, energy),
        power_w=_ratio(energy, seconds),
        usd_per_1m=_ratio(price * seconds / 3600 * 1e6, predictions),
        energy_method=method,
        meters=meters,
    )
