"""``workbench report``: profile a model ``--repeats`` times, compare it with baseline runs on the
same host, write an HTML report through the scheduled-report notebook (papermill), and exit 1 on
a cost or p99 regression that noise does not explain, so CI or cron can gate a deployment::

    workbench report digits-cnn --baseline-run-id 12 --baseline-run-id 13 --out report/report.html

A baseline from another machine is refused (exit 2, naming both host fingerprints);
``--allow-other-host`` compares anyway and prints a warning with the verdict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli.app import app, console, err_console
from workbench.cli.options import Db
from workbench.errors import ConfigError


@app.command()
def report(
    model: str = typer.Argument("digits-cnn", help="Demo model or .onnx path to profile."),
    *,
    baseline_run_id: Annotated[
        list[int] | None,
        typer.Option(
            "--baseline-run-id",
            help="Baseline run to compare with; repeat for several (none: these runs become it).",
        ),
    ] = None,
    repeats: int = typer.Option(
        3, "--repeats", min=1, help="Profile the candidate N times; the interval needs repeats."
    ),
    allow_other_host: bool = typer.Option(
        False,
        "--allow-other-host",
        help="Compare with a baseline timed on another machine (refused by default), with a "
        "warning.",
    ),
    out: str = typer.Option(
        "workbench-report/report.html",
        help="HTML report; the verdict (.json) and the executed notebook go next to it.",
    ),
    max_cost_increase_pct: float = typer.Option(
        10.0, "--max-cost-increase-pct", help="Largest allowed rise of cost per 1M predictions."
    ),
    max_p99_increase_pct: float = typer.Option(
        20.0, "--max-p99-increase-pct", help="Largest allowed rise of p99 latency."
    ),
    batch_size: int = typer.Option(1, "--batch-size", "-n", help="Batch size to profile."),
    threads: int | None = typer.Option(None, "--threads", "-t", help="Intra-op threads."),
    iterations: int = typer.Option(500, help="Timed runs (at most)."),
    max_seconds: float = typer.Option(3.0, help="Time budget of the measurement."),
    instance_usd_per_h: float | None = typer.Option(
        None, help="Price of one instance-hour (default: aws-c6i.large list price)."
    ),
    requests_per_day: float | None = typer.Option(
        None, help="Traffic for the cost (default: at scale, where instance rounding is <1 %)."
    ),
    inject_extra_matmuls: int = typer.Option(
        0, help="Rehearse the gate: the candidate runs N extra real 512x512 matmuls per call."
    ),
    notebook: str | None = typer.Option(
        None, help="Report notebook (default: notebooks/scheduled_report.ipynb of the checkout)."
    ),
    db: Db = None,
) -> None:
    """Profile N times, compare with baseline runs, write an HTML report; exit 1 on a regression.

    A check fails when the lower bound of its 95 % bootstrap interval is beyond its threshold.
    Runs the scheduled-report notebook through papermill, so CI or cron can gate a deployment.
    """
    papermill = _papermill()
    nb_path = _notebook(notebook)
    html_path = _html_path(out)
    parameters = {
        "model": model,
        "baseline_run_ids": list(baseline_run_id) if baseline_run_id else None,
        "repeats": repeats,
        "allow_other_host": allow_other_host,
        "output_path": str(html_path),
        "max_cost_increase_pct": max_cost_increase_pct,
        "max_p99_increase_pct": max_p99_increase_pct,
        "batch_size": batch_size,
        "threads": threads,
        "iterations": iterations,
        "max_seconds": max_seconds,
        "instance_usd_per_h": instance_usd_per_h,
        "requests_per_day": requests_per_day,
        "inject_extra_matmuls": inject_extra_matmuls,
        "db": str(Path(db).resolve()) if db else None,
    }
    executed = _run_notebook(papermill, nb_path, html_path, parameters)
    _print_verdict(html_path, executed)


def _print_verdict(html_path: Path, executed: Path) -> None:
    """The verdict's summary line, and across hosts its warning again on stderr, loudly."""
    import json

    verdict = json.loads(html_path.with_suffix(".json").read_text())
    console.print(verdict["summary"], markup=False)
    warning = (verdict.get("host") or {}).get("warning")
    if warning:
        err_console.print(warning, style="bold yellow", markup=False, soft_wrap=True)
    console.print(f"report: {html_path} (executed notebook: {executed})", markup=False)


def _papermill():
    """The papermill module, or the install command of the ``notebook`` extra as the error."""
    try:
        import papermill
    except ImportError as exc:
        from workbench.errors import MissingExtraError

        raise MissingExtraError("notebook", "papermill", "workbench report") from exc
    return papermill


def _notebook(notebook: str | None) -> Path:
    """The report notebook: ``--notebook``, else the checkout's scheduled_report.ipynb."""
    from workbench.paths import notebooks_dir

    nb_path = Path(notebook) if notebook else notebooks_dir() / "scheduled_report.ipynb"
    if not nb_path.is_file():
        raise ConfigError(
            f"report notebook {nb_path} not found; pass --notebook PATH (the checkout's "
            "notebooks/scheduled_report.ipynb)"
        )
    return nb_path


def _html_path(out: str) -> Path:
    """``--out`` as an absolute .html path whose folder exists."""
    html_path = Path(out).resolve()
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out!r} must end in .html; e.g. --out report/report.html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    return html_path


def _run_notebook(papermill, nb_path: Path, html_path: Path, parameters: dict) -> Path:
    """Execute the notebook next to ``html_path``; a regression it finds exits 1, any other
    failure is one line. Returns the executed notebook's path."""
    from workbench.errors import RegressionError

    executed = html_path.with_suffix(".ipynb")
    # The kernel imports this checkout's workbench, as the command itself does.
    root = Path(__file__).resolve().parents[2]
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(root) not in paths and (root / "workbench").is_dir():
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, paths)])
    console.print(f"running {nb_path.name} (papermill) ...", markup=False)
    try:
        papermill.execute_notebook(
            str(nb_path),
            str(executed),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(html_path.parent),
        )
    except papermill.PapermillExecutionError as exc:
        if exc.ename == "RegressionError":
            raise RegressionError(f"{exc.evalue}; report: {html_path}") from None
        raise ConfigError(
            f"the report notebook failed: {exc.ename}: {exc.evalue}; see {executed}"
        ) from None
    return executed
