"""The live series as altair charts: J/prediction, W, idle share and p99 per window.

A pure function of :meth:`MonitorReport.to_frame`'s rows (data embedded, so it renders offline
through vl-convert); the profile's figure and the SLO are dashed rules where the bundle has them.
The energy panels' titles say how the energy was got (``measured`` or ``estimated``).

>>> import pandas as pd
>>> frame = pd.DataFrame({"window": [1, 2], "j_per_prediction": [0.1, 0.2], "power_w": [5, 9],
...                       "idle_share": [0.5, 0.1], "latency_ms_p99": [2.0, 3.0],
...                       "energy_method": ["estimated"] * 2})
>>> len(monitor_chart(frame).to_dict()["vconcat"])
4
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

#: (column, axis title, the profile column drawn as a rule beside it)
SERIES = (
    ("j_per_prediction", "J per prediction", "profile_j_per_prediction"),
    ("power_w", "W", None),
    ("idle_share", "idle share of energy", None),
    ("latency_ms_p99", "p99 (ms)", "profile_latency_ms_p99"),
)


def _rules(frame: pd.DataFrame, column: str | None, p99: bool) -> pd.DataFrame:
    rows = []
    for name, label in ((column, "profile"), ("slo_p99_ms" if p99 else None, "SLO")):
        if name and name in frame and frame[name].notna().any():
            value = float(frame[name].dropna().iloc[0])
            if not math.isnan(value):
                rows.append({"value": value, "what": label})
    return pd.DataFrame(rows, columns=["value", "what"])


def _one(frame: pd.DataFrame, column: str, title: str, profile: str | None) -> alt.LayerChart:
    data = frame[["window", column]].rename(columns={column: "value"}).dropna()
    line = (
        alt.Chart(data)
        .mark_line(point=True, color="#4c78a8")
        .encode(
            x=alt.X("window:Q", title="window", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=title),
            tooltip=["window", "value"],
        )
    )
    layers = [line]
    rules = _rules(frame, profile, column == "latency_ms_p99")
    if not rules.empty:
        layers.append(
            alt.Chart(rules)
            .mark_rule(strokeDash=[4, 3])
            .encode(y="value:Q", color=alt.Color("what:N", title=None), tooltip=["what", "value"])
        )
    return alt.layer(*layers).properties(width=420, height=110)


def monitor_chart(frame: pd.DataFrame, *, title: str = "") -> alt.VConcatChart:
    """Four stacked line charts of the windows (one point each), with the profile's figures."""
    method = ""
    if "energy_method" in frame and frame["energy_method"].astype(bool).any():
        method = str(frame["energy_method"][frame["energy_method"].astype(bool)].iloc[-1])
    heading = f"{title}: live, per window" if title else "live, per window"
    if method:
        heading += f" (energy {method})"
    charts = [_one(frame, column, label, profile) for column, label, profile in SERIES
              if column in frame]  # fmt: skip
    return alt.vconcat(*charts).properties(title=heading)
