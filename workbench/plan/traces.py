"""Arrival traces: when requests reach a server, how many rows each carries, and optional keys.

Generators are seeded and return an :class:`ArrivalTrace` over ``[0, duration_s)``:
:func:`poisson_trace` (a constant rate), :func:`bursty_trace` (on/off periods),
:func:`diurnal_trace` (a rate that follows a day-shaped curve, by thinning).
:func:`trace_from_times` checks times typed in or taken from elsewhere; :func:`read_trace_csv`
reads a recorded trace (the only I/O here). Every bad trace (empty, unsorted, negative or
non-finite times, rows < 1) raises :class:`~workbench.errors.ConfigError` naming the field and the
position (or CSV line).

Example
-------
>>> trace = poisson_trace(rate_per_s=100.0, duration_s=10.0, seed=0)
>>> 900 < trace.n_requests < 1100
True
>>> trace_from_times([0.0, 0.5, 0.2])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: times_s[2]=0.2 comes before times_s[1]=0.5: ...
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.checks import number
from workbench.errors import ConfigError


@dataclass(frozen=True)
class ArrivalTrace:
    """Request arrivals, sorted by time.

    Attributes
    ----------
    times_s:
        Arrival time of each request, seconds from the start of the trace (sorted, >= 0).
    rows:
        Rows (items) each request carries; all ones for single-item requests.
    duration_s:
        Length of the observed window (at least the last arrival): idle time up to it counts
        toward utilisation and energy.
    keys:
        Optional request keys (for cache analysis), one per request.
    source:
        How the trace was made (``"poisson rate=100/s seed=0"``, a CSV path, ...).
    """

    times_s: np.ndarray
    rows: np.ndarray
    duration_s: float
    keys: tuple[str, ...] | None = None
    source: str = "typed in"

    @property
    def n_requests(self) -> int:
        return len(self.times_s)

    @property
    def rate_per_s(self) -> float:
        """Mean offered load in requests per second over the window."""
        return self.n_requests / self.duration_s if self.duration_s > 0 else math.inf

    def to_frame(self) -> pd.DataFrame:
        """One row per request: ``time_s``, ``rows`` and ``key`` (if any)."""
        frame = pd.DataFrame({"time_s": self.times_s, "rows": self.rows})
        if self.keys is not None:
            frame["key"] = list(self.keys)
        return frame


def trace_from_times(
    times_s: Sequence[float] | np.ndarray,
    *,
    rows: Sequence[int] | np.ndarray | None = None,
    duration_s: float | None = None,
    keys: Sequence[str] | None = None,
    source: str = "typed in",
    lines: Sequence[int] | None = None,
) -> ArrivalTrace:
    """A checked :class:`ArrivalTrace` from arrival times in seconds.

    ``duration_s`` defaults to the last arrival. ``lines`` (CSV line numbers, one per request)
    makes error messages point at the file's line instead of the position.
    """
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    where = (lambda i: f"line {lines[i]}") if lines is not None else (lambda i: f"[{i}]")
    if len(times) == 0:
        raise ConfigError(
            f"times_s is empty ({source}): a trace needs at least one arrival; "
            "check the file or the generator's rate and duration"
        )
    bad = np.flatnonzero(~np.isfinite(times))
    if len(bad):
        i = int(bad[0])
        raise ConfigError(
            f"times_s{_at(where(i))}={times[i]} is not a finite number; "
            "give every arrival as seconds"
        )
    neg = np.flatnonzero(times < 0)
    if len(neg):
        i = int(neg[0])
        raise ConfigError(
            f"times_s{_at(where(i))}={times[i]} is negative: arrival times count seconds from "
            "the start of the trace; subtract the first timestamp (read_trace_csv's rebase=True "
            "does)"
        )
    back = np.flatnonzero(np.diff(times) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise ConfigError(
            f"times_s{_at(where(i))}={times[i]} comes before times_s{_at(where(i - 1))}="
            f"{times[i - 1]}: a trace must be sorted by time; sort it (or the CSV) by timestamp"
        )
    if rows is None:
        row_arr = np.ones(len(times), dtype=np.int64)
    else:
        row_arr = np.asarray(rows).reshape(-1)
        if len(row_arr) != len(times):
            raise ConfigError(
                f"rows has {len(row_arr)} entries for {len(times)} arrivals; give one per request"
            )
        small = np.flatnonzero(~(row_arr >= 1) | (row_arr != np.round(row_arr)))
        if len(small):
            i = int(small[0])
            raise ConfigError(
                f"rows{_at(where(i))}={row_arr[i]} must be a whole number >= 1 (items in the "
                "request)"
            )
        row_arr = row_arr.astype(np.int64)
    if keys is not None and len(keys) != len(times):
        raise ConfigError(f"keys has {len(keys)} entries for {len(times)} arrivals; give one each")
    last = float(times[-1])
    if duration_s is None:
        duration_s = last
    elif not duration_s >= last:
        raise ConfigError(
            f"duration_s={duration_s} ends before the last arrival at {last} s; "
            "give a window that covers the trace or leave duration_s out"
        )
    return ArrivalTrace(
        times_s=times,
        rows=row_arr,
        duration_s=float(duration_s),
        keys=None if keys is None else tuple(str(k) for k in keys),
        source=source,
    )


def _at(where: str) -> str:
    return where if where.startswith("[") else f" ({where})"


def poisson_trace(rate_per_s: float, duration_s: float, seed: int = 0) -> ArrivalTrace:
    """Poisson arrivals at ``rate_per_s`` over ``[0, duration_s)`` (exponential gaps).

    >>> poisson_trace(50.0, 2.0, seed=1).source
    'poisson rate=50/s seed=1'
    """
    number("rate_per_s", rate_per_s, minimum=0, open_low=True, fix="give requests per second")
    number("duration_s", duration_s, minimum=0, open_low=True, fix="give the trace's length")
    rng = np.random.default_rng(seed)
    # Draw a few standard deviations more gaps than expected, then cut at the window's end.
    n = int(rate_per_s * duration_s + 6 * math.sqrt(rate_per_s * duration_s) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
    while times[-1] < duration_s:  # vanishingly rare; keep drawing rather than truncate the window
        more = times[-1] + np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
        times = np.concatenate([times, more])
    times = times[times < duration_s]
    return trace_from_times(
        times, duration_s=duration_s, source=f"poisson rate={rate_per_s:g}/s seed={seed}"
    )


def rate_curve_trace(
    rate_at: Callable[[np.ndarray], np.ndarray],
    peak_rate_per_s: float,
    duration_s: float,
    seed: int = 0,
    source: str = "rate curve",
) -> ArrivalTrace:
    """Non-homogeneous Poisson arrivals with rate ``rate_at(t)`` <= ``peak_rate_per_s``.

    Thinning (Lewis and Shedler 1979): Poisson candidates at the peak rate, each kept with
    probability ``rate_at(t) / peak_rate_per_s``.
    """
    candidates = poisson_trace(peak_rate_per_s, duration_s, seed=seed).times_s
    rate = np.asarray(rate_at(candidates), dtype=np.float64)
    if np.any(rate < 0) or np.any(rate > peak_rate_per_s * (1 + 1e-9)):
        raise ConfigError(
            f"the rate curve leaves [0, peak_rate_per_s={peak_rate_per_s:g}]; raise the peak rate"
        )
    keep = np.random.default_rng(seed + 1).random(len(candidates)) < rate / peak_rate_per_s
    times = candidates[keep]
    if len(times) == 0:
        raise ConfigError(
            f"the rate curve produced no arrivals in {duration_s:g} s; raise the rate or duration"
        )
    return trace_from_times(times, duration_s=duration_s, source=source)


def bursty_trace(
    rate_on_per_s: float,
    on_s: float,
    off_s: float,
    duration_s: float,
    rate_off_per_s: float = 0.0,
    seed: int = 0,
) -> ArrivalTrace:
    """On/off traffic: ``rate_on_per_s`` for ``on_s`` seconds, then ``rate_off_per_s`` for
    ``off_s`` seconds, repeating from t=0 (Poisson within each period).

    >>> t = bursty_trace(rate_on_per_s=200, on_s=1, off_s=4, duration_s=10, seed=0)
    >>> bool(((t.times_s % 5) < 1).all())  # nothing arrives in the off periods
    True
    """
    number("rate_on_per_s", rate_on_per_s, minimum=0, open_low=True)
    number("on_s", on_s, minimum=0, open_low=True)
    number("off_s", off_s, minimum=0, open_low=True)
    number(
        "rate_off_per_s",
        rate_off_per_s,
        minimum=0,
        maximum=rate_on_per_s,
        fix="the off rate is at most rate_on_per_s",
    )
    period = on_s + off_s

    def rate_at(t: np.ndarray) -> np.ndarray:
        return np.where((t % period) < on_s, rate_on_per_s, rate_off_per_s)

    return rate_curve_trace(
        rate_at,
        rate_on_per_s,
        duration_s,
        seed=seed,
        source=f"bursty on={rate_on_per_s:g}/s for {on_s:g} s, off={rate_off_per_s:g}/s for "
        f"{off_s:g} s, seed={seed}",
    )


def diurnal_trace(
    mean_rate_per_s: float,
    duration_s: float,
    peak_to_trough: float = 3.0,
    period_s: float = 86_400.0,
    peak_at_s: float = 50_400.0,
    seed: int = 0,
) -> ArrivalTrace:
    """A day-shaped load: a sinusoid around ``mean_rate_per_s`` whose peak is
    ``peak_to_trough`` times its trough, peaking at ``peak_at_s`` (14:00 by default) of each
    ``period_s``. Shrink ``period_s`` to compress a day into a short simulation.

    >>> t = diurnal_trace(mean_rate_per_s=100, duration_s=60, period_s=60, peak_at_s=30, seed=0)
    >>> bool(((t.times_s > 15) & (t.times_s < 45)).sum() > (t.n_requests / 2))
    True
    """
    number("mean_rate_per_s", mean_rate_per_s, minimum=0, open_low=True)
    number("period_s", period_s, minimum=0, open_low=True)
    number("peak_to_trough", peak_to_trough, minimum=1, fix="1 means a flat rate")
    amplitude = (peak_to_trough - 1) / (peak_to_trough + 1)
    peak = mean_rate_per_s * (1 + amplitude)

    def rate_at(t: np.ndarray) -> np.ndarray:
        return mean_rate_per_s * (1 + amplitude * np.cos(2 * np.pi * (t - peak_at_s) / period_s))

    return rate_curve_trace(
        rate_at,
        peak,
        duration_s,
        seed=seed,
        source=f"diurnal mean={mean_rate_per_s:g}/s peak/trough={peak_to_trough:g} "
        f"period={period_s:g} s seed={seed}",
    )


def read_trace_csv(
    path: str | Path,
    *,
    time_column: str = "timestamp_s",
    rows_column: str | None = None,
    key_column: str | None = None,
    unit: str = "s",
    rebase: bool = True,
) -> ArrivalTrace:
    """A recorded trace from a CSV file with a header row.

    Parameters
    ----------
    time_column:
        Column of arrival timestamps (e.g. epoch seconds, or seconds from the start).
    rows_column, key_column:
        Optional columns with rows per request and a cache key per request.
    unit:
        ``"s"`` or ``"ms"``: the timestamps' unit.
    rebase:
        Subtract the first timestamp so the trace starts at 0 (epoch timestamps become offsets).

    Errors name the column and the CSV line (the header is line 1).
    """
    scale = {"s": 1.0, "ms": 1e-3}.get(unit)
    if scale is None:
        raise ConfigError(f"unit={unit!r} must be 's' or 'ms'")
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for col in (time_column, rows_column, key_column):
                if col is not None and col not in header:
                    raise ConfigError(
                        f"{path}: no column {col!r} (columns: {', '.join(header) or 'none'}); "
                        "pass time_column=/rows_column=/key_column= with the right names"
                    )
            times, rows, keys, lines = [], [], [], []
            for row in reader:
                line = reader.line_num
                times.append(_cell_float(path, line, time_column, row[time_column]) * scale)
                if rows_column is not None:
                    rows.append(_cell_float(path, line, rows_column, row[rows_column]))
                if key_column is not None:
                    keys.append(row[key_column])
                lines.append(line)
    except OSError as exc:
        raise ConfigError(f"cannot read the trace {path}: {exc.strerror}; check the path") from exc
    source = str(path)
    if not times:
        raise ConfigError(f"{path} has no data rows: a trace needs at least one arrival")
    arr = np.asarray(times, dtype=np.float64)
    if rebase and np.all(np.isfinite(arr)) and np.all(np.diff(arr) >= 0):
        arr = arr - arr[0]  # an unsorted file is left as is, so the error names the unsorted line
    return trace_from_times(
        arr,
        rows=rows if rows_column is not None else None,
        keys=keys if key_column is not None else None,
        source=source,
        lines=lines,
    )


def _cell_float(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        return float(text or "")
    except ValueError:
        raise ConfigError(
            f"{path} line {line}: {column}={text!r} is not a number; fix or remove that row"
        ) from None
