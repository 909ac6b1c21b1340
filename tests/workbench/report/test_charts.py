"""Charts of measured results: they carry the data they are given and refuse empty input."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.report.charts import batch_curve_chart, latency_distribution_chart, pareto_chart


def test_latency_chart_marks_percentiles() -> None:
    spec = latency_distribution_chart([1.0] * 98 + [5.0, 9.0], title="m").to_dict()
    marks = [d for d in spec["datasets"].values() if d and "percentile" in d[0]]
    assert [r["percentile"] for r in marks[0]] == ["p50", "p99"]
    assert marks[0][0]["latency_ms"] == 1.0 and marks[0][1]["latency_ms"] > 5.0
    assert "measured" in spec["title"]
    with pytest.raises(ConfigError, match="latencies_ms is empty"):
        latency_distribution_chart([])


def test_batch_curve_needs_its_columns() -> None:
    frame = pd.DataFrame(
        {"batch_size": [1, 8], "throughput_items_per_s": [10.0, 50.0], "latency_ms_p99": [1, 3],
         "is_knee": [False, True]}
    )  # fmt: skip
    spec = batch_curve_chart(frame).to_dict()
    assert len(spec["hconcat"]) == 2
    with pytest.raises(ConfigError, match="latency_ms_p99"):
        batch_curve_chart(frame.drop(columns="latency_ms_p99"))


def test_pareto_rings_only_the_recommendation() -> None:
    frame = pd.DataFrame(
        {"variant": ["a", "b", "c"], "batch_size": [1, 1, 8], "threads": [1, 1, 1],
         "energy_j_per_item": [1.0, 0.5, 0.2], "quality_drop": [0.0, 0.01, 0.05],
         "energy_method": ["estimated"] * 3}
    )  # fmt: skip
    spec = pareto_chart(frame, frontier=frame.iloc[1:], recommended=frame.iloc[1].to_dict())
    data = [d for d in spec.to_dict()["datasets"].values() if d and "recommended" in d[0]]
    full = max(data, key=len)
    assert [r["recommended"] for r in full] == [False, True, False]
    assert [r["frontier"] for r in full] == [False, True, True]
    assert (
        "estimated" in spec.to_dict()["title"]["text"]
        if isinstance(spec.to_dict()["title"], dict)
        else "estimated" in spec.to_dict()["title"]
    )
    with pytest.raises(ConfigError, match="no configuration was measured"):
        pareto_chart(frame.iloc[0:0])
