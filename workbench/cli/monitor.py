"""``workbench monitor``: scrape a live runtime's ``/metrics``, store each window, flag drift::

    workbench monitor http://127.0.0.1:8080 --bundle bundles/digits-cnn --interval 10s --for 10m

Each window prints one line (requests/s, p99, J/prediction, W, idle share, cost per 1M) and is
stored as a run of kind ``monitor``; at the end a table of the windows and the verdict on the
whole period against the bundle's profile and SLO. ``--check`` exits 1 with one line naming the
drifted figure when a threshold is passed (for cron or CI); a bad URL or bundle is one line and
exit 2.
"""

from __future__ import annotations

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db


def _line(report, w) -> str:
    return (
        f"window {len(report.windows)}: {w.requests_per_s:.4g} req/s, p99 {w.latency_ms_p99:.4g} "
        f"ms, {w.j_per_prediction:.4g} J/prediction, {w.power_w:.4g} W, idle share "
        f"{w.idle_share:.1%}, ${w.usd_per_1m:.4g} per 1M ({w.energy_method or 'no live energy'})"
    )


@app.command()
def monitor(
    url: str = typer.Argument(..., help="The runtime's address, e.g. http://127.0.0.1:8080."),
    *,
    bundle: str = typer.Option(..., "--bundle", help="The bundle that runtime serves."),
    interval: str = typer.Option("10s", "--interval", help="Window length: 10s, 2m or seconds."),
    duration: str = typer.Option("10m", "--for", help="How long to monitor: 10m, 1h or seconds."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when a figure drifted."),
    token: str | None = typer.Option(
        None, "--token", envvar="SERVING_TOKEN", help="Bearer token (or SERVING_TOKEN)."
    ),
    max_energy_increase_pct: float = typer.Option(
        20.0, "--max-energy-increase-pct", help="Largest allowed rise of J/prediction."
    ),
    max_cost_increase_pct: float = typer.Option(
        20.0, "--max-cost-increase-pct", help="Largest allowed rise of cost per 1M predictions."
    ),
    max_p99_increase_pct: float = typer.Option(
        50.0, "--max-p99-increase-pct", help="Largest allowed rise of p99 over the profile's."
    ),
    db: Db = None,
) -> None:
    """Scrape a live runtime, store each window, compare with the bundle; --check exits 1 on drift.

    Drift: J/prediction or cost per 1M beyond their limits over the profile, p99 over the SLO or
    beyond its limit over the profile's p99, judged on the whole period.
    """
    from workbench.errors import RegressionError
    from workbench.monitor import Thresholds
    from workbench.monitor import monitor as run_monitor

    thresholds = Thresholds(max_energy_increase_pct, max_cost_increase_pct, max_p99_increase_pct)
    report = run_monitor(
        url,
        bundle,
        interval_s=interval,
        duration_s=duration,
        token=token,
        thresholds=thresholds,
        store=db,
        on_window=lambda r, w: console.print(_line(r, w), markup=False),
    )
    frame = report.to_frame()
    if not frame.empty:
        print_frame(frame, f"{report.model} at {report.url}", report.SUMMARY_COLUMNS)
    if check and report.drifted:
        raise RegressionError(report.summary())
    console.print(report.summary(), markup=False, soft_wrap=True)
