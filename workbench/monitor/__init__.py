"""Live monitoring: scrape a running bundle's ``/metrics``, turn scrapes into windows of live
figures (p99, J/prediction, idle share, W, cost per 1M), compare them with the bundle's profile and
SLO, and keep every window in the run store.

- :mod:`workbench.monitor.scrape`: the Prometheus text exposition parsed into samples;
- :mod:`workbench.monitor.window`: one window's figures from two scrapes;
- :mod:`workbench.monitor.drift`: thresholds, the bundle's baseline, :class:`MonitorReport`;
- :mod:`workbench.monitor.loop`: :func:`monitor`, the scrape loop.

>>> from workbench.monitor import Thresholds
>>> Thresholds().max_energy_increase_pct
20.0
"""

from workbench.monitor.drift import Baseline, Drift, MonitorReport, Thresholds, compare
from workbench.monitor.loop import monitor, parse_duration
from workbench.monitor.scrape import Sample, Scrape, fetch, parse
from workbench.monitor.window import Window, window

__all__ = [
    "Baseline",
    "Drift",
    "MonitorReport",
    "Sample",
    "Scrape",
    "Thresholds",
    "Window",
    "compare",
    "fetch",
    "monitor",
    "parse",
    "parse_duration",
    "window",
]
