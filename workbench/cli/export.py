"""``workbench export``: write a serving bundle (ONNX, manifest, checksums, runtime, Docker,
Kubernetes and Ray files) for a model, its batching, threads, cache, cascade, scaling and
objectives set from the options::

    workbench export digits-mlp bundles/digits-mlp --max-batch-rows 16 --slo-p99-ms 15 --tar

The server knobs are named, counted and defaulted as in the manifest (:mod:`serving.manifest`)
and as ``workbench batching`` plans them.
"""

from __future__ import annotations

import typer

from workbench.cli.app import app, console
from workbench.cli.options import (
    CACHE_MAX_ENTRIES,
    CACHE_TTL_S,
    INSTANCES,
    MAX_BATCH_ROWS,
    MAX_DELAY_MS,
    MAX_QUEUE_ROWS,
    THREADS_PER_INSTANCE,
    CacheMaxEntries,
    CacheTtlS,
    Db,
    Instances,
    MaxBatchRows,
    MaxDelayMs,
    MaxQueueRows,
    old_flag,
    renamed,
)


@app.command("export")
def export_bundle(
    model: str = typer.Argument(..., help="Demo model (digits-cnn, ...) or a .onnx path."),
    out_dir: str = typer.Argument(..., help="Folder to write the bundle to (must not exist)."),
    *,
    batching: bool = typer.Option(True, help="Adaptive batching across concurrent requests."),
    max_batch_rows: MaxBatchRows = MAX_BATCH_ROWS,
    max_delay_ms: MaxDelayMs = MAX_DELAY_MS,
    max_queue_rows: MaxQueueRows = MAX_QUEUE_ROWS,
    threads: int = typer.Option(
        THREADS_PER_INSTANCE, help="ONNX Runtime intra-op threads per instance."
    ),
    instances: Instances = INSTANCES,
    cache: bool = typer.Option(False, help="Response cache keyed on the input bytes."),
    cache_max_entries: CacheMaxEntries = CACHE_MAX_ENTRIES,
    cache_ttl_s: CacheTtlS = CACHE_TTL_S,
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
    small_run_id: int | None = typer.Option(None, help="Cascade: the small model's profile run."),
    large_run_id: int | None = typer.Option(None, help="Cascade: the large model's profile run."),
    name: str | None = typer.Option(None, help="Served model name (default: the model's)."),
    tar: bool = typer.Option(False, help="Also write OUT_DIR.tar.gz."),
    overwrite: bool = typer.Option(False, help="Replace an existing OUT_DIR."),
    db: Db = None,
    cache_entries: int | None = old_flag("--cache-entries"),
) -> None:
    """Write a serving bundle: ONNX, manifest, checksums, runtime, Docker/Kubernetes/Ray files."""
    from workbench.ship.bundle import export

    scaling = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target_ongoing_requests,
        "max_ongoing_requests": max_ongoing_requests,
    }
    cache_max_entries = renamed(
        cache_entries, "--cache-entries", "--cache-max-entries", cache_max_entries
    )
    info = export(
        None if cascade_large else model,
        out_dir,
        batching={
            "enabled": batching,
            "max_batch_rows": max_batch_rows,
            "max_delay_ms": max_delay_ms,
            "max_queue_rows": max_queue_rows,
        },
        threads={"threads": threads, "instances": instances},
        cache={"enabled": cache, "max_entries": cache_max_entries, "ttl_s": cache_ttl_s},
        cascade=(model, cascade_large, threshold) if cascade_large else None,
        confidence=confidence,
        scaling={key: value for key, value in scaling.items() if value is not None},
        slo_p99_ms=slo_p99_ms,
        monthly_budget_usd=monthly_budget_usd,
        instance_usd_per_h=instance_usd_per_h,
        profile=run_id,
        profiles=_by_role(small_run_id, large_run_id),
        store=db,
        name=name,
        tar=tar,
        overwrite=overwrite,
    )
    _print_bundle(info)


def _by_role(small_run_id: int | None, large_run_id: int | None) -> dict[str, int] | None:
    """A cascade's per-model run ids; one without the other is refused by ``export``."""
    given = {"small": small_run_id, "large": large_run_id}
    return {role: rid for role, rid in given.items() if rid is not None} or None


def _print_bundle(info) -> None:
    """What was written: the bundle, its models and inputs, the cost, and how to serve it."""
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
