"""Altair charts of lifecycle cost: cumulative cost with break-even, scenarios stacked, tornado.

The only module of the cost model that imports altair. Charts embed their data, so they render
offline: save them with :func:`save_chart` (HTML with the Vega libraries inlined, or SVG/PNG
through vl-convert), never from a CDN.

Example
-------
>>> from workbench.cost.model import (
...     GridInputs, InferenceInputs, Scenario, TrainingInputs, compute_cost)
>>> s = Scenario("demo", InferenceInputs(1e6, 12, 0.5, 200.0, instance_usd_per_h=0.5),
...              GridInputs(0.15, 1.2, 300), TrainingInputs(100, 300, accelerator_usd_per_h=2.0))
>>> spec = cumulative_cost_chart(compute_cost(s)).to_dict()
>>> spec["layer"][0]["mark"]["type"]
'line'
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from workbench.cost.model import CostReport
from workbench.errors import ConfigError

PHASE_COLOURS = alt.Scale(domain=["training", "inference"], range=["#4c78a8", "#f58518"])


def cumulative_cost_chart(report: CostReport) -> alt.LayerChart:
    """Cumulative training and inference money by day, the break-even day marked by a rule."""
    daily = report.daily
    n = report.n_days
    day = np.arange(1, n + 1)
    records = [
        {"day": int(d), "phase": phase, "cumulative_cost_usd": float(v)}
        for phase, key in (
            ("training", "cumulative_training_cost_usd"),
            ("inference", "cumulative_inference_cost_usd"),
        )
        for d, v in zip(day, daily[key], strict=True)
    ]
    # Inline values: a 10-year daily horizon is past altair's DataFrame row limit.
    lines = (
        alt.Chart(alt.Data(values=records))
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("day:Q", title="day of deployment"),
            y=alt.Y("cumulative_cost_usd:Q", title="cumulative cost (USD)"),
            color=alt.Color("phase:N", scale=PHASE_COLOURS, title=None),
            tooltip=["day:Q", "phase:N", alt.Tooltip("cumulative_cost_usd:Q", format=",.0f")],
        )
    )
    layers: list[alt.Chart] = [lines]
    if report.break_even_day is not None:
        mark = {"day": report.break_even_day, "label": f"break-even: day {report.break_even_day}"}
        base = alt.Chart(alt.Data(values=[mark]))
        layers.append(base.mark_rule(strokeDash=[4, 4], color="black").encode(x="day:Q"))
        layers.append(
            base.mark_text(align="left", dx=4, dy=-6, baseline="top").encode(
                x="day:Q", y=alt.value(0), text="label:N"
            )
        )
    title = f"{report.scenario}: cumulative cost ({report.method})"
    return alt.layer(*layers).properties(title=title, width=520, height=280)


def _long_totals(reports: list[CostReport]) -> pd.DataFrame:
    rows = []
    for r in reports:
        for phase in ("training", "inference"):
            for metric, unit in (("cost", "USD"), ("energy", "kWh"), ("co2", "tCO2e")):
                attr = {"cost": "cost_usd", "energy": "energy_kwh", "co2": "co2_t"}[metric]
                rows.append(
                    {
                        "scenario": r.scenario,
                        "phase": phase,
                        "metric": f"{metric} ({unit})",
                        "value": getattr(r, f"{phase}_{attr}"),
                        "method": r.method,
                    }
                )
    return pd.DataFrame(rows)


def scenario_bars_chart(reports: list[CostReport]) -> alt.FacetChart:
    """Stacked bars per scenario (training under inference), one panel each for USD, kWh, tCO2e."""
    if not reports:
        raise ConfigError("scenario_bars_chart needs at least one report")
    data = _long_totals(reports)
    order = [r.scenario for r in reports]
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("scenario:N", sort=order, title=None),
            y=alt.Y("value:Q", stack="zero", title=None),
            color=alt.Color("phase:N", scale=PHASE_COLOURS, title=None),
            order=alt.Order("phase:N", sort="descending"),
            tooltip=["scenario:N", "phase:N", alt.Tooltip("value:Q", format=",.4g"), "method:N"],
        )
        .properties(width=200, height=240)
        .facet(
            column=alt.Column(
                "metric:N", title=None, sort=["cost (USD)", "energy (kWh)", "co2 (tCO2e)"]
            )
        )
        .resolve_scale(y="independent")
        .properties(title="lifecycle totals by scenario")
    )


def tornado_chart(frame: pd.DataFrame, output: str = "total_cost_usd") -> alt.LayerChart:
    """Tornado from :func:`workbench.cost.tornado.sensitivity`: one bar per input from its low-value
    output to its high-value output, largest swing on top, a rule at the base output."""
    needed = {"input", "low_output", "high_output", "base_output", "swing"}
    if not needed <= set(frame.columns):
        raise ConfigError(
            f"tornado_chart needs the frame from workbench.cost.tornado.sensitivity (columns "
            f"{sorted(needed)}); got {sorted(frame.columns)}"
        )
    data = frame[
        ["input", "low_value", "high_value", "low_output", "high_output", "base_output", "swing"]
    ].copy()
    order = list(data["input"])
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("input:N", sort=order, title=None),
            x=alt.X("low_output:Q", title=output, scale=alt.Scale(zero=False)),
            x2="high_output:Q",
            tooltip=[
                "input:N",
                "low_value:Q",
                "high_value:Q",
                alt.Tooltip("low_output:Q", format=",.4g"),
                alt.Tooltip("high_output:Q", format=",.4g"),
            ],
        )
    )
    base_value = float(data["base_output"].iloc[0]) if len(data) else 0.0
    rule = (
        alt.Chart(alt.Data(values=[{"base_output": base_value}]))
        .mark_rule(color="black")
        .encode(x="base_output:Q")
    )
    return alt.layer(bars, rule).properties(
        title=f"sensitivity of {output}", width=480, height=max(60, 22 * len(data))
    )


def save_chart(chart: alt.TopLevelMixin, path: str | Path) -> Path:
    """Write a chart for offline viewing: ``.html`` (Vega libraries inlined), ``.svg``, ``.png``
    or ``.json`` (the Vega-Lite spec)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".html":
        chart.save(str(path), inline=True)
    elif suffix in (".svg", ".png", ".json"):
        chart.save(str(path))
    else:
        raise ConfigError(f"cannot save a chart as {path.name}; use .html, .svg, .png or .json")
    return path
