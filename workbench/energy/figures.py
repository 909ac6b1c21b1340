"""Joules, watts, Wh and gCO2e per inference from one measured window (``per_inference``).

>>> from workbench.energy import EnergyReading, per_inference
>>> r = EnergyReading.from_components(2.0, {"cpu": 10.0}, {"cpu": "measured"}, "rapl")
>>> per_inference(r, items=1000, idle_power_w=1.0, g_co2e_per_kwh=360.0).energy_j_per_item
0.01
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.checks import number, whole
from workbench.energy.base import EnergyReading
from workbench.energy.carbon import carbon_intensity, co2e_g
from workbench.units import J_PER_WH


@dataclass(frozen=True)
class EnergyFigures:
    """Energy and carbon per inference for one measured window.

    ``*_net`` figures subtract the idle baseline (``idle_power_w x duration_s``) first.
    Carbon figures use ``g_co2e_per_kwh`` (source in ``carbon_source``).
    """

    items: int
    duration_s: float
    energy_j: float
    energy_j_per_item: float
    energy_j_per_item_net: float
    energy_j_per_item_by_component: dict[str, float]
    power_w_avg: float
    idle_power_w: float
    wh_per_million: float
    wh_per_million_net: float
    g_co2e_per_million: float
    g_co2e_per_million_net: float
    g_co2e_per_kwh: float
    carbon_source: str
    method: str
    method_by_component: dict[str, str]
    meter: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Flat metrics for the run store (``energy_j_per_item``, ``energy_method``, ...)."""
        row: dict[str, Any] = {
            "energy_j_per_item": self.energy_j_per_item,
            "energy_j_per_item_net": self.energy_j_per_item_net,
            "energy_method": self.method,
            "power_w_avg": self.power_w_avg,
            "idle_power_w": self.idle_power_w,
            "energy_wh_per_1m": self.wh_per_million,
            "energy_wh_per_1m_net": self.wh_per_million_net,
            "co2e_g_per_1m": self.g_co2e_per_million,
            "co2e_g_per_1m_net": self.g_co2e_per_million_net,
            "carbon_g_per_kwh": self.g_co2e_per_kwh,
            "carbon_source": self.carbon_source,
            "energy_meter": self.meter,
            "energy_items": self.items,
            "energy_duration_s": self.duration_s,
        }
        for component, joules in self.energy_j_per_item_by_component.items():
            row[f"energy_j_per_item.{component}"] = joules
        for component, method in self.method_by_component.items():
            row[f"energy_method.{component}"] = method
        row["energy_warnings"] = "; ".join(self.warnings)
        return row


def per_inference(
    reading: EnergyReading,
    items: int,
    idle_power_w: float | None = None,
    g_co2e_per_kwh: float | None = None,
    *,
    region: str | None = None,
) -> EnergyFigures:
    """Joules, watts, Wh and gCO2e per inference from a window that ran ``items`` inferences.

    ``idle_power_w`` defaults to the reading's own (``reading.with_idle``), else 0.
    ``g_co2e_per_kwh`` defaults to the grid intensity of ``region`` (``workbench.energy.carbon``;
    ``None`` is the world average).

    Example
    -------
    >>> r = EnergyReading.from_components(2.0, {"cpu": 10.0}, {"cpu": "measured"}, "rapl")
    >>> f = per_inference(r, items=1000, idle_power_w=1.0, g_co2e_per_kwh=360.0)
    >>> f.energy_j_per_item, f.energy_j_per_item_net, f.wh_per_million, f.g_co2e_per_million
    (0.01, 0.008, 2.7777777777777777, 1.0)
    """
    items = whole("items", items, minimum=1, fix="pass the number of items the window processed")
    idle = reading.idle_power_w if idle_power_w is None else idle_power_w
    reading = reading.with_idle(idle)
    if g_co2e_per_kwh is None:
        g_co2e_per_kwh, source = carbon_intensity(region)
    else:
        number("g_co2e_per_kwh", g_co2e_per_kwh, minimum=0,
               fix="pass grams CO2e per kWh, or a region from workbench.energy.carbon")  # fmt: skip
        source = "user setting g_co2e_per_kwh"
    per_item = reading.energy_j / items
    per_item_net = reading.energy_j_net / items
    return EnergyFigures(
        items=items,
        duration_s=reading.duration_s,
        energy_j=reading.energy_j,
        energy_j_per_item=per_item,
        energy_j_per_item_net=per_item_net,
        energy_j_per_item_by_component={
            k: v / items for k, v in reading.energy_j_by_component.items()
        },
        power_w_avg=reading.power_w_avg,
        idle_power_w=idle,
        wh_per_million=per_item * 1e6 / J_PER_WH,
        wh_per_million_net=per_item_net * 1e6 / J_PER_WH,
        g_co2e_per_million=co2e_g(per_item * 1e6, g_co2e_per_kwh),
        g_co2e_per_million_net=co2e_g(per_item_net * 1e6, g_co2e_per_kwh),
        g_co2e_per_kwh=float(g_co2e_per_kwh),
        carbon_source=source,
        method=reading.method,
        method_by_component=dict(reading.method_by_component),
        meter=reading.meter,
        warnings=tuple(reading.warnings),
    )
