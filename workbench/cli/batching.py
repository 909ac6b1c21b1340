"""``workbench batching``: the batch sweep of a model (knee marked), its latency and throughput
under load predicted by simulation, and with ``--slo-p99-ms`` the cheapest hardware meeting it::

    workbench batching digits-mlp --rate 2000 --max-batch-rows 16 --slo-p99-ms 10

The server knobs (``--max-batch-rows``, ``--max-delay-ms``, ``--max-queue-rows``,
``--instances``) are ``workbench export``'s, with the bundle manifest's defaults.
"""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import (
    INSTANCES,
    MAX_BATCH_ROWS,
    MAX_DELAY_MS,
    MAX_QUEUE_ROWS,
    Db,
    Instances,
    MaxBatchRows,
    MaxDelayMs,
    MaxQueueRows,
    old_flag,
    renamed,
)
from workbench.errors import ConfigError


@app.command()
def batching(
    model: str = typer.Argument(..., help="Demo model or .onnx path (ignored with --sweep-id)."),
    *,
    rate: float = typer.Option(200.0, help="Offered load, requests/s (Poisson)."),
    duration_s: float = typer.Option(30.0, "--duration-s", help="Simulated seconds of traffic."),
    trace: str | None = typer.Option(None, help="CSV of arrival timestamps instead of Poisson."),
    max_batch_rows: MaxBatchRows = MAX_BATCH_ROWS,
    max_delay_ms: MaxDelayMs = MAX_DELAY_MS,
    max_queue_rows: MaxQueueRows = MAX_QUEUE_ROWS,
    instances: Instances = INSTANCES,
    slo_p99_ms: float | None = typer.Option(
        None, "--slo-p99-ms", help="Also find the cheapest hardware meeting this p99 at --rate."
    ),
    batch_size: Annotated[
        list[int], typer.Option("--batch-size", "-n", help="Batch sizes to measure; repeat.")
    ] = (1, 2, 4, 8, 16, 32),
    threads: int | None = typer.Option(None, help="Intra-op threads (default: all cores)."),
    max_seconds: float = typer.Option(1.0, help="Time budget per batch size."),
    sweep_id: str | None = typer.Option(None, help="Use this stored sweep; measure nothing."),
    hardware: str | None = typer.Option(None, help="Hardware table CSV (default: shipped)."),
    seed: int = typer.Option(0, help="Seed of the generated trace."),
    db: Db = None,
    max_batch: int | None = old_flag("--max-batch"),
    queue_limit: int | None = old_flag("--queue-limit"),
) -> None:
    """Batch sweep (knee marked), then predict latency and throughput under load by simulation."""
    from workbench.plan.batch_curve import batch_sweep, sweep_from_store
    from workbench.plan.simulator import ServerConfig
    from workbench.plan.traces import poisson_trace, read_trace_csv

    config = ServerConfig(  # fails before measuring
        max_batch_rows=renamed(max_batch, "--max-batch", "--max-batch-rows", max_batch_rows),
        max_delay_ms=max_delay_ms,
        max_queue_rows=renamed(queue_limit, "--queue-limit", "--max-queue-rows", max_queue_rows),
        instances=instances,
    )
    arrivals = read_trace_csv(trace) if trace else poisson_trace(rate, duration_s, seed=seed)
    if sweep_id is not None:
        result = sweep_from_store(db, sweep_id)
    else:
        _check_sizes_reach(batch_size, config.max_batch_rows)
        result = batch_sweep(
            model, batch_sizes=batch_size, threads=threads, store=db, max_seconds=max_seconds
        )
    print_frame(
        result.to_frame(),
        f"{result.model}: batch sweep {result.sweep_id} (measured; knee = {result.knee_rule})",
        result.SUMMARY_COLUMNS,
    )
    _print_simulation(arrivals, result.curve, config)
    if slo_p99_ms is not None:
        _print_sizing(result.curve, rate, slo_p99_ms, hardware=hardware, server=config, seed=seed)


def _check_sizes_reach(batch_sizes: list[int], max_batch_rows: int) -> None:
    """The simulation needs the curve up to ``max_batch_rows``: say so before measuring."""
    if batch_sizes and max(batch_sizes) < max_batch_rows:
        raise ConfigError(
            f"--max-batch-rows {max_batch_rows} is above the largest batch size measured "
            f"({max(batch_sizes)}): add -n {max_batch_rows} or pass --max-batch-rows "
            f"{max(batch_sizes)}"
        )


def _print_simulation(arrivals, curve, config) -> None:
    """The predicted figures without batching (one row per batch) and with ``config``."""
    from dataclasses import replace

    import pandas as pd

    from workbench.plan.simulator import SimulationResult, simulate

    rows = [
        simulate(arrivals, curve, cfg).to_frame()
        for cfg in (replace(config, max_batch_rows=1), config)
    ]
    print_frame(
        pd.concat(rows, ignore_index=True),
        f"predicted for {arrivals.n_requests} requests ({arrivals.source}); estimated",
        SimulationResult.SUMMARY_COLUMNS,
    )


def _print_sizing(curve, rate: float, slo_p99_ms: float, *, hardware, server, seed: int) -> None:
    """The cheapest feasible hardware for ``rate`` at ``slo_p99_ms``, and why others fail."""
    from workbench.plan.sizing import load_hardware, right_size

    sized = right_size(
        curve, rate, slo_p99_ms, hardware=load_hardware(hardware), server=server, seed=seed
    )
    frame = sized.to_frame()
    print_frame(
        frame[frame["feasible"]].head(8),
        f"cheapest hardware for {rate:g} req/s at p99 <= {slo_p99_ms:g} ms (estimated)",
        sized.SUMMARY_COLUMNS,
    )
    for name, reason in frame[~frame["feasible"]].groupby("hardware")["reason"].first().items():
        if not reason.startswith("not simulated"):
            console.print(f"- {name}: {reason}", markup=False)
    if sized.best is None:
        console.print("no configuration meets the target; see the reasons above", markup=False)
        return
    b = sized.best
    console.print(
        f"best: {b.machines} x {b.hardware}, {b.instances} instance(s) x {b.threads} "
        f"thread(s): ${b.usd_per_million:.4g} and {b.kwh_per_million:.4g} kWh per 1M "
        f"inferences; binding constraint: {sized.binding}",
        markup=False,
    )
