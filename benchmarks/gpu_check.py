"""Issue #22's GPU check: every CUDA path of the workbench in one run, each step timed and
reported ``ok``, ``skipped`` (with the reason) or ``failed`` (with a one-line error).

Steps: ONNX Runtime's install and providers; the GPU's facts (name, driver, power limit through
NVML); the ``gpu``-marked tests; ``benchmarks/gpu_energy.py`` (NVML's energy counter against power
sampling, target within 5 %); digits-cnn and minilm profiled on CUDA at batch 1 and 32 with
energy; the compression search with the fp16 variants; a bundle served on the GPU and driven for
30 s. Without a CUDA GPU every GPU step is skipped with that reason and the run exits 0; a failed
step exits 1.

The JSON (every figure with its ``method``) goes to ``--out`` when a GPU was found (default
``benchmarks/results/gpu_check.json``); without one it is written only to an ``--out`` given
explicitly, so that no CPU-only file lands in ``benchmarks/results/`` looking like a GPU result.
``benchmarks/gpu_check.sh`` makes a virtualenv with the ``gpu`` extra and runs this in it.

    python benchmarks/gpu_check.py [--out FILE] [--skip-tests] [--serve-seconds 30] [--budget-s S]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and its serving.py would shadow the
# serving package that exporting a bundle imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "gpu_check.json"
NO_GPU = "no CUDA GPU: torch sees no NVIDIA GPU on this machine"
CPU_ONLY_RUNTIME = "the runtime serves on CPU only (serving/models.py)"
#: Known issue #19: onnxruntime and onnxruntime-gpu install the same package folder.
ORT_REPAIR = "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`"
ORT_BROKEN = (
    "onnxruntime does not import in this environment ({error}): onnxruntime and onnxruntime-gpu "
    "are both installed and overwrote each other's files (known issue #19); repair with "
    f"{ORT_REPAIR}"
)
ORT_MISSING = "onnxruntime does not import in this environment ({error})"
ORT_SHADOWED = (
    "onnxruntime {cpu} and onnxruntime-gpu {gpu} are both installed and share one package folder "
    "(known issue #19): the build that imports is {version}, {providers}; repair with "
    f"{ORT_REPAIR}"
)
ENERGY_TARGET = 0.05
PROFILE_MODELS = ("digits-cnn", "minilm")
PROFILE_BATCHES = (1, 32)
SEARCH_VARIANTS = ("torch-fp32", "torch-fp16-cuda", "ort-fp16-cuda")
TESTS_TIMEOUT_S = 240
ENERGY_TIMEOUT_S = 240
SERVER_START_S = 60


class Outcome(Exception):
    """Ends a step with a status and a reason, keeping what it found so far."""

    status = "failed"

    def __init__(self, reason: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.data = data or {}


class Skip(Outcome):
    status = "skipped"


class Fail(Outcome):
    status = "failed"


class Warn(Outcome):
    """Ends a step as ok, with a warning in place of the reason."""

    status = "ok"


@dataclass
class Step:
    """One step's result as written to the JSON."""

    name: str
    gpu: bool
    status: str = "ok"
    seconds: float = 0.0
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Machine:
    """What the steps need to know about this machine, probed once."""

    cuda: bool
    gpu_name: str | None
    ort_version: str | None
    ort_providers: list[str]
    ort_error: str | None
    ort_shadowed: str | None = None

    @property
    def ort_cuda(self) -> bool:
        return "CUDAExecutionProvider" in self.ort_providers

    @property
    def ort_cuda_reason(self) -> str:
        """Why ONNX Runtime cannot run on CUDA here."""
        if self.ort_error:
            return self.ort_error
        if self.ort_shadowed:
            return self.ort_shadowed
        return (
            f"ONNX Runtime {self.ort_version} has no CUDAExecutionProvider (providers: "
            f"{', '.join(self.ort_providers)}): install onnxruntime-gpu (the 'gpu' extra)"
        )


def figure(value: float | None, unit: str, method: str = "measured", **extra: Any) -> dict:
    """A number with its unit and how it was obtained (``measured``, ``estimated``...)."""
    return {"value": value, "unit": unit, "method": method, **extra}


def one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:500]


def probe() -> Machine:
    """CUDA through torch, ONNX Runtime's providers (or why it does not import)."""
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
        name = torch.cuda.get_device_name(0) if cuda else None
    except ImportError:
        cuda, name = False, None
    installed = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    both = len(installed) == 2
    try:
        import onnxruntime as ort

        version, providers, error = ort.__version__, list(ort.get_available_providers()), None
    except Exception as exc:  # ImportError, or AttributeError on a half-overwritten package
        version, providers = None, []
        error = (ORT_BROKEN if both else ORT_MISSING).format(error=one_line(exc))
    machine = Machine(cuda, name, version, providers, error)
    if both and not error:
        cuda_ep = "with" if machine.ort_cuda else "without"
        machine.ort_shadowed = ORT_SHADOWED.format(
            cpu=installed["onnxruntime"],
            gpu=installed["onnxruntime-gpu"],
            version=version,
            providers=f"{cuda_ep} CUDAExecutionProvider",
        )
    return machine


def run_step(name: str, gpu: bool, fn: Callable[[], dict[str, Any]]) -> Step:
    """Run one step; any exception ends that step alone, as failed with its first line."""
    step = Step(name, gpu)
    start = time.perf_counter()
    try:
        step.data = fn()
    except Outcome as out:
        step.status, step.reason, step.data = out.status, str(out), out.data
    except Exception as exc:  # one step's failure must not stop the others
        step.status, step.reason = "failed", one_line(exc)
    step.seconds = round(time.perf_counter() - start, 2)
    return step


# ------------------------------------------------------------------------- steps


def onnxruntime_step(machine: Machine) -> dict[str, Any]:
    """ONNX Runtime imports; with both packages of #19 installed, a GPU machine fails here when
    the CUDA provider is lost, and any other machine gets a warning."""
    if machine.ort_error:
        raise Fail(machine.ort_error)
    data = {"version": machine.ort_version, "providers": machine.ort_providers}
    if machine.ort_shadowed and machine.cuda and not machine.ort_cuda:
        raise Fail(machine.ort_shadowed, data)
    if machine.ort_shadowed:
        raise Warn(machine.ort_shadowed, data)
    return data


def gpu_facts(machine: Machine) -> dict[str, Any]:
    """Name, memory and CUDA from torch; driver and power limit from NVML."""
    if not machine.cuda:
        raise Skip(NO_GPU)
    import torch

    props = torch.cuda.get_device_properties(0)
    facts: dict[str, Any] = {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "capability": f"{props.major}.{props.minor}",
        "memory_total": figure(round(props.total_memory / 2**30, 1), "GiB", source="torch"),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
    try:
        import pynvml
    except ImportError as exc:
        raise Skip(
            "nvidia-ml-py is not installed (the 'gpu' extra): no driver facts", facts
        ) from exc
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
        driver = pynvml.nvmlSystemGetDriverVersion()
        facts["driver_version"] = driver.decode() if isinstance(driver, bytes) else driver
        facts["power_limit"] = figure(limit_w, "W", source="NVML power management limit")
    finally:
        pynvml.nvmlShutdown()
    return facts


def gpu_test_files() -> list[str]:
    """Test files that hold ``gpu``-marked tests (collecting only these keeps the step short
    and free of the other tests' optional dependencies)."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if "mark.gpu" in p.read_text(encoding="utf-8")
    )


def junit_counts(path: Path) -> dict[str, Any]:
    """Passed, skipped, failed and errors from pytest's JUnit XML, with skip reasons."""
    cases = ET.parse(path).getroot().iter("testcase")
    counts: dict[str, Any] = {"passed": 0, "skipped": 0, "failed": 0, "errors": 0, "skips": []}
    for case in cases:
        test = f"{case.get('classname')}::{case.get('name')}"
        if (skip := case.find("skipped")) is not None:
            counts["skipped"] += 1
            counts["skips"].append({"test": test, "reason": skip.get("message", "")})
        elif case.find("failure") is not None:
            counts["failed"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        else:
            counts["passed"] += 1
    return counts


def gpu_tests(machine: Machine, skip_tests: bool) -> dict[str, Any]:
    if skip_tests:
        raise Skip("--skip-tests given")
    files = gpu_test_files()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        proc = subprocess.run(
            [*cmd, f"--junitxml={junit}", *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TESTS_TIMEOUT_S,
        )
        if not junit.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
            raise Fail(f"pytest exited {proc.returncode} with no report: {' '.join(tail)}")
        data = {"files": files, "exit_code": proc.returncode, **junit_counts(junit)}
    if data["failed"] or data["errors"] or proc.returncode not in (0, 5):
        raise Fail(f"pytest -m gpu: {data['failed']} failed, {data['errors']} errors", data)
    if not machine.cuda and not data["passed"]:
        raise Skip(f"{NO_GPU} (all {data['skipped']} gpu tests skipped)", data)
    return data


def gpu_energy(machine: Machine) -> dict[str, Any]:
    """benchmarks/gpu_energy.py: NVML's counter against 20 Hz sampling over the same windows."""
    if not machine.cuda:
        raise Skip(NO_GPU)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_energy.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=ENERGY_TIMEOUT_S,
    )
    path = RESULTS / "gpu_energy.json"
    if proc.returncode or not path.exists() or path.stat().st_mtime < started:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        raise Fail(f"gpu_energy.py exited {proc.returncode}: {' '.join(tail)}")
    result = json.loads(path.read_text(encoding="utf-8"))
    worst = result["counter_vs_sampling_max_relative_difference"]
    data = {
        "json": str(path.relative_to(ROOT)),
        "max_relative_difference": figure(worst, "fraction", target=ENERGY_TARGET),
        "result": result,
    }
    if worst > ENERGY_TARGET:
        raise Fail(f"NVML counter and sampling differ by {worst:.1%} (target within 5 %)", data)
    return data


def profile_row(p: Any) -> dict[str, Any]:
    """One CUDA profile's figures, each with its method."""
    row: dict[str, Any] = {
        "model": p.model,
        "backend": p.backend,
        "device": p.device,
        "batch_size": p.batch_size,
        "latency_ms_p50": figure(p.latency_ms_p50, "ms", p.latency_method),
        "latency_ms_p99": figure(p.latency_ms_p99, "ms", p.latency_method),
        "throughput": figure(p.throughput_items_per_s, "items/s", p.latency_method),
        "memory_peak": figure(p.memory_peak_mb, "MB", source=p.memory_method),
    }
    if p.energy is not None:
        e = p.energy
        row["energy_j_per_item"] = figure(e.energy_j_per_item, "J", e.method, meter=e.meter)
        row["energy_j_per_item_by_component"] = {
            part: figure(j, "J", e.method_by_component.get(part, e.method))
            for part, j in e.energy_j_per_item_by_component.items()
        }
        row["power_w_avg"] = figure(e.power_w_avg, "W", e.method)
        row["energy_warnings"] = list(e.warnings)
    return row


def gpu_energy_measured(row: dict[str, Any]) -> bool:
    parts = row.get("energy_j_per_item_by_component", {})
    return any(k.startswith("gpu") and v["method"] == "measured" for k, v in parts.items())


def cuda_profiles(machine: Machine) -> dict[str, Any]:
    """digits-cnn and minilm at batch 1 and 32 on CUDA, energy on; torch, and ONNX Runtime where
    its CUDA provider is installed."""
    if not machine.cuda:
        raise Skip(NO_GPU)
    from workbench.errors import MissingExtraError
    from workbench.measure import profile
    from workbench.models import load_model

    backends = ["torch"]
    skipped: list[dict[str, str]] = []
    if machine.ort_cuda:
        backends.append("onnxruntime")
    else:
        skipped.append({"backend": "onnxruntime", "reason": machine.ort_cuda_reason})
    rows = []
    for name in PROFILE_MODELS:
        try:
            handle = load_model(name)
        except MissingExtraError as exc:
            skipped.append({"model": name, "reason": str(exc)})
            continue
        for backend in backends:
            for batch in PROFILE_BATCHES:
                p = profile(
                    handle,
                    backend=backend,
                    device="cuda",
                    batch_size=batch,
                    iterations=2000,
                    max_seconds=4.0,
                    energy=True,
                    energy_min_seconds=2.0,
                    idle_seconds=1.0,
                    operators=False,
                    store=False,
                )
                rows.append(profile_row(p))
    data = {"profiles": rows, "skipped": skipped}
    unmeasured = [
        f"{r['model']} {r['backend']} b={r['batch_size']}"
        for r in rows
        if not gpu_energy_measured(r)
    ]
    if not rows:
        raise Fail("no configuration was profiled on CUDA", data)
    if unmeasured:
        raise Fail(f"the GPU's energy was not measured for {', '.join(unmeasured)}", data)
    return data


def candidate_row(c: Any) -> dict[str, Any]:
    p = c.profile
    row: dict[str, Any] = {
        "label": c.label,
        "variant": c.name,
        "device": c.variant.device,
        "batch_size": c.batch_size,
        "quality_drop": figure(c.quality_drop, "fraction", source="held-out data"),
    }
    if p is not None:
        row["latency_ms_p99"] = figure(p.latency_ms_p99, "ms", p.latency_method)
        if p.energy is not None:
            row["energy_j_per_item"] = figure(p.energy.energy_j_per_item, "J", p.energy.method)
    return row


def fp16_search(machine: Machine) -> dict[str, Any]:
    """The search over fp32 and the fp16 variants. It has no device option: each variant names
    its own device, the fp16 ones ``cuda`` and every other one the CPU."""
    if not machine.cuda:
        raise Skip(NO_GPU)
    from workbench.compress.search import optimize

    result = optimize(
        "digits-cnn",
        variants=list(SEARCH_VARIANTS),
        batch_sizes=list(PROFILE_BATCHES),
        threads=[1],
        strategy="grid",
        measure_seconds=1.0,
        budget_s=180,
        store=False,
        progress=False,
    )
    rec = result.recommendation
    data = {
        "device_selection": "per variant: torch-fp16-cuda and ort-fp16-cuda run on cuda, "
        "the others on the CPU (optimize has no device option)",
        "candidates": [candidate_row(c) for c in result.candidates if c.profile is not None],
        "skipped": result.skipped,
        "recommendation": rec.candidate.label if rec is not None else None,
        "unmet": result.unmet,
    }
    if not any(c["device"] == "cuda" for c in data["candidates"]):
        reasons = "; ".join(f"{s['variant']}: {s['reason']}" for s in result.skipped)
        raise Fail(f"no fp16 variant was measured on CUDA ({reasons or 'none built'})", data)
    return data


def cuda_serving(machine: Machine, seconds: float) -> dict[str, Any]:
    """A bundle served with the CUDA provider, driven for ``seconds``."""
    cpu_only = "CUDAExecutionProvider" not in (ROOT / "serving" / "models.py").read_text("utf-8")
    if not machine.cuda:
        raise Skip(f"{NO_GPU}; besides, {CPU_ONLY_RUNTIME}" if cpu_only else NO_GPU)
    if cpu_only:
        raise Skip(CPU_ONLY_RUNTIME)
    if not machine.ort_cuda:
        raise Skip(machine.ort_cuda_reason)
    return drive_bundle("digits-cnn", seconds)


# ------------------------------------------------------------------------- serving a bundle


def start_server(bundle: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    """``python -m serving BUNDLE --port 0``; returns once it listens, with its port."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", str(bundle), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Fail(f"the server exited ({proc.returncode}): {log_path.read_text()[-300:]}")
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if '"listening"' in line:
                return proc, int(json.loads(line)["port"])
        time.sleep(0.1)
    proc.kill()
    raise Fail(f"the server did not listen within {SERVER_START_S} s")


def wait_ready(port: int) -> None:
    import http.client

    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise Fail(f"the bundle was not ready within {SERVER_START_S} s")


def v2_body(feed: dict[str, Any]) -> bytes:
    """A V2 JSON request for numpy inputs."""
    types = {"float32": "FP32", "int64": "INT64", "int32": "INT32"}
    inputs = [
        {
            "name": k,
            "shape": list(v.shape),
            "datatype": types[str(v.dtype)],
            "data": v.ravel().tolist(),
        }
        for k, v in feed.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def drive_bundle(model: str, seconds: float) -> dict[str, Any]:
    """Export ``model``, serve the bundle on a loopback port and drive it closed-loop. Only the
    answered requests per second are kept: the closed loop's p50 is read from uvloop's loop clock,
    which moves in 1 ms steps, and shows 0 for answers faster than that."""
    from workbench.load import measure_capacity
    from workbench.models import load_model
    from workbench.ship import export

    handle = load_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        info = export(handle, Path(tmp) / "bundle")
        name = info.manifest.name
        proc, port = start_server(info.path, Path(tmp) / "server.log")
        try:
            wait_ready(port)
            body = v2_body(handle.example_inputs(1))
            cap = measure_capacity("127.0.0.1", port, name, body, duration_s=seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "model": name,
        "requests_per_s": figure(cap.requests_per_s, "requests/s", cap.method),
        "concurrency": cap.concurrency,
        "duration": figure(cap.duration_s, "s"),
        "refused_503": cap.refused_503,
    }


# ------------------------------------------------------------------------- report


def plan(machine: Machine, args: argparse.Namespace) -> list[tuple[str, bool, Callable]]:
    """The steps in order: (name, needs a GPU, what to run)."""
    return [
        ("onnxruntime", False, lambda: onnxruntime_step(machine)),
        ("gpu facts", True, lambda: gpu_facts(machine)),
        ("pytest -m gpu", True, lambda: gpu_tests(machine, args.skip_tests)),
        ("gpu energy", True, lambda: gpu_energy(machine)),
        ("profile on CUDA", True, lambda: cuda_profiles(machine)),
        ("fp16 search", True, lambda: fp16_search(machine)),
        ("serve on CUDA", True, lambda: cuda_serving(machine, args.serve_seconds)),
    ]


def print_table(steps: list[Step]) -> None:
    width = max(len(s.name) for s in steps)
    print(f"{'step':<{width}}  {'status':<7}  {'seconds':>7}  reason")
    for s in steps:
        print(f"{s.name:<{width}}  {s.status:<7}  {s.seconds:>7.1f}  {s.reason or ''}")


def report(machine: Machine, steps: list[Step], *, complete: bool) -> dict[str, Any]:
    facts = next((s.data for s in steps if s.name == "gpu facts" and s.data), None)
    return {
        "check": "issue #22: the workbench's CUDA paths on a GPU machine",
        "gpu": (facts or {"name": machine.gpu_name}) if machine.cuda else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "complete": complete,
        "ok": not any(s.status == "failed" for s in steps),
        "steps": [asdict(s) for s in steps],
        "method": "each figure carries its own method: measured (a clock, counter or sensor) "
        "or estimated; nothing here is typed in",
    }


def write(doc: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON file (default {DEFAULT_OUT} when a GPU is found; without one, written only "
        "when given)",
    )
    parser.add_argument("--skip-tests", action="store_true", help="skip the pytest -m gpu step")
    parser.add_argument("--serve-seconds", type=float, default=30.0)
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip the steps not begun by then"
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    machine = probe()
    out = args.out if args.out is not None else (DEFAULT_OUT if machine.cuda else None)
    steps: list[Step] = []
    for name, gpu, fn in plan(machine, args):
        print(f"... {name}", flush=True)
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            steps.append(
                Step(name, gpu, "skipped", reason=f"the {args.budget_s:g} s budget is spent")
            )
        else:
            steps.append(run_step(name, gpu, fn))
        write(report(machine, steps, complete=False), out)  # a killed run keeps what it did
    print_table(steps)
    doc = report(machine, steps, complete=True)
    write(doc, out)
    print(f"wrote {out}" if out else "no CUDA GPU: no JSON written (give --out FILE to write one)")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
