"""Measurement: run one configuration (model, backend, device, batch size, threads) and time it,
count its FLOPs, record the machine it ran on, and keep every result in the run store.

- :mod:`~workbench.measure.profiling`: ``profile(...) -> Profile``, ``sweep(...) -> SweepResult``.
- :mod:`~workbench.measure.backends`: the torch and ONNX Runtime runners, CPU or CUDA.
- :mod:`~workbench.measure.flops`: FLOPs and MACs per item from the ONNX graph.
- :mod:`~workbench.measure.environment`: the host, library versions and device of a run.
- :mod:`~workbench.measure.store`: ``RunStore``, the SQLite run store every step appends to.

Example
-------
>>> from workbench.measure import profile
>>> p = profile("digits-mlp", batch_size=8, iterations=20, store=False)
>>> p.latency_ms_p50 <= p.latency_ms_p99
True
"""

from workbench.measure.profiling import Profile, ProfileConfig, SweepResult, profile, sweep
from workbench.measure.store import Run, RunStore, open_store

__all__ = [
    "Profile",
    "ProfileConfig",
    "Run",
    "RunStore",
    "SweepResult",
    "open_store",
    "profile",
    "sweep",
]
