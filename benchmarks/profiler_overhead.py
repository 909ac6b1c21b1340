"""How much the profiler adds to what it measures.

In one process, alternating rounds: a bare ``session.run`` loop (one clock read either side of each
call) and ``workbench.profile`` on the same ONNX file, session options, input and iteration count
(digits-cnn, ONNX Runtime CPU, batch 1). The figure is the ratio of medians over rounds of each
side's p50 latency; target <= 1.05. Writes ``benchmarks/results/profiler_overhead.json``.

    python benchmarks/profiler_overhead.py [--rounds 31] [--iterations 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from workbench.measure.backends import logical_cores
from workbench.measure.profiling import profile
from workbench.models import load_model

RESULTS = Path(__file__).parent / "results" / "profiler_overhead.json"


def bare_p50_ms(session: ort.InferenceSession, feed: dict, iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        session.run(None, feed)
    clock = time.perf_counter_ns
    samples = []
    for _ in range(iterations):
        t0 = clock()
        session.run(None, feed)
        samples.append(clock() - t0)
    return float(np.percentile(samples, 50)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=logical_cores())
    args = parser.parse_args()

    handle = load_model(args.model)
    feed = handle.example_inputs(1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(handle.onnx()), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    bare, prof = [], []
    for _ in range(args.rounds):
        bare.append(bare_p50_ms(session, feed, args.iterations, warmup=10))
        p = profile(
            handle,
            backend="onnxruntime",
            batch_size=1,
            threads=args.threads,
            iterations=args.iterations,
            warmup=10,
            max_seconds=600,
            operators=False,
            store=False,
        )
        prof.append(p.latency_ms_p50)
    ratios = [p / b for p, b in zip(prof, bare)]
    result = {
        "ratio": statistics.median(prof) / statistics.median(bare),
        "target": "<= 1.05",
        "model": args.model,
        "backend": "onnxruntime CPUExecutionProvider",
        "batch_size": 1,
        "threads": args.threads,
        "iterations_per_round": args.iterations,
        "rounds": args.rounds,
        "bare_p50_ms_median": statistics.median(bare),
        "profiler_p50_ms_median": statistics.median(prof),
        "bare_p50_ms_rounds": bare,
        "profiler_p50_ms_rounds": prof,
        "round_ratios": ratios,
        "round_ratio_min_max": [min(ratios), max(ratios)],
        "method": "measured: wall clock (perf_counter_ns) per call, same process, alternating "
        "rounds; ratio of the medians over rounds of each side's p50",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'round':>5} {'bare p50 ms':>12} {'profiler p50 ms':>16} {'ratio':>7}")
    for i, (b, p, r) in enumerate(zip(bare, prof, ratios), 1):
        print(f"{i:>5} {b:>12.5f} {p:>16.5f} {r:>7.3f}")
    print(
        f"median ratio (profiler / bare): {result['ratio']:.3f}  (target <= 1.05; rounds "
        f"ranged {min(ratios):.3f}-{max(ratios):.3f})"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
