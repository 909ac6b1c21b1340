"""The HTML report of a deployment gate: the verdict, both runs, their cost and charts in one
self-contained file (charts are inline SVG rendered by vl-convert: no network needed to view it).

:func:`write_html_report` writes it (and the verdict as JSON next to it, for CI logs);
:func:`report_charts` and :func:`runs_frame` are its parts, for a notebook to show one by one.
The gate itself is :func:`workbench.report.gate.compare_runs`.

Example
-------
>>> from workbench.measure.store import RunStore
>>> from workbench.report.gate import compare_runs
>>> store = RunStore(":memory:")
>>> env = {"cpu_model": "Example CPU", "logical_cores": 2, "gpu": None, "os": "Linux-x86_64"}
>>> def add(throughput, p99):
...     return store.add("profile", model="m", fingerprint="f", config={"batch_size": 1},
...                      metrics={"throughput_items_per_s": throughput, "latency_ms_p99": p99,
...                               "energy_j_per_item": 1e-3, "energy_method": "estimated"},
...                      environment=env)
>>> gate = compare_runs(store, add(1000.0, 2.0), [add(900.0, 2.1), add(950.0, 2.2)])
>>> runs_frame(gate).loc["latency_ms_p99"].tolist()
[2.0, 2.1, 2.2]
>>> runs_frame(gate).loc["host"].tolist() == [gate.host.baseline_fingerprint] * 3
True
>>> write_html_report(gate, "report.html")  # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.measure.store import Run
from workbench.report.gate import LIKE_FOR_LIKE, Gate
from workbench.report.host import host_fingerprint


def _svg(chart: Any) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(chart.to_dict())


def report_charts(gate: Gate) -> dict[str, Any]:
    """Altair charts of the gate: latency percentiles, latency samples, cost per 1M predictions."""
    import altair as alt

    runs = {"baseline": gate.baseline_runs, "candidate": gate.candidate_runs}
    rows = [
        {"run": label, "percentile": p, "latency_ms": value}
        for label, side in runs.items()
        for p in ("p50", "p90", "p95", "p99")
        if (value := _mean_metric(side, f"latency_ms_{p}")) is not None
    ]
    colour = alt.Color("run:N", scale=alt.Scale(domain=list(runs), range=["#4c78a8", "#f58518"]))
    charts: dict[str, Any] = {
        "latency": alt.Chart(pd.DataFrame(rows), title="latency per call (measured)")
        .mark_bar()
        .encode(
            x=alt.X("percentile:N", title=None),
            xOffset="run:N",
            y=alt.Y("latency_ms:Q", title="ms"),
            color=colour,
        )
        .properties(width=320, height=220)
    }
    shares = np.linspace(0.0, 1.0, 201)
    quantiles = [
        {"run": label, "share": float(q), "latency_ms": float(v)}
        for label, side in runs.items()
        if (pooled := _pooled_samples(side))
        for q, v in zip(shares, np.quantile(pooled, shares), strict=True)
    ]
    if quantiles:
        charts["samples"] = (
            alt.Chart(pd.DataFrame(quantiles), title="latency distribution (measured)")
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("latency_ms:Q", title="ms", scale=alt.Scale(type="log")),
                y=alt.Y("share:Q", title="share of calls at most"),
                color=colour,
            )
            .properties(width=320, height=220)
        )
    cost = pd.DataFrame(
        [{"run": k, "usd_per_1m": r.inference_usd_per_million} for k, r in gate.costs.items()]
    )
    charts["cost"] = (
        alt.Chart(cost, title="cost per 1M predictions (estimated)")
        .mark_bar()
        .encode(x=alt.X("run:N", title=None), y=alt.Y("usd_per_1m:Q", title="USD"), color=colour)
        .properties(width=200, height=220)
    )
    return charts


def _mean_metric(runs: list[Run], key: str) -> float | None:
    """A side's figure: the mean over its runs that have it, as the gate's figures are."""
    values = [float(r.metrics[key]) for r in runs if r.metrics.get(key) is not None]
    return float(np.mean(values)) if values else None


def _pooled_samples(runs: list[Run]) -> list[float]:
    """Every stored latency sample of a side's runs, pooled for its distribution chart."""
    return [x for run in runs for x in run.details.get("latencies_ms") or []]


def runs_frame(gate: Gate) -> pd.DataFrame:
    """Every run side by side: identity, host, configuration and the main measured figures."""
    keys = ["model", "fingerprint", "host", "created_at", *LIKE_FOR_LIKE, "latency_ms_p50",
            "latency_ms_p99", "throughput_items_per_s", "memory_peak_mb", "energy_j_per_item",
            "energy_method", "power_w_avg", "co2e_g_per_1m"]  # fmt: skip
    rows = {}
    sides = [("baseline", r) for r in gate.baseline_runs]
    sides += [("candidate", r) for r in gate.candidate_runs]
    for label, run in sides:
        flat = run.flat()
        flat["fingerprint"] = str(flat.get("fingerprint", ""))[:12]
        flat["host"] = host_fingerprint(run.environment)
        rows[f"{label} (run {run.id})"] = {k: flat.get(k) for k in keys}
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_html(index=index, border=0, classes="t", float_format=lambda v: f"{v:.4g}")


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
.verdict{padding:.8em 1em;border-radius:6px;font-weight:600}
.pass{background:#e6f4ea;color:#137333}.fail{background:#fce8e6;color:#a50e0e}
table.t{border-collapse:collapse;margin:.5em 0 1.5em}table.t td,table.t th{padding:.25em .7em;
border-bottom:1px solid #ddd;text-align:right}table.t th{background:#f5f5f5}
.charts{display:flex;flex-wrap:wrap;gap:1em}.note{color:#555}
.warn{background:#fff4ce;color:#7a4f00;border:2px solid #e0a800;padding:.8em 1em;border-radius:6px;
font-weight:600}"""


def write_html_report(gate: Gate, path: str | Path, title: str | None = None) -> Path:
    """Write the gate, both runs, their cost and charts to one self-contained HTML file.

    Charts are inline SVG (rendered by vl-convert), so the file opens offline. Also writes the
    verdict as JSON next to it (same name, ``.json``) for CI logs. Returns the HTML path.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report path {str(path)!r} must end in .html; e.g. report.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    title = title or f"Inference report: {gate.candidate.model}"
    verdict = "pass" if gate.passed else "fail"
    charts = "".join(
        f'<figure class="chart" id="chart-{name}">{_svg(chart)}</figure>'
        for name, chart in report_charts(gate).items()
    )
    costs = "".join(
        f"<h3>{html.escape(r.scenario)}</h3>{_table(r.summary())}" for r in gate.costs.values()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in gate.notes if n != gate.host.warning)
    host = gate.host
    warning = (
        f'<p class="warn" id="host-warning">{html.escape(host.warning)}</p>' if host.warning else ""
    )
    hosts = (
        f'<p class="note" id="hosts">hosts: baseline {html.escape(host.baseline_fingerprint)} '
        f"({html.escape(host.baseline_host)}); candidate "
        f"{html.escape(host.candidate_fingerprint)} ({html.escape(host.candidate_host)})</p>"
    )
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="note">written {created}; latency, throughput and memory are measured; energy says its
method; cost is estimated from the measured throughput and a typed-in price. Each side's figure
is the mean over its runs; a check fails only when the lower bound of its bootstrap interval is
beyond the limit.</p>
<p class="verdict {verdict}" id="verdict">{html.escape(gate.summary())}</p>
{warning}{hosts}
<h2>Checks</h2>{_table(gate.to_frame())}
<ul class="note">{notes}</ul>
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Runs</h2>{_table(runs_frame(gate), index=True)}
<h2>Cost of serving</h2>{costs}
</body></html>
"""
    path.write_text(body, encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(gate.to_dict(), indent=2, default=str))
    return path
