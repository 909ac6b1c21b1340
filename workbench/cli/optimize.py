"""``workbench optimize``: search compression variants x batch size x threads, judge each
variant's quality on held-out data, measure it here, and recommend one under the constraints::

    workbench optimize digits-cnn --max-quality-drop 1% --slo-p99-ms 20 --objective energy
"""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db, old_flag, renamed
from workbench.errors import ConfigError, ConstraintError


@app.command()
def optimize(
    model: str = typer.Argument(
        ..., help="Demo model (digits-cnn, digits-mlp, minilm) or a .onnx path with --held-out."
    ),
    *,
    held_out: str | None = typer.Option(
        None, "--held-out", help="Held-out data (.npz): the inputs by name, and 'labels'."
    ),
    max_quality_drop: str = typer.Option(
        "1%", "--max-quality-drop", help="Largest quality drop: 1% (or 0.01)."
    ),
    slo_p99_ms: float | None = typer.Option(
        None, "--slo-p99-ms", help="p99 latency SLO per call, in ms."
    ),
    memory_cap_mb: float | None = typer.Option(
        None, "--memory-cap-mb", help="Memory cap in MB (model size + measured peak growth)."
    ),
    min_nn_agreement: str | None = typer.Option(
        None, "--min-nn-agreement", help="Encoders: least nearest-neighbour agreement, e.g. 90%."
    ),
    strategy: str = typer.Option("halving", help="grid or halving (successive halving)."),
    budget_s: float | None = typer.Option(
        None, "--budget-s", help="Stop the search after this many seconds, keeping what finished."
    ),
    objective: str = typer.Option("energy", help="energy, throughput, latency or size."),
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", "-v", help="Only these variants (repeat); default: all."),
    ] = None,
    batch_size: Annotated[
        list[int] | None,
        typer.Option("--batch-size", "-n", help="Batch sizes to try (repeat); default 1, 8, 32."),
    ] = None,
    threads: Annotated[
        list[int] | None,
        typer.Option(
            "--threads", "-t", help="Thread counts to try (repeat); default 1 and all cores."
        ),
    ] = None,
    measure_seconds: float = typer.Option(
        1.0, help="Timing and energy window of a final measurement, per configuration."
    ),
    top: int = typer.Option(15, help="Show this many configurations (best first)."),
    db: Db = None,
    slo_p99: str | None = old_flag("--slo-p99"),
) -> None:
    """Search compression variants x batch size x threads; recommend one under the constraints.

    Every variant's quality is measured on held-out data, then its latency, throughput, memory
    and energy on this machine.
    """
    from workbench.compress.search import optimize as run_optimize
    from workbench.compress.search import parse_fraction, parse_ms

    slo_ms = renamed(slo_p99, "--slo-p99", "--slo-p99-ms", slo_p99_ms)  # parse_ms reads both
    slo_flag = "--slo-p99-ms" if slo_p99 is None else "--slo-p99"
    result = run_optimize(
        model,
        data=None if held_out is None else _held_out(held_out),
        max_quality_drop=parse_fraction(max_quality_drop, "--max-quality-drop"),
        slo_p99_ms=None if slo_ms is None else parse_ms(slo_ms, slo_flag),
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
    _print_search(result, model, objective, top, db)


def _print_search(result, model: str, objective: str, top: int, db: str | None) -> None:
    """The best configurations, the frontier, what was skipped and the recommendation (or the
    constraint that nothing met, as an error)."""
    from rich.text import Text

    from workbench.compress.search import OBJECTIVES

    frame = result.to_frame()
    if not frame.empty:
        key, sign = OBJECTIVES[objective]
        best = frame.sort_values(key, ascending=sign > 0).head(top)
        title = f"{model}: best {len(best)} of {len(frame)} configurations (measured here)"
        print_frame(best, title, result.SUMMARY_COLUMNS)
        title = "Pareto frontier (quality drop, p99, J/inference, size)"
        print_frame(result.frontier(), title, result.SUMMARY_COLUMNS)
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
    print_attribution(result.attribution)


def print_attribution(attribution, *, summary: bool = True) -> None:
    """The recommendation's gain over the baseline by step (runtime, threads, batch size,
    compression; each configuration measured), the product check and (``summary``) the one-line
    summary."""
    if attribution is None:
        return
    print_frame(
        attribution.to_frame(),
        "where the gain comes from: one change per step, each configuration measured",
        attribution.SUMMARY_COLUMNS,
    )
    console.print(attribution.check_line(), markup=False)
    if summary:
        console.print(attribution.summary(), markup=False)


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
