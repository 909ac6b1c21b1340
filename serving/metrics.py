"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Counters, gauges and histograms with labels; every update happens on the server's event loop
thread, so there are no locks. :class:`ServingMetrics` names the runtime's series:

- ``serving_requests_total{model,code}``, ``serving_failures_total{model,reason}``;
- ``serving_request_seconds``, ``serving_queue_seconds``, ``serving_compute_seconds``
  (histograms per model: whole request, waiting in the batcher's queue, model run);
- ``serving_batch_rows`` (histogram of rows per model run), ``serving_queue_rows`` (gauge);
- ``serving_cache_hits_total`` / ``serving_cache_misses_total`` (responses) and
  ``serving_cache_hit_rows_total`` (rows answered from the cache, no model run);
- ``serving_cascade_rows_total`` / ``serving_escalated_rows_total`` and
  ``serving_escalation_ratio``;
- ``serving_predictions_total`` (every row answered, cache hits included) and, charged per row a
  model ran, from figures the bundle carries (these series meter nothing):
  ``serving_energy_joules_per_prediction``, ``serving_cost_usd_per_prediction``,
  ``serving_energy_joules_total``, ``serving_cost_usd_total``, labelled ``role`` (the model that
  ran: ``main``, ``small``, ``large``; ``cascade`` for a whole-bundle figure), ``method`` (how the
  runtime got the figure: ``profile``, ``typed in``, or ``unknown`` with a NaN per-prediction
  gauge) and ``profile_method`` (how that figure was made: ``measured``, ``estimated``, ...);
  and ``serving_instance_usd_per_hour``;
- the live series, once :meth:`ServingMetrics.enable_live` added them (:mod:`serving.live_energy`
  meters the server itself; ``--no-live-meter`` leaves them out), :class:`LiveSeries`:
  ``serving_live_energy_joules_total``, ``serving_live_idle_energy_joules_total`` and
  ``serving_live_power_watts`` labelled ``component`` (``cpu_package:0``, ``dram:0``, ``gpu:0``,
  ``cpu``), ``method`` (``measured``, ``estimated``) and ``meter`` (``rapl``, ``nvml``,
  ``process-cpu``); ``serving_live_energy_joules_per_prediction{method}``,
  ``serving_live_cost_usd_per_1m_predictions{method}`` and ``serving_live_meter_info``.

Example
-------
>>> m = ServingMetrics()
>>> m.requests.inc(("digits-cnn", "200"))
>>> b"serving_requests_total" in m.render()
True
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if value != value:  # NaN: a figure the bundle does not have (the format spells it NaN)
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Counter:
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def get(self, labels: tuple[str, ...] = ()) -> float:
        return self.values.get(labels, 0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in self.values.items()
        ]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels] = value


class Histogram:
    """Cumulative buckets, ``_sum`` and ``_count`` per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.bounds = tuple(buckets)
        self.values: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0] * (len(self.bounds) + 3)
        row[bisect_left(self.bounds, value)] += count
        row[-2] += value * count
        row[-1] += count

    def samples(self) -> list[str]:
        out = []
        for key, row in self.values.items():
            running = 0
            # the row ends with the sum and the count, which zip leaves out
            for bound, n in zip((*self.bounds, float("inf")), row, strict=False):
                running += n
                le = _labels(self.label_names, key, f'le="{_num(float(bound))}"')
                out.append(f"{self.name}_bucket{le} {running}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(row[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {row[-1]}")
        return out


class LiveSeries:
    """What the server measures of itself (:class:`serving.live_energy.LiveMeter` sets them)."""

    def __init__(self) -> None:
        k = ("component", "method", "meter")
        self.energy = Counter(
            "serving_live_energy_joules_total",
            "Energy metered live since start (method: measured by a counter, or estimated).",
            k,
        )
        self.idle_energy = Counter(
            "serving_live_idle_energy_joules_total",
            "The part of serving_live_energy_joules_total spent while no request was in flight.",
            k,
        )
        self.power = Gauge("serving_live_power_watts", "Power over the last interval.", k)
        self.energy_per_prediction = Gauge(
            "serving_live_energy_joules_per_prediction",
            "Live energy since start / predictions since start (idle time included); NaN "
            "before the first prediction.",
            ("method",),
        )
        self.cost_per_1m = Gauge(
            "serving_live_cost_usd_per_1m_predictions",
            "Instance price x uptime / predictions since start x 1e6 (idle time included).",
            ("method",),
        )
        self.info = Gauge(
            "serving_live_meter_info",
            "1 for each meter this server found, by component.",
            ("meter", "method", "component"),
        )

    def all(self) -> list[Counter]:
        return [v for v in vars(self).values() if isinstance(v, Counter)]


class ServingMetrics:
    """Every series the runtime exports."""

    def __init__(self) -> None:
        self.live: LiveSeries | None = None  # the live meter's series, once enabled
        m = ("model",)
        self.requests = Counter(
            "serving_requests_total", "Inference requests by status code.", ("model", "code")
        )
        self.failures = Counter(
            "serving_failures_total", "Failed inference requests by reason.", ("model", "reason")
        )
        self.request_seconds = Histogram(
            "serving_request_seconds", "Inference request time in the server.", m, LATENCY_BUCKETS_S
        )
        self.queue_seconds = Histogram(
            "serving_queue_seconds",
            "Time a request waited in the batch queue.",
            m,
            LATENCY_BUCKETS_S,
        )
        self.compute_seconds = Histogram(
            "serving_compute_seconds", "Time of one model run (one batch).", m, LATENCY_BUCKETS_S
        )
        self.batch_rows = Histogram(
            "serving_batch_rows", "Rows per model run (batch size).", m, ROW_BUCKETS
        )
        self.queue_rows = Gauge("serving_queue_rows", "Rows waiting in the batch queue.", m)
        self.cache_hits = Counter("serving_cache_hits_total", "Responses served from cache.", m)
        self.cache_misses = Counter("serving_cache_misses_total", "Cache look-ups that missed.", m)
        self.cache_hit_rows = Counter(
            "serving_cache_hit_rows_total", "Rows answered from the cache (no model ran).", m
        )
        self.cascade_rows = Counter(
            "serving_cascade_rows_total", "Rows answered through the cascade.", m
        )
        self.escalated_rows = Counter(
            "serving_escalated_rows_total", "Rows escalated to the large model.", m
        )
        self.escalation_ratio = Gauge(
            "serving_escalation_ratio", "Escalated rows / cascade rows since start.", m
        )
        self.predictions = Counter("serving_predictions_total", "Rows answered (predictions).", m)
        em = ("model", "role", "method", "profile_method")
        self.energy_per_prediction = Gauge(
            "serving_energy_joules_per_prediction",
            "Energy per row a model runs, from the bundle's profile (method=profile; "
            "profile_method: how the profile got it); NaN when unknown.",
            em,
        )
        self.cost_per_prediction = Gauge(
            "serving_cost_usd_per_prediction",
            "Money per row a model runs, from the bundle (method=profile or typed in); "
            "NaN when unknown.",
            em,
        )
        self.energy_total = Counter(
            "serving_energy_joules_total",
            "Rows each model ran x its energy per row (profile figures; cache hits add 0).",
            em,
        )
        self.cost_total = Counter(
            "serving_cost_usd_total",
            "Rows each model ran x its money per row (cache hits add 0).",
            em,
        )
        self.instance_usd_per_hour = Gauge(
            "serving_instance_usd_per_hour", "Price of the instance this server runs on.", m
        )
        self.ready = Gauge("serving_model_ready", "1 once the model has warmed up.", m)

    def enable_live(self) -> LiveSeries:
        """Add the live series (once); they render after the others."""
        if self.live is None:
            self.live = LiveSeries()
        return self.live

    def all(self) -> list[Counter | Histogram]:
        mine = [v for v in vars(self).values() if isinstance(v, (Counter, Histogram))]
        return mine + (self.live.all() if self.live is not None else [])

    def render(self) -> bytes:
        lines = []
        for metric in self.all():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return ("\n".join(lines) + "\n").encode()
