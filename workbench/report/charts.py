"""Altair charts of measured results: latency distribution, batch curve, Pareto frontier.

Pure functions: data in, a chart out (its data embedded, so it renders offline through
vl-convert as SVG or PNG). Cost charts live in :mod:`workbench.cost.charts`. Every chart title
says whether its figures are measured or estimated.

Example
-------
>>> spec = latency_distribution_chart([1.0, 1.2, 1.1, 3.0], title="demo").to_dict()
>>> spec["layer"][0]["mark"]["type"]
'bar'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from workbench.errors import ConfigError


def latency_distribution_chart(
    latencies_ms: Sequence[float], *, title: str = "", percentiles: Sequence[int] = (50, 99)
) -> alt.LayerChart:
    """Histogram of per-call latencies (measured) with rules at the given percentiles."""
    values = np.asarray(list(latencies_ms), dtype=float)
    if values.size == 0:
        raise ConfigError("latencies_ms is empty: profile the model first (it records samples)")
    frame = pd.DataFrame({"latency_ms": values})
    marks = pd.DataFrame(
        {
            "percentile": [f"p{p}" for p in percentiles],
            "latency_ms": [float(np.percentile(values, p)) for p in percentiles],
        }
    )
    bars = (
        alt.Chart(frame)
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("latency_ms:Q", bin=alt.Bin(maxbins=40), title="latency per call (ms)"),
            y=alt.Y("count():Q", title="calls"),
        )
    )
    rules = (
        alt.Chart(marks)
        .mark_rule(color="#e45756", strokeDash=[4, 3])
        .encode(x="latency_ms:Q", tooltip=["percentile", "latency_ms"])
    )
    labels = rules.mark_text(align="left", dx=3, dy=-6, color="#e45756").encode(
        text="percentile", y=alt.value(8)
    )
    heading = f"{title}: latency, measured ({values.size} calls)" if title else "latency, measured"
    return alt.layer(bars, rules, labels).properties(title=heading, width=420, height=200)


def batch_curve_chart(frame: pd.DataFrame, *, title: str = "") -> alt.HConcatChart:
    """Throughput and p99 latency per batch size (measured), the knee marked.

    ``frame``: :meth:`workbench.plan.batch_curve.BatchSweep.to_frame` (``batch_size``,
    ``throughput_items_per_s``, ``latency_ms_p99``, ``is_knee``).
    """
    needed = {"batch_size", "throughput_items_per_s", "latency_ms_p99"}
    missing = needed - set(frame.columns)
    if missing:
        raise ConfigError(f"the batch table lacks {sorted(missing)}; pass BatchSweep.to_frame()")
    data = frame.assign(
        knee=frame["is_knee"].map({True: "knee", False: ""}) if "is_knee" in frame else ""
    )
    base = alt.Chart(data).encode(x=alt.X("batch_size:Q", scale=alt.Scale(type="log", base=2)))

    def panel(field: str, label: str) -> alt.LayerChart:
        line = base.mark_line(point=True).encode(y=alt.Y(f"{field}:Q", title=label))
        knee = (
            base.transform_filter(alt.datum.knee == "knee")
            .mark_point(size=160, color="#e45756", filled=False, strokeWidth=2)
            .encode(y=f"{field}:Q", tooltip=["batch_size", field])
        )
        return alt.layer(line, knee).properties(width=260, height=180)

    heading = "batch curve, measured (red ring: knee)"
    return alt.hconcat(
        panel("throughput_items_per_s", "throughput (items/s)"),
        panel("latency_ms_p99", "p99 latency per call (ms)"),
    ).properties(title=f"{title}: {heading}" if title else heading)


def pareto_chart(
    frame: pd.DataFrame,
    *,
    frontier: pd.DataFrame | None = None,
    recommended: Mapping[str, Any] | None = None,
    x: str = "energy_j_per_item",
    y: str = "quality_drop",
) -> alt.LayerChart:
    """Every measured configuration, the Pareto frontier joined, the recommendation ringed.

    ``frame``: :meth:`workbench.compress.search.runner.SearchResult.to_frame`; ``frontier``:
    its :meth:`~workbench.compress.search.runner.SearchResult.frontier`; ``recommended``: the
    winner's row (``Candidate.to_dict()``), matched on variant, batch size and threads.
    """
    if frame.empty:
        raise ConfigError("no configuration was measured; run the search (or widen it) first")
    for name in (x, y):
        if name not in frame:
            raise ConfigError(f"{name!r} is not a column of the search table; pick one of it")
    key = ["variant", "batch_size", "threads"]
    data = frame.copy()
    data["config"] = data["variant"] + " b=" + data["batch_size"].astype(str) + " t="
    data["config"] += data["threads"].astype(str)
    on_front = set()
    if frontier is not None and not frontier.empty:
        on_front = {tuple(r) for r in frontier[key].itertuples(index=False)}
    data["frontier"] = [tuple(r) in on_front for r in data[key].itertuples(index=False)]
    rec = None if recommended is None else tuple(recommended[k] for k in key)
    data["recommended"] = [tuple(r) == rec for r in data[key].itertuples(index=False)]
    method = "/".join(sorted(set(data.get("energy_method", pd.Series(["measured"])).astype(str))))
    tip = ["config", x, y, "latency_ms_p99", "throughput_items_per_s"]
    tip = [t for t in dict.fromkeys(tip) if t in data]
    points = (
        alt.Chart(data)
        .mark_circle(size=70, opacity=0.8)
        .encode(
            x=alt.X(f"{x}:Q", title=x, scale=alt.Scale(type="log")),
            y=alt.Y(f"{y}:Q", title=y),
            color=alt.Color("variant:N"),
            tooltip=tip,
        )
    )
    front = (
        alt.Chart(data[data["frontier"]].sort_values(x))
        .mark_line(color="#555", strokeDash=[5, 3])
        .encode(x=f"{x}:Q", y=f"{y}:Q")
    )
    ring = (
        alt.Chart(data[data["recommended"]])
        .mark_point(size=400, color="#e45756", strokeWidth=3, filled=False)
        .encode(x=f"{x}:Q", y=f"{y}:Q")
    )
    label = ring.mark_text(align="left", dx=14, color="#e45756", fontWeight="bold").encode(
        text=alt.value("recommended")
    )
    return alt.layer(points, front, ring, label).properties(
        title=f"Pareto frontier (dashed), recommendation ringed; energy {method}",
        width=460,
        height=260,
    )
