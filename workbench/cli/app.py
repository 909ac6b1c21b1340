"""The ``workbench`` Typer app, its ``--debug`` switch, the entry point and the table printer.

Each command lives in its own module (:mod:`workbench.cli.profile`, ...) and registers itself with
``@app.command()`` on the ``app`` here; the package ``workbench.cli`` imports them all, so any
import from the package gives the whole command. Errors become one line and exit 2; ``--debug``
(before the subcommand) shows the full traceback instead.

>>> fmt(12345.6), fmt(0.0123456), fmt(float("nan")), fmt("2024-05-01T12:30:45.123456+00:00")
('12,346', '0.01235', '', '2024-05-01 12:30:45')
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    del debug  # main() reads --debug from the raw arguments, so it holds even if parsing fails


#: Short table headers for long field names (the field names stay the API).
HEADERS = {
    "run_id": "run",
    "created_at": "created (UTC)",
    "batch_size": "batch",
    "latency_ms_p50": "p50 ms",
    "latency_ms_p90": "p90 ms",
    "latency_ms_p95": "p95 ms",
    "latency_ms_p99": "p99 ms",
    "latency_ms_max": "max ms",
    "throughput_items_per_s": "items/s",
    "memory_peak_mb": "peak MB",
    "flops_per_item": "FLOPs/item",
    "calls_per_run": "calls/run",
    "time_ms_per_run": "ms/run",
    "energy_j_per_item": "J/item",
    "power_w_avg": "W avg",
    "co2e_g_per_1m": "gCO2e/1M",
    "energy_method": "energy",
    "latency_method": "latency",
    "share_of_max_throughput": "share of max",
    "is_knee": "knee",
    "max_batch_rows": "max batch",
    "max_delay_ms": "max delay ms",
    "mean_batch_size": "mean batch",
    "utilisation": "util",
    "usd_per_million": "$/1M",
    "kwh_per_million": "kWh/1M",
}


def print_frame(frame, title: str, columns: list[str] | tuple[str, ...] | None = None) -> None:
    """Render a DataFrame as a rich table with short headers and readable numbers; only the
    ``columns`` the frame has are shown, in that order (default: all)."""
    table = Table(title=title)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    for col in cols:
        table.add_column(
            HEADERS.get(str(col), str(col)),
            no_wrap=True,
            justify="right" if frame[col].dtype.kind in "if" else "left",
        )
    for _, row in frame[cols].iterrows():
        table.add_row(*[fmt(row[c]) for c in cols])
    console.print(table)


def fmt(value: object) -> str:
    """One table cell: thousands separated, 4 significant digits, ISO timestamps to the second."""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, str) and len(value) > 19 and value[4:5] == "-":
        return value[:19].replace("T", " ")
    return "" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: user errors become one line and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, standalone_mode=False)
    except WorkbenchError as exc:
        if "--debug" in args:
            raise
        # Text, not markup: messages hold brackets such as 'inference-workbench[minilm]'
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
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
