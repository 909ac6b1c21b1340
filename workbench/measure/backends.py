"""Runners with one call signature over the execution backends.

``make_runner(handle, backend, device, threads)`` returns a :class:`Runner` whose ``prepare(feed)``
turns numpy inputs into the backend's own (tensors on the device, for torch) and whose
``run(prepared)`` executes one forward pass and returns when its results are ready (CUDA work is
synchronised), so the profiler can time ``run`` alone. ``run`` is the bare backend call; wrap
loops of it in :func:`input_errors` to turn a rejected input into a clear error.

Backends: ``"onnxruntime"`` (CPUExecutionProvider, CUDAExecutionProvider) and ``"torch"`` (eager,
CPU and CUDA).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from workbench.checks import whole
from workbench.errors import (
    BackendUnavailableError,
    ConfigError,
    InputShapeError,
    WorkbenchError,
)
from workbench.models.handle import ModelHandle

BACKENDS = ("onnxruntime", "torch")
DEVICES = ("cpu", "cuda")


def logical_cores() -> int:
    """Logical CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_threads(threads: int) -> int:
    """Validate an intra-op thread count against this machine."""
    cores = logical_cores()
    fix = f"use 1..{cores} ({cores} logical cores available)"
    return whole("threads", threads, minimum=1, maximum=cores, fix=fix)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def check_backend(backend: str, device: str) -> None:
    """Validate a backend and device name, and that this machine has the device."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    if device == "cuda" and not cuda_available():
        raise BackendUnavailableError(
            "no CUDA GPU is visible on this machine: use --device cpu, or a machine with an "
            "NVIDIA GPU and CUDA builds of torch / onnxruntime-gpu"
        )


@dataclass
class Runner:
    """One model on one backend, device and thread count."""

    backend: str
    device: str
    threads: int
    prepare: Callable[[dict[str, np.ndarray]], Any]
    run: Callable[[Any], Any]
    close: Callable[[], None]
    handle: ModelHandle
    session: Any = None

    def __call__(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on numpy inputs and return numpy outputs (for checks, not timing)."""
        with input_errors(self.handle):
            out = self.run(self.prepare(feed))
        items = out if isinstance(out, (list, tuple)) else [out]
        return [x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in items]


def make_runner(
    handle: ModelHandle,
    backend: str = "onnxruntime",
    device: str = "cpu",
    threads: int | None = None,
    profiling_dir: str | None = None,
) -> Runner:
    """Build a runner; ``profiling_dir`` turns on ONNX Runtime's per-operator profiling."""
    check_backend(backend, device)
    threads = check_threads(threads if threads is not None else logical_cores())
    if backend == "onnxruntime":
        return _ort_runner(handle, device, threads, profiling_dir)
    return _torch_runner(handle, device, threads)


def _ort_runner(
    handle: ModelHandle, device: str, threads: int, profiling_dir: str | None
) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = handle.metadata.get("ort_graph_optimization_level")
    if level is not None:  # a graph-level variant (workbench.compress.quantize) names its level
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if profiling_dir is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(profiling_dir, "ort_profile")
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError(
                "ONNX Runtime has no CUDAExecutionProvider here: install the 'gpu' extra "
                "(onnxruntime-gpu) on a machine with an NVIDIA GPU, or use --device cpu"
            )
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(handle.onnx()), sess_options=opts, providers=providers)
    expected = {i.name for i in sess.get_inputs()}

    def prepare(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = expected - set(feed)
        if missing:
            raise InputShapeError(
                f"{handle.name} needs inputs {sorted(expected)}; missing {sorted(missing)}"
            )
        return {k: np.ascontiguousarray(v) for k, v in feed.items() if k in expected}

    run = partial(sess.run, None)
    return Runner("onnxruntime", device, threads, prepare, run, lambda: None, handle, sess)


def _torch_runner(handle: ModelHandle, device: str, threads: int) -> Runner:
    import torch

    if handle.torch_module is None:
        raise BackendUnavailableError(
            f"{handle.name} is an ONNX file: it has no PyTorch form; use --backend onnxruntime"
        )
    module = handle.torch_module.to(device).eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def prepare(feed: dict[str, np.ndarray]) -> list[Any]:
        return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in feed.values()]

    def forward(tensors: list[Any]) -> Any:
        with torch.inference_mode():
            out = module(*tensors)
        sync()
        return out

    def close() -> None:
        torch.set_num_threads(previous)
        if device == "cuda":
            handle.torch_module.to("cpu")

    return Runner("torch", device, threads, prepare, forward, close, handle)


@contextmanager
def input_errors(handle: ModelHandle) -> Iterator[None]:
    """Turn a backend's shape/type failure into one InputShapeError naming the model's inputs.

    Wraps whole loops rather than each call, so the timed path stays a bare backend call.
    """
    try:
        yield
    except WorkbenchError:
        raise
    except Exception as exc:  # ONNX Runtime's errors derive from Exception alone
        specs = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in handle.inputs)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputShapeError(
            f"{handle.name} rejected the input ({first[:300]}); it takes {specs} "
            "(None = any size): give an input shape that fits"
        ) from exc
