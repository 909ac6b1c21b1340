"""Grid carbon intensity: grams of CO2-equivalent per kWh of electricity, by region.

A small table ships with the package (``workbench/data/carbon_intensity.csv``): yearly average
intensities of electricity generation for two dozen countries, from Ember's Yearly Electricity
Data for 2023 as published in Our World in Data's energy dataset (indicator
``carbon_intensity_elec``; these are the figures CodeCarbon 3.x ships, so both tools agree). Regions
are ISO 3166 alpha-3 codes (``"DEU"``); alpha-2 codes (``"DE"``) are accepted too.

The default region is ``"WORLD"``: 480 gCO2e/kWh, the world average for 2023 reported by Ember's
Global Electricity Review 2024 (the generation-weighted mean of the country figures in the same
data set comes to 480.6). A yearly average ignores the hour of day; pass your own figure
(``g_co2e_per_kwh``) where you know your supplier's or your cloud region's.

Example
-------
>>> carbon_intensity("FRA")[0]
56.0
>>> round(co2e_g(energy_j=3.6e6, g_co2e_per_kwh=480.0), 1)  # 1 kWh on the world-average grid
480.0
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

from workbench.errors import ConfigError
from workbench.units import J_PER_KWH

DEFAULT_REGION = "WORLD"


@dataclass(frozen=True)
class GridIntensity:
    """One row of the shipped table."""

    region: str
    iso2: str
    name: str
    g_co2e_per_kwh: float
    year: int
    source: str


@functools.cache
def intensity_table() -> dict[str, GridIntensity]:
    """The shipped table, keyed by region code (alpha-3, upper case)."""
    text = resources.files("workbench").joinpath("data/carbon_intensity.csv").read_text("utf-8")
    table = {}
    for row in csv.DictReader(text.splitlines()):
        entry = GridIntensity(
            region=row["region"],
            iso2=row["iso2"],
            name=row["name"],
            g_co2e_per_kwh=float(row["g_co2e_per_kwh"]),
            year=int(row["year"]),
            source=row["source"],
        )
        table[entry.region] = entry
    return table


def lookup(region: str | None = None) -> GridIntensity:
    """The table row for ``region`` (alpha-3 or alpha-2 code, any case); ``None`` is the default.

    Raises
    ------
    ConfigError
        For a region not in the table; the message lists the known ones.
    """
    code = (region or DEFAULT_REGION).strip().upper()
    table = intensity_table()
    if code in table:
        return table[code]
    for entry in table.values():
        if entry.iso2 and entry.iso2 == code:
            return entry
    known = ", ".join(sorted(table))
    raise ConfigError(
        f"unknown grid region {region!r}; known regions: {known}. Pass one of these, or give the "
        "intensity yourself with g_co2e_per_kwh=<grams CO2e per kWh>"
    )


def carbon_intensity(region: str | None = None) -> tuple[float, str]:
    """Grid intensity in gCO2e/kWh for ``region`` and a one-line statement of its source.

    Example
    -------
    >>> g, source = carbon_intensity()
    >>> g, source.startswith("WORLD 2023")
    (480.0, True)
    """
    entry = lookup(region)
    return entry.g_co2e_per_kwh, f"{entry.region} {entry.year}: {entry.source}"


def co2e_g(energy_j: float, g_co2e_per_kwh: float) -> float:
    """Grams of CO2e for ``energy_j`` joules drawn from a grid of the given intensity."""
    return energy_j / J_PER_KWH * g_co2e_per_kwh
