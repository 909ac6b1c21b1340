"""Reliability under load and faults: soak, overload, stalls, SIGTERM under load, SIGKILL mid-sweep.

One run, one machine, loopback only. The served model has a fixed service time of about 5 ms
per request (a chain of MatMuls, batching off, one thread, one instance), so the
server's capacity is bounded by the model, not by the HTTP layer, and the load generator
(:mod:`workbench.load`, open loop) costs little CPU beside it (with a 2 ms model, 4x capacity
meant ~1,900 requests a second of generator and refusal work on the same two cores). The queue
holds at most 1024 requests (the default bound, about 5 s of work), which rides out bursts,
stalls and slowdowns of the shared machine; overload is decided by the arrival rate (the
requests offered over 250 ms need more than 2x the model time the instance has, or more than 1x
for 2 s), and then a request is admitted only while none is waiting and one that waited over
10 ms is refused unrun, which keeps accepted requests fast (see ``serving.batcher``).

1. capacity: closed loop, 2 clients (one running, one queued), answered requests per second;
2. soak: 80 % of capacity for ``--soak-s`` seconds: errors (anything but 200), 5xx, unanswered
   requests, and resident memory growth of the server ((end - after warm-up) / after warm-up);
3. overload: 20 % of capacity, a burst at 4x capacity, 20 % again: only 200 or 503, every 503
   with Retry-After, p99 of the accepted requests against the unloaded p99, recovery seconds;
4. stalls: 80 % of capacity while the server process is frozen (SIGSTOP) for 200 ms every
   3 s: the requests sent meanwhile arrive at once and must be served, none refused;
5. SIGTERM under load: open loop at 80 % of capacity, SIGTERM half-way: every request the server
   accepted (its shutdown log line) was answered, and the client received every answer;
6. SIGKILL of a profiling sweep (its own process) once a few rows are stored: every finished row
   is in the SQLite store (WAL) and re-running the sweep measures only the missing configurations.

Writes ``benchmarks/results/reliability.json`` (or ``reliability-quick.json`` with ``--quick``):
every figure (all measured), the checks and whether each passed, the load average before and
after, and the environment. Exit code 1 when a check fails.

Usage::

    python benchmarks/reliability.py            # full: 10-minute soak, 15 s burst (about 13 min)
    python benchmarks/reliability.py --quick    # short: 15 s soak, 5 s burst (about 1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# benchmarks/serving.py would shadow the serving package: import from the repository root instead
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from workbench.load import generator as loadgen  # noqa: E402
from workbench.measure.environment import environment  # noqa: E402
from workbench.ship.bundle import export  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "fixed"
DIM = 256
DEPTH = 600  # chained MatMuls: about 5 ms per request on one core of the 2-core machine


@dataclass(frozen=True)
class Lengths:
    """How long each part runs (seconds)."""

    capacity_s: float
    soak_s: float
    soak_warmup_s: float
    baseline_s: float
    burst_s: float
    after_s: float
    sigterm_s: float
    stalls_s: float


FULL = Lengths(
    capacity_s=10,
    soak_s=600,
    soak_warmup_s=30,
    baseline_s=15,
    burst_s=15,
    after_s=15,
    sigterm_s=10,
    stalls_s=30,
)
QUICK = Lengths(
    capacity_s=3,
    soak_s=15,
    soak_warmup_s=3,
    baseline_s=4,
    burst_s=5,
    after_s=5,
    sigterm_s=4,
    stalls_s=10,
)


# -- the served model and server -------------------------------------------------------------


#: The queue: the default bound of QUEUE_ROWS (about 5 s of work) rides out stalls and slowdowns
#: of the shared machine; overload (the arrival rate, see serving.batcher) is what refuses: then
#: a request is admitted only when none is waiting, and one queued over QUEUE_TARGET_MS is shed.
QUEUE_ROWS, QUEUE_TARGET_MS, QUEUE_INTERVAL_MS = 1024, 10.0, 250.0


def build_bundle(
    work: Path,
    queue_rows: int = QUEUE_ROWS,
    depth: int = DEPTH,
    queue_target_ms: float = QUEUE_TARGET_MS,
) -> Path:
    """The fixed-time model as a bundle: batching off, one instance on a worker thread."""
    onnx_path = loadgen.fixed_time_model(work / f"{MODEL}.onnx", depth, DIM)
    return export(
        onnx_path,
        work / "bundle",
        name=MODEL,
        batching={
            "enabled": False,
            "max_queue_rows": queue_rows,
            "queue_target_ms": queue_target_ms,
            "queue_interval_ms": QUEUE_INTERVAL_MS,
        },
        threads={"threads": 1, "instances": 1, "inline_below_ms": 0},
        overwrite=True,
    ).path


def request_body() -> bytes:
    x = np.random.default_rng(0).standard_normal((1, DIM)).astype(np.float32)
    tensor = {"name": "input", "shape": [1, DIM], "datatype": "FP32", "data": x.ravel().tolist()}
    return orjson.dumps({"inputs": [tensor]})


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    def log(self) -> list[dict]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@contextlib.contextmanager
def serve(bundle: Path, log_path: Path, *args: str) -> Iterator[Server]:
    """``python -m serving BUNDLE --port 0`` until every model is ready; killed on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", str(bundle), "--port", "0", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    try:
        yield _wait_ready(proc, log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _wait_ready(proc: subprocess.Popen, log_path: Path) -> Server:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if '"listening"' in line:
                port = int(json.loads(line)["port"])
                if loadgen.is_ready("127.0.0.1", port):
                    return Server(proc, port, log_path)
        time.sleep(0.05)
    raise RuntimeError(f"server not ready in 120 s: {log_path.read_text()}")


# -- the scenarios ---------------------------------------------------------------------------


def capacity(server: Server, body: bytes, lengths: Lengths) -> loadgen.Capacity:
    """Closed loop at concurrency 2: the worker always has the next request queued."""
    return loadgen.measure_capacity(
        "127.0.0.1", server.port, MODEL, body, concurrency=2, duration_s=lengths.capacity_s
    )


def soak(server: Server, body: bytes, capacity_per_s: float, lengths: Lengths) -> dict:
    result = loadgen.soak(
        "127.0.0.1",
        server.port,
        MODEL,
        body,
        pid=server.proc.pid,
        rate_per_s=0.8 * capacity_per_s,
        duration_s=lengths.soak_s,
        warmup_s=lengths.soak_warmup_s,
    )
    s = result.summary
    checks = {
        "zero errors": s.errors == 0 and s.refused_503 == 0,
        "no 5xx": s.status_5xx == 0,
        "memory growth < 10 %": result.memory_growth_pct < 10,
    }
    figures = asdict(result)
    figures["rss_samples"] = figures["rss_samples"][:: max(1, len(result.rss_samples) // 120)]
    return {"figures": figures, "checks": checks}


def overload(server: Server, body: bytes, capacity_per_s: float, lengths: Lengths) -> dict:
    result = loadgen.overload(
        "127.0.0.1",
        server.port,
        MODEL,
        body,
        capacity_per_s=capacity_per_s,
        baseline_s=lengths.baseline_s,
        burst_s=lengths.burst_s,
        after_s=lengths.after_s,
    )
    b = result.burst
    statuses_ok = all(
        part.errors == 0 for part in (result.baseline, result.burst, result.after)
    )  # only 200 and 503 anywhere
    checks = {
        "only 200 or 503": statuses_ok,
        "every 503 has Retry-After": b.refused_without_retry_after == 0
        and result.after.refused_without_retry_after == 0,
        "requests beyond the bound refused": b.refused_503 > 0,
        "still serving >= 70 % of capacity": b.ok >= 0.7 * capacity_per_s * lengths.burst_s,
        "accepted p99 <= 2x unloaded p99": result.p99_ratio is not None and result.p99_ratio <= 2,
        "recovered within 5 s": result.recovery_s is not None and result.recovery_s <= 5,
    }
    return {"figures": asdict(result), "checks": checks}


#: Stalls: the server process is frozen (SIGSTOP ... SIGCONT) for STALL_MS every STALL_EVERY_S.
STALL_MS, STALL_EVERY_S = 200.0, 3.0


def stalls(server: Server, body: bytes, capacity_per_s: float, lengths: Lengths) -> dict:
    """80 % of capacity while the server is frozen for ``STALL_MS`` every ``STALL_EVERY_S``: the
    requests sent meanwhile arrive at once, as after a stall of a shared machine, and must be
    queued and served, not refused as overload."""
    frozen: list[float] = []
    stop = threading.Event()

    def freeze() -> None:
        while not stop.wait(STALL_EVERY_S):
            server.proc.send_signal(signal.SIGSTOP)
            began = time.perf_counter()
            time.sleep(STALL_MS / 1e3)
            server.proc.send_signal(signal.SIGCONT)
            frozen.append(time.perf_counter() - began)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    try:
        times = loadgen.constant_rate(0.8 * capacity_per_s, lengths.stalls_s)
        run = loadgen.open_loop("127.0.0.1", server.port, MODEL, body, times, timeout_s=30)
    finally:
        stop.set()
        thread.join()
        server.proc.send_signal(signal.SIGCONT)
    s = run.summary()
    figures = {
        "summary": asdict(s),
        "rate_per_s": round(0.8 * capacity_per_s, 2),
        "stalls": len(frozen),
        "stall_ms_median": round(float(np.median(frozen)) * 1e3, 1) if frozen else None,
        "stall_every_s": STALL_EVERY_S,
    }
    checks = {
        "stalls happened": len(frozen) >= 2,
        "no refusals or errors": s.errors == 0 and s.refused_503 == 0,
    }
    return {"figures": figures, "checks": checks}


def sigterm(bundle: Path, body: bytes, capacity_per_s: float, work: Path, lengths: Lengths) -> dict:
    """Open loop at 80 % of capacity; SIGTERM half-way; compare the server's and client's books."""
    with serve(bundle, work / "sigterm.log") as server:
        times = loadgen.constant_rate(0.8 * capacity_per_s, lengths.sigterm_s)
        timer = threading.Timer(lengths.sigterm_s / 2, server.proc.send_signal, [signal.SIGTERM])
        timer.start()
        run = loadgen.open_loop("127.0.0.1", server.port, MODEL, body, times, timeout_s=30)
        timer.join()
        code = server.proc.wait(60)
        books = [e for e in server.log() if e.get("msg") == "shutdown"]
    s = run.summary()
    accepted = books[0]["accepted"] if books else None
    answered = books[0]["answered"] if books else None
    received = s.answered
    figures = {
        "requests_sent": s.requests_sent,
        "server_accepted": accepted,
        "server_answered": answered,
        "client_received": received,
        "client_ok": s.ok,
        "client_503": s.refused_503,
        "not_accepted_after_sigterm": s.unanswered,
        "lost_requests": None if accepted is None else accepted - received,
        "exit_code": code,
    }
    checks = {
        "clean exit": code == 0,
        "every accepted request answered": accepted is not None and accepted == answered,
        "every answer received": accepted is not None and received == accepted,
        "no error answers": s.errors - s.unanswered == 0,
        "load reached the shutdown": s.unanswered > 0 and s.ok > 0,
    }
    return {"figures": figures, "checks": checks}


SWEEP_SCRIPT = textwrap.dedent(
    """
    import sys
    from workbench.measure.profiling import sweep
    sweep("digits-mlp", batch_sizes=list(range(1, 41)), sweep_id="killme", progress=False,
          iterations=400, warmup=1, max_seconds=0.3, operators=False, store=sys.argv[1])
    """
)


def sweep_kill(work: Path, rows_before_kill: int = 3) -> dict:
    """SIGKILL a profiling sweep once ``rows_before_kill`` rows are stored; resume it."""
    from workbench.measure.profiling import sweep
    from workbench.measure.store import RunStore

    db = work / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT, str(db)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    stored = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stored < rows_before_kill and proc.poll() is None:
            time.sleep(0.1)
            if db.exists():
                with RunStore(db) as store:
                    stored = len(store.runs(sweep_id="killme"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunStore(db) as store:
        rows = store.runs(sweep_id="killme")
    sizes = sorted(r.config["batch_size"] for r in rows)
    wanted = list(range(1, len(rows) + 3))  # the stored rows and two more
    resumed = sweep(
        "digits-mlp",
        batch_sizes=wanted,
        sweep_id="killme",
        progress=False,
        iterations=5,
        warmup=0,
        operators=False,
        store=str(db),
    )
    measured = sorted(p.batch_size for p in resumed.profiles)
    figures = {
        "rows_seen_before_kill": stored,
        "rows_in_store_after_kill": len(rows),
        "killed_by": "SIGKILL",
        "exit_code": proc.returncode,
        "resumed_rows": len(resumed.resumed_run_ids),
        "rows_measured_on_resume": measured,
    }
    checks = {
        "killed mid-sweep": proc.returncode == -signal.SIGKILL and len(rows) < 40,
        "every finished row stored, in order": len(rows) >= stored
        and sizes == list(range(1, len(rows) + 1)),
        "resume skips the stored rows": len(resumed.resumed_run_ids) == len(rows)
        and measured == wanted[len(rows) :],
    }
    return {"figures": figures, "checks": checks}


# -- the run ---------------------------------------------------------------------------------


def server_info(
    depth: int = DEPTH, queue_rows: int = QUEUE_ROWS, queue_target_ms: float = QUEUE_TARGET_MS
) -> dict:
    """How the served model and server are set up (written with the results)."""
    return {
        "model": f"{MODEL}: {depth} chained {DIM}x{DIM} MatMuls (a fixed service time on one core)",
        "batching": False,
        "max_queue_rows": queue_rows,
        "queue_target_ms": queue_target_ms,
        "queue_interval_ms": QUEUE_INTERVAL_MS,
        "intra_op_threads": 1,
        "instances": 1,
        "requests": f"1 row of {DIM} FP32 values, JSON",
    }


def _generator_cpu(result: dict, before: resource.struct_rusage, requests: int | None) -> dict:
    """Add the load generator's own CPU per request (this process, user + system)."""
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if requests:
        result["figures"]["generator_cpu_ms_per_request"] = round(used / requests * 1e3, 4)
    return result


def run(
    lengths: Lengths,
    work: Path,
    parts: set[str],
    depth: int = DEPTH,
    queue_rows: int = QUEUE_ROWS,
    queue_target_ms: float = QUEUE_TARGET_MS,
) -> dict:
    body = request_body()
    bundle = build_bundle(work, queue_rows, depth, queue_target_ms)
    out: dict = {"server": server_info(depth, queue_rows, queue_target_ms)}
    with serve(bundle, work / "server.log") as server:
        cap = capacity(server, body, lengths)
        out["capacity"] = asdict(cap)
        rate = cap.requests_per_s
        if "soak" in parts:
            before = resource.getrusage(resource.RUSAGE_SELF)
            result = soak(server, body, rate, lengths)
            sent = result["figures"]["summary"]["requests_sent"]
            out["soak"] = _generator_cpu(result, before, sent)
        if "overload" in parts:
            before = resource.getrusage(resource.RUSAGE_SELF)
            result = overload(server, body, rate, lengths)
            f = result["figures"]
            sent = sum(f[p]["requests_sent"] for p in ("baseline", "burst", "after"))
            out["overload"] = _generator_cpu(result, before, sent)
        if "stalls" in parts:
            out["stalls"] = stalls(server, body, rate, lengths)
    if "sigterm" in parts:
        out["sigterm"] = sigterm(bundle, body, rate, work, lengths)
    if "sweep" in parts:
        out["sweep_kill"] = sweep_kill(work)
    return out


def headline(out: dict) -> dict:
    """The figures the README's table shows."""
    soak_f = out.get("soak", {}).get("figures", {})
    over = out.get("overload", {}).get("figures", {})
    term = out.get("sigterm", {}).get("figures", {})
    stall = out.get("stalls", {}).get("figures", {})
    return {
        "capacity_requests_per_s": out["capacity"]["requests_per_s"],
        "soak_requests_sent": soak_f.get("summary", {}).get("requests_sent"),
        "soak_errors": soak_f.get("summary", {}).get("errors"),
        "soak_5xx": soak_f.get("summary", {}).get("status_5xx"),
        "soak_503": soak_f.get("summary", {}).get("refused_503"),
        "soak_unanswered": soak_f.get("summary", {}).get("unanswered"),
        "soak_memory_growth_pct": soak_f.get("memory_growth_pct"),
        "unloaded_p99_ms": over.get("unloaded_p99_ms"),
        "overload_accepted_p99_ms": over.get("burst_accepted_p99_ms"),
        "overload_p99_ratio": over.get("p99_ratio"),
        "overload_requests_sent": over.get("burst", {}).get("requests_sent"),
        "overload_503": over.get("burst", {}).get("refused_503"),
        "overload_errors": over.get("burst", {}).get("errors"),
        "recovery_s": over.get("recovery_s"),
        "stalls": stall.get("stalls"),
        "stall_ms_median": stall.get("stall_ms_median"),
        "stalls_requests_sent": stall.get("summary", {}).get("requests_sent"),
        "stalls_503": stall.get("summary", {}).get("refused_503"),
        "stalls_errors": stall.get("summary", {}).get("errors"),
        "sigterm_accepted": term.get("server_accepted"),
        "sigterm_lost_requests": term.get("lost_requests"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["soak", "overload", "stalls", "sigterm", "sweep"],
        choices=["soak", "overload", "stalls", "sigterm", "sweep"],
    )
    parser.add_argument("--soak-s", type=float, default=None, help="override the soak length")
    parser.add_argument(
        "--depth", type=int, default=DEPTH, help=f"chained MatMuls in the model (default {DEPTH})"
    )
    parser.add_argument("--queue-rows", type=int, default=QUEUE_ROWS, help="the queue's bound")
    parser.add_argument(
        "--queue-target-ms",
        type=float,
        default=QUEUE_TARGET_MS,
        help="overload detection: queue wait target (0: off, the bound alone)",
    )
    args = parser.parse_args(argv)
    lengths = QUICK if args.quick else FULL
    if args.soak_s is not None:
        lengths = Lengths(**{**asdict(lengths), "soak_s": args.soak_s})
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        out = run(
            lengths, Path(tmp), set(args.parts), args.depth, args.queue_rows, args.queue_target_ms
        )
    checks = {
        f"{part}: {name}": ok
        for part, result in out.items()
        if isinstance(result, dict) and "checks" in result
        for name, ok in result["checks"].items()
    }
    report = {
        "benchmark": "reliability",
        "mode": "quick" if args.quick else "full",
        "method": "measured",
        "passed": all(checks.values()),
        "checks": checks,
        "headline": headline(out),
        "lengths_s": asdict(lengths),
        "duration_s": round(time.monotonic() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "environment": environment(),
        **out,
    }
    name = "reliability-quick.json" if args.quick else "reliability.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    print(json.dumps(report["headline"], indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
