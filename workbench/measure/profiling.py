"""Measure one configuration (model, backend, device, batch size, threads), and sweeps of them.

For one configuration: warm-up, then timed runs until ``iterations`` or ``max_seconds`` (after at
least ``min_iterations``); latency percentiles, throughput, peak memory, parameters, size on disk,
FLOPs and a per-operator time table (from a separate, profiled pass so that the profiler's own
tracing never inflates the latency figures). Every result is appended to the run store.

On a GPU both backends are timed alike: inputs are placed on the device once, outputs stay there,
and the host-device copies are left out of the timed loop (``io_policy`` says so in every
profile; :func:`workbench.measure.backends.io_policy`). Energy on a GPU includes the GPU (NVML,
:func:`workbench.energy.auto.auto_meter_for`). Peak memory is read where it can be seen:
torch's CUDA allocator for torch on CUDA, the process's peak RSS growth on CPU; ONNX Runtime's
CUDA allocator is not visible, so that figure is ``None`` and says why (:func:`memory_method_for`).

Example
-------
>>> p = profile("digits-mlp", batch_size=8, iterations=50, store=False)
>>> p.latency_ms_p50 <= p.latency_ms_p99
True
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.checks import number, whole
from workbench.energy import EnergyFigures, Meter, per_inference
from workbench.errors import ConfigError
from workbench.measure.backends import (
    check_backend,
    check_threads,
    input_errors,
    io_policy,
    logical_cores,
    make_runner,
)
from workbench.measure.environment import environment
from workbench.measure.flops import onnx_flops, torch_flops
from workbench.measure.store import RunStore, open_store
from workbench.models import ModelHandle, load_model

PERCENTILES = (50, 90, 95, 99)
#: Raw latency samples kept per stored run (evenly strided beyond this; percentiles use all).
STORED_SAMPLES = 5000
#: ``memory_method`` of ONNX Runtime on CUDA: its arena is invisible to torch and unreported by ORT.
ORT_CUDA_MEMORY_UNKNOWN = "unknown (ONNX Runtime's CUDA allocator is not visible)"


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure and for how long. ``threads=None`` means all logical cores."""

    backend: str = "onnxruntime"
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None
    warmup: int = 10
    iterations: int = 200
    max_seconds: float = 10.0
    min_iterations: int = 10
    operators: bool = True
    operator_iterations: int = 20
    energy: bool = False
    energy_min_seconds: float = 2.0
    idle_seconds: float = 1.0
    carbon_region: str | None = None
    tdp_w: float | None = None

    def validated(self) -> ProfileConfig:
        """A copy with ``threads`` resolved; raises ConfigError naming a bad field."""
        for name in ("batch_size", "iterations", "min_iterations", "operator_iterations"):
            whole(name, getattr(self, name), minimum=1)
        whole("warmup", self.warmup, minimum=0, fix="0 skips the warm-up")
        number("max_seconds", self.max_seconds, minimum=0, open_low=True)
        if self.energy:
            number("energy_min_seconds", self.energy_min_seconds, minimum=0,
                   maximum=self.max_seconds, open_low=True,
                   fix="an energy window needs time to be read, within max_seconds")  # fmt: skip
            number("idle_seconds", self.idle_seconds, minimum=0, fix="0 skips it")
        check_backend(self.backend, self.device)
        threads = logical_cores() if self.threads is None else check_threads(self.threads)
        return replace(self, threads=threads)


@dataclass
class OperatorTime:
    """Time spent in one operator type per forward pass (self time, summed over its calls)."""

    op: str
    calls_per_run: float
    time_ms_per_run: float
    share: float


@dataclass
class Profile:
    """One measured configuration. Latencies are wall-clock per call (one batch), measured.

    ``memory_peak_mb`` is ``None`` where it cannot be read (``memory_method`` says why);
    ``io_policy`` says where the inputs lived while the calls were timed.
    """

    model: str
    fingerprint: str
    backend: str
    device: str
    batch_size: int
    threads: int
    iterations: int
    warmup: int
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    latency_ms_min: float
    latency_ms_mean: float
    latency_ms_std: float
    throughput_items_per_s: float
    memory_peak_mb: float | None
    memory_method: str
    io_policy: str
    params: int
    model_size_mb: float
    flops_per_item: float | None
    macs_per_item: float | None
    flops_method: str
    latency_method: str = "measured"
    energy: EnergyFigures | None = field(default=None, repr=False)
    operators: list[OperatorTime] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    environment: dict[str, Any] = field(default_factory=dict, repr=False)
    run_id: int | None = None

    _NON_SCALAR = ("operators", "latencies_ms", "environment", "energy")
    _CONFIG = ("backend", "device", "batch_size", "threads", "iterations", "warmup")
    #: The columns of :meth:`to_dict` a table of profiles shows (the CLI, the profile panel).
    SUMMARY_COLUMNS = (
        "run_id",
        "backend",
        "device",
        "batch_size",
        "threads",
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
        "latency_ms_max",
        "throughput_items_per_s",
        "memory_peak_mb",
        "flops_per_item",
    )
    #: The energy columns of :meth:`to_dict` (present when measured with ``energy=True``).
    ENERGY_COLUMNS = ("energy_j_per_item", "power_w_avg", "co2e_g_per_1m", "energy_method")

    def to_dict(self) -> dict[str, Any]:
        """Scalar fields (one row of a table), with the energy figures flattened in."""
        row = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NON_SCALAR
        }
        if self.energy is not None:
            row.update(self.energy.to_dict())
        return row

    def to_frame(self) -> pd.DataFrame:
        """This profile as a one-row DataFrame."""
        return pd.DataFrame([self.to_dict()])

    def operators_frame(self) -> pd.DataFrame:
        """The per-operator table, slowest first."""
        return pd.DataFrame([asdict(o) for o in self.operators])

    def config_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._CONFIG}

    def metrics_dict(self) -> dict[str, Any]:
        skip = {*self._CONFIG, "model", "fingerprint", "run_id"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}


def profile(
    model: Any,
    config: ProfileConfig | None = None,
    *,
    store: RunStore | str | Path | bool | None = None,
    sweep_id: str | None = None,
    meter: Meter | None = None,
    **settings: Any,
) -> Profile:
    """Measure one configuration of ``model`` (anything :func:`load_model` takes).

    ``settings`` override fields of ``config`` (``batch_size=8, backend="torch"``, ...).
    ``store``: a RunStore or path; ``None`` uses the default store; ``False`` stores nothing.
    ``energy=True`` also measures energy over the timed runs (at least ``energy_min_seconds``)
    with ``meter``, or the best meter this machine has (:func:`workbench.energy.auto_meter`).
    """
    handle = load_model(model)
    try:
        cfg = replace(config or ProfileConfig(), **settings).validated()
    except TypeError as exc:
        valid = ", ".join(f.name for f in fields(ProfileConfig))
        raise ConfigError(f"{exc}; valid settings are: {valid}") from exc
    result = _measure(handle, cfg, _EnergySession.start(cfg, meter))
    if store is not False:
        with open_store(store) as db:
            result.run_id = save_profile(db, result, sweep_id=sweep_id)
    return result


def save_profile(store: RunStore, result: Profile, sweep_id: str | None = None) -> int:
    """Append a profile to the run store; returns its run id."""
    return store.add(
        "profile",
        model=result.model,
        fingerprint=result.fingerprint,
        config=result.config_dict(),
        metrics=result.metrics_dict(),
        environment=result.environment,
        sweep_id=sweep_id,
        details={
            "operators": [asdict(o) for o in result.operators],
            "latencies_ms": result.latencies_ms[:: -(-len(result.latencies_ms) // STORED_SAMPLES)],
            "latency_samples_total": len(result.latencies_ms),
        },
    )


class _EnergySession:
    """One meter and its idle baseline, shared by every configuration of a profile or sweep."""

    def __init__(self, meter: Meter, idle_seconds: float) -> None:
        self.meter = meter
        self.idle_seconds = idle_seconds
        self._idle_w: float | None = None

    @classmethod
    def start(cls, cfg: ProfileConfig, meter: Meter | None) -> _EnergySession | None:
        if not cfg.energy:
            return None
        from workbench.energy import EstimateMeter, FallbackMeter
        from workbench.energy.auto import auto_meter_for

        if meter is None:  # the GPU is included whenever the configuration runs on one
            meter = auto_meter_for([cfg.device], tdp_w=cfg.tdp_w)
        elif not isinstance(meter, (FallbackMeter, EstimateMeter)):
            meter = FallbackMeter(meter, EstimateMeter(cfg.tdp_w))  # never lose the latencies
        return cls(meter, cfg.idle_seconds)

    def idle_w(self) -> float:
        from workbench.energy import idle_baseline

        if self._idle_w is None:
            self._idle_w = idle_baseline(self.meter, self.idle_seconds) if self.idle_seconds else 0
        return self._idle_w


def _measure(
    handle: ModelHandle, cfg: ProfileConfig, energy: _EnergySession | None = None
) -> Profile:
    feed = handle.example_inputs(cfg.batch_size)
    memory = _MemoryWatch(memory_method_for(cfg.backend, cfg.device))
    runner = make_runner(handle, cfg.backend, cfg.device, cfg.threads)
    try:
        prepared = runner.prepare(feed)
        run = runner.run
        with input_errors(handle):
            for _ in range(cfg.warmup):
                run(prepared)
            if energy is None:
                samples = _timed_loop(run, prepared, cfg)
            else:
                idle_w = energy.idle_w()
                window = f"profile-{uuid.uuid4().hex[:8]}"
                energy.meter.begin_window(window)
                samples = _timed_loop(run, prepared, cfg, min_seconds=cfg.energy_min_seconds)
                reading = energy.meter.end_window(window)
        peak_mb, memory_method = memory.peak_mb()
    finally:
        runner.close()
    figures = None
    if energy is not None:
        items = cfg.batch_size * len(samples)
        figures = per_inference(reading, items, idle_power_w=idle_w, region=cfg.carbon_region)
    lat = np.asarray(samples, dtype=np.float64) / 1e6
    pct = np.percentile(lat, PERCENTILES)
    flop = _count_flops(handle, cfg, feed)
    ops = _operator_table(handle, cfg, feed) if cfg.operators else []
    return Profile(
        model=handle.name,
        fingerprint=handle.fingerprint,
        backend=cfg.backend,
        device=cfg.device,
        batch_size=cfg.batch_size,
        threads=int(cfg.threads or 1),
        iterations=len(lat),
        warmup=cfg.warmup,
        latency_ms_p50=float(pct[0]),
        latency_ms_p90=float(pct[1]),
        latency_ms_p95=float(pct[2]),
        latency_ms_p99=float(pct[3]),
        latency_ms_max=float(lat.max()),
        latency_ms_min=float(lat.min()),
        latency_ms_mean=float(lat.mean()),
        latency_ms_std=float(lat.std()),
        throughput_items_per_s=float(cfg.batch_size * len(lat) / (lat.sum() / 1e3)),
        memory_peak_mb=peak_mb,
        memory_method=memory_method,
        io_policy=io_policy(cfg.backend, cfg.device),
        params=handle.param_count,
        model_size_mb=handle.size_mb,
        flops_per_item=None if flop is None else flop.flops_per_item,
        macs_per_item=None if flop is None else flop.macs / flop.batch_size,
        flops_method="unavailable" if flop is None else flop.method,
        energy=figures,
        operators=ops,
        latencies_ms=[round(float(x), 6) for x in lat],
        environment=environment(),
    )


def _timed_loop(run: Any, prepared: Any, cfg: ProfileConfig, min_seconds: float = 0.0) -> list[int]:
    """The hot loop: one clock read either side of each call and nothing else.

    Runs ``cfg.iterations`` calls (stopping early at ``max_seconds`` once ``min_iterations`` are
    done), then keeps going until ``min_seconds`` have passed (an energy window needs length).
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    start = clock()
    deadline = start + int(cfg.max_seconds * 1e9)
    floor = cfg.min_iterations
    for i in range(cfg.iterations):
        t0 = clock()
        run(prepared)
        t1 = clock()
        append(t1 - t0)
        if t1 > deadline and i + 1 >= floor:
            return samples
    until = start + int(min_seconds * 1e9)
    t1 = clock()
    while t1 < until:
        t0 = clock()
        run(prepared)
        t1 = clock()
        append(t1 - t0)
    return samples


def _count_flops(handle: ModelHandle, cfg: ProfileConfig, feed: dict[str, np.ndarray]) -> Any:
    one = {k: v[:1] for k, v in feed.items()}
    try:
        if cfg.backend == "torch":
            return torch_flops(handle.torch_module, one)
        return onnx_flops(handle.onnx(), one)
    except Exception:  # counting is informative; an exotic graph must not cost the latency results
        return None


def _operator_table(
    handle: ModelHandle, cfg: ProfileConfig, feed: dict[str, np.ndarray]
) -> list[OperatorTime]:
    n = cfg.operator_iterations
    totals: dict[str, list[float]] = {}
    if cfg.backend == "onnxruntime":
        with tempfile.TemporaryDirectory() as tmp:
            runner = make_runner(handle, cfg.backend, cfg.device, cfg.threads, profiling_dir=tmp)
            prepared = runner.prepare(feed)
            with input_errors(handle):
                runner.run(prepared)  # the first call allocates; keep it out of the table
                for _ in range(n):
                    runner.run(prepared)
            trace = json.loads(Path(runner.session.end_profiling()).read_text())
        node_events = [
            e
            for e in trace
            if e.get("cat") == "Node"
            and "op_name" in e.get("args", {})
            and e.get("name", "").endswith("_kernel_time")
        ]
        runs = n + 1
        for event in node_events:
            entry = totals.setdefault(event["args"]["op_name"], [0.0, 0.0])
            entry[0] += 1
            entry[1] += event["dur"] / 1e3
    else:
        import torch
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        runner = make_runner(handle, cfg.backend, cfg.device, cfg.threads)
        try:
            prepared = runner.prepare(feed)
            runner(feed)  # first call, with input errors translated
            activities = [ProfilerActivity.CPU]
            if cfg.device == "cuda":
                activities.append(ProfilerActivity.CUDA)
            with torch_profile(activities=activities) as prof, input_errors(handle):
                for _ in range(n):
                    runner.run(prepared)
        finally:
            runner.close()
        runs = n
        for avg in prof.key_averages():
            self_us = (
                avg.self_device_time_total if cfg.device == "cuda" else avg.self_cpu_time_total
            )
            if self_us <= 0:
                continue
            entry = totals.setdefault(avg.key, [0.0, 0.0])
            entry[0] += avg.count
            entry[1] += self_us / 1e3
        del torch
    grand = sum(v[1] for v in totals.values()) or 1.0
    table = [
        OperatorTime(op, calls / runs, ms / runs, ms / grand) for op, (calls, ms) in totals.items()
    ]
    return sorted(table, key=lambda o: o.time_ms_per_run, reverse=True)


def memory_method_for(backend: str, device: str) -> str:
    """Where the peak memory of a configuration is read from.

    ``cuda-max-allocated`` (torch on CUDA: torch's allocator, which holds all of torch's tensors);
    on CPU the growth of the process's peak resident set (``rss-peak-delta``, or ``rss-delta``
    where the peak cannot be reset; decided when measuring); ONNX Runtime on CUDA allocates
    from its own arena, which torch cannot see and ORT does not report per session, so its figure
    is unknown (:data:`ORT_CUDA_MEMORY_UNKNOWN`), never torch's.

    >>> memory_method_for("torch", "cuda"), memory_method_for("onnxruntime", "cpu")
    ('cuda-max-allocated', 'rss-peak-delta')
    >>> memory_method_for("onnxruntime", "cuda") == ORT_CUDA_MEMORY_UNKNOWN
    True
    """
    if device != "cuda":
        return "rss-peak-delta"
    return "cuda-max-allocated" if backend == "torch" else ORT_CUDA_MEMORY_UNKNOWN


class _MemoryWatch:
    """Peak memory during a measurement, read as :func:`memory_method_for` decided: CUDA max
    allocated for torch on GPU; on CPU the growth of the process's peak resident set (VmHWM,
    reset through /proc/self/clear_refs) over its RSS before the runner was built; nothing for
    ONNX Runtime on GPU."""

    def __init__(self, method: str) -> None:
        self.method = method
        if method == ORT_CUDA_MEMORY_UNKNOWN:
            return
        if method == "cuda-max-allocated":
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        self.base = _rss_bytes()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.hwm = True
        except OSError:
            self.hwm = False

    def peak_mb(self) -> tuple[float | None, str]:
        if self.method == ORT_CUDA_MEMORY_UNKNOWN:
            return None, self.method
        if self.method == "cuda-max-allocated":
            import torch

            return (torch.cuda.max_memory_allocated() - self.base) / 2**20, self.method
        if self.hwm:
            peak = _proc_status_kb("VmHWM") * 1024
            return max(peak - self.base, 0) / 2**20, "rss-peak-delta"
        return max(_rss_bytes() - self.base, 0) / 2**20, "rss-delta"


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


@dataclass
class SweepResult:
    """Profiles of a sweep; ``interrupted`` if it was stopped before the end."""

    sweep_id: str
    profiles: list[Profile]
    interrupted: bool = False
    resumed_run_ids: list[int] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([p.to_dict() for p in self.profiles])


def sweep(
    model: Any,
    *,
    batch_sizes: list[int] | tuple[int, ...] = (1,),
    backends: list[str] | tuple[str, ...] = ("onnxruntime",),
    threads: list[int | None] | tuple[int | None, ...] = (None,),
    store: RunStore | str | Path | bool | None = None,
    sweep_id: str | None = None,
    progress: bool = True,
    meter: Meter | None = None,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> SweepResult:
    """Profile every combination of backend x threads x batch size, storing each as it finishes.

    Stopping it (Ctrl-C, the stop button, or killing the process) keeps every finished
    configuration; calling again with the same ``sweep_id`` resumes, skipping stored ones.
    ``stop`` is called before each configuration; returning true ends the sweep there
    (``interrupted``), as Ctrl-C does. ``on_progress(done, total)`` is called after each one.
    """
    from tqdm.auto import tqdm

    handle = load_model(model)
    base = ProfileConfig(**settings)
    combos = [
        replace(base, backend=b, threads=t, batch_size=n)
        for b in backends
        for t in threads
        for n in batch_sizes
    ]
    combos = [c.validated() for c in combos]
    sweep_id = sweep_id or uuid.uuid4().hex[:12]
    result = SweepResult(sweep_id, [])
    energy = _EnergySession.start(base, meter)
    with open_store(store) as db:
        done = {}
        for run in db.runs(sweep_id=sweep_id, kind="profile"):
            key = tuple(run.config.get(k) for k in ("backend", "device", "batch_size", "threads"))
            done[key] = run.id
        bar = tqdm(combos, desc=f"sweep {handle.name}", unit="config", disable=not progress)
        try:
            for i, cfg in enumerate(bar):
                key = (cfg.backend, cfg.device, cfg.batch_size, cfg.threads)
                if key in done:
                    result.resumed_run_ids.append(done[key])
                    continue
                if stop is not None and stop():
                    result.interrupted = True
                    break
                bar.set_postfix_str(f"{cfg.backend} b={cfg.batch_size} t={cfg.threads}")
                measured = _measure(handle, cfg, energy)
                if store is not False:
                    measured.run_id = save_profile(db, measured, sweep_id=sweep_id)
                result.profiles.append(measured)
                if on_progress is not None:
                    on_progress(i + 1, len(combos))
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            bar.close()
    return result
