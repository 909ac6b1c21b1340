"""Planning the deployment: how to batch, how many threads and instances, which hardware,
whether a cascade or a cache pays, predicted before anything is served.

- :mod:`~workbench.plan.batch_curve`: the measured batch-size curve and its knee.
- :mod:`~workbench.plan.traces`: arrival traces (Poisson, bursty, diurnal, from CSV).
- :mod:`~workbench.plan.simulator`: a dynamic-batching server run in virtual time.
- :mod:`~workbench.plan.sizing`: threads x instances x hardware at the lowest cost that meets a p99.
- :mod:`~workbench.plan.cascade`: a small model first, the large one when it is unsure.
- :mod:`~workbench.plan.caching`: a result cache's hit rate and savings on a key stream.
- :mod:`~workbench.plan.replay`: replay a trace against a live server, side by side with the
  simulator.

Example
-------
>>> from workbench.plan import BatchLatencyCurve, ServerConfig, poisson_trace, simulate
>>> curve = BatchLatencyCurve(batch_sizes=(1, 8), service_times_ms=(1.0, 2.0))
>>> result = simulate(poisson_trace(100.0, 5.0, seed=0), curve, ServerConfig(max_batch_rows=8))
>>> len(result.arrival_s) > 0
True
"""

from workbench.plan.batch_curve import BatchLatencyCurve, BatchSweep, batch_sweep, knee_batch_size
from workbench.plan.caching import CacheResult, cache_sweep, simulate_cache
from workbench.plan.cascade import CascadeChoice, CascadeSweep, cascade_sweep, pick_threshold
from workbench.plan.simulator import PowerModel, ServerConfig, SimulationResult, predict, simulate
from workbench.plan.sizing import SizingResult, right_size
from workbench.plan.traces import ArrivalTrace, bursty_trace, poisson_trace, read_trace_csv

__all__ = [
    "ArrivalTrace",
    "BatchLatencyCurve",
    "BatchSweep",
    "CacheResult",
    "CascadeChoice",
    "CascadeSweep",
    "PowerModel",
    "ServerConfig",
    "SimulationResult",
    "SizingResult",
    "batch_sweep",
    "bursty_trace",
    "cache_sweep",
    "cascade_sweep",
    "knee_batch_size",
    "pick_threshold",
    "poisson_trace",
    "predict",
    "read_trace_csv",
    "right_size",
    "simulate",
    "simulate_cache",
]
