"""The dashboard: every panel as a tab over one shared :class:`~widgets.session.Session`.

Example
-------
>>> from widgets import dashboard
>>> d = dashboard(store=":memory:")  # doctest: +SKIP
>>> d  # in a notebook: shows the tabs   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets as W

from widgets.batching_panel import BatchingPanel
from widgets.cascade_panel import CascadePanel
from widgets.compression_panel import CompressionPanel
from widgets.cost_panel import CostPanel
from widgets.energy_panel import EnergyPanel
from widgets.export_panel import ExportPanel
from widgets.monitor_panel import MonitorPanel
from widgets.profile_panel import ProfilePanel
from widgets.runs_panel import RunsPanel
from widgets.session import Session


class Dashboard:
    """The panels of one session, composed as tabs (``self.widget``).

    Attributes are the panels: ``profile``, ``energy``, ``compression``, ``batching``,
    ``cascade``, ``cost``, ``export``, ``monitor``, ``runs``.
    """

    def __init__(self, session: Session, bundles_dir: str | Path = "bundles") -> None:
        self.session = session
        self.profile = ProfilePanel(session)
        self.energy = EnergyPanel(session)
        self.compression = CompressionPanel(session)
        self.batching = BatchingPanel(session)
        self.cascade = CascadePanel(session)
        self.cost = CostPanel(session)
        self.export = ExportPanel(session, out_root=bundles_dir)
        self.monitor = MonitorPanel(session)
        self.runs = RunsPanel(session)
        panels = self.panels
        self.tabs = W.Tab(children=[p.widget for p in panels]).add_class("wb-tabs")
        self.tabs.titles = [p.title for p in panels]
        header = W.HTML(
            "<h2>Inference Workbench</h2><p>Profile, compress, batch, cost, export and monitor a "
            "model. "
            "Figures say whether they are <i>measured</i> or <i>estimated</i>; every result is "
            f"kept in the run store at <code>{session.store.path}</code>.</p>"
        )
        self.widget = W.VBox([header, self.tabs]).add_class("wb-dashboard")

    @property
    def panels(self) -> list:
        return [self.profile, self.energy, self.compression, self.batching, self.cascade,
                self.cost, self.export, self.monitor, self.runs]  # fmt: skip

    def select(self, title: str) -> None:
        """Show the tab with this title."""
        self.tabs.selected_index = [p.title for p in self.panels].index(title)

    def _ipython_display_(self) -> None:  # pragma: no cover - notebook display
        from IPython.display import display

        display(self.widget)


def dashboard(
    store: str | Path | None = None, bundles_dir: str | Path = "bundles", background: bool = True
) -> Dashboard:
    """A dashboard over a new session (``store``: run store path; default ``WORKBENCH_DB``)."""
    return Dashboard(Session(store, background=background), bundles_dir=bundles_dir)
