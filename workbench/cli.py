"""The ``workbench`` command: thin, one subcommand per step; errors become one line and exit 2.

``--debug`` (before the subcommand) shows the full traceback instead.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from workbench.errors import WorkbenchError

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click import ClickException

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Inference Workbench: profile models, cut what each prediction costs, ship the winner.",
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def print_frame(frame, title: str, columns: list[str] | None = None) -> None:
    """Render a DataFrame as a rich table (floats to 4 significant digits)."""
    table = Table(title=title)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    for col in cols:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "if" else "left")
    for _, row in frame[cols].iterrows():
        table.add_row(*[_fmt(row[c]) for c in cols])
    console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@app.command()
def runs(
    model: Optional[str] = typer.Option(None, help="Only runs of this model."),
    kind: Optional[str] = typer.Option(None, help="Only runs of this kind (profile, ...)."),
    sweep: Optional[str] = typer.Option(None, help="Only runs of this sweep id."),
    limit: int = typer.Option(20, help="Show at most this many (newest first)."),
    db: Optional[str] = typer.Option(None, help="Run store path (default: WORKBENCH_DB or user data dir)."),
) -> None:
    """List stored runs, newest first."""
    from workbench.store import RunStore

    with RunStore(db) as store:
        frame = store.to_frame(model=model, kind=kind, sweep_id=sweep, limit=limit)
        if frame.empty:
            console.print(f"no runs stored in {store.path}")
            return
        cols = ["run_id", "created_at", "kind", "model", "backend", "device", "batch_size",
                "threads", "latency_ms_p50", "latency_ms_p99", "throughput_items_per_s"]
        print_frame(frame, f"runs in {store.path}", cols)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: user errors become one line and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, standalone_mode=False)
    except WorkbenchError as exc:
        if "--debug" in args:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted; finished configurations are kept in the run store")
        return 130
    except ClickException as exc:  # usage errors: click's own message and exit code
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
