"""Past runs: the run store as a table, and any run reopened into the session.

Reopening a profile or variant run makes its measured figures the ones the cost and export tabs
use; reopening a cost run restores the cost inputs; any other run is shown as stored.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import pandas as pd

from widgets.session import Session
from widgets.view import Panel

COLUMNS = [
    "run_id",
    "created_at",
    "kind",
    "model",
    "batch_size",
    "backend",
    "variant",
    "latency_ms_p99",
    "throughput_items_per_s",
    "energy_j_per_item",
    "energy_method",
    "total_cost_usd",
    "sweep_id",
]


class RunsPanel(Panel):
    """List the newest runs; reopen one by id."""

    title = "Runs"
    slug = "runs"

    def __init__(self, session: Session, limit: int = 30) -> None:
        super().__init__(session)
        self.limit = limit
        refresh = W.Button(description="Refresh").add_class("wb-runs-refresh")
        refresh.on_click(lambda _: self.act(self.refresh))
        self.run_id = W.Dropdown(options=[], description="run").add_class("wb-runs-id")
        self.open_button = W.Button(description="Reopen", button_style="primary")
        self.open_button.add_class("wb-runs-open")
        self.open_button.on_click(lambda _: self.act(self.reopen))
        self.detail = W.Output().add_class("wb-runs-detail")
        self.listen(self._on_session)
        self.finish(W.HBox([refresh, self.run_id, self.open_button]))
        self.widget.children = (*self.widget.children, self.detail)
        self.act(self.refresh)

    def _on_session(self, topic: str, value: Any) -> None:
        if topic in ("profile", "search", "batching", "cost", "bundle", "sizing", "cascade"):
            self.act(self.refresh)

    def refresh(self) -> None:
        frame = self.session.runs_frame(limit=self.limit)
        if frame.empty:
            self.say(f"no runs yet in {self.session.store.path}")
            self.show()
            return
        runs = self.session.store.runs(limit=self.limit)
        self.run_id.options = [(f"{r.id}: {r.kind} {r.model}", r.id) for r in runs]
        self.say(f"newest {len(frame)} runs in {self.session.store.path}")
        self.show(frame[[c for c in COLUMNS if c in frame]])

    def reopen(self) -> str:
        """Reopen the chosen run into the session; returns what was restored."""
        if self.run_id.value is None:
            from workbench.errors import ConfigError

            raise ConfigError("no run chosen: press Refresh, then pick a run from the list")
        message = self.session.reopen(self.run_id.value)
        run = self.session.store.get(self.run_id.value)
        rows = [{"field": k, "value": v} for k, v in {**run.config, **run.metrics}.items()]
        from widgets.view import display_data

        self.detail.outputs = (display_data(pd.DataFrame(rows, dtype=object)),)
        self.say(message)
        return message
