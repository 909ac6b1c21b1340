"""A sweep's stop callback ends it between configurations, keeping what finished."""

from __future__ import annotations

from workbench.measure.profiling import sweep


def test_stop_after_first_configuration_keeps_it() -> None:
    calls = []
    result = sweep(
        "digits-cnn", batch_sizes=[1, 2, 4], max_seconds=0.05, iterations=10**6, operators=False,
        progress=False, stop=lambda: len(calls) >= 1, on_progress=lambda d, t: calls.append((d, t)),
    )  # fmt: skip
    assert result.interrupted is True
    assert [p.batch_size for p in result.profiles] == [1]
    assert calls == [(1, 3)]


def test_without_stop_every_configuration_reports_progress() -> None:
    calls = []
    result = sweep(
        "digits-cnn", batch_sizes=[1, 2], max_seconds=0.05, iterations=10**6, operators=False,
        progress=False, store=False, on_progress=lambda d, t: calls.append((d, t)),
    )  # fmt: skip
    assert not result.interrupted and calls == [(1, 2), (2, 2)]
