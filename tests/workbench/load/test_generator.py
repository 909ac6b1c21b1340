"""The load generator's bookkeeping (its runs against a real server are in
tests/serving/test_reliability.py)."""

import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.load.generator import NO_ANSWER, LoadResult, _recovery_s, constant_rate, open_loop


def _result(status, latency_ms, retry_after=None, times=None) -> LoadResult:
    n = len(status)
    return LoadResult(
        scheduled_s=np.asarray(times if times is not None else np.arange(n) * 0.01, float),
        latency_s=np.asarray(latency_ms, float) / 1e3,
        status=np.asarray(status),
        retry_after=np.asarray(
            retry_after if retry_after is not None else [s == 503 for s in status]
        ),
        send_lag_s=np.zeros(n),
    )


def test_constant_rate_spaces_requests_evenly():
    times = constant_rate(200, 2.5, start_s=1.0)
    assert len(times) == 500 and times[0] == 1.0
    np.testing.assert_allclose(np.diff(times), 1 / 200)
    with pytest.raises(ConfigError, match="rate_per_s=0"):
        constant_rate(0, 1)


def test_only_loopback_servers_are_loaded():
    with pytest.raises(ConfigError, match=r"host='10\.0\.0\.1'.*loopback"):
        open_loop("10.0.0.1", 80, "m", b"{}", constant_rate(1, 1))


def test_summary_counts_every_kind_of_answer():
    r = _result(
        status=[200, 200, 503, 503, NO_ANSWER, 500, 400],
        latency_ms=[2, 4, 1, 1, np.nan, 3, 1],
        retry_after=[False, False, True, False, False, False, False],
    )
    s = r.summary()
    assert (s.requests_sent, s.answered, s.unanswered, s.ok) == (7, 6, 1, 2)
    assert (s.refused_503, s.refused_without_retry_after) == (2, 1)
    assert (s.status_5xx, s.server_errors_not_503, s.errors) == (3, 1, 3)
    assert s.latency_ms_p50 == pytest.approx(3.0) and s.latency_ms_max == pytest.approx(4.0)
    assert s.method == "measured"


def test_recovery_is_where_the_rest_of_the_run_is_all_200_and_fast():
    times = np.arange(0, 3, 0.01) + 10.0  # 3 s after a burst that ended at 10 s
    status = np.where(times < 10.7, 503, 200)
    latency = np.where(times < 11.2, 50.0, 3.0)  # slow until 11.2 s, then fast
    r = _result(status, latency, times=times)
    assert _recovery_s(r, 10.0, 0.5, limit_ms=6.0) == pytest.approx(1.5)
    never = _result(np.full(len(times), 503), latency, times=times)
    assert _recovery_s(never, 10.0, 0.5, limit_ms=6.0) is None
    # one slow request late in the run is within a p99; a late 503 or a slow tail is not
    outlier = np.where(np.isclose(times, 12.5), 50.0, latency)
    assert _recovery_s(_result(status, outlier, times=times), 10.0, 0.5, limit_ms=6.0) == 1.5
    late_503 = np.where(np.isclose(times, 12.9), 503, status)
    assert _recovery_s(_result(late_503, latency, times=times), 10.0, 0.5, 6.0) is None
    slow_tail = np.where(times > 12.7, 50.0, latency)
    assert _recovery_s(_result(status, slow_tail, times=times), 10.0, 0.5, 6.0) is None
