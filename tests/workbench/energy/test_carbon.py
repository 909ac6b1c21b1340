"""Grid carbon intensity: the shipped table, its default and its source."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from workbench.energy.carbon import (
    DEFAULT_REGION,
    carbon_intensity,
    co2e_g,
    intensity_table,
    lookup,
)
from workbench.errors import ConfigError


def test_table_rows_are_complete() -> None:
    table = intensity_table()
    assert len(table) >= 12
    for code, entry in table.items():
        assert code == entry.region and code.isupper()
        assert 0 < entry.g_co2e_per_kwh < 1200
        assert entry.year >= 2022
        assert "Ember" in entry.source


def test_default_is_the_world_average_with_its_source() -> None:
    g, source = carbon_intensity()
    assert DEFAULT_REGION == "WORLD"
    assert g == 480.0
    assert source == "WORLD 2023: Ember Global Electricity Review 2024 (world average for 2023)"


def test_regions_by_alpha3_or_alpha2_in_any_case() -> None:
    assert carbon_intensity("FRA")[0] == 56.0
    assert carbon_intensity("fr") == carbon_intensity("FRA")
    assert lookup("de").name == "Germany"
    assert carbon_intensity("POL")[0] > 10 * carbon_intensity("NOR")[0]


def test_unknown_region_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        carbon_intensity("ATLANTIS")
    message = str(info.value)
    assert "'ATLANTIS'" in message
    assert "DEU" in message and "USA" in message and "WORLD" in message
    assert "g_co2e_per_kwh" in message


def test_co2e_arithmetic() -> None:
    assert co2e_g(energy_j=3.6e6, g_co2e_per_kwh=369.5) == pytest.approx(369.5)
    assert co2e_g(energy_j=36.0, g_co2e_per_kwh=100.0) == pytest.approx(0.001)


def test_table_matches_the_ember_data_codecarbon_ships() -> None:
    """Our rows are the 2023 Ember/OWID figures that CodeCarbon carries; the world default is
    within 1 % of the generation-weighted mean of that data."""
    pytest.importorskip("codecarbon")
    path = resources.files("codecarbon").joinpath("data/private_infra/global_energy_mix.json")
    mix = json.loads(path.read_text())
    for code, entry in intensity_table().items():
        if code == "WORLD":
            continue
        assert mix[code]["year"] == entry.year
        assert mix[code]["carbon_intensity"] == pytest.approx(entry.g_co2e_per_kwh, abs=0.06)
    rows = [v for v in mix.values() if v.get("carbon_intensity") and v.get("total_TWh")]
    mean = sum(v["carbon_intensity"] * v["total_TWh"] for v in rows) / sum(
        v["total_TWh"] for v in rows
    )
    assert mean == pytest.approx(carbon_intensity("WORLD")[0], rel=0.01)
