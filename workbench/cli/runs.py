"""``workbench runs``: the run store, newest first, filtered by model, kind or sweep::

    workbench runs --model digits-mlp --kind profile --limit 5

Each row is one stored run; the ids are what ``--run-id`` and ``--baseline-run-id`` take.
"""

from __future__ import annotations

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db, old_flag, renamed

#: What ``workbench runs`` shows of each stored run (a compact, profile-first listing).
RUN_COLUMNS = (
    "run_id",
    "created_at",
    "kind",
    "model",
    "backend",
    "device",
    "batch_size",
    "threads",
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_items_per_s",
)


@app.command()
def runs(
    *,
    model: str | None = typer.Option(None, help="Only runs of this model."),
    kind: str | None = typer.Option(None, help="Only runs of this kind (profile, ...)."),
    sweep_id: str | None = typer.Option(None, "--sweep-id", help="Only runs of this sweep."),
    limit: int = typer.Option(20, help="Show at most this many (newest first)."),
    db: Db = None,
    sweep: str | None = old_flag("--sweep"),
) -> None:
    """List stored runs, newest first."""
    from workbench.measure.store import RunStore

    sweep_id = renamed(sweep, "--sweep", "--sweep-id", sweep_id)
    with RunStore(db) as store:
        frame = store.to_frame(model=model, kind=kind, sweep_id=sweep_id, limit=limit)
        if frame.empty:
            console.print(f"no runs stored in {store.path}", markup=False)
            return
        print_frame(frame, f"runs in {store.path}", RUN_COLUMNS)
