"""``workbench cost``: the lifecycle cost of each scenario in a file, training against inference
in money, energy and carbon, what moves it most, and optionally CSV tables and charts::

    workbench cost scenarios.yaml --run-id 12 --run-id cascade=15 --out cost-report

>>> parse_run_ids(["12", "cascade=15"])
{'': 12, 'cascade': 15}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db
from workbench.errors import ConfigError

#: The scenario comparison, in two tables: money, then energy, carbon and savings.
COST_COLUMNS = (
    "scenario", "training_cost_usd", "inference_cost_usd", "total_cost_usd", "inference_share",
    "break_even_day", "inference_usd_per_million", "method",
)  # fmt: skip
SAVINGS_COLUMNS = (
    "scenario", "total_energy_kwh", "total_co2_t", "saved_cost_pct", "saved_energy_pct",
    "saved_co2_pct", "method",
)  # fmt: skip
SENSITIVITY_COLUMNS = ("input", "base_value", "low_output", "high_output", "swing")


def parse_run_ids(values: list[str]) -> dict[str, int]:
    """``SCENARIO=ID`` pairs; a bare ``ID`` is keyed ``""`` (the baseline scenario)."""
    out: dict[str, int] = {}
    for value in values:
        name, _, rid = value.rpartition("=")
        try:
            out[name] = int(rid)
        except ValueError as exc:
            raise ConfigError(
                f"--run-id {value!r} is not ID or SCENARIO=ID with a whole-number ID; "
                "list run ids with `workbench runs`"
            ) from exc
    return out


@app.command()
def cost(
    scenario_file: str = typer.Argument(..., help="Scenario file (.yaml, .yml or .toml)."),
    *,
    run_id: Annotated[
        list[str] | None,
        typer.Option(
            "--run-id",
            help="Measured figures from the run store: SCENARIO=ID, or ID for the baseline.",
        ),
    ] = None,
    out: str | None = typer.Option(
        None, help="Directory for CSV tables and charts (HTML with inlined libraries, and SVG)."
    ),
    sensitivity_pct: float = typer.Option(
        20.0, "--sensitivity-pct", help="Vary each baseline input by this percent (tornado)."
    ),
    db: Db = None,
) -> None:
    """Lifecycle cost of each scenario: training against inference in money, energy and carbon."""
    import workbench.cost as costmod
    from workbench.cost.scenarios import load_scenarios

    store = None
    if run_id or db:
        from workbench.measure.store import RunStore

        store = RunStore(db)
    sset = load_scenarios(scenario_file, store=store, run_ids=parse_run_ids(run_id or []))
    table = costmod.compare_scenarios(sset.scenarios, baseline=sset.baseline)
    print_frame(table, "lifecycle cost per scenario", COST_COLUMNS)
    print_frame(table, f"energy, carbon and savings against {sset.baseline}", SAVINGS_COLUMNS)
    base = costmod.compute_cost(sset.scenarios[sset.baseline])
    print_frame(base.summary(), f"{sset.baseline}: training against inference")
    sens = costmod.sensitivity(sset.scenarios[sset.baseline], pct=sensitivity_pct)
    print_frame(
        sens.head(8),
        f"{sset.baseline}: what moves the total most (+-{sensitivity_pct:g} %)",
        SENSITIVITY_COLUMNS,
    )
    if out is not None:
        _write_cost_files(Path(out), sset, table, base, sens)


def _write_cost_files(out_dir: Path, sset, table, base, sens) -> None:
    """scenarios.csv, monthly.csv, sensitivity.csv and the charts (HTML and SVG) in ``out_dir``."""
    import pandas as pd

    from workbench.cost import charts as cost_charts
    from workbench.cost import model as costmod

    out_dir.mkdir(parents=True, exist_ok=True)
    reports = [costmod.compute_cost(s) for s in sset.scenarios.values()]
    table.to_csv(out_dir / "scenarios.csv", index=False)
    pd.concat([r.monthly.assign(scenario=r.scenario) for r in reports]).to_csv(
        out_dir / "monthly.csv", index=False
    )
    sens.to_csv(out_dir / "sensitivity.csv", index=False)
    charts = {
        "cumulative": cost_charts.cumulative_cost_chart(base),
        "scenarios": cost_charts.scenario_bars_chart(reports),
        "tornado": cost_charts.tornado_chart(sens),
    }
    for name, chart in charts.items():
        for suffix in (".html", ".svg"):
            cost_charts.save_chart(chart, out_dir / f"{name}{suffix}")
    console.print(f"wrote scenarios.csv, monthly.csv, sensitivity.csv and charts to {out_dir}")
