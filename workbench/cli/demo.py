"""``workbench demo``: the main job on a built-in demo model (load or train it, profile it, try
compressing it) and what it found, with the results written to a folder::

    workbench demo --model digits-mlp --out workbench-demo --max-seconds 0.5
"""

from __future__ import annotations

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db


@app.command()
def demo(
    *,
    model: str = typer.Option("digits-cnn", help="Demo model to run the main job on."),
    out: str = typer.Option("workbench-demo", help="Folder for the results (CSV, JSON)."),
    db: Db = None,
    max_seconds: float = typer.Option(3.0, help="Time budget per configuration."),
) -> None:
    """The main job on a built-in demo model: load or train it, profile it, report what it found."""
    from pathlib import Path

    from workbench.cli.optimize import print_attribution
    from workbench.demo import run_demo
    from workbench.measure.profiling import Profile

    summary = run_demo(model, Path(out), db=db, max_seconds=max_seconds, console=console)
    print_frame(summary.table, f"{model}: measured on this machine", Profile.SUMMARY_COLUMNS)
    print_frame(
        summary.table,
        f"{model}: energy per inference (see the method column)",
        ["run_id", "backend", "batch_size", *Profile.ENERGY_COLUMNS],
    )
    for line in summary.findings:
        console.print(f"- {line}", markup=False)
    print_attribution(summary.extra.get("attribution"), summary=False)  # a finding above
    console.print(
        f"results: {summary.out_dir} (profiles.csv, compression.csv, attribution.csv, "
        f"summary.json); run store: {summary.db_path}"
    )
