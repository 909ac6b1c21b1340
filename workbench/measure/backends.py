"""Runners with one call signature over the execution backends.

``make_runner(handle, backend, device, threads)`` returns a :class:`Runner` whose ``prepare(feed)``
turns numpy inputs into the backend's own (placed on the device, on CUDA) and whose
``run(prepared)`` executes one forward pass and returns when its results are ready (CUDA work is
synchronised), so the profiler can time ``run`` alone. ``run`` is the bare backend call; wrap
loops of it in :func:`input_errors` to turn a rejected input into a clear error.

Backends: ``"onnxruntime"`` (CPUExecutionProvider, CUDAExecutionProvider) and ``"torch"`` (eager,
CPU and CUDA).

Host-device copies: one policy for both backends (:func:`io_policy`). On CUDA, ``prepare`` puts
the inputs on the GPU once (torch tensors ``.to("cuda")``; ONNX Runtime OrtValues bound through
``io_binding()``), and ``run`` leaves the outputs on the GPU, so the timed call is the forward
pass alone and neither backend pays a copy the other does not. On CPU there is nothing to copy.

>>> io_policy("onnxruntime", "cuda") == io_policy("torch", "cuda") == IO_POLICY_DEVICE
True
>>> io_policy("torch", "cpu")
'host memory (CPU: nothing to copy)'
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
#: How inputs and outputs are placed while a GPU configuration is timed (both backends).
IO_POLICY_DEVICE = "device-resident inputs and outputs, host-device copies excluded from timing"
IO_POLICY_HOST = "host memory (CPU: nothing to copy)"


def io_policy(backend: str, device: str) -> str:
    """Where inputs and outputs live while ``run`` is timed: the same for every backend on a
    device (``backend`` is accepted so that a caller never has to special-case one)."""
    del backend  # one policy for both: that is the point
    return IO_POLICY_DEVICE if device == "cuda" else IO_POLICY_HOST


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

    @property
    def io_policy(self) -> str:
        """Where inputs and outputs live while ``run`` is timed (:func:`io_policy`)."""
        return io_policy(self.backend, self.device)

    def __call__(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on numpy inputs and return numpy outputs (for checks, not timing)."""
        with input_errors(self.handle):
            out = self.run(self.prepare(feed))
        items = out if isinstance(out, (list, tuple)) else [out]
        return [_to_numpy(x) for x in items]


def _to_numpy(value: Any) -> np.ndarray:
    """A torch tensor, an ONNX Runtime OrtValue (on any device) or an array, as numpy."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return value.numpy()  # OrtValue: copied to the host here, outside any timed loop
    return np.asarray(value)


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

    if device == "cuda":
        prepare_cuda, run_cuda = _ort_bound_io(ort, sess, prepare, "cuda")
        return Runner("onnxruntime", device, threads, prepare_cuda, run_cuda, lambda: None,
                      handle, sess)  # fmt: skip
    run = partial(sess.run, None)
    return Runner("onnxruntime", device, threads, prepare, run, lambda: None, handle, sess)


def _ort_bound_io(
    ort: Any, sess: Any, check: Callable[[dict[str, np.ndarray]], Any], device: str
) -> tuple[Callable[[dict[str, np.ndarray]], Any], Callable[[Any], list[Any]]]:
    """``prepare`` and ``run`` for ONNX Runtime on CUDA under :data:`IO_POLICY_DEVICE`.

    ``prepare`` copies the inputs to ``device`` 0 once, as OrtValues bound to an IOBinding whose
    outputs are bound to the device too; ``run`` executes that binding and waits for its outputs,
    so the timed call pays no host-device copy, as torch's does not (its tensors are moved to the
    device in its ``prepare``). ``device`` is ORT's name (``"cuda"``; ``"cpu"`` in the tests,
    which exercise the same binding where no GPU is).
    """

    def prepare(feed: dict[str, np.ndarray]) -> Any:
        binding = sess.io_binding()
        values = {k: ort.OrtValue.ortvalue_from_numpy(v, device, 0) for k, v in check(feed).items()}
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        binding.bound_inputs = values  # kept alive with the binding (a CPU OrtValue wraps numpy)
        for out in sess.get_outputs():
            binding.bind_output(out.name, device, 0)
        return binding

    def run(binding: Any) -> list[Any]:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the work is done when run returns, as torch's sync does
        return binding.get_outputs()

    return prepare, run


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
        # IO_POLICY_DEVICE: on CUDA the inputs are copied once here, never in the timed ``run``
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
