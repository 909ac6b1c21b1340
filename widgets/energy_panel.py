"""Energy: joules and carbon per inference of the session's model, with an idle baseline.

A view over :func:`workbench.measure.profile` with ``energy=True`` (the best meter this machine
has: NVML, RAPL, CodeCarbon, or the labelled estimate) and the carbon table of
:mod:`workbench.energy.carbon`. Every figure says whether it was measured or estimated.
"""

from __future__ import annotations

import ipywidgets as W
import pandas as pd

from widgets.session import Session
from widgets.view import Panel, headline
from workbench.energy.carbon import DEFAULT_REGION, intensity_table
from workbench.measure.profiling import profile


class EnergyPanel(Panel):
    """Measure energy per inference at one batch size; show net of idle, per component, CO2e."""

    title = "Energy"
    slug = "energy"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        regions = sorted(intensity_table())
        self.region = W.Dropdown(
            options=regions, value=DEFAULT_REGION if DEFAULT_REGION in regions else regions[0],
            description="grid region",
        ).add_class("wb-energy-region")  # fmt: skip
        self.batch_size = W.BoundedIntText(value=32, min=1, max=4096, description="batch size")
        self.batch_size.add_class("wb-energy-batch")
        self.seconds = W.BoundedFloatText(value=1.0, min=0.2, max=60, description="window (s)")
        self.seconds.add_class("wb-energy-seconds")
        self.idle = W.BoundedFloatText(value=0.5, min=0, max=30, description="idle base (s)")
        self.idle.add_class("wb-energy-idle")
        self.run_button = W.Button(description="Measure energy", button_style="primary")
        self.run_button.add_class("wb-energy-run")
        self.per_item = headline("wb-energy-per-item")
        self.run_button.on_click(lambda _: self.act(self._run))
        self.finish(
            W.HBox([self.region, self.batch_size]),
            W.HBox([self.seconds, self.idle, self.run_button]),
            self.per_item,
        )

    def _run(self) -> None:
        handle = self.session.require_handle()
        seconds = float(self.seconds.value)
        self.say(f"measuring {handle.name} for {seconds:g} s after {self.idle.value:g} s idle ...")
        result = profile(
            handle,
            batch_size=int(self.batch_size.value),
            iterations=10**7,
            max_seconds=seconds,
            operators=False,
            energy=True,
            energy_min_seconds=seconds,
            idle_seconds=float(self.idle.value),
            carbon_region=self.region.value,
            store=self.session.store,
        )
        self.session.publish("profile", result)
        e = result.energy
        self.per_item.value = (
            f"energy: <b>{e.energy_j_per_item:.4g} J per inference</b> ({e.method}, {e.meter}); "
            f"{e.g_co2e_per_million:.4g} gCO2e per million at {e.g_co2e_per_kwh:.0f} g/kWh"
        )
        summary = pd.DataFrame(
            [
                {
                    "energy_j_per_item": e.energy_j_per_item,
                    "energy_j_per_item_net": e.energy_j_per_item_net,
                    "power_w_avg": e.power_w_avg,
                    "idle_power_w": e.idle_power_w,
                    "wh_per_million": e.wh_per_million,
                    "g_co2e_per_million": e.g_co2e_per_million,
                    "carbon_source": e.carbon_source,
                    "method": e.method,
                    "meter": e.meter,
                    "run_id": result.run_id,
                }
            ]
        )
        parts = pd.DataFrame(
            [
                {"component": k, "energy_j_per_item": v, "method": e.method_by_component.get(k)}
                for k, v in e.energy_j_per_item_by_component.items()
            ]
        )
        notes = [f"note: {w}" for w in e.warnings]
        self.show(summary, parts, *notes)
        self.say(f"stored as run {result.run_id}; cost and export now use it")
