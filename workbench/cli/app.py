"""The ``workbench`` command: thin, one subcommand per step; errors become one line and exit 2.

``--debug`` (before the subcommand) shows the full traceback instead.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.errors import ConfigError, ConstraintError, WorkbenchError

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
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


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
    "share_of_max_throughput": "share of max",
    "is_knee": "knee",
    "max_batch_size": "max batch",
    "max_queue_delay_ms": "max delay ms",
    "mean_batch_size": "mean batch",
    "utilisation": "util",
    "usd_per_million": "$/1M",
    "kwh_per_million": "kWh/1M",
}


def print_frame(frame, title: str, columns: list[str] | None = None) -> None:
    """Render a DataFrame as a rich table with short headers and readable numbers."""
    table = Table(title=title)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    for col in cols:
        table.add_column(
            HEADERS.get(str(col), str(col)),
            no_wrap=True,
            justify="right" if frame[col].dtype.kind in "if" else "left",
        )
    for _, row in frame[cols].iterrows():
        table.add_row(*[_fmt(row[c]) for c in cols])
    console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, str) and len(value) > 19 and value[4:5] == "-":
        return value[:19].replace("T", " ")  # ISO timestamp to the second
    return "" if value is None else str(value)


@app.command()
def runs(
    model: str | None = typer.Option(None, help="Only runs of this model."),
    kind: str | None = typer.Option(None, help="Only runs of this kind (profile, ...)."),
    sweep: str | None = typer.Option(None, help="Only runs of this sweep id."),
    limit: int = typer.Option(20, help="Show at most this many (newest first)."),
    db: str | None = typer.Option(
        None, help="Run store path (default: WORKBENCH_DB or user data dir)."
    ),
) -> None:
    """List stored runs, newest first."""
    from workbench.measure.store import RunStore

    with RunStore(db) as store:
        frame = store.to_frame(model=model, kind=kind, sweep_id=sweep, limit=limit)
        if frame.empty:
            console.print(f"no runs stored in {store.path}", markup=False)
            return
        cols = [
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
        ]
        print_frame(frame, f"runs in {store.path}", cols)


ENERGY_COLUMNS = ["energy_j_per_item", "power_w_avg", "co2e_g_per_1m", "energy_method"]
PROFILE_COLUMNS = [
    "run_id",
    "backend",
    "device",
    "batch_size",
    "threads",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "latency_ms_max",
    "throughput_items_per_s",
    "memory_peak_mb",
    "flops_per_item",
]


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """``["input_ids=1x128"]`` -> ``{"input_ids": (1, 128)}``; a bare ``1x64`` names no input."""
    if not values:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise ConfigError(
                f"cannot read input shape {value!r}: write NAME=1x3x224x224 (batch first)"
            ) from None
        shapes[name or "*"] = shape
    return shapes


@app.command()
def profile(
    model: str = typer.Argument(
        ..., help="Demo model (digits-cnn, digits-mlp, minilm) or a .onnx path."
    ),
    backend: list[str] = typer.Option(
        ["onnxruntime"], "--backend", "-b", help="onnxruntime or torch; repeat to compare."
    ),
    batch_size: list[int] = typer.Option(
        [1], "--batch-size", "-n", help="Batch size; repeat to sweep."
    ),
    threads: list[int] | None = typer.Option(
        None, "--threads", "-t", help="Intra-op threads; repeat to sweep (default: all cores)."
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    iterations: int = typer.Option(200, help="Timed runs per configuration (at most)."),
    max_seconds: float = typer.Option(10.0, help="Time budget per configuration."),
    warmup: int = typer.Option(10, help="Untimed runs first."),
    input_shape: list[str] | None = typer.Option(
        None, "--input-shape", help="NAME=1x3x224x224 for dynamic ONNX inputs."
    ),
    ops: bool = typer.Option(
        False, "--ops", help="Print the per-operator table of the first configuration."
    ),
    db: str | None = typer.Option(
        None, help="Run store path (default: WORKBENCH_DB or user data dir)."
    ),
    sweep_id: str | None = typer.Option(
        None, help="Resume (or name) a sweep: stored configurations are skipped."
    ),
    energy: bool = typer.Option(
        False, "--energy", help="Also measure J/inference, W and gCO2e (method shown)."
    ),
    region: str | None = typer.Option(
        None, help="Grid region for carbon (ISO code, e.g. FRA, USA; default: world average)."
    ),
    tdp_w: float | None = typer.Option(
        None, help="CPU TDP in W for the estimate where no energy counter exists."
    ),
) -> None:
    """Measure latency percentiles, throughput, memory, FLOPs, per-operator time and energy."""
    from workbench.measure.profiling import sweep
    from workbench.models import load_model

    shapes = parse_input_shapes(input_shape)
    handle = load_model(model, input_shapes=_name_shapes(model, shapes))
    result = sweep(
        handle,
        batch_sizes=batch_size,
        backends=backend,
        threads=threads or [None],
        store=db,
        sweep_id=sweep_id,
        device=device,
        iterations=iterations,
        max_seconds=max_seconds,
        warmup=warmup,
        operators=True,
        energy=energy,
        carbon_region=region,
        tdp_w=tdp_w,
    )
    _report_sweep(handle.name, result, ops)


def _name_shapes(model: str, shapes: dict[str, tuple[int, ...]] | None):
    """Give a bare shape (no NAME=) to the model's only input."""
    if not shapes or "*" not in shapes:
        return shapes
    from workbench.models import load_model

    names = [s.name for s in load_model(model).inputs]
    if len(names) != 1:
        raise ConfigError(f"{model} has inputs {names}: write --input-shape NAME=1x...")
    return {names[0]: shapes["*"]}


def _report_sweep(name: str, result, ops: bool) -> None:
    frame = result.to_frame()
    if not frame.empty:
        print_frame(frame, f"{name}: latency (ms, measured), throughput (items/s)", PROFILE_COLUMNS)
        if "energy_method" in frame.columns:
            print_frame(
                frame,
                f"{name}: energy per inference (see the method column)",
                ["run_id", "backend", "batch_size", *ENERGY_COLUMNS, "energy_meter"],
            )
            for note in sorted({w for w in frame.get("energy_warnings", []) if w}):
                console.print(f"[yellow]energy warning[/]: {note}", highlight=False)
    if result.resumed_run_ids:
        console.print(
            f"resumed sweep {result.sweep_id}: {len(result.resumed_run_ids)} "
            "configurations were already stored"
        )
    if ops and result.profiles:
        first = result.profiles[0]
        print_frame(
            first.operators_frame().head(15),
            f"per-operator time, {first.backend} batch {first.batch_size}",
        )
    if result.interrupted:
        console.print(
            f"[yellow]stopped[/]: {len(result.profiles)} finished configurations kept; "
            f"resume with --sweep-id {result.sweep_id}"
        )
        raise typer.Exit(130)


@app.command()
def demo(
    model: str = typer.Option("digits-cnn", help="Demo model to run the main job on."),
    out: str = typer.Option("workbench-demo", help="Folder for the results (CSV, JSON)."),
    db: str | None = typer.Option(
        None, help="Run store path (default: WORKBENCH_DB or user data dir)."
    ),
    max_seconds: float = typer.Option(3.0, help="Time budget per configuration."),
) -> None:
    """The main job on a built-in demo model: load or train it, profile it, report what it found."""
    from pathlib import Path

    from workbench.demo import run_demo

    summary = run_demo(model, Path(out), db=db, max_seconds=max_seconds, console=console)
    print_frame(summary.table, f"{model}: measured on this machine", PROFILE_COLUMNS)
    print_frame(
        summary.table,
        f"{model}: energy per inference (see the method column)",
        ["run_id", "backend", "batch_size", *ENERGY_COLUMNS],
    )
    for line in summary.findings:
        console.print(f"- {line}", markup=False)
    console.print(
        f"results: {summary.out_dir} (profiles.csv, summary.json); run store: {summary.db_path}"
    )


def _parse_run_ids(values: list[str]) -> dict[str, int]:
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
    run_id: list[str] | None = typer.Option(
        None,
        "--run-id",
        help="Measured figures from the run store: SCENARIO=ID, or ID for the baseline.",
    ),
    out: str | None = typer.Option(
        None, help="Directory for CSV tables and charts (HTML with inlined libraries, and SVG)."
    ),
    sensitivity_pct: float = typer.Option(
        20.0, "--sensitivity-pct", help="Vary each baseline input by this percent (tornado)."
    ),
    db: str | None = typer.Option(None, help="Run store (default: WORKBENCH_DB or user data)."),
) -> None:
    """Lifecycle cost of each scenario: training against inference in money, energy and carbon."""
    from pathlib import Path

    import pandas as pd

    from workbench.cost import model as costmod
    from workbench.cost.scenarios import load_scenarios

    store = None
    if run_id or db:
        from workbench.measure.store import RunStore

        store = RunStore(db)
    sset = load_scenarios(scenario_file, store=store, run_ids=_parse_run_ids(run_id or []))

    table = costmod.compare_scenarios(sset.scenarios, baseline=sset.baseline)
    print_frame(
        table,
        "lifecycle cost per scenario",
        ["scenario", "training_cost_usd", "inference_cost_usd", "total_cost_usd",
         "inference_share", "break_even_day", "inference_usd_per_million", "method"],
    )  # fmt: skip
    print_frame(
        table,
        f"energy, carbon and savings against {sset.baseline}",
        ["scenario", "total_energy_kwh", "total_co2_t", "saved_cost_pct", "saved_energy_pct",
         "saved_co2_pct", "method"],
    )  # fmt: skip
    base = costmod.compute_cost(sset.scenarios[sset.baseline])
    print_frame(base.summary(), f"{sset.baseline}: training against inference")
    sens = costmod.sensitivity(sset.scenarios[sset.baseline], pct=sensitivity_pct)
    print_frame(
        sens.head(8),
        f"{sset.baseline}: what moves the total most (+-{sensitivity_pct:g} %)",
        ["input", "base_value", "low_output", "high_output", "swing"],
    )
    if out is None:
        return

    from workbench.cost import charts as cost_charts

    out_dir = Path(out)
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


@app.command()
def batching(
    model: str = typer.Argument(..., help="Demo model or .onnx path (ignored with --sweep-id)."),
    rate: float = typer.Option(200.0, help="Offered load, requests/s (Poisson)."),
    duration_s: float = typer.Option(30.0, "--duration-s", help="Simulated seconds of traffic."),
    trace: str | None = typer.Option(None, help="CSV of arrival timestamps instead of Poisson."),
    max_batch: int = typer.Option(8, "--max-batch", help="Most rows in one batch."),
    max_delay_ms: float = typer.Option(0.0, "--max-delay-ms", help="Longest wait to fill one."),
    instances: int = typer.Option(1, help="Model instances serving the queue."),
    queue_limit: int | None = typer.Option(None, help="Requests allowed to wait; more drop."),
    slo_p99_ms: float | None = typer.Option(
        None, "--slo-p99-ms", help="Also find the cheapest hardware meeting this p99 at --rate."
    ),
    batch_size: list[int] = typer.Option(
        [1, 2, 4, 8, 16, 32], "--batch-size", "-n", help="Batch sizes to measure; repeat."
    ),
    threads: int | None = typer.Option(None, help="Intra-op threads (default: all cores)."),
    max_seconds: float = typer.Option(1.0, help="Time budget per batch size."),
    sweep_id: str | None = typer.Option(None, help="Use this stored sweep; measure nothing."),
    hardware: str | None = typer.Option(None, help="Hardware table CSV (default: shipped)."),
    seed: int = typer.Option(0, help="Seed of the generated trace."),
    db: str | None = typer.Option(None, help="Run store (default: WORKBENCH_DB or user data)."),
) -> None:
    """Batch sweep (knee marked), then predict latency and throughput under load by simulation."""
    from dataclasses import replace

    import pandas as pd

    from workbench.plan.batch_curve import batch_sweep, sweep_from_store
    from workbench.plan.simulator import ServerConfig, simulate
    from workbench.plan.traces import poisson_trace, read_trace_csv

    config = ServerConfig(max_batch, max_delay_ms, queue_limit, instances)  # fails before measuring
    arrivals = read_trace_csv(trace) if trace else poisson_trace(rate, duration_s, seed=seed)
    if sweep_id is not None:
        result = sweep_from_store(db, sweep_id)
    else:
        result = batch_sweep(
            model, batch_sizes=batch_size, threads=threads, store=db, max_seconds=max_seconds
        )
    print_frame(
        result.to_frame(),
        f"{result.model}: batch sweep {result.sweep_id} (measured; knee = {result.knee_rule})",
        ["batch_size", "threads", "latency_ms_p50", "latency_ms_p99", "throughput_items_per_s",
         "share_of_max_throughput", "is_knee"],
    )  # fmt: skip
    rows = [
        simulate(arrivals, result.curve, cfg).to_frame()
        for cfg in (replace(config, max_batch_size=1), config)
    ]
    print_frame(
        pd.concat(rows, ignore_index=True),
        f"predicted for {arrivals.n_requests} requests ({arrivals.source}); estimated",
        ["max_batch_size", "max_queue_delay_ms", "instances", "latency_ms_p50", "latency_ms_p99",
         "throughput_items_per_s", "utilisation", "mean_batch_size", "dropped"],
    )  # fmt: skip
    if slo_p99_ms is None:
        return
    from workbench.plan.sizing import load_hardware, right_size

    sized = right_size(
        result.curve, rate, slo_p99_ms, hardware=load_hardware(hardware), server=config, seed=seed
    )
    frame = sized.to_frame()
    print_frame(
        frame[frame["feasible"]].head(8),
        f"cheapest hardware for {rate:g} req/s at p99 <= {slo_p99_ms:g} ms (estimated)",
        ["hardware", "threads", "instances", "machines", "usd_per_million", "kwh_per_million",
         "latency_ms_p99", "utilisation", "binding"],
    )  # fmt: skip
    for name, reason in frame[~frame["feasible"]].groupby("hardware")["reason"].first().items():
        if not reason.startswith("not simulated"):
            console.print(f"- {name}: {reason}", markup=False)
    if sized.best is None:
        console.print("no configuration meets the target; see the reasons above", markup=False)
    else:
        b = sized.best
        console.print(
            f"best: {b.machines} x {b.hardware}, {b.instances} instance(s) x {b.threads} "
            f"thread(s): ${b.usd_per_million:.4g} and {b.kwh_per_million:.4g} kWh per 1M "
            f"inferences; binding constraint: {sized.binding}",
            markup=False,
        )


@app.command("export")
def export_bundle(
    model: str = typer.Argument(..., help="Demo model (digits-cnn, ...) or a .onnx path."),
    out_dir: str = typer.Argument(..., help="Folder to write the bundle to (must not exist)."),
    batching: bool = typer.Option(True, help="Adaptive batching across concurrent requests."),
    max_batch_rows: int = typer.Option(32, help="Most rows (items) per model run."),
    max_delay_ms: float = typer.Option(2.0, help="Most a batch waits for requests in flight."),
    max_queue_rows: int = typer.Option(1024, help="Queue bound; beyond it: 503 + Retry-After."),
    threads: int = typer.Option(1, help="ONNX Runtime intra-op threads per instance."),
    instances: int = typer.Option(1, help="Model instances (sessions), one worker each."),
    cache: bool = typer.Option(False, help="Response cache keyed on the input bytes."),
    cache_entries: int = typer.Option(1024, help="Most cached responses (LRU)."),
    cache_ttl_s: float = typer.Option(60.0, help="Seconds a cached response stays valid."),
    cascade_large: str | None = typer.Option(
        None, help="Serve MODEL first and escalate unsure rows to this larger model."
    ),
    threshold: float = typer.Option(0.9, help="Cascade: escalate rows below this confidence."),
    confidence: str = typer.Option("max_softmax", help="Cascade confidence: max_softmax|margin."),
    slo_p99_ms: float | None = typer.Option(None, help="p99 objective for the alert rule."),
    monthly_budget_usd: float | None = typer.Option(None, help="Budget for the cost alerts."),
    instance_usd_per_h: float | None = typer.Option(None, help="Price of one instance-hour."),
    min_replicas: int | None = typer.Option(None, help="Scale-out: fewest replicas (1)."),
    max_replicas: int | None = typer.Option(
        None, help="Scale-out: most replicas (default: what the budget buys, else 4)."
    ),
    target_ongoing_requests: float | None = typer.Option(
        None, help="Scale-out: requests in flight per replica that trigger one more."
    ),
    max_ongoing_requests: int | None = typer.Option(
        None, help="Scale-out: most requests in flight per replica."
    ),
    run_id: int | None = typer.Option(None, help="Record this stored profile's figures."),
    name: str | None = typer.Option(None, help="Served model name (default: the model's)."),
    tar: bool = typer.Option(False, help="Also write OUT_DIR.tar.gz."),
    overwrite: bool = typer.Option(False, help="Replace an existing OUT_DIR."),
    db: str | None = typer.Option(None, help="Run store (default: WORKBENCH_DB or user data)."),
) -> None:
    """Write a serving bundle: ONNX, manifest, checksums, runtime, Docker/Kubernetes/Ray files."""
    from workbench.ship.bundle import export

    info = export(
        None if cascade_large else model,
        out_dir,
        batching={
            "enabled": batching,
            "max_batch_rows": max_batch_rows,
            "max_delay_ms": max_delay_ms,
            "max_queue_rows": max_queue_rows,
        },
        threads={"intra_op": threads, "instances": instances},
        cache={"enabled": cache, "max_entries": cache_entries, "ttl_s": cache_ttl_s},
        cascade=(model, cascade_large, threshold) if cascade_large else None,
        confidence=confidence,
        scaling={
            key: value
            for key, value in (
                ("min_replicas", min_replicas),
                ("max_replicas", max_replicas),
                ("target_ongoing_requests", target_ongoing_requests),
                ("max_ongoing_requests", max_ongoing_requests),
            )
            if value is not None
        },
        slo_p99_ms=slo_p99_ms,
        monthly_budget_usd=monthly_budget_usd,
        instance_usd_per_h=instance_usd_per_h,
        profile=run_id,
        store=db,
        name=name,
        tar=tar,
        overwrite=overwrite,
    )
    m = info.manifest
    console.print(
        f"wrote bundle {m.name!r} to {info.path} ({len(info.checksums)} files)", markup=False
    )
    for mf in m.models:
        ins = ", ".join(f"{t.name}{list(t.shape)} {t.datatype}" for t in mf.inputs)
        console.print(f"- {mf.role}: {mf.file} ({ins})", markup=False)
    if m.cost.usd_per_million is not None:
        console.print(
            f"- cost per 1M predictions: {m.cost.usd_per_million:.4g} USD ({m.cost.method})",
            markup=False,
        )
    if info.archive is not None:
        console.print(f"- archive: {info.archive}", markup=False)
    console.print(f"serve it: python -m serving {info.path} --port 8080", markup=False)


OPTIMIZE_COLUMNS = [
    "variant",
    "backend",
    "batch_size",
    "threads",
    "quality_drop",
    "nn_agreement",
    "latency_ms_p99",
    "throughput_items_per_s",
    "energy_j_per_item",
    "energy_method",
    "size_mb",
    "memory_mb",
]


@app.command()
def optimize(
    model: str = typer.Argument(
        ..., help="Demo model (digits-cnn, digits-mlp, minilm) or a .onnx path with --held-out."
    ),
    held_out: str | None = typer.Option(
        None, "--held-out", help="Held-out data (.npz): the inputs by name, and 'labels'."
    ),
    max_quality_drop: str = typer.Option(
        "1%", "--max-quality-drop", help="Largest quality drop: 1% (or 0.01)."
    ),
    slo_p99: str | None = typer.Option(
        None, "--slo-p99", help="p99 latency SLO per call, e.g. 20ms, 0.5s."
    ),
    memory_cap_mb: float | None = typer.Option(
        None, "--memory-cap-mb", help="Memory cap in MB (model size + measured peak growth)."
    ),
    min_nn_agreement: str | None = typer.Option(
        None, "--min-nn-agreement", help="Encoders: least nearest-neighbour agreement, e.g. 90%."
    ),
    strategy: str = typer.Option("halving", help="grid or halving (successive halving)."),
    budget_s: float | None = typer.Option(
        None, "--budget-s", help="Stop after this many seconds, keeping what finished."
    ),
    objective: str = typer.Option("energy", help="energy, throughput, latency or size."),
    variant: list[str] | None = typer.Option(
        None, "--variant", "-v", help="Only these variants (repeat); default: all."
    ),
    batch_size: list[int] | None = typer.Option(
        None, "--batch-size", "-n", help="Batch sizes to try (repeat); default 1, 8, 32."
    ),
    threads: list[int] | None = typer.Option(
        None, "--threads", "-t", help="Thread counts to try (repeat); default 1 and all cores."
    ),
    measure_seconds: float = typer.Option(
        1.0, help="Timing and energy window of a final measurement, per configuration."
    ),
    top: int = typer.Option(15, help="Show this many configurations (best first)."),
    db: str | None = typer.Option(
        None, help="Run store path (default: WORKBENCH_DB or user data dir)."
    ),
) -> None:
    """Search compression variants x batch size x threads; recommend one under the constraints.

    Every variant's quality is measured on held-out data, then its latency, throughput, memory
    and energy on this machine.
    """
    from workbench.compress.search.runner import OBJECTIVES, parse_fraction, parse_ms
    from workbench.compress.search.runner import optimize as run_optimize

    result = run_optimize(
        model,
        data=None if held_out is None else _held_out(held_out),
        max_quality_drop=parse_fraction(max_quality_drop, "--max-quality-drop"),
        slo_p99_ms=None if slo_p99 is None else parse_ms(slo_p99, "--slo-p99"),
        memory_cap_mb=memory_cap_mb,
        min_nn_agreement=None
        if min_nn_agreement is None
        else parse_fraction(min_nn_agreement, "--min-nn-agreement"),
        variants=variant or None,
        batch_sizes=batch_size or (1, 8, 32),
        threads=threads or None,
        strategy=strategy,
        objective=objective,
        budget_s=budget_s,
        measure_seconds=measure_seconds,
        store=db,
    )
    frame = result.to_frame()
    if not frame.empty:
        key, sign = OBJECTIVES[objective]
        best = frame.sort_values(key, ascending=sign > 0).head(top)
        title = f"{model}: best {len(best)} of {len(frame)} configurations (measured here)"
        print_frame(best, title, OPTIMIZE_COLUMNS)
        title = "Pareto frontier (quality drop, p99, J/inference, size)"
        print_frame(result.frontier(), title, OPTIMIZE_COLUMNS)
    for item in result.skipped:
        console.print(
            f"skipped {item['variant']} ({item['stage']}): {item['reason']}", markup=False
        )
    if result.stopped or result.interrupted:
        console.print(f"stopped early ({result.stopped or 'interrupted'}): results so far kept")
    console.print(
        f"search {result.search_id}: {result.seconds:.0f} s; run store: "
        f"{db or 'default'} (kind variant / optimize)",
        markup=False,
    )
    if result.recommendation is None:
        raise ConstraintError(result.unmet or "no recommendation")
    console.print(Text.assemble(("recommended: ", "bold green"), result.recommendation.reason))


def _held_out(path: str) -> dict:
    """``--held-out data.npz``: arrays keyed by input name, labels under ``labels``."""
    import numpy as np

    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read --held-out {path!r} ({exc}); save it with numpy.savez(path, "
            "INPUT_NAME=X, labels=y)"
        ) from exc
    return {"held_out": arrays, "labels": arrays.pop("labels", None)}


@app.command()
def report(
    model: str = typer.Argument("digits-cnn", help="Demo model or .onnx path to profile."),
    baseline_run_id: int | None = typer.Option(
        None, "--baseline-run-id", help="Run to compare with (none: this run becomes it)."
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
    db: str | None = typer.Option(None, help="Run store (default: WORKBENCH_DB or user data)."),
) -> None:
    """Profile, compare with a baseline run, write an HTML report; exit 1 on a cost/p99 regression.

    Runs the scheduled-report notebook through papermill, so CI or cron can gate a deployment.
    """
    import json
    import os
    from pathlib import Path

    from workbench.errors import RegressionError

    try:
        import papermill
    except ImportError as exc:
        from workbench.errors import MissingExtraError

        raise MissingExtraError("notebook", "papermill", "workbench report") from exc
    from workbench.paths import notebooks_dir

    nb_path = Path(notebook) if notebook else notebooks_dir() / "scheduled_report.ipynb"
    if not nb_path.is_file():
        raise ConfigError(
            f"report notebook {nb_path} not found; pass --notebook PATH (the checkout's "
            "notebooks/scheduled_report.ipynb)"
        )
    html_path = Path(out).resolve()
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out!r} must end in .html; e.g. --out report/report.html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    executed = html_path.with_suffix(".ipynb")
    # The kernel imports this checkout's workbench, as the command itself does.
    root = Path(__file__).resolve().parents[2]
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(root) not in paths and (root / "workbench").is_dir():
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, paths)])
    parameters = {
        "model": model,
        "baseline_run_id": baseline_run_id,
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
    verdict = json.loads(html_path.with_suffix(".json").read_text())
    console.print(verdict["summary"], markup=False)
    console.print(f"report: {html_path} (executed notebook: {executed})", markup=False)


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
