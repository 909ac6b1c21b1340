"""The automatic optimiser on ``digits-cnn`` and ``minilm`` in one run: what the recommended
configuration gains over fp32 PyTorch eager at batch 1, and what it costs in quality.

For each model, ``workbench.compress.search.optimize`` searches every registered variant x batch
sizes 1, 8, 32 x threads 1 and all cores by successive halving, under ``max_quality_drop`` 1 %
(accuracy points on the held-out digits test split; ``1 - mean cosine`` to the fp32 embeddings on
held-out sentences for MiniLM). Its baseline is fp32 PyTorch eager at batch 1 on all cores; the
same configuration on one thread is measured as well, because torch eager at batch 1 keeps a
second thread busy for little speed (docs/compression.md, "What the energy figures can and
cannot show"), which inflates energy ratios.

Energy comes from the best meter the machine has; without RAPL/NVML it is the CPU estimate (TDP x
this process's CPU time), labelled ``estimated``: it tracks CPU efficiency, not the machine's
wall power, and other processes' load does not count. The load average before and after is
recorded because the ratios move with it.

The headline gain mixes causes (the runtime, the thread count, batching, compression); each
model's row records ``attribution``: the gain split into those four steps, each configuration
measured for the same window (``workbench.compress.search.attribution``), so the table shows what
compression itself bought.

Target: >= 4x items per joule at <= 1 % quality drop; the digits-cnn search within 2 minutes on
a 2-core machine. Writes ``benchmarks/results/optimize.json``.

    python benchmarks/optimize.py [--models digits-cnn minilm] [--measure-seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from workbench.compress.search.runner import SearchResult, measure_window, optimize
from workbench.measure.environment import cpu_model

RESULTS = Path(__file__).parent / "results" / "optimize.json"
TARGET_GAIN = 4.0
TARGET_DROP = 0.01
TARGET_DIGITS_SECONDS = 120.0


def one_thread_baseline(result: SearchResult, seconds: float) -> dict[str, float] | None:
    """fp32 PyTorch eager at batch 1 on one thread, on the search's own timing input."""
    base = result.baseline
    if base is None or base.profile is None:
        return None
    p = measure_window(base.variant.handle, seconds, backend="torch", batch_size=1, threads=1)
    return {
        "throughput_items_per_s": p.throughput_items_per_s,
        "energy_j_per_item": p.energy.energy_j_per_item,
        "energy_method": p.energy.method,
    }


def summarise(result: SearchResult, one_thread: dict[str, float] | None) -> dict[str, Any]:
    rec = result.recommendation
    row: dict[str, Any] = {"model": result.model, "search_seconds": round(result.seconds, 1)}
    if rec is None:
        row.update(
            items_per_joule_gain=None, throughput_gain=None, quality_drop=None, unmet=result.unmet
        )
        return row
    best, base = rec.candidate, rec.baseline
    row.update(
        items_per_joule_gain=rec.items_per_joule_gain,
        throughput_gain=rec.throughput_gain,
        quality_drop=best.quality_drop,
        quality_metric=best.quality.metric,
        quality_value=best.quality.value,
        quality_reference=best.quality.reference,
        quality_data=best.quality.data,
        recommended=best.label,
        recommended_backend=best.variant.backend,
        recommended_items_per_s=best.throughput_items_per_s,
        recommended_j_per_item=best.energy_j_per_item,
        recommended_latency_ms_p99=best.latency_ms_p99,
        recommended_size_mb=best.size_mb,
        baseline=base.label,
        baseline_items_per_s=base.throughput_items_per_s,
        baseline_j_per_item=base.energy_j_per_item,
        energy_method=best.energy_method,
        reason=rec.reason,
        configurations_measured=len(result.to_frame()),
        variants_skipped={s["variant"]: s["reason"] for s in result.skipped},
    )
    if result.attribution is not None:
        row["attribution"] = result.attribution.to_dict()
        row["compression_items_per_joule_gain"] = result.attribution.ratio("compression")
    if best.quality.nn_agreement is not None:
        row.update(nn_agreement=best.quality.nn_agreement, cosine_min=best.quality.cosine_min)
    if one_thread is not None:
        row["baseline_1_thread_items_per_s"] = one_thread["throughput_items_per_s"]
        row["baseline_1_thread_j_per_item"] = one_thread["energy_j_per_item"]
        row["items_per_joule_gain_vs_1_thread"] = (
            one_thread["energy_j_per_item"] / best.energy_j_per_item
        )
        row["throughput_gain_vs_1_thread"] = (
            best.throughput_items_per_s / one_thread["throughput_items_per_s"]
        )
    row["meets_target"] = bool(
        rec.items_per_joule_gain >= TARGET_GAIN and best.quality_drop <= TARGET_DROP
    )
    if result.model == "digits-cnn":
        row["meets_time_target"] = result.seconds <= TARGET_DIGITS_SECONDS
    return row


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """The headline figures, one row per model."""
    table = Table(title="automatic optimisation vs fp32 PyTorch eager batch 1 (all cores)")
    for col in (
        "model",
        "recommended",
        "items/J gain",
        "(vs 1 thread)",
        "throughput gain",
        "of it compression",
        "quality drop",
        "NN agree",
        "energy",
        "search s",
    ):
        table.add_column(col, justify="left" if col in ("model", "recommended") else "right")
    for r in rows:
        fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        table.add_row(
            r["model"],
            r.get("recommended", r.get("unmet", "")),
            fmt(r.get("items_per_joule_gain"), ".1f") + "x",
            fmt(r.get("items_per_joule_gain_vs_1_thread"), ".1f") + "x",
            fmt(r.get("throughput_gain"), ".1f") + "x",
            fmt(r.get("compression_items_per_joule_gain"), ".1f") + "x",
            fmt(r.get("quality_drop"), ".2%"),
            fmt(r.get("nn_agreement"), ".2f"),
            r.get("energy_method", ""),
            fmt(r.get("search_seconds"), ".0f"),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-cnn", "minilm"])
    parser.add_argument("--measure-seconds", type=float, default=1.0)
    parser.add_argument("--db", default=":memory:", help="Run store (default: none kept).")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for name in args.models:
        result = optimize(
            name,
            max_quality_drop=TARGET_DROP,
            strategy="halving",
            measure_seconds=args.measure_seconds,
            store=args.db,
        )
        row = summarise(result, one_thread_baseline(result, args.measure_seconds))
        rows.append(row)
    load_after = os.getloadavg()
    for row in rows:
        row["machine"] = {
            "cpu": cpu_model(),
            "logical_cores": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        }

    console = Console(width=max(Console().width, 150))
    print_table(rows, console)
    for row in rows:
        if "attribution" in row:
            console.print(f"{row['model']}: {row['attribution']['summary']}", markup=False)
    console.print(
        f"load average before {load_before}, after {load_after} ({os.cpu_count()} logical cores)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2, default=str))
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
