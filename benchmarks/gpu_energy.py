"""GPU energy on CUDA: J/inference for a demo model, and NVML's energy counter against power
sampling over the very same window (target: within 5 %).

Needs an NVIDIA GPU, a CUDA build of torch and the ``gpu`` extra (nvidia-ml-py). Writes
``benchmarks/results/gpu_energy.json``; on a machine without a GPU it says so and writes nothing.

    python benchmarks/gpu_energy.py [--model digits-cnn] [--batch-size 256] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.energy.nvml import NvmlMeter
from workbench.measure.backends import cuda_available, make_runner
from workbench.measure.profiling import profile
from workbench.models import load_model

RESULTS = Path(__file__).parent / "results" / "gpu_energy.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not cuda_available():
        print("no CUDA GPU here: this benchmark runs on a machine with an NVIDIA GPU")
        return 2

    import time

    handle = load_model(args.model)
    counter = NvmlMeter([0], use_energy_counter=True)
    sampled = NvmlMeter([0], use_energy_counter=False)
    runner = make_runner(handle, "torch", "cuda", threads=1)
    prepared = runner.prepare(handle.example_inputs(args.batch_size))
    for _ in range(20):
        runner.run(prepared)
    rounds = []
    for i in range(args.rounds):
        counter.begin_window(f"c{i}")
        sampled.begin_window(f"s{i}")
        calls, end = 0, time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            runner.run(prepared)  # synchronises CUDA after each call
            calls += 1
        s = sampled.end_window(f"s{i}")
        c = counter.end_window(f"c{i}")
        items = calls * args.batch_size
        rounds.append(
            {
                "items": items,
                "duration_s": c.duration_s,
                "counter_j": c.energy_j,
                "sampled_j": s.energy_j,
                "relative_difference": abs(s.energy_j - c.energy_j) / c.energy_j,
                "j_per_inference_counter": c.energy_j / items,
                "j_per_inference_sampled": s.energy_j / items,
                "power_w_avg": c.power_w_avg,
            }
        )
    runner.close()
    p = profile(
        handle,
        backend="torch",
        device="cuda",
        batch_size=args.batch_size,
        energy=True,
        store=False,
        energy_min_seconds=min(5.0, args.seconds),
    )
    worst = max(r["relative_difference"] for r in rounds)
    result = {
        "model": args.model,
        "batch_size": args.batch_size,
        "gpu": p.environment.get("gpu"),
        "rounds": rounds,
        "counter_vs_sampling_max_relative_difference": worst,
        "target": "<= 0.05",
        "profile_energy_j_per_item": p.energy.energy_j_per_item if p.energy else None,
        "profile_energy_method": p.energy.method if p.energy else None,
        "profile_latency_ms_p50": p.latency_ms_p50,
        "method": "measured: NVML total-energy counter and 20 Hz power sampling over the same "
        "windows of back-to-back synchronised CUDA calls",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'round':>5} {'counter J':>10} {'sampled J':>10} {'diff':>7} {'J/inference':>12}")
    for i, r in enumerate(rounds, 1):
        print(
            f"{i:>5} {r['counter_j']:>10.2f} {r['sampled_j']:>10.2f} "
            f"{r['relative_difference']:>7.2%} {r['j_per_inference_counter']:>12.3g}"
        )
    print(f"worst counter-vs-sampling difference {worst:.2%} (target <= 5 %); wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
