"""Lifecycle cost calculator: training against inference in money, energy and carbon.

A view over :mod:`workbench.cost.model` (pure) fed with measured runs through
:func:`workbench.cost.scenarios.inference_inputs_from_run`: the profiled model, the search baseline
and the recommended variant become one scenario each, with the same traffic, prices and grid.
Every input change recomputes the figures and the charts (cumulative cost with the break-even
day; scenarios side by side). The cache hit rate comes from the Cascade & cache tab.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from widgets.session import Session
from widgets.view import Panel, headline, number_box
from workbench.cost.charts import cumulative_cost_chart, scenario_bars_chart
from workbench.cost.model import GridInputs, Scenario, TrainingInputs, compute_cost
from workbench.cost.savings import compare
from workbench.cost.scenarios import inference_inputs_from_run
from workbench.errors import ConfigError

#: (field, label, default, step) of the inputs shown; the defaults are an example, not advice.
INFERENCE = (
    ("requests_per_day", "requests per day", 1e6, 1e5),
    ("lifetime_months", "lifetime (months)", 24.0, 1.0),
    ("instance_usd_per_h", "instance $/h", 0.34, 0.01),
    ("utilisation", "target utilisation", 0.5, 0.05),
    ("requests_growth_per_month", "growth per month", 0.0, 0.01),
    ("cache_hit_rate", "cache hit rate", 0.0, 0.05),
)
GRID = (
    ("electricity_usd_per_kwh", "electricity $/kWh", 0.15, 0.01),
    ("pue", "PUE", 1.2, 0.05),
    ("carbon_g_per_kwh", "grid gCO2e/kWh", 400.0, 10.0),
)
TRAINING = (
    ("accelerator_hours", "training GPU-hours", 50.0, 1.0),
    ("accelerator_power_w", "GPU power (W)", 300.0, 10.0),
    ("accelerator_usd_per_h", "GPU $/h", 2.5, 0.1),
)


class CostPanel(Panel):
    """Scenarios from measured runs, priced over the model's lifetime."""

    title = "Lifecycle cost"
    slug = "cost"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.source = W.Dropdown(options=[], description="figures from").add_class("wb-cost-source")
        self.source.layout.width = "560px"
        self.source.style.description_width = "100px"
        self.inputs: dict[str, W.FloatText] = {}
        columns = []
        for group in (INFERENCE, GRID, TRAINING):
            boxes = []
            for name, label, default, step in group:
                box = number_box(label, default, f"wb-cost-{name.replace('_', '-')}", step=step)
                box.observe(lambda _: self.recompute(), "value")
                self.inputs[name] = box
                boxes.append(box)
            columns.append(W.VBox(boxes))
        self.training = W.Checkbox(value=True, description="include training").add_class(
            "wb-cost-training"
        )
        self.training.observe(lambda _: self.recompute(), "value")
        self.source.observe(lambda _: self.recompute(), "value")
        save = W.Button(description="Save to run store").add_class("wb-cost-save")
        save.on_click(lambda _: self.act(self.save))
        self.total = headline("wb-cost-total")
        self.per_million = headline("wb-cost-per-million")
        self.break_even = headline("wb-cost-break-even")
        self.savings = headline("wb-cost-savings")
        self.report = None
        self.reports: list = []
        self._quiet = False
        self.listen(self._on_session)
        self.finish(
            self.source,
            W.HBox(columns),
            W.HBox([self.training, save]),
            W.VBox([self.total, self.per_million, self.break_even]),
            self.savings,
        )
        self.refresh_sources()

    # -- inputs

    def values(self) -> dict[str, Any]:
        """The typed-in inputs, by field name."""
        return {name: float(box.value) for name, box in self.inputs.items()}

    def refresh_sources(self, select: int | None = None) -> None:
        """Offer the session's measured runs; show ``select`` (a run id) if given."""
        sources = self.session.cost_sources()
        options = list(sources.items())
        keep = select if select is not None else self.source.value
        values = list(sources.values())
        self._quiet = True  # one recompute below, not one per trait change
        try:
            self.source.options = options
            self.source.value = keep if keep in values else (values[-1] if values else None)
        finally:
            self._quiet = False
        self.recompute()

    def _on_session(self, topic: str, value: Any) -> None:
        if topic == "profile":
            self.refresh_sources(select=value.run_id)
        elif topic == "search":
            rec = value.recommendation
            self.refresh_sources(select=None if rec is None else rec.candidate.run_id)
        elif topic == "figures":
            self.refresh_sources(select=value.run_id)
        elif topic == "model":
            self.refresh_sources()
        elif topic == "cache_hit_rate":
            self.inputs["cache_hit_rate"].value = round(float(value), 4)
        elif topic == "cost_inputs":
            for name, v in value.items():
                if name in self.inputs and isinstance(v, (int, float)):
                    self.inputs[name].value = float(v)
            if "training" in value:
                self.training.value = bool(value["training"])

    # -- the figures

    def scenarios(self) -> dict[str, Scenario]:
        """One scenario per measured source, all with the inputs shown."""
        sources = self.session.cost_sources()
        if not sources:
            raise ConfigError(
                "no measured run to cost yet: profile a model with 'measure energy' ticked "
                "(Model & profile tab), or reopen a profile run (Runs tab)"
            )
        v = self.values()
        inf = {k: v[k] for k, *_ in INFERENCE}
        grid = GridInputs(**{k: v[k] for k, *_ in GRID})
        training = (
            TrainingInputs(**{k: v[k] for k, *_ in TRAINING}) if self.training.value else None
        )
        out = {}
        for label, run_id in sources.items():
            name = label.split(" (run")[0]
            inputs = inference_inputs_from_run(self.session.store, run_id, **inf)
            out[name] = Scenario(name, inputs, grid, training)
        return out

    def recompute(self) -> None:
        """Recompute the reports and charts from the inputs shown (every input change)."""
        if self._quiet:
            return
        if not self.session.cost_sources():
            self.say("profile a model with energy first; its measured figures are costed here")
            return
        self.act(self._recompute)

    def _recompute(self) -> None:
        scenarios = self.scenarios()
        reports = {name: compute_cost(s) for name, s in scenarios.items()}
        chosen = next(
            (lab.split(" (run")[0] for lab, rid in self.session.cost_sources().items()
             if rid == self.source.value),
            list(reports)[-1],
        )  # fmt: skip
        report = reports[chosen]
        self.report, self.reports = report, list(reports.values())
        self.session.cost_inputs = {**self.values(), "training": bool(self.training.value),
                                    "source_run_id": self.source.value}  # fmt: skip
        self.session.publish("cost", report)
        self.total.value = (
            f"lifecycle total: <b class='wb-cost-total-value'>${report.total_cost_usd:,.0f}</b> "
            f"({report.total_energy_kwh:,.1f} kWh, {report.total_co2_t:.3g} tCO2e; "
            f"{report.method})"
        )
        self.per_million.value = (
            f"inference: <b>${report.inference_usd_per_million:.4g}</b> per 1M predictions"
        )
        day = report.break_even_day
        self.break_even.value = (
            f"break-even: <b>day {day}</b>" if day is not None else "break-even: not reached"
        )
        base = self.reports[0]
        if report is not base:
            s = compare(base, report)
            self.savings.value = (
                f"{html.escape(s.optimised)} against {html.escape(s.baseline)}: saves "
                f"<b>${s.cost_usd:,.0f} ({s.cost_pct:.1f}%)</b>, {s.energy_kwh:,.1f} kWh "
                f"({s.energy_pct:.1f}%), {s.co2_t:.3g} tCO2e ({s.method})"
            )
        else:
            self.savings.value = ""
        items: list = [cumulative_cost_chart(report)]
        if len(self.reports) > 1:
            items.append(scenario_bars_chart(self.reports))
        import pandas as pd

        items.append(pd.DataFrame([r.to_row() for r in self.reports]))
        self.show(*items)
        self.say(f"costed {len(reports)} scenario(s) from measured runs")

    def save(self) -> int:
        """Record the shown inputs and the chosen scenario's figures in the run store."""
        if self.report is None:
            raise ConfigError("nothing to save: the cost figures need a measured run first")
        run_id = self.session.record(
            "cost", config=dict(self.session.cost_inputs), metrics=self.report.to_row()
        )
        self.say(f"saved as run {run_id}")
        return run_id
