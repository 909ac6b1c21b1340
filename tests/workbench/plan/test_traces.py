"""Arrival traces: generators (seeded, right rates and shapes), CSV reading, bad traces."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.plan.traces import (
    bursty_trace,
    diurnal_trace,
    poisson_trace,
    read_trace_csv,
    trace_from_times,
)


def test_poisson_rate_gaps_and_seed():
    a = poisson_trace(200.0, 50.0, seed=3)
    b = poisson_trace(200.0, 50.0, seed=3)
    assert np.array_equal(a.times_s, b.times_s)
    assert not np.array_equal(a.times_s, poisson_trace(200.0, 50.0, seed=4).times_s)
    assert a.n_requests == pytest.approx(10_000, rel=0.05)
    gaps = np.diff(a.times_s)
    assert gaps.mean() == pytest.approx(1 / 200, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: CV 1
    assert a.duration_s == 50.0 and a.times_s[-1] < 50.0
    assert a.rows.tolist() == [1] * a.n_requests


def test_bursty_trace_is_silent_when_off_and_at_rate_when_on():
    t = bursty_trace(rate_on_per_s=500, on_s=0.5, off_s=1.5, duration_s=40, seed=0)
    phase = t.times_s % 2.0
    assert (phase < 0.5).all()
    assert t.n_requests == pytest.approx(500 * 0.5 * 20, rel=0.05)
    low = bursty_trace(500, 0.5, 1.5, 40, rate_off_per_s=50, seed=0)
    off = (low.times_s % 2.0) >= 0.5
    assert off.sum() == pytest.approx(50 * 1.5 * 20, rel=0.1)


def test_diurnal_trace_peaks_where_asked():
    t = diurnal_trace(
        mean_rate_per_s=200, duration_s=100, peak_to_trough=3, period_s=100, peak_at_s=50, seed=0
    )
    counts, _ = np.histogram(t.times_s, bins=10, range=(0, 100))
    assert counts.argmax() in (4, 5)
    assert counts.argmin() in (0, 9)
    # rate(t) = 200 (1 + 0.5 cos(...)): peak 300/s, trough 100/s, mean 200/s
    assert t.n_requests == pytest.approx(200 * 100, rel=0.03)
    assert counts.max() / counts.min() == pytest.approx(2.6, rel=0.25)  # bins average the peak


def test_csv_trace_rebased_with_rows_and_keys(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("timestamp_s,n,key\n1700000000.0,1,a\n1700000000.25,2,b\n1700000001.0,1,a\n")
    t = read_trace_csv(path, rows_column="n", key_column="key")
    assert t.times_s.tolist() == [0.0, 0.25, 1.0]
    assert t.rows.tolist() == [1, 2, 1]
    assert t.keys == ("a", "b", "a")
    assert t.duration_s == 1.0 and t.source == str(path)
    ms = tmp_path / "ms.csv"
    ms.write_text("t\n0\n500\n")
    assert read_trace_csv(ms, time_column="t", unit="ms").times_s.tolist() == [0.0, 0.5]
    assert list(t.to_frame().columns) == ["time_s", "rows", "key"]


@pytest.mark.parametrize(
    ("times", "pattern"),
    [
        ([], r"times_s is empty"),
        ([0.0, 0.5, 0.2], r"times_s\[2\]=0.2 comes before times_s\[1\]=0.5"),
        ([-0.1, 0.2], r"times_s\[0\]=-0.1 is negative"),
        ([0.0, float("nan")], r"times_s\[1\]=nan is not a finite number"),
    ],
)
def test_bad_traces_name_the_field_and_position(times, pattern):
    with pytest.raises(ConfigError, match=pattern):
        trace_from_times(times)


def test_bad_rows_and_duration():
    with pytest.raises(ConfigError, match=r"rows\[1\]=0 must be a whole number >= 1"):
        trace_from_times([0.0, 1.0], rows=[1, 0])
    with pytest.raises(ConfigError, match="rows has 1 entries for 2 arrivals"):
        trace_from_times([0.0, 1.0], rows=[1])
    with pytest.raises(ConfigError, match=r"duration_s=0\.5 ends before the last arrival"):
        trace_from_times([0.0, 1.0], duration_s=0.5)
    with pytest.raises(ConfigError, match="rate_per_s"):
        poisson_trace(0.0, 10.0)
    with pytest.raises(ConfigError, match="peak_to_trough"):
        diurnal_trace(10.0, 10.0, peak_to_trough=0.5)


def test_bad_csv_traces_name_the_line(tmp_path):
    unsorted = tmp_path / "unsorted.csv"
    unsorted.write_text("timestamp_s\n10\n12\n11\n")
    with pytest.raises(ConfigError, match=r"times_s \(line 4\)=11.0 comes before .*line 3"):
        read_trace_csv(unsorted)
    negative = tmp_path / "negative.csv"
    negative.write_text("timestamp_s\n0.5\n-1\n")
    with pytest.raises(ConfigError, match=r"line 3\)=-1.0 is negative"):
        read_trace_csv(negative, rebase=False)
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("timestamp_s\n0.5\nsoon\n")
    with pytest.raises(ConfigError, match=r"line 3: timestamp_s='soon' is not a number"):
        read_trace_csv(garbage)
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp_s\n")
    with pytest.raises(ConfigError, match="no data rows"):
        read_trace_csv(empty)
    with pytest.raises(ConfigError, match="no column 'ts'"):
        read_trace_csv(unsorted, time_column="ts")
    with pytest.raises(ConfigError, match="cannot read the trace"):
        read_trace_csv(tmp_path / "missing.csv")
