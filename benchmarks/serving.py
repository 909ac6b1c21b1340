"""Serving benchmark: our runtime against MLServer and the in-process ONNX Runtime ceiling.

Everything in one run on one machine: the same ONNX files (the demo CNN and MiniLM), the same
load generator (NVIDIA's perf_analyzer in its time-window mode, as in the field) and the same
concurrency levels for every server:

- ``ours``: ``python -m serving`` with adaptive batching; JSON and binary tensors;
- ``ours-nobatch``: the same with batching off (the c=1 latency comparison);
- ``mlserver-fastest``: MLServer 1.7.1, parallel_workers 0, batching off, httptools + uvloop;
- ``mlserver-batching``: MLServer with adaptive batching (parallel_workers 0);
- ``in-process``: ONNX Runtime called directly (batch 1 and 8), the ceiling.

MLServer is installed by this script into its own virtualenv (``.bench/mlserver-venv``, git
ignored) with httptools and uvloop 0.21.0, and serves the ONNX file through a small
onnxruntime MLModel class written next to its settings (plus Triton's ``/config`` route, which
perf_analyzer reads). Throughput and latency percentiles are perf_analyzer's (its last, stable
measurement window). Each server's process tree CPU time is read with psutil around each
perf_analyzer run and divided by the requests the server answered in that run (read from its own
Prometheus counter); CPU used by every other process on the machine in that run is recorded too,
and runs where others used more than ``--noisy-cores`` (or that never stabilised) are repeated a
few times at most and flagged. Figures are medians of the quiet runs.

Writes ``benchmarks/results/serving.json``: a list with one entry per model holding the ratios
against MLServer's fastest configuration at concurrency 16 (JSON tensors), our server CPU per
request, the fraction of the in-process ceiling, the concurrency-1 overhead, the targets, and
every raw figure. ``--metering`` measures only the live energy meter's cost instead: server CPU
per request at c=16 (JSON) with the meter on and off, alternating, and writes
``benchmarks/results/serving_metering.json``.

Usage::

    python benchmarks/serving.py            # full run (quiet machine; about 15 minutes)
    python benchmarks/serving.py --quick    # short smoke run that exercises every part
    python benchmarks/serving.py --metering # the live energy meter's overhead only (c=16)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = ROOT / ".bench"
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
MLSERVER_VENV = BENCH / "mlserver-venv"
MLSERVER_VERSION = "1.7.1"
PERF_INSTALLER = ROOT.parent / "shared" / "tools" / "get-perf-analyzer"
CONFIG_MAX_BATCH = 32  # what every server's /config tells perf_analyzer (requests are batch 1)


@dataclass(frozen=True)
class Case:
    """One model: threads, batching settings and concurrency levels."""

    model: str
    threads: int
    max_batch_rows: int
    max_delay_ms: float
    concurrency: tuple[int, ...]
    quick_concurrency: tuple[int, ...]
    window_s: float  # perf_analyzer measurement window (full run; quick runs use a tenth)


CASES = {
    "digits-cnn": Case("digits-cnn", 1, 32, 2.0, (1, 4, 16, 64), (1, 16), 3.0),
    "minilm": Case("minilm", 2, 8, 5.0, (1, 4, 8, 16), (1, 4), 8.0),
}
TARGETS = {
    "digits-cnn": {
        "throughput_vs_mlserver": 2.5,
        "binary_throughput_vs_mlserver": 4.0,
        "p99_vs_mlserver_at_most": 1.0,
        "server_cpu_us_per_request_at_most": 200.0,
        "c1_p50_batching_vs_off_at_most": 1.10,
    },
    "minilm": {"ceiling_fraction": 0.95, "c1_overhead_ms_at_most": 2.0},
}


@dataclass
class Window:
    """One perf_analyzer run against one server."""

    requests: int
    throughput: float
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float
    client_cpu_us_per_request: float
    others_cores: float
    wall_s: float


@dataclass
class Point:
    """Medians over the quiet windows of one server, model, tensor format and concurrency."""

    server: str
    model: str
    tensors: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float
    client_cpu_us_per_request: float
    others_cores: float
    windows: int
    noisy_windows: int
    raw: list[Window] = field(default_factory=list)


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess; ``stop()`` sends SIGTERM and waits."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        model: str,
        log: Path,
        cwd: Path,
        env: dict[str, str],
        counter: tuple[int, str],
    ) -> None:
        self.name, self.port, self.model = name, port, model
        self.counter_port, self.counter = counter
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log, stderr=self.log)
        self.psutil = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout_s: float = 180) -> None:
        url = f"http://127.0.0.1:{self.port}/v2/models/{self.model}/ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s} s; see {self.log.name}")

    def answered(self) -> float:
        """Successful inferences so far, from the server's own Prometheus counter."""
        url = f"http://127.0.0.1:{self.counter_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        pattern = re.compile(rf"^{self.counter}\{{([^}}]*)\}} (\S+)$", re.M)
        total = 0.0
        for labels, value in pattern.findall(text):
            ok = "code=" not in labels or 'code="200"' in labels
            if f'model="{self.model}"' in labels and ok:
                total += float(value)
        return total

    def cpu_s(self) -> float:
        """CPU seconds of the server's process tree (reaped children included)."""
        total = 0.0
        try:
            procs = [self.psutil, *self.psutil.children(recursive=True)]
        except psutil.Error:
            return total
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def pids(self) -> set[int]:
        try:
            return {self.proc.pid, *(p.pid for p in self.psutil.children(recursive=True))}
        except psutil.Error:
            return {self.proc.pid}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for child in self.psutil.children(recursive=True):
                    child.kill()
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def start_ours(
    case: Case,
    onnx_path: Path,
    batching: bool,
    spinning: bool,
    logs: Path,
    *,
    live_meter: bool = True,
) -> Server:
    from workbench.ship.bundle import export

    name = ("ours" if batching else "ours-nobatch") + ("" if live_meter else "-nometer")
    bundle = BENCH / "bundles" / f"{case.model}-{name}"
    export(
        onnx_path,
        bundle,
        name=case.model,
        overwrite=True,
        threads={"threads": case.threads, "spinning": spinning},
        batching={
            "enabled": batching,
            "max_batch_rows": case.max_batch_rows,
            "max_delay_ms": case.max_delay_ms,
            "max_queue_rows": 4096,
        },
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-m", "serving", ".", "--port", str(port), "--log-level", "warning"]
    if not live_meter:
        cmd.append("--no-live-meter")
    server = Server(
        name,
        cmd,
        port,
        case.model,
        logs / f"{case.model}-{name}.log",
        bundle,
        env,
        counter=(port, "serving_requests_total"),
    )
    server.wait_ready()
    return server


MLSERVER_MODEL = '''\
"""A small onnxruntime MLModel for the benchmark (written by benchmarks/serving.py)."""

import json
import os

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
TRITON_CONFIG = json.loads(os.environ["BENCH_TRITON_CONFIG"])


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.settings.parameters.extra["threads"])
        options.inter_op_num_threads = 1
        spinning = self.settings.parameters.extra["spinning"]
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self.session.run(self.output_names, feed)
        # No per-output 'parameters': perf_analyzer reads any as binary-extension metadata.
        outputs = [
            ResponseOutput(name=n, shape=list(a.shape), datatype=DATATYPES[a.dtype],
                           data=a.ravel().tolist())
            for n, a in zip(self.output_names, results)
        ]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)

    @custom_handler(rest_path="/v2/models/{name}/config".format(name=TRITON_CONFIG["name"]),
                    rest_method="GET")
    async def triton_config(self) -> dict:
        return TRITON_CONFIG
'''


def ensure_mlserver() -> Path:
    """MLServer in its own virtualenv (created once); returns its ``mlserver`` executable."""
    exe = MLSERVER_VENV / "bin" / "mlserver"
    marker = MLSERVER_VENV / f".installed-{MLSERVER_VERSION}-ort{ort.__version__}"
    if exe.is_file() and marker.is_file():
        return exe
    print(f"installing MLServer {MLSERVER_VERSION} into {MLSERVER_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run(
        [
            str(MLSERVER_VENV / "bin" / "pip"),
            "install",
            "-q",
            f"mlserver=={MLSERVER_VERSION}",
            "httptools",
            "uvloop==0.21.0",  # uvloop 0.23 crash-loops MLServer 1.7.1's workers
            f"onnxruntime=={ort.__version__}",
            f"numpy=={np.__version__}",
        ],
        check=True,
    )
    marker.write_text("ok\n")
    return exe


def start_mlserver(
    case: Case,
    onnx_path: Path,
    batching: bool,
    triton_config: dict,
    declared: tuple[list[dict], list[dict]],
    spinning: bool,
    logs: Path,
) -> Server:
    inputs, outputs = declared
    exe = ensure_mlserver()
    name = "mlserver-batching" if batching else "mlserver-fastest"
    repo = BENCH / "mlserver" / f"{case.model}-{name}"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / case.model).mkdir(parents=True)
    (repo / "bench_model.py").write_text(MLSERVER_MODEL)
    port, grpc, metrics = free_port(), free_port(), free_port()
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,
        "metrics_port": metrics,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings: dict[str, Any] = {
        "name": case.model,
        "implementation": "bench_model.OnnxModel",
        "parameters": {
            "uri": str(onnx_path),
            "extra": {"threads": case.threads, "spinning": str(int(spinning))},
        },
        "inputs": inputs,
        "outputs": outputs,
    }
    if batching:
        model_settings["max_batch_size"] = case.max_batch_rows
        model_settings["max_batch_time"] = case.max_delay_ms / 1000
    (repo / case.model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PYTHONPATH=str(repo),
        BENCH_TRITON_CONFIG=json.dumps(triton_config),
        PATH=f"{MLSERVER_VENV / 'bin'}:{env.get('PATH', '')}",
    )
    server = Server(
        name,
        [str(exe), "start", "."],
        port,
        case.model,
        logs / f"{case.model}-{name}.log",
        repo,
        env,
        counter=(metrics, "model_infer_request_success_total"),
    )
    server.wait_ready()
    return server


# -- load generation -----------------------------------------------------------------------------


def perf_analyzer() -> str:
    for path in (
        os.environ.get("PERF_ANALYZER"),
        str(Path.home() / ".cache" / "perf-analyzer" / "perf_analyzer.sh"),
    ):
        if path and Path(path).is_file():
            return path
    if not PERF_INSTALLER.is_file():
        sys.exit(f"perf_analyzer not found; set PERF_ANALYZER or provide {PERF_INSTALLER}")
    out = subprocess.run(["bash", str(PERF_INSTALLER)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return (
        t.user
        + t.nice
        + t.system
        + getattr(t, "irq", 0)
        + getattr(t, "softirq", 0)
        + getattr(t, "steal", 0)
    )


def window_s(case: Case, args) -> float:
    if args.window_s:
        return args.window_s
    return case.window_s / 10 if args.quick else case.window_s


def perf_analyzer_args(tool: str, server: Server, data: Path, concurrency: int) -> list[str]:
    """The part of every perf_analyzer call that names the server, model, load and input."""
    return [
        tool,
        "-m",
        server.model,
        "-u",
        f"127.0.0.1:{server.port}",
        "-i",
        "http",
        "--concurrency-range",
        str(concurrency),
        "--input-data",
        str(data),
    ]


def run_window(
    tool: str, server: Server, data: Path, tensors: str, concurrency: int, args, case: Case
) -> Window | None:
    """One perf_analyzer run (time windows until stable); None when it never stabilised."""
    cmd = [
        *perf_analyzer_args(tool, server, data, concurrency),
        "-p",
        str(int(window_s(case, args) * 1000)),
        "-s",
        str(args.stability),
        "--max-trials",
        str(args.max_trials),
    ]
    if tensors == "json":
        cmd += ["--input-tensor-format", "json", "--output-tensor-format", "json"]
    me = psutil.Process()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    answered_before = server.answered()
    server_before, busy_before, me_before = server.cpu_s(), busy_cpu_s(), sum(me.cpu_times()[:2])
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    server_cpu = server.cpu_s() - server_before
    busy = busy_cpu_s() - busy_before
    me_cpu = sum(me.cpu_times()[:2]) - me_before
    answered = server.answered() - answered_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (
        children_after.ru_utime
        - children_before.ru_utime
        + children_after.ru_stime
        - children_before.ru_stime
    )
    out = done.stdout
    if done.returncode != 0:
        if "Failed to obtain stable measurement" in out + done.stderr:
            return None
        raise RuntimeError(
            f"perf_analyzer failed against {server.name}: {out[-1500:]}{done.stderr[-1500:]}"
        )
    others = max(0.0, busy - server_cpu - client_cpu - me_cpu)
    return Window(
        requests=int(answered),
        throughput=float(re.search(r"Throughput: ([\d.]+) infer/sec", out).group(1)),
        p50_ms=int(re.search(r"p50 latency: (\d+) usec", out).group(1)) / 1000,
        p99_ms=int(re.search(r"p99 latency: (\d+) usec", out).group(1)) / 1000,
        server_cpu_us_per_request=server_cpu / max(answered, 1) * 1e6,
        client_cpu_us_per_request=client_cpu / max(answered, 1) * 1e6,
        others_cores=others / wall,
        wall_s=wall,
    )


def prime(tool: str, server: Server, data: Path, case: Case) -> None:
    """Untimed requests first, so that no server's first window pays for its first calls."""
    count = 200 if case.model != "minilm" else 16
    cmd = [
        *perf_analyzer_args(tool, server, data, 4),
        "--request-count",
        str(count),
        "--input-tensor-format",
        "json",
        "--output-tensor-format",
        "json",
    ]
    subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)


def measure(
    tool: str, server: Server, data: Path, tensors: str, concurrency: int, args, case: Case
) -> Point:
    quiet: list[Window] = []
    noisy: list[Window] = []
    unstable = 0
    while len(quiet) < args.windows and len(noisy) + unstable <= args.max_retries:
        window = run_window(tool, server, data, tensors, concurrency, args, case)
        if window is None:
            unstable += 1
        elif window.others_cores <= args.noisy_cores:
            quiet.append(window)
        else:
            noisy.append(window)
    used = quiet or noisy
    if not used:
        raise RuntimeError(
            f"perf_analyzer never stabilised against {server.name} at c="
            f"{concurrency}; use a longer --window-s or a quieter machine"
        )
    med = {
        f: statistics.median(getattr(w, f) for w in used)
        for f in (
            "throughput",
            "p50_ms",
            "p99_ms",
            "server_cpu_us_per_request",
            "client_cpu_us_per_request",
            "others_cores",
        )
    }
    point = Point(
        server.name,
        case.model,
        tensors,
        concurrency,
        windows=len(used),
        noisy_windows=len(noisy) + unstable,
        raw=quiet + noisy,
        **med,
    )
    flag = " (noisy)" if not quiet else ""
    print(
        f"  {server.name:18s} {tensors:6s} c={concurrency:<3d} {point.throughput:9.1f} infer/s  "
        f"p50 {point.p50_ms:7.2f} ms  p99 {point.p99_ms:7.2f} ms  server CPU "
        f"{point.server_cpu_us_per_request:7.0f} us/req  others {point.others_cores:.2f} "
        f"cores{flag}",
        flush=True,
    )
    return point


# -- models and the in-process ceiling -------------------------------------------------------------


def model_inputs(model: str) -> tuple[Path, dict[str, np.ndarray]]:
    """The model's ONNX file and 16 rows of real example inputs."""
    from workbench.models import load_model

    handle = load_model(model)
    return handle.onnx(), handle.example_inputs(16)


def input_data_file(case: Case, feed: dict[str, np.ndarray]) -> Path:
    """perf_analyzer --input-data: 16 real rows, each with its shape (no batch axis)."""
    rows = []
    for i in range(len(next(iter(feed.values())))):
        rows.append(
            {
                name: {"content": a[i].ravel().tolist(), "shape": list(a.shape[1:])}
                for name, a in feed.items()
            }
        )
    path = BENCH / f"{case.model}-input.json"
    path.write_text(json.dumps({"data": rows}))
    return path


def triton_config(model: str, onnx_path: Path) -> tuple[dict, tuple[list[dict], list[dict]]]:
    """The Triton config every server reports, and MLServer's declared inputs."""
    from serving.models import OnnxModel

    m = OnnxModel(onnx_path, name=model)

    def tensors(sig: dict) -> list[dict]:
        return [
            {"name": n, "data_type": f"TYPE_{t}", "dims": list(s[1:])} for n, (t, s) in sig.items()
        ]

    config = {
        "name": model,
        "platform": "onnxruntime_onnx",
        "max_batch_size": CONFIG_MAX_BATCH,
        "input": tensors(m.inputs),
        "output": tensors(m.outputs),
    }
    inputs = [{"name": n, "datatype": t, "shape": list(s)} for n, (t, s) in m.inputs.items()]
    outputs = [{"name": n, "datatype": t, "shape": list(s)} for n, (t, s) in m.outputs.items()]
    return config, (inputs, outputs)


def in_process(case: Case, onnx_path: Path, feed: dict[str, np.ndarray], seconds: float) -> dict:
    """ONNX Runtime called directly with the servers' threads, batch 1 and 8, with its thread
    pool spinning and not; the faster setting at batch 1 is the one every server then uses."""
    out: dict[str, Any] = {"threads": case.threads}
    for spinning in (False, True):
        options = ort.SessionOptions()
        options.intra_op_num_threads = case.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        sess = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        for batch in (1, 8):
            rows = {k: np.ascontiguousarray(v[:batch]) for k, v in feed.items()}
            for _ in range(5):
                sess.run(None, rows)
            times = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(times) < 5:
                t0 = time.perf_counter()
                sess.run(None, rows)
                times.append(time.perf_counter() - t0)
            out[f"spinning_{spinning}_batch_{batch}"] = {
                "items_per_s": batch * len(times) / sum(times),
                "p50_ms": float(np.percentile(times, 50) * 1e3),
                "p99_ms": float(np.percentile(times, 99) * 1e3),
                "calls": len(times),
            }
    spin = max((False, True), key=lambda x: out[f"spinning_{x}_batch_1"]["items_per_s"])
    out["spinning"] = spin
    out["batch_1"] = out[f"spinning_{spin}_batch_1"]
    out["batch_8"] = out[f"spinning_{spin}_batch_8"]
    out["ceiling_items_per_s"] = max(
        v["items_per_s"] for k, v in out.items() if k.startswith("spinning_")
    )
    print(
        f"  in-process         batch 1: {out['batch_1']['items_per_s']:9.1f} items/s  p50 "
        f"{out['batch_1']['p50_ms']:.3f} ms; batch 8: {out['batch_8']['items_per_s']:.1f} "
        f"items/s (thread pool spinning: {spin})",
        flush=True,
    )
    return out


# -- one model, and the summary --------------------------------------------------------------------


def bench_model(case: Case, tool: str, args, logs: Path) -> dict[str, Any]:
    print(f"{case.model}:", flush=True)
    onnx_path, feed = model_inputs(case.model)
    data = input_data_file(case, feed)
    config, declared = triton_config(case.model, onnx_path)
    ceiling = in_process(case, onnx_path, feed, seconds=window_s(case, args))
    spin = ceiling["spinning"]
    levels = case.quick_concurrency if args.quick else case.concurrency
    points: list[Point] = []
    plans = [
        ("ours", lambda: start_ours(case, onnx_path, True, spin, logs), ("json", "binary"), levels),
        ("ours-nobatch", lambda: start_ours(case, onnx_path, False, spin, logs), ("json",), (1,)),
        (
            "mlserver-fastest",
            lambda: start_mlserver(case, onnx_path, False, config, declared, spin, logs),
            ("json",),
            levels,
        ),
        (
            "mlserver-batching",
            lambda: start_mlserver(case, onnx_path, True, config, declared, spin, logs),
            ("json",),
            levels,
        ),
    ]
    for _, start, formats, concurrencies in plans:
        server = start()
        try:
            prime(tool, server, data, case)
            for tensors in formats:
                for c in concurrencies:
                    points.append(measure(tool, server, data, tensors, c, args, case))
        finally:
            server.stop()
    return summarise(case, points, ceiling, args)


METERING_RESULTS = ROOT / "benchmarks" / "results" / "serving_metering.json"


def bench_metering(case: Case, tool: str, args, logs: Path) -> dict[str, Any]:
    """Server CPU per request at c=16 (JSON) with the live energy meter on and off.

    The two servers alternate (off, on, off, on, ...) for ``args.pairs`` pairs, so a slow spell of
    the machine falls on both; each pair gives one on/off ratio. The noise floor is the same
    comparison between consecutive runs of the meter-off server alone.
    """
    print(f"{case.model}: live meter on vs off, c={COMPARE_AT}, JSON", flush=True)
    onnx_path, feed = model_inputs(case.model)
    data = input_data_file(case, feed)
    spin = in_process(case, onnx_path, feed, seconds=window_s(case, args))["spinning"]
    runs: dict[str, list[Point]] = {"off": [], "on": []}
    for _ in range(args.pairs):
        for label in ("off", "on"):
            server = start_ours(case, onnx_path, True, spin, logs, live_meter=label == "on")
            try:
                prime(tool, server, data, case)
                runs[label].append(measure(tool, server, data, "json", COMPARE_AT, args, case))
            finally:
                server.stop()
    cpu = {k: [p.server_cpu_us_per_request for p in v] for k, v in runs.items()}
    ratios = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
    floor = [b / a for a, b in zip(cpu["off"], cpu["off"][1:], strict=False)]
    return {
        "model": case.model,
        "concurrency": COMPARE_AT,
        "tensors": "json",
        "pairs": args.pairs,
        "server_cpu_us_per_request": {k: v for k, v in cpu.items()},
        "median_server_cpu_us_per_request": {k: statistics.median(v) for k, v in cpu.items()},
        "on_off_ratios": ratios,
        "median_on_off_ratio": statistics.median(ratios),
        "noise_floor_off_off_ratios": floor,
        "target_on_off_ratio_at_most": 1.05,
        "met": statistics.median(ratios) <= 1.05,
        "method": "measured: psutil CPU time of the server's process tree / requests it answered",
        "points": [asdict(p) for v in runs.values() for p in v],
    }


def _get(points: list[Point], server: str, tensors: str, c: int) -> Point | None:
    return next(
        (p for p in points if (p.server, p.tensors, p.concurrency) == (server, tensors, c)), None
    )


COMPARE_AT = 16  # the comparison point: concurrency 16


def summarise(case: Case, points: list[Point], ceiling: dict, args) -> dict[str, Any]:
    measured = {p.concurrency for p in points if p.server == "ours"}
    top = COMPARE_AT if COMPARE_AT in measured else max(measured)
    ours = _get(points, "ours", "json", top)
    ours_bin = _get(points, "ours", "binary", top)
    mls = _get(points, "mlserver-fastest", "json", top)
    c1 = _get(points, "ours", "json", 1)
    c1_off = _get(points, "ours-nobatch", "json", 1)
    mid = [
        p.throughput
        for p in points
        if p.server == "ours" and p.tensors == "json" and 4 <= p.concurrency <= 16
    ]
    mls_mid = [
        p.throughput for p in points if p.server.startswith("mlserver") and 4 <= p.concurrency <= 16
    ]
    result: dict[str, Any] = {
        "model": case.model,
        "concurrency_compared": top,
        "throughput_vs_mlserver": ours.throughput / mls.throughput,
        "binary_throughput_vs_mlserver": ours_bin.throughput / mls.throughput,
        "p99_vs_mlserver": ours.p99_ms / mls.p99_ms,
        "server_cpu_us_per_request": ours.server_cpu_us_per_request,
        "mlserver_cpu_us_per_request": mls.server_cpu_us_per_request,
        "ceiling_fraction": max(mid) / ceiling["ceiling_items_per_s"] if mid else None,
        "mlserver_ceiling_fraction": (
            max(mls_mid) / ceiling["ceiling_items_per_s"] if mls_mid else None
        ),
        "c1_overhead_ms": c1.p50_ms - ceiling["batch_1"]["p50_ms"],
        "c1_p50_batching_vs_off": c1.p50_ms / c1_off.p50_ms,
        "noisy_windows": sum(p.noisy_windows for p in points),
        "in_process": ceiling,
        "points": [asdict(p) for p in points],
        "settings": {
            "threads": case.threads,
            "thread_pool_spinning": ceiling["spinning"],
            "max_batch_rows": case.max_batch_rows,
            "max_delay_ms": case.max_delay_ms,
            "mlserver": MLSERVER_VERSION,
            "load_generator": "perf_analyzer (tritonclient 2.50.0)",
            "runs_per_point": args.windows,
            "window_s": window_s(case, args),
            "stability_pct": args.stability,
            "max_trials": args.max_trials,
            "noisy_cores": args.noisy_cores,
        },
        "mode": "quick" if args.quick else "full",
        "method": "measured",
    }
    if top != COMPARE_AT:
        result["note"] = f"compared at concurrency {top}: {COMPARE_AT} was not measured"
    goals = TARGETS[case.model]
    checks = {}
    for name, goal in goals.items():
        if name.endswith("_at_most"):
            value = result[name.removesuffix("_at_most")]
            checks[name.removesuffix("_at_most")] = {"goal": f"<= {goal}", "met": value <= goal}
        else:
            value = result[name]
            checks[name] = {"goal": f">= {goal}", "met": value is not None and value >= goal}
    result["targets"] = checks
    return result


def environment() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "logical_cores": psutil.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "load_average_at_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows, few levels, one window")
    p.add_argument("--models", default="digits-cnn,minilm")
    p.add_argument("--windows", type=int, default=None, help="quiet runs per point (3)")
    p.add_argument(
        "--window-s",
        type=float,
        default=None,
        help="perf_analyzer measurement window in seconds (default per model)",
    )
    p.add_argument("--stability", type=int, default=None, help="perf_analyzer -s (30)")
    p.add_argument("--max-trials", type=int, default=None, help="perf_analyzer --max-trials (6)")
    p.add_argument(
        "--noisy-cores",
        type=float,
        default=0.25,
        help="a window is noisy when other processes used more cores than this",
    )
    p.add_argument("--max-retries", type=int, default=None, help="noisy windows tolerated (4)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--metering",
        action="store_true",
        help="only the live meter's overhead: digits-cnn at c=16 with the meter on vs off",
    )
    p.add_argument("--pairs", type=int, default=3, help="meter on/off pairs with --metering")
    p.add_argument(
        "--resummarise",
        action="store_true",
        help="recompute the summaries from the raw points stored in --out (no new measurement)",
    )
    args = p.parse_args(argv)
    if args.resummarise:
        return resummarise(Path(args.out))
    args.windows = args.windows or (1 if args.quick else 3)
    args.stability = args.stability or (100 if args.quick else 30)
    args.max_trials = args.max_trials or (3 if args.quick else 6)
    args.max_retries = (
        args.max_retries if args.max_retries is not None else (0 if args.quick else 4)
    )
    BENCH.mkdir(exist_ok=True)
    logs = BENCH / "logs"
    logs.mkdir(exist_ok=True)
    tool = perf_analyzer()
    env = environment()
    if args.metering:
        return _write_metering(bench_metering(CASES["digits-cnn"], tool, args, logs), env)
    results = []
    for model in args.models.split(","):
        entry = bench_model(CASES[model], tool, args, logs)
        entry["environment"] = {**env, "load_average_at_end": os.getloadavg()}
        results.append(entry)
        print(
            textwrap.indent(
                json.dumps(
                    {
                        k: v
                        for k, v in entry.items()
                        if k not in ("points", "in_process", "settings")
                    },
                    indent=1,
                    default=str,
                ),
                "  ",
            ),
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


def _write_metering(entry: dict[str, Any], env: dict[str, Any]) -> int:
    entry["environment"] = {**env, "load_average_at_end": os.getloadavg()}
    print(
        f"live meter: server CPU {entry['median_server_cpu_us_per_request']['on']:.0f} us/req on, "
        f"{entry['median_server_cpu_us_per_request']['off']:.0f} off: median ratio "
        f"{entry['median_on_off_ratio']:.3f} (pairs {entry['on_off_ratios']}; noise floor "
        f"off/off {entry['noise_floor_off_off_ratios']}); target <= 1.05",
        flush=True,
    )
    METERING_RESULTS.write_text(json.dumps(entry, indent=2, default=str) + "\n")
    print(f"wrote {METERING_RESULTS}")
    return 0


def resummarise(path: Path) -> int:
    """Recompute each model's summary from the raw points a full run stored in ``path``."""
    entries = json.loads(path.read_text())
    fresh = []
    for entry in entries:
        points = [Point(**{**p, "raw": [Window(**w) for w in p["raw"]]}) for p in entry["points"]]
        settings = entry["settings"]
        args = argparse.Namespace(
            windows=settings["runs_per_point"],
            stability=settings["stability_pct"],
            max_trials=settings["max_trials"],
            noisy_cores=settings["noisy_cores"],
            quick=entry["mode"] == "quick",
            window_s=settings["window_s"],
        )
        summary = summarise(CASES[entry["model"]], points, entry["in_process"], args)
        summary["environment"] = entry["environment"]
        summary["resummarised_from_stored_points"] = True
        fresh.append(summary)
    path.write_text(json.dumps(fresh, indent=2, default=str) + "\n")
    for s in fresh:
        print({k: v for k, v in s.items() if k not in ("points", "in_process", "settings")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
