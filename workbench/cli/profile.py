"""``workbench profile``: measure latency percentiles, throughput, memory, FLOPs, per-operator time
and energy of a model, one configuration per backend x batch size x threads::

    workbench profile digits-cnn -b onnxruntime -b torch -n 1 -n 32 --energy

The input-shape syntax of ``--input-shape``:

>>> parse_input_shapes(["input_ids=1x128", "1x64"])
{'input_ids': (1, 128), '*': (1, 64)}
"""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli.app import app, console, print_frame
from workbench.cli.options import Db
from workbench.errors import ConfigError


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
    *,
    backend: Annotated[
        list[str],
        typer.Option("--backend", "-b", help="onnxruntime or torch; repeat to compare."),
    ] = ("onnxruntime",),
    batch_size: Annotated[
        list[int], typer.Option("--batch-size", "-n", help="Batch size; repeat to sweep.")
    ] = (1,),
    threads: Annotated[
        list[int] | None,
        typer.Option(
            "--threads", "-t", help="Intra-op threads; repeat to sweep (default: all cores)."
        ),
    ] = None,
    device: str = typer.Option("cpu", help="cpu or cuda."),
    iterations: int = typer.Option(200, help="Timed runs per configuration (at most)."),
    max_seconds: float = typer.Option(10.0, help="Time budget per configuration."),
    warmup: int = typer.Option(10, help="Untimed runs first."),
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="NAME=1x3x224x224 for dynamic ONNX inputs."),
    ] = None,
    ops: bool = typer.Option(
        False, "--ops", help="Print the per-operator table of the first configuration."
    ),
    db: Db = None,
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
    """Print a sweep's tables (latency, energy, operators); exit 130 if it was stopped."""
    from workbench.measure.profiling import Profile

    frame = result.to_frame()
    if not frame.empty:
        title = f"{name}: latency (ms, measured), throughput (items/s)"
        print_frame(frame, title, Profile.SUMMARY_COLUMNS)
        if "energy_method" in frame.columns:
            print_frame(
                frame,
                f"{name}: energy per inference (see the method column)",
                ["run_id", "backend", "batch_size", *Profile.ENERGY_COLUMNS, "energy_meter"],
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
