"""``workbench demo``: the main job end to end on a built-in demo model.

Load (training on first use) -> profile PyTorch eager and ONNX Runtime at batch 1 and 32, with
energy per inference (measured where the machine has counters, else estimated, and labelled;
:func:`profile_step`) -> report the fastest and the most frugal configuration against the
PyTorch batch-1 baseline (:func:`profile_findings`) -> compress: a short search over quantised
variants, each judged on held-out data, then timed and metered, with the winner's gain over the
baseline split into runtime, threads, batch size and compression, each step measured
(:func:`compress_step`, :mod:`workbench.compress.search.attribution`) -> write the results
(:func:`write_results`).

Example
-------
>>> summary = run_demo("digits-cnn", out_dir=Path("workbench-demo"))  # doctest: +SKIP
>>> print("\\n".join(summary.findings))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.measure.profiling import SweepResult, sweep
from workbench.measure.store import RunStore
from workbench.models import load_model

if TYPE_CHECKING:  # the compress step imports the search when it runs, not on import
    from workbench.compress.search.attribution import GainAttribution

DEMO_BATCH_SIZES = (1, 32)


@dataclass
class DemoSummary:
    """What the demo found: the profile table, one finding per line, and where it wrote them."""

    table: pd.DataFrame
    findings: list[str]
    out_dir: Path
    db_path: str
    extra: dict[str, Any] = field(default_factory=dict)


def run_demo(
    model: str = "digits-cnn",
    out_dir: Path = Path("workbench-demo"),
    db: str | None = None,
    max_seconds: float = 3.0,
    console: Any = None,
) -> DemoSummary:
    """Run the demo; ``console`` (rich) gets progress lines when given."""
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"loading {model} (trained on first use, then cached) ...")
    handle = load_model(model)
    with RunStore(db) as store:
        result = profile_step(handle, store, max_seconds)
        db_path = store.path
    table = result.to_frame()
    findings = profile_findings(model, handle, result, table)
    say("compressing: a short search over quantised variants, judged on held-out data ...")
    with RunStore(db) as store:
        compressed, compress_findings, attribution = compress_step(
            handle, store, min(0.3, max_seconds)
        )
    findings.extend(compress_findings)
    write_results(
        out_dir, model, handle, findings, table, compressed, db_path, attribution=attribution
    )
    extra: dict[str, Any] = {"compression": compressed}
    if attribution is not None:
        extra["attribution"] = attribution
    return DemoSummary(table, findings, out_dir, db_path, extra=extra)


def profile_step(handle: Any, store: RunStore, max_seconds: float = 3.0) -> SweepResult:
    """PyTorch eager and ONNX Runtime at :data:`DEMO_BATCH_SIZES`, with energy, into ``store``."""
    return sweep(
        handle,
        batch_sizes=DEMO_BATCH_SIZES,
        backends=("torch", "onnxruntime"),
        store=store,
        max_seconds=max_seconds,
        iterations=500,
        energy=True,
        energy_min_seconds=min(1.0, max_seconds),
        idle_seconds=0.5,
    )


def profile_findings(
    model: str, handle: Any, result: SweepResult, table: pd.DataFrame
) -> list[str]:
    """The model's accuracy, then the fastest and the most frugal configuration against PyTorch
    eager at batch 1, the batch-1 p99 of both backends and the slowest ONNX Runtime operator
    (``table``: ``result.to_frame()``)."""
    findings = []
    if "accuracy_test" in handle.metadata:
        findings.append(
            f"{model}: held-out accuracy {handle.metadata['accuracy_test']:.1%} on "
            f"{handle.metadata['test_examples']} test images (measured)"
        )
    base = table[(table.backend == "torch") & (table.batch_size == 1)].iloc[0]
    best = table.loc[table.throughput_items_per_s.idxmax()]
    findings.append(
        f"fastest: {best.backend} at batch {best.batch_size}: "
        f"{best.throughput_items_per_s:,.0f} items/s, "
        f"{best.throughput_items_per_s / base.throughput_items_per_s:.1f}x PyTorch eager batch 1 "
        f"({base.throughput_items_per_s:,.0f} items/s)"
    )
    frugal = table.loc[table.energy_j_per_item.idxmin()]
    findings.append(
        f"least energy: {frugal.backend} at batch {frugal.batch_size}: "
        f"{frugal.energy_j_per_item:.3g} J/inference ({frugal.energy_method}), "
        f"{base.energy_j_per_item / frugal.energy_j_per_item:.1f}x fewer joules than PyTorch "
        f"eager batch 1; {frugal.co2e_g_per_1m:.3g} gCO2e per 1M inferences at "
        f"{frugal.carbon_g_per_kwh:.0f} g/kWh"
    )
    b1 = table[table.batch_size == 1].set_index("backend")
    findings.append(
        f"batch 1 p99 latency: ONNX Runtime {b1.loc['onnxruntime', 'latency_ms_p99']:.3f} ms, "
        f"PyTorch eager {b1.loc['torch', 'latency_ms_p99']:.3f} ms"
    )
    top = result.profiles[[p.backend for p in result.profiles].index("onnxruntime")]
    if top.operators:
        op = top.operators[0]
        findings.append(
            f"slowest ONNX Runtime operator at batch 1: {op.op} ({op.share:.0%} of operator time)"
        )
    return findings


def write_results(
    out_dir: Path,
    model: str,
    handle: Any,
    findings: list[str],
    table: pd.DataFrame,
    compressed: pd.DataFrame,
    db_path: str,
    *,
    attribution: GainAttribution | None = None,
) -> None:
    """``compression.csv``, ``profiles.csv``, ``attribution.csv`` (the winner's gain by step,
    where there is one) and ``summary.json`` (everything) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    compressed.to_csv(out_dir / "compression.csv", index=False)
    if attribution is not None:
        attribution.to_frame().to_csv(out_dir / "attribution.csv", index=False)
    table.to_csv(out_dir / "profiles.csv", index=False)
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "model": model,
                "metadata": {k: v for k, v in handle.metadata.items()},
                "findings": findings,
                "profiles": table.to_dict(orient="records"),
                "compression": compressed.to_dict(orient="records"),
                "attribution": None if attribution is None else attribution.to_dict(),
                "run_store": db_path,
            },
            indent=2,
            default=str,
        )
    )


#: Variants of the demo's compress step: quick to build, and one that usually fails the quality
#: bar on MiniLM (static int8), so the demo shows a rejection as well as a winner.
DEMO_VARIANTS = (
    "ort-fp32",
    "ort-int8-dynamic-per-channel",
    "ort-int8-weight-only",
    "ort-int8-static-minmax",
)


def compress_step(
    handle: Any, store: RunStore, measure_seconds: float = 0.3
) -> tuple[pd.DataFrame, list[str], GainAttribution | None]:
    """Search :data:`DEMO_VARIANTS` x batch 1 and 32 on one thread under a 1 % quality bar;
    returns the measured configurations, one finding per line, and the winner's gain over the
    baseline by step (the search's own attribution; None without a winner)."""
    from workbench.compress.search.runner import MIN_MEASURE_SECONDS, optimize

    result = optimize(
        handle,
        max_quality_drop=0.01,
        variants=DEMO_VARIANTS,
        batch_sizes=(1, 32),
        threads=[1],
        strategy="grid",
        store=store,
        measure_seconds=max(MIN_MEASURE_SECONDS, measure_seconds),
        progress=False,
    )
    frame = result.to_frame()
    rec = result.recommendation
    if rec is None:
        return frame, [f"compression: {result.unmet}"], None
    best = rec.candidate
    lines = [
        f"compression: recommended {best.label} ({best.variant.backend}): quality drop "
        f"{best.quality_drop:.2%} on {best.quality.data}; {rec.items_per_joule_gain:.1f}x items "
        f"per joule ({best.energy_method}) and {rec.throughput_gain:.1f}x throughput of PyTorch "
        f"eager fp32 batch 1"
    ]
    if result.attribution is not None:
        lines.append(f"compression: {result.attribution.summary()}")
    worst = frame.loc[frame.quality_drop.idxmax()]
    if worst.quality_drop > 0.01:
        lines.append(
            f"compression: {worst.variant} rejected: quality drop {worst.quality_drop:.2%} > 1%"
        )
    return frame, lines, result.attribution
